/*
 * registry.c: connections by id and by user, and their send queues.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libwebsockets.h>
#include <utlist.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "registry.h"
#include "ws.h"

static struct conn *conns_by_id;
static struct user_entry *users;
static size_t total_queued;
static bool batching;
static struct conn *flush_head;	/* utlist DL: flush_head->flush_prev is the tail */

/* Monotonic milliseconds. */
uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
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

/* Create and index a connection. */
struct conn *
registry_add(const char *id, const char *user_id, const char *claims,
	     const char *remote_addr, const char *user_agent, int64_t start_id,
	     double expires_at)
{
	size_t text = (claims ? strlen(claims) + 1 : 0) +
		(remote_addr ? strlen(remote_addr) + 1 : 0) +
		(user_agent ? strlen(user_agent) + 1 : 0);
	struct conn *c = calloc(1, sizeof(*c) + text);
	struct user_entry *u;
	char *at = c->text;

	c->magic = CONN_MAGIC;
	snprintf(c->id, sizeof(c->id), "%s", id);
	conn_text(&at, &c->claims, claims);
	conn_text(&at, &c->remote_addr, remote_addr);
	conn_text(&at, &c->user_agent, user_agent);
	c->connected_at = time(NULL);
	c->start_id = start_id;
	c->expires_at = expires_at;
	c->state = CONN_PENDING;
	c->last_rx_ms = c->last_tx_ms = now_ms();
	HASH_ADD_STR(conns_by_id, id, c);
	HASH_FIND_STR(users, user_id, u);
	if (!u) {
		size_t l = strlen(user_id);

		u = calloc(1, sizeof(*u) + l + 1);
		memcpy(u->user_id, user_id, l);
		HASH_ADD_KEYPTR(hh, users, u->user_id, l, u);
	}
	c->user = u;
	c->user_id = u->user_id;
	DL_APPEND2(u->conns, c, uprev, unext);
	return c;
}

/* Free one queue item and uncount its bytes. */
static void
conn_item_free(struct conn *c, struct out_item *it)
{
	if (it->p) {
		c->queued -= it->p->len;
		total_queued -= it->p->len;
		payload_unref(it->p);
	}
	free(it->close_reason);
	free(it);
}

/* A queue item holding a reference to p, its bytes counted as queued. */
static struct out_item *
conn_item_new(struct conn *c, struct payload *p, int64_t id)
{
	struct out_item *it = calloc(1, sizeof(*it));

	it->p = p;
	it->id = id;
	p->refs++;
	c->queued += p->len;
	total_queued += p->len;
	return it;
}

/* Free the items held while a replay is in flight. */
static void
conn_drop_held(struct conn *c)
{
	while (c->held) {
		struct out_item *it = c->held;

		c->held = it->next;
		conn_item_free(c, it);
	}
	c->held_tail = NULL;
}

/* Free every queued item of a connection. */
static void
conn_clear_queue(struct conn *c)
{
	while (c->head)
		conn_pop(c);
	c->head_off = 0;
	conn_drop_held(c);
}

