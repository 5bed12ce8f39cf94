/*
 * registry.c: connections by id and by user, and what their queues take.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <utlist.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "registry.h"
#include "util.h"

static struct conn *conns_by_id;
static struct user_entry *users;
static bool batching;
static struct conn *flush_head; /* utlist DL: flush_head->flush_prev is the tail */
static struct registry_writer writer;

/* Gauges: open connections, bytes queued. */
static double
registry_gauge_count(void)
{
	return registry_count();
}

static double
registry_gauge_queued(void)
{
	return (double) queue_total_bytes();
}

void
registry_init(const struct registry_writer *w)
{
	writer = *w;
	metrics_gauge(GAUGE_CONNECTIONS, registry_gauge_count);
	metrics_gauge(GAUGE_SEND_QUEUE_BYTES, registry_gauge_queued);
}

/* Copy s (or nothing) to *at, set *field to the copy, advance *at. */
static void
conn_text(char **at, const char **field, const char *s)
{
	size_t l;

	if (!s)
		return;
	l = strlen(s) + 1;
	memcpy(*at, s, l);
	*field = *at;
	*at += l;
}

struct conn *
registry_add(const struct conn_row *row)
{
	size_t text = (row->claims ? strlen(row->claims) + 1 : 0) +
		      (row->remote_addr ? strlen(row->remote_addr) + 1 : 0) +
		      (row->user_agent ? strlen(row->user_agent) + 1 : 0);
	struct conn *c = util_calloc(1, sizeof(*c) + text);
	struct user_entry *u;
	char *at = c->text;

	c->magic = CONN_MAGIC;
	snprintf(c->id, sizeof(c->id), "%s", row->id);
	conn_text(&at, &c->claims, row->claims);
	conn_text(&at, &c->remote_addr, row->remote_addr);
	conn_text(&at, &c->user_agent, row->user_agent);
	c->connected_at = time(NULL);
	c->start_id = row->start_id;
	c->expires_at = row->expires_at;
	c->state = CONN_HANDSHAKE;
	c->last_rx_ms = c->last_tx_ms = now_ms();
	HASH_ADD_STR(conns_by_id, id, c);
	HASH_FIND_STR(users, row->user_id, u);
	if (!u) {
		size_t l = strlen(row->user_id);

		u = util_calloc(1, sizeof(*u) + l + 1);
		memcpy(u->user_id, row->user_id, l);
		HASH_ADD_KEYPTR(hh, users, u->user_id, l, u);
	}
	c->user = u;
	c->user_id = u->user_id;
	DL_APPEND2(u->conns, c, uprev, unext);
	return c;
}

void
registry_remove(struct conn *c)
{
	struct user_entry *u = c->user;

	if (c->flush_pending)
		DL_DELETE2(flush_head, c, flush_prev, flush_next);
	queue_clear(&c->q);
	HASH_DEL(conns_by_id, c);
	DL_DELETE2(u->conns, c, uprev, unext);
	if (!u->conns) {
		HASH_DEL(users, u);
		free(u);
	}
	while (c->req_head) {
		struct route_req *r = c->req_head;

		c->req_head = r->next;
		free(r->body);
		free(r->request_id);
		free(r);
	}
	free(c->rx_buf);
	c->magic = 0;
	free(c);
}

struct conn *
registry_find(const char *id)
{
	return registry_find_len(id, strlen(id));
}

struct conn *
registry_find_len(const char *id, size_t len)
{
	struct conn *c;

	HASH_FIND(hh, conns_by_id, id, len, c);
	return c;
}

/* The connections of a user, or NULL. */
struct conn *
registry_user(const char *user_id)
{
	return registry_user_len(user_id, strlen(user_id));
}

/* The connections of a user id of len bytes, not NUL-terminated, or NULL. */
struct conn *
registry_user_len(const char *user_id, size_t len)
{
	struct user_entry *u;

	HASH_FIND(hh, users, user_id, len, u);
	return u ? u->conns : NULL;
}

/* All connections. */
struct conn *
registry_all(void)
{
	return conns_by_id;
}

unsigned
registry_count(void)
{
	return HASH_COUNT(conns_by_id);
}

