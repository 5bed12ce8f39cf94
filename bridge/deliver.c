/*
 * deliver.c: fetch the outbox and fan messages out to the send queues.
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
#include "log.h"
#include "metrics.h"
#include "loop.h"
#include "registry.h"
#include "seal.h"
#include "signal.h"
#include "util.h"

static int64_t cursor;			/* everything up to here is seen */
static int64_t notified;		/* highest id announced by NOTIFY */
static bool started;			/* bridge_start answered */
static bool fetch_inflight, fetch_again;
static uint64_t notify_ms;		/* first NOTIFY not yet fetched */
static lws_sorted_usec_list_t heartbeat_sul, poll_sul;

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
	struct held *next, *prev;	/* utlist DL: held->prev is the tail */
	int64_t first, last;
	char *plain;
	size_t plain_len;
};
static struct held *held;
static long long held_count;

static void deliver_fetch(void);
static void deliver_held_clear(void);
static void deliver_held_drain(void);

bool
deliver_started(void)
{
	return started && db_ready();
}

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

/*
 * One outbox row, fetched or from an inline payload.  target is target_len
 * bytes, not necessarily NUL-terminated: an inline payload's target runs
 * straight into its body, and is looked up in place rather than copied.
 */
struct deliver_msg {
	int64_t id;
	char kind;			/* u user, c connection, b broadcast, t topic, x close */
	const char *target;		/* NULL for a broadcast */
	size_t target_len;
	const char *body;		/* binary: base64 */
	size_t body_len;
	const char *connections;	/* t: the JSON array of this bridge's subscribers */
	bool binary;
};

/* Dispatch one row by kind. */
static void
deliver_row(const struct deliver_msg *m)
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
	p = m->binary ? payload_new_base64(m->body, m->body_len) : payload_new(m->body, m->body_len);
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
		struct deliver_msg m = {
			.id = id, .kind = kind,
			.target = PQgetisnull(res, i, 2) ? NULL : PQgetvalue(res, i, 2),
			.target_len = (size_t) PQgetlength(res, i, 2),
			.body = PQgetvalue(res, i, 3), .body_len = (size_t) PQgetlength(res, i, 3),
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
		notified = cursor;	/* announced id not visible: stop chasing it */
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

	if (!started || !db_ready())
		return;
	if (fetch_inflight) {
		fetch_again = true;
		return;
	}
	snprintf(after, sizeof(after), "%" PRId64, cursor);
	snprintf(batch, sizeof(batch), "%lld", cf_fetch_batch);
	if (db_query("SELECT id, kind, target, body, connections, is_binary FROM wsnotify_fetch($1, $2, $3)",
		     3, params, deliver_fetch_done, NULL, 0)) {
		fetch_inflight = true;
		metrics.fetches++;
	}
}

/*
 * One message of an inline NOTIFY payload, "<kind> <target bytes> <body
 * bytes>\n<target><body>" at *at: its kind, target and body into *m, and
 * *at moved past it.  False when it does not parse or runs past end.
 */
