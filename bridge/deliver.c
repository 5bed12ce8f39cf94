/*
 * deliver.c: fetch the outbox and fan messages out to the send queues;
 * deliver inline NOTIFY payloads without a fetch when they qualify.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <utlist.h>

#include "config.h"
#include "db.h"
#include "deliver.h"
#include "frame.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "payload.h"
#include "registry.h"
#include "seal.h"
#include "session.h"
#include "signal.h"
#include "util.h"

static int64_t cursor;	 /* everything up to here is seen */
static int64_t notified; /* highest id announced by NOTIFY */
static bool fetch_inflight, fetch_again;
static uint64_t notify_ms; /* first NOTIFY not yet fetched */
static lws_sorted_usec_list_t poll_sul;

/*
 * Inline payloads that arrived while a fetch was in flight, in NOTIFY order,
 * at most fetch_batch of them.  When the fetch ends, those it did not cover
 * are delivered from here if they follow its cursor.  Fetching them instead
 * kept a busy bridge fetching: the backend sends notifications while the
 * next fetch is on its way, each one asked for another fetch, and at 10,000
 * users and 5,000 messages/s two thirds of the messages were fetched (p50
 * 2.9 ms instead of 0.1: docs/benchmarks.md).
 */
struct held {
	struct held *next, *prev; /* utlist DL: held->prev is the tail */
	int64_t first, last;
	char *plain;
	size_t plain_len;
};
static struct held *held;
static long long held_count;

static void deliver_fetch(void);
static void deliver_held_clear(void);
static void deliver_held_drain(void);

/* Queue one message for every connection of a user above its start cursor. */
static void
deliver_user(const char *user, size_t user_len, struct payload *p, int64_t id)
{
	struct conn *c, *tmp;

	DL_FOREACH_SAFE2(registry_user_len(user, user_len), c, tmp, unext)
	if (id > c->start_id)
		conn_enqueue(c, p, id);
}

/* Queue one message for every connection above its start cursor. */
static void
deliver_all(struct payload *p, int64_t id)
{
	struct conn *c, *tmp;

	HASH_ITER(hh, registry_all(), c, tmp)
	if (id > c->start_id)
		conn_enqueue(c, p, id);
}

/* A close row: {"code": n, "reason": s} for one connection. */
static void
deliver_close(struct conn *c, const char *body, size_t body_len)
{
	json_t *j = json_loadb(body, body_len, 0, NULL);
	json_t *code = j ? json_object_get(j, "code") : NULL;
	json_t *reason = j ? json_object_get(j, "reason") : NULL;
	int n = frame_close_code(json_is_integer(code) ? json_integer_value(code) : 1000);

	conn_enqueue_close(c, n, json_is_string(reason) ? json_string_value(reason) : "");
	json_decref(j);
}

/* A topic message: to the connections of this bridge the database listed. */
static void
deliver_topic(struct payload *p, int64_t id, const char *connections)
{
	struct conn *list[256];
	size_t n, from = 0;

	if (!connections)
		return;
	do {
		n = registry_listed(connections, list, 256, &from);
		for (size_t i = 0; i < n; i++)
			if (id > list[i]->start_id)
				conn_enqueue(list[i], p, id);
	} while (n == 256);
}

/* Dispatch one row by kind. */
static void
deliver_row(const struct payload_row *m)
{
	struct payload *p;
	struct conn *c;
	int64_t id = m->id;

	if (m->kind == 'x') {
		c = m->target ? registry_find_len(m->target, m->target_len) : NULL;
		if (c && id > c->start_id)
			deliver_close(c, m->body, m->body_len);
		return;
	}
	p = m->binary ? payload_new_base64(m->body, m->body_len) :
			payload_new(m->body, m->body_len);
	if (!p) {
		log_error("message %" PRId64 ": binary body is not base64, skipped", id);
		return;
	}
	if (m->kind == 'u' && m->target)
		deliver_user(m->target, m->target_len, p, id);
	else if (m->kind == 'b')
		deliver_all(p, id);
	else if (m->kind == 'c' && m->target && (c = registry_find_len(m->target, m->target_len)) &&
		 id > c->start_id)
		conn_enqueue(c, p, id);
	else if (m->kind == 't') {
		snprintf(p->topic, sizeof(p->topic), "%.*s", m->target ? (int) m->target_len : 0,
			 m->target ? m->target : "");
		deliver_topic(p, id, m->connections);
	}
	payload_unref(p);
}