void
conn_want_write(struct conn *c)
{
	if (!c->wsi || (c->state != CONN_OPEN && c->state != CONN_CLOSING))
		return;
	if (!batching) {
		writer.want_write(c);
		return;
	}
	if (c->flush_pending)
		return;
	c->flush_pending = true;
	DL_APPEND2(flush_head, c, flush_prev, flush_next);
}

/* Start noting connections to write instead of asking lws for callbacks. */
void
registry_batch_begin(void)
{
	batching = true;
}

/* Write to every connection noted since registry_batch_begin. */
void
registry_batch_end(void)
{
	batching = false;
	while (flush_head) {
		struct conn *c = flush_head;

		DL_DELETE2(flush_head, c, flush_prev, flush_next);
		c->flush_pending = false;
		writer.flush(c);
	}
}

/* Queue a frame in its final form; past send_queue_max close with 1008 instead. */
static void
conn_push(struct conn *c, struct payload *p, int64_t id)
{
	if (!queue_push(&c->q, p, id, (size_t) cf_send_queue_max)) {
		metrics.queue_drops++;
		log_warn(
			"connection %s (user %s): send queue over send_queue_max (%zu + %zu bytes), closing with 1008",
			c->id, c->user_id, c->q.bytes, p->len);
		conn_close(c, &frame_close_queue_full);
		return;
	}
	conn_want_write(c);
}

void
conn_enqueue(struct conn *c, struct payload *p, int64_t id)
{
	if (conn_closing(c))
		return;
	p = frame_form(p, id, c->envelope);
	if (c->holding)
		queue_hold(&c->q, p, id);
	else
		conn_push(c, p, id);
}

void
conn_release(struct conn *c)
{
	c->holding = false;
	if (!c->q.held)
		return;
	if (conn_closing(c))
		queue_drop_held(&c->q);
	else
		queue_release(&c->q);
	conn_want_write(c);
}

void
conn_enqueue_text(struct conn *c, const char *text)
{
	struct payload *p = payload_new(text, strlen(text));

	conn_enqueue_formed(c, p);
	payload_unref(p);
}

void
conn_enqueue_formed(struct conn *c, struct payload *p)
{
	if (conn_closing(c))
		return;
	conn_push(c, p, 0);
}

/*
 * Read in place, not parsed into a jansson tree: a 19,000-subscriber list
 * is 700 KB, and parsing it cost more than the lookups.  Connection ids
 * are this bridge's own hex strings, so a string with an escape in it
 * names none of them.
 */
size_t
registry_listed(const char *ids, struct conn **list, size_t n, size_t *from)
{
	const char *s = ids + *from;
	size_t found = 0;

	while (found < n && (s = strchr(s, '"'))) {
		const char *e = ++s;
		bool escaped = false;
		struct conn *c;

		for (; *e && *e != '"'; e++)
			if (*e == '\\' && e[1]) {
				escaped = true;
				e++;
			}
		if (!*e)
			break;
		if (!escaped && (c = registry_find_len(s, (size_t) (e - s))))
			list[found++] = c;
		s = e + 1;
	}
	*from = s ? (size_t) (s - ids) : strlen(ids);
	return found;
}

void
conn_enqueue_now(struct conn *c, struct payload *p, int64_t id)
{
	if (!conn_closing(c))
		conn_push(c, frame_form(p, id, c->envelope), id);
}

void
conn_enqueue_replayed(struct conn *c, struct payload *p, int64_t id)
{
	if (conn_closing(c))
		return;
	queue_push_replayed(&c->q, frame_form(p, id, c->envelope), id);
	conn_want_write(c);
}

void
conn_enqueue_close(struct conn *c, int code, const char *reason)
{
	if (conn_closing(c))
		return;
	queue_push_close(&c->q, code, reason, c->holding);
	if (!c->holding)
		conn_want_write(c);
}

void
conn_close(struct conn *c, const struct frame_close *why)
{
	if (conn_closing(c))
		return;
	queue_clear(&c->q);
	c->state = CONN_CLOSING;
	c->close_code = why->code;
	c->close_reason = why->reason;
	conn_want_write(c);
}

bool
conn_closing(const struct conn *c)
{
	return c->state >= CONN_CLOSING;
}