static bool
deliver_inline_next(const char **at, const char *end, struct deliver_msg *m)
{
	const char *s = *at;
	char *next;
	unsigned long long tl, bl;

	if (end - s < 6 || s[1] != ' ')
		return false;
	m->kind = s[0];
	if (!strchr("ubcx", m->kind))
		return false;
	tl = strtoull(s + 2, &next, 10);
	if (*next != ' ')
		return false;
	bl = strtoull(next + 1, &next, 10);
	if (*next != '\n' || next + 1 > end || tl > (size_t) (end - next - 1) ||
	    bl > (size_t) (end - next - 1) - tl)
		return false;
	m->target = next + 1;
	m->target_len = tl;
	m->body = next + 1 + tl;
	m->body_len = bl;
	*at = m->body + bl;
	return true;
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
		struct deliver_msg m = {.id = id};

		deliver_inline_next(&at, end, &m);
		if (m.kind == 'b')
			m.target = NULL;
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

	DL_FOREACH_SAFE(held, h, tmp) {
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

	DL_FOREACH(held, h) {
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
	struct deliver_msg m;
	size_t plain_len;
	char *next, *plain;
	int64_t first;
	int count = 0;

	if (!first_at)
		return false;		/* a bare id: fetch */
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
		if (!deliver_inline_next(&at, end, &m))
			break;
	if (at != end || last < first || count != last - first + 1) {
		free(plain);
		metrics.inline_rejected++;
		return false;
	}
	if (started && (fetch_inflight || fetch_again) && held_count < cf_fetch_batch &&
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
	if (!started || fetch_inflight || fetch_again || first != cursor + 1) {
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

/* Answer of wsnotify_inline_key(): without it every message is fetched. */
static void
deliver_key_done(PGresult *res, void *arg)
{
	(void) arg;
	if (!res)
		return;
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 ||
	    !seal_set_key(PQgetvalue(res, 0, 0))) {
		char msg[256];

		db_errmsg(res, msg, sizeof(msg));
		log_warn("no key for inline NOTIFY payloads (%s): every message will be fetched",
			 msg[0] ? msg : "malformed key");
	}
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
	if (started && id <= cursor)
		return;
	if (id > notified)
		notified = id;
	if (!notify_ms)
		notify_ms = now_ms();
	deliver_fetch();
}

/* Answer of LISTEN. */
static void
deliver_listen_done(PGresult *res, void *arg)
{
	(void) arg;
	if (res && PQresultStatus(res) != PGRES_COMMAND_OK) {
		char msg[256];

		db_errmsg(res, msg, sizeof(msg));
		log_error("LISTEN wsnotify failed: %s", msg);
	}
}

/* Answer of wsnotify_bridge_start: the cursor to start from. */
static void
deliver_start_done(PGresult *res, void *arg)
{
	char msg[256];

	(void) arg;
	if (!res)
		return;
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		db_errmsg(res, msg, sizeof(msg));
		log_error("wsnotify_bridge_start failed (SQLSTATE %s): %s; is the extension installed and the role a member of wsnotify_bridge?",
			  db_sqlstate(res), msg);
		db_reset("bridge start failed");
		return;
	}
	cursor = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	started = true;
	log_info("bridge %s started: reaped %s rows of its previous life, cursor %" PRId64,
		 cf_bridge_id, PQgetvalue(res, 0, 0), cursor);
	deliver_fetch();
}

/* Answer of wsnotify_restore. */
static void
deliver_restore_done(PGresult *res, void *arg)
{
	char msg[256];

	(void) arg;
	if (!res)
		return;
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		db_errmsg(res, msg, sizeof(msg));
		log_error("wsnotify_restore failed (SQLSTATE %s): %s", db_sqlstate(res), msg);
	} else if (strcmp(PQgetvalue(res, 0, 0), "0") != 0)
		log_warn("restored %s connection rows reaped while the database was unreachable",
			 PQgetvalue(res, 0, 0));
	started = true;
	deliver_fetch();
}

/* JSON array of the live connections, for wsnotify_restore. */
static char *
deliver_connections_json(void)
{
	json_t *arr = json_array();
	struct conn *c, *tmp;
	char *s;

	HASH_ITER(hh, registry_all(), c, tmp) {
		json_t *o = json_object();
		char stamp[40];
		struct tm tm;

		gmtime_r(&c->connected_at, &tm);
		strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
		json_object_set_new(o, "connection_id", json_string(c->id));
		json_object_set_new(o, "user_id", json_string(c->user_id));
		json_object_set_new(o, "connected_at", json_string(stamp));
		if (c->remote_addr)
			json_object_set_new(o, "remote_addr", json_string(c->remote_addr));
		if (c->user_agent)
			json_object_set_new(o, "user_agent", json_string(c->user_agent));
		if (c->claims)
			json_object_set_new(o, "claims", json_loads(c->claims, 0, NULL));
		if (c->expires_at > 0)
			json_object_set_new(o, "expires_at", json_real(c->expires_at));
		json_array_append_new(arr, o);
	}
	s = json_dumps(arr, JSON_COMPACT);
	json_decref(arr);
	return s;
}

/* The database connection is ready: LISTEN, start or restore, then fetch. */
static void
deliver_on_ready(void *arg)
{
	const char *p1[1] = {cf_bridge_id};

	(void) arg;
	fetch_inflight = false;
	seal_forget_key();
	db_query("SELECT wsnotify_inline_key()", 0, NULL, deliver_key_done, NULL, 0);
	db_query("LISTEN wsnotify", 0, NULL, deliver_listen_done, NULL, 0);
	if (!started) {
		db_query("SELECT reaped, last_id FROM wsnotify_bridge_start($1)", 1, p1,
			 deliver_start_done, NULL, 0);
	} else {
		char *json = deliver_connections_json();
		const char *p2[2] = {cf_bridge_id, json};

		db_query("SELECT wsnotify_restore($1, $2::jsonb)", 2, p2,
			 deliver_restore_done, NULL, 0);
		free(json);
	}
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

/* Answer of wsnotify_disconnect. */
static void
deliver_disconnect_done(PGresult *res, void *arg)
{
	(void) arg;
	if (res && PQresultStatus(res) != PGRES_TUPLES_OK) {
		char msg[256];

		db_errmsg(res, msg, sizeof(msg));
		log_error("wsnotify_disconnect failed (SQLSTATE %s): %s", db_sqlstate(res), msg);
	}
}

void
deliver_disconnect(const char *connection_id)
{
	const char *p[1] = {connection_id};

	db_query("SELECT wsnotify_disconnect($1)", 1, p, deliver_disconnect_done, NULL, DB_RETRY);
}

/* Answer of wsnotify_heartbeat. */
static void
deliver_heartbeat_done(PGresult *res, void *arg)
{
	(void) arg;
	if (!res)
		return;
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		char msg[256];

		db_errmsg(res, msg, sizeof(msg));
		log_error("wsnotify_heartbeat failed (SQLSTATE %s): %s", db_sqlstate(res), msg);
	} else {
		metrics.notify_queue_usage = strtod(PQgetvalue(res, 0, 1), NULL);
		if (strcmp(PQgetvalue(res, 0, 0), "0") != 0)
			log_info("heartbeat reaped %s connection rows of dead bridges",
				 PQgetvalue(res, 0, 0));
	}
}

/* Timer: record liveness and reap dead bridges. */
static void
deliver_heartbeat_cb(lws_sorted_usec_list_t *sul)
{
	char reap[32];
	const char *p[2] = {cf_bridge_id, reap};

	if (started && db_ready()) {
		snprintf(reap, sizeof(reap), "%lld milliseconds", cf_reap_after);
		db_query("SELECT wsnotify_heartbeat($1, $2::interval), "
			 "pg_notification_queue_usage()", 2, p,
			 deliver_heartbeat_done, NULL, 0);
	}
	lws_sul_schedule(loop_context, 0, sul, deliver_heartbeat_cb,
			 (lws_usec_t) cf_heartbeat_interval * 1000);
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
		.ready = deliver_on_ready, .lost = deliver_on_lost, .notify = deliver_on_notify
	};

	db_start(&hooks);
	lws_sul_schedule(loop_context, 0, &heartbeat_sul, deliver_heartbeat_cb,
			 (lws_usec_t) cf_heartbeat_interval * 1000);
	lws_sul_schedule(loop_context, 0, &poll_sul, deliver_poll_cb,
			 (lws_usec_t) (cf_poll_interval > 0 ? cf_poll_interval : 1000) * 1000);
}