/* The answer of wsnotify_fetch. */
static void
deliver_fetch_done(PGresult *res, void *arg)
{
	int64_t before = cursor;
	int rows;

	(void) arg;
	fetch_inflight = false;
	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
		deliver_held_clear();
		if (res) {
			char msg[256];

			db_errmsg(res, msg, sizeof(msg));
			log_error("wsnotify_fetch failed (SQLSTATE %s): %s", db_sqlstate(res), msg);
		}
		return;
	}
	rows = PQntuples(res);
	registry_batch_begin();
	for (int i = 0; i < rows; i++) {
		int64_t id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
		char kind = PQgetvalue(res, i, 1)[0];

		if (kind == '.') {
			if (id > cursor)
				cursor = id;
			continue;
		}
		struct payload_row m = {
			.id = id,
			.kind = kind,
			.target = PQgetisnull(res, i, 2) ? NULL : PQgetvalue(res, i, 2),
			.target_len = (size_t) PQgetlength(res, i, 2),
			.body = PQgetvalue(res, i, 3),
			.body_len = (size_t) PQgetlength(res, i, 3),
			.connections = PQgetisnull(res, i, 4) ? NULL : PQgetvalue(res, i, 4),
			.binary = PQgetvalue(res, i, 5)[0] == 't',
		};

		metrics.rows_fetched++;
		deliver_row(&m);
	}
	deliver_held_drain();
	registry_batch_end();
	if (notify_ms && rows > 1) {
		metrics_lag((double) (now_ms() - notify_ms) / 1000.0);
	}
	notify_ms = 0;
	if (cursor == before && notified > cursor)
		notified = cursor; /* announced id not visible: stop chasing it */
	if (fetch_again || notified > cursor) {
		fetch_again = false;
		deliver_fetch();
	}
}

/* Run wsnotify_fetch unless one is already in flight. */
static void
deliver_fetch(void)
{
	char after[24], batch[24];
	const char *params[3] = {cf_bridge_id, after, batch};

	if (!session_started() || !db_ready())
		return;
	if (fetch_inflight) {
		fetch_again = true;
		return;
	}
	snprintf(after, sizeof(after), "%" PRId64, cursor);
	snprintf(batch, sizeof(batch), "%lld", cf_fetch_batch);
	if (db_query(
		    "SELECT id, kind, target, body, connections, is_binary FROM wsnotify_fetch($1, $2, $3)",
		    3, params, deliver_fetch_done, NULL, 0)) {
		fetch_inflight = true;
		metrics.fetches++;
	}
}

/*
 * Deliver an opened and checked inline payload: messages first..last, which
 * follow the cursor.
 */
static void
deliver_inline_plain(int64_t first, int64_t last, const char *plain, size_t plain_len)
{
	const char *at, *end = plain + plain_len;
	int64_t id;

	for (at = plain, id = first; at < end; id++) {
		struct payload_row m = {.id = id};

		payload_inline_next(&at, end, &m);
		deliver_row(&m);
	}
	cursor = last;
	if (last > notified)
		notified = last;
	metrics.rows_inline += (uint64_t) (last - first + 1);
}

static void
deliver_held_clear(void)
{
	struct held *h, *tmp;

	DL_FOREACH_SAFE(held, h, tmp)
	{
		DL_DELETE(held, h);
		free(h->plain);
		free(h);
	}
	held_count = 0;
}

/*
 * After a fetch: deliver the held payloads that follow the cursor, skip
 * those it covered; at a gap, fetch again (the next fetch reads the rest).
 */
static void
deliver_held_drain(void)
{
	struct held *h;

	DL_FOREACH(held, h)
	{
		if (h->first == cursor + 1)
			deliver_inline_plain(h->first, h->last, h->plain, h->plain_len);
		else if (h->last > cursor) {
			fetch_again = true;
			break;
		}
	}
	deliver_held_clear();
}

