/*
 * queue.c: send queues (queue.h): singly linked lists with a tail pointer,
 * so that appending, and appending a whole held list, cost no walk.
 */
#include <stdlib.h>

#include "queue.h"
#include "util.h"

static size_t total_bytes;

/* A new entry; a message's bytes are counted as queued. */
static struct out_item *
queue_item(struct send_queue *q, struct payload *p, int64_t id)
{
	struct out_item *it = util_calloc(1, sizeof(*it));

	it->p = p;
	it->id = id;
	if (p) {
		p->refs++;
		q->bytes += p->len;
		total_bytes += p->len;
	}
	return it;
}

/* Free one entry and uncount its bytes. */
static void
queue_item_free(struct send_queue *q, struct out_item *it)
{
	if (it->p) {
		q->bytes -= it->p->len;
		if (it->replayed)
			q->replayed -= it->p->len;
		total_bytes -= it->p->len;
		payload_unref(it->p);
	}
	free(it->close_reason);
	free(it);
}

/* Link it after tail (head when empty). */
static void
queue_link(struct out_item **head, struct out_item **tail, struct out_item *it)
{
	if (*tail)
		(*tail)->next = it;
	else
		*head = it;
	*tail = it;
}

bool
queue_push(struct send_queue *q, struct payload *p, int64_t id, size_t max)
{
	/*
	 * The bound is for the backlog ahead of a message, not the message: any
	 * one message the database accepts reaches a client that reads, however
	 * its size compares with max (a queue holds at most max plus one message).
	 */
	if (q->bytes - q->replayed > max)
		return false;
	queue_link(&q->head, &q->tail, queue_item(q, p, id));
	return true;
}

void
queue_push_replayed(struct send_queue *q, struct payload *p, int64_t id)
{
	struct out_item *it = queue_item(q, p, id);

	it->replayed = true;
	q->replayed += p->len;
	queue_link(&q->head, &q->tail, it);
}

void
queue_hold(struct send_queue *q, struct payload *p, int64_t id)
{
	queue_link(&q->held, &q->held_tail, queue_item(q, p, id));
}

void
queue_push_close(struct send_queue *q, int code, const char *reason, bool held)
{
	struct out_item *it = queue_item(q, NULL, 0);

	it->close_code = code;
	it->close_reason = util_strdup(reason ? reason : "");
	if (held)
		queue_link(&q->held, &q->held_tail, it);
	else
		queue_link(&q->head, &q->tail, it);
}

void
queue_release(struct send_queue *q)
{
	if (!q->held)
		return;
	if (q->tail)
		q->tail->next = q->held;
	else
		q->head = q->held;
	q->tail = q->held_tail;
	q->held = q->held_tail = NULL;
}

void
queue_drop_held(struct send_queue *q)
{
	while (q->held) {
		struct out_item *it = q->held;

		q->held = it->next;
		queue_item_free(q, it);
	}
	q->held_tail = NULL;
}

void
queue_pop(struct send_queue *q)
{
	struct out_item *it = q->head;

	if (!it)
		return;
	q->head = it->next;
	if (!q->head)
		q->tail = NULL;
	queue_item_free(q, it);
	q->head_off = 0;
}

void
queue_clear(struct send_queue *q)
{
	while (q->head)
		queue_pop(q);
	q->head_off = 0;
	queue_drop_held(q);
}

size_t
queue_total_bytes(void)
{
	return total_bytes;
}