/* Unindex and free a connection and its queue. */
void
registry_remove(struct conn *c)
{
	struct user_entry *u = c->user;

	if (c->flush_pending)
		DL_DELETE2(flush_head, c, flush_prev, flush_next);
	conn_clear_queue(c);
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

/* Find a connection by id. */
struct conn *
registry_find(const char *id)
{
	return registry_find_len(id, strlen(id));
}

/* Find a connection by an id of len bytes, not NUL-terminated. */
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

/* Number of connections. */
unsigned
registry_count(void)
{
	return HASH_COUNT(conns_by_id);
}

/* Bytes queued over all connections. */
size_t
registry_queued_bytes(void)
{
	return total_queued;
}

/* A new payload holding a copy of data, with one reference. */
struct payload *
payload_new(const char *data, size_t len)
{
	struct payload *p = malloc(sizeof(*p) + len + 1);

	p->refs = 1;
	p->binary = false;
	p->topic[0] = '\0';
	p->len = len;
	memcpy(p->data, data, len);
	p->data[len] = '\0';
	return p;
}

/* Value of one standard base64 character, or -1. */
static int
b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* A new binary payload from one line of standard base64; NULL when invalid. */
struct payload *
payload_new_base64(const char *b64, size_t len)
{
	struct payload *p;
	uint32_t bits = 0;
	int nbits = 0;

	while (len > 0 && b64[len - 1] == '=')
		len--;
	p = malloc(sizeof(*p) + len * 3 / 4 + 1);
	p->refs = 1;
	p->binary = true;
	p->topic[0] = '\0';
	p->len = 0;
	for (size_t i = 0; i < len; i++) {
		int v = b64_value((unsigned char) b64[i]);

		if (v < 0) {
			free(p);
			return NULL;
		}
		bits = (bits << 6) | (uint32_t) v;
		nbits += 6;
		if (nbits >= 8) {
			nbits -= 8;
			p->data[p->len++] = (char) (bits >> nbits);
			bits &= (1u << nbits) - 1;
		}
	}
	p->data[p->len] = '\0';
	return p;
}

/* Drop one reference. */
void
payload_unref(struct payload *p)
{
	if (p && --p->refs == 0)
		free(p);
}

/* Append an item to the queue. */
static void
conn_append(struct conn *c, struct out_item *it)
{
	if (c->tail)
		c->tail->next = it;
	else
		c->head = it;
	c->tail = it;
}

/* Ask lws for a WRITEABLE callback when there is something to write. */
void
conn_want_write(struct conn *c)
{
	if (!c->wsi || c->state != CONN_OPEN)
		return;
	if (!batching) {
		lws_callback_on_writable(c->wsi);
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
		ws_flush(c);
	}
}

/*
 * The wsnotify.v1 envelope of a binary message (docs/protocol.md): the byte
 * 0x01, the id as 8 bytes big-endian, then the message.
 */
static struct payload *
conn_envelope_binary(struct payload *p, int64_t id)
{
	struct payload *e = malloc(sizeof(*e) + 9 + p->len + 1);

	e->refs = 0;
	e->binary = true;
	e->len = 9 + p->len;
	e->data[0] = 0x01;
	for (int i = 0; i < 8; i++)
		e->data[1 + i] = (char) ((uint64_t) id >> (56 - 8 * i));
	memcpy(e->data + 9, p->data, p->len);
	e->data[e->len] = '\0';
	return e;
}

/*
 * The wsnotify.v1 envelope of a message: {"id": "N", "data": BODY}, with
 * "topic": "T" after the id for a topic message (topic names need no escaping).
 */
static struct payload *
conn_envelope(struct payload *p, int64_t id)
{
	char head[224];
	int hl = p->topic[0] ?
		snprintf(head, sizeof(head), "{\"id\": \"%lld\", \"topic\": \"%s\", \"data\": ",
			 (long long) id, p->topic) :
		snprintf(head, sizeof(head), "{\"id\": \"%lld\", \"data\": ", (long long) id);
	struct payload *e;

	if (p->binary)
		return conn_envelope_binary(p, id);
	e = malloc(sizeof(*e) + (size_t) hl + p->len + 2);
	e->refs = 0;
	e->binary = false;
	e->len = (size_t) hl + p->len + 1;
	memcpy(e->data, head, (size_t) hl);
	memcpy(e->data + hl, p->data, p->len);
	e->data[e->len - 1] = '}';
	e->data[e->len] = '\0';
	return e;
}

/* Append to the held list (replay in flight). */
static void
conn_hold(struct conn *c, struct out_item *it)
{
	if (c->held_tail)
		c->held_tail->next = it;
	else
		c->held = it;
	c->held_tail = it;
}

/* Queue a message; past send_queue_max the connection is closed with 1008. */
void
conn_enqueue(struct conn *c, struct payload *p, int64_t id)
{
	if (!c->holding) {
		conn_enqueue_now(c, p, id);
		return;
	}
	if (c->closing)
		return;
	if (c->envelope)
		p = conn_envelope(p, id);
	conn_hold(c, conn_item_new(c, p, id));
}

/* The replay is done: live messages held meanwhile follow it. */
void
conn_release(struct conn *c)
{
	c->holding = false;
	if (!c->held)
		return;
	if (c->closing)
		conn_drop_held(c);
	else {
		conn_append(c, c->held);
		c->tail = c->held_tail;	/* known: no walk down what was held */
	}
	c->held = c->held_tail = NULL;
	conn_want_write(c);
}

/* Queue a frame given as text (welcome, reset), bypassing the hold. */
void
conn_enqueue_text(struct conn *c, const char *text)
{
	struct payload *p = payload_new(text, strlen(text));
	bool envelope = c->envelope;

	c->envelope = false;	/* already in its final form */
	conn_enqueue_now(c, p, 0);
	c->envelope = envelope;
	payload_unref(p);
}

/* Queue a message now, even while holding (welcome, replay). */
void
conn_enqueue_now(struct conn *c, struct payload *p, int64_t id)
{
	if (c->closing)
		return;
	if (c->envelope)
		p = conn_envelope(p, id);
	if (c->queued + p->len > (size_t) cf_send_queue_max) {
		metrics.queue_drops++;
		log_warn("connection %s (user %s): send queue over send_queue_max (%zu + %zu bytes), closing with 1008",
			 c->id, c->user_id, c->queued, p->len);
		if (p->refs == 0)
			free(p);	/* an unshared envelope */
		conn_close(c, 1008, "send queue full");
		return;
	}
	conn_append(c, conn_item_new(c, p, id));
	conn_want_write(c);
}

/* Queue a close after the messages already queued. */
void
conn_enqueue_close(struct conn *c, int code, const char *reason)
{
	struct out_item *it;

	if (c->closing)
		return;
	it = calloc(1, sizeof(*it));
	it->close_code = code;
	it->close_reason = strdup(reason ? reason : "");
	if (c->holding) {
		conn_hold(c, it);	/* after the replay and the live messages before it */
		return;
	}
	conn_append(c, it);
	conn_want_write(c);
}

/* Close now: drop the queue, send code+reason. */
void
conn_close(struct conn *c, int code, const char *reason)
{
	if (c->closing)
		return;
	conn_clear_queue(c);
	c->closing = true;
	c->close_code = code;
	c->close_reason = reason ? reason : "";
	conn_want_write(c);
}

/* Pop the head of the queue. */
void
conn_pop(struct conn *c)
{
	struct out_item *it = c->head;

	if (!it)
		return;
	c->head = it->next;
	if (!c->head)
		c->tail = NULL;
	conn_item_free(c, it);
	c->head_off = 0;
}