/*
 * Deliver the messages a NOTIFY carries (extension/send.c seals them into
 * "<last id> <first id> <sealed>" when a transaction's messages are small)
 * without fetching them: only when they follow the cursor with nothing in
 * between, so that order and exactly-once hold as they do for fetched rows;
 * while a fetch is in flight, held until it ends.  False (and nothing
 * delivered) when the payload is a bare id, does not open with the key, or
 * does not qualify.
 */
static bool
deliver_inline(const char *payload, int64_t last)
{
	const char *first_at = strchr(payload, ' ');
	const char *sealed_at, *at, *end;
	struct payload_row m;
	size_t plain_len;
	char *next, *plain;
	int64_t first;
	int count = 0;

	if (!first_at)
		return false; /* a bare id: fetch */
	/* anything more must open with the key, whatever happens next: else it is forged */
	first = strtoll(first_at + 1, &next, 10);
	sealed_at = next + 1;
	if (*next != ' ' || !seal_open(payload, (size_t) (next - payload), sealed_at,
				       strlen(sealed_at), &plain, &plain_len)) {
		metrics.inline_rejected++;
		return false;
	}
	end = plain + plain_len;
	/* check all of it first: a payload is delivered whole or not at all */
	for (at = plain; at < end; count++)
		if (!payload_inline_next(&at, end, &m))
			break;
	if (at != end || last < first || count != last - first + 1) {
		free(plain);
		metrics.inline_rejected++;
		return false;
	}
	if (session_started() && (fetch_inflight || fetch_again) && held_count < cf_fetch_batch &&
	    (held ? first == held->prev->last + 1 : first > cursor)) {
		struct held *h = util_calloc(1, sizeof(*h));

		h->first = first;
		h->last = last;
		h->plain = plain;
		h->plain_len = plain_len;
		DL_APPEND(held, h);
		held_count++;
		metrics.inline_held += (uint64_t) count;
		if (last > notified)
			notified = last;
		return true;
	}
	if (!session_started() || fetch_inflight || fetch_again || first != cursor + 1) {
		free(plain);
		return false;
	}
	/* written straight away, as after a fetch: no WRITEABLE round trip per socket */
	registry_batch_begin();
	deliver_inline_plain(first, last, plain, plain_len);
	registry_batch_end();
	free(plain);
	return true;
}

/* A NOTIFY wsnotify arrived with this payload (the sender's last id). */
static void
deliver_on_notify(const char *payload, void *arg)
{
	int64_t id = payload ? strtoll(payload, NULL, 10) : 0;

	(void) arg;
	if (payload && (signal_on_notify(payload) || deliver_inline(payload, id)))
		return;
	/* sent before a fetch that has already read it: fetching again finds nothing */
	if (session_started() && id <= cursor)
		return;
	if (id > notified)
		notified = id;
	if (!notify_ms)
		notify_ms = now_ms();
	deliver_fetch();
}

/* The bridge is started (from *cursor) or restored: fetch what is due. */
static void
deliver_on_started(const int64_t *from)
{
	if (from)
		cursor = *from;
	deliver_fetch();
}

/* The database connection is ready: the session starts or restores the bridge. */
static void
deliver_on_ready(void *arg)
{
	(void) arg;
	fetch_inflight = false;
	session_on_ready(deliver_on_started);
}

/* The database connection was lost. */
static void
deliver_on_lost(void *arg)
{
	(void) arg;
	fetch_inflight = false;
	fetch_again = false;
	deliver_held_clear();
}

/* Timer: the safety-net fetch. */
static void
deliver_poll_cb(lws_sorted_usec_list_t *sul)
{
	deliver_fetch();
	lws_sul_schedule(loop_context, 0, sul, deliver_poll_cb,
			 (lws_usec_t) (cf_poll_interval > 0 ? cf_poll_interval : 1000) * 1000);
}

void
deliver_start(void)
{
	static const struct db_hooks hooks = {
		.ready = deliver_on_ready, .lost = deliver_on_lost, .notify = deliver_on_notify};

	db_start(&hooks);
	session_heartbeat_start();
	lws_sul_schedule(loop_context, 0, &poll_sul, deliver_poll_cb,
			 (lws_usec_t) (cf_poll_interval > 0 ? cf_poll_interval : 1000) * 1000);
}
