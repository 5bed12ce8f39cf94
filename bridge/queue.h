/*
 * queue.h: one connection's send queue: messages and closes in the order
 * they are to be written, and beside them the live messages that wait while
 * a replay is in flight (held), to follow it.
 *
 * The queue counts the bytes it holds, held ones included, and the bytes of
 * every queue together (the send_queue_bytes gauge); a message that would
 * take a queue past its bound is refused, and the caller decides what that
 * means (the registry closes the connection with 1008).  Pure (payload and
 * util only), so it is unit-tested on its own (test_units.c).
 */
#ifndef WSNOTIFY_QUEUE_H
#define WSNOTIFY_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "payload.h"

/* One entry: a message, or a close (p == NULL). */
struct out_item {
	struct out_item *next;
	struct payload *p;
	int64_t id;
	int close_code;
	char *close_reason;
	bool replayed; /* asked for by the client's resume: outside the bound */
};

struct send_queue {
	struct out_item *head, *tail;
	struct out_item *held, *held_tail; /* waiting for a replay to end */
	size_t bytes;			   /* unsent message bytes, held ones included */
	size_t head_off;		   /* bytes of head already written */
	size_t replayed;		   /* of bytes, those of replayed messages */
};

/* Append message p (one more reference); false, and nothing queued, when the bytes already queued (replayed ones aside) pass max. */
bool queue_push(struct send_queue *q, struct payload *p, int64_t id, size_t max);
/*
 * Append a replayed message p, unbounded and not counted against the bound
 * of later pushes: a resume asks for what it missed, which retention bounds,
 * and a client that reads must get it rather than a 1008 on every resume.
 */
void queue_push_replayed(struct send_queue *q, struct payload *p, int64_t id);
/* Append message p to the held list, unbounded: the replay it waits for decides the rest. */
void queue_hold(struct send_queue *q, struct payload *p, int64_t id);
/* Append a close after everything queued, or after everything held. */
void queue_push_close(struct send_queue *q, int code, const char *reason, bool held);
/* Move what is held to the end of the queue. */
void queue_release(struct send_queue *q);
/* Free what is held. */
void queue_drop_held(struct send_queue *q);
/* Free the head (written, or dropped). */
void queue_pop(struct send_queue *q);
/* Free every entry, held ones too. */
void queue_clear(struct send_queue *q);
/* Bytes held by every queue together. */
size_t queue_total_bytes(void);

#endif
