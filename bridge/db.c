/*
 * db.c: libpq in the lws loop.
 *
 * State machine: DOWN (waiting for the backoff timer) -> CONNECTING
 * (PQconnectPoll on every socket event) -> READY (queries, notifications).
 * Any failure goes back to DOWN: the in-flight and queued queries are
 * answered with NULL except those marked DB_RETRY, which run again on the
 * next connection.  deliver.c is told when a connection becomes ready and
 * when a notification arrives.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "db.h"
#include "deliver.h"
#include "log.h"
#include "metrics.h"
#include "raw.h"
#include "registry.h"

enum db_state { DB_DOWN, DB_CONNECTING, DB_READY, DB_STOPPED };

struct db_item {
	struct db_item *next;
	char *sql;
	int nparams;
	char **params;
	db_cb cb;
	void *arg;
	int flags;
};

/* One database session and its query FIFO. */
struct db {
	const char *name;		/* for logs: "database", "handler pool 1", ... */
	bool main;			/* the delivery session: tells deliver.c */
	PGconn *conn;
	enum db_state state;
	struct lws *wsi;
	int sock;
	struct raw_tag tag;
	struct db_item *head, *tail, *inflight;
	uint64_t inflight_since;	/* now_ms() when it was sent */
	PGresult *result;
	int count;
	long long backoff;
	bool ever_ready;
	lws_sorted_usec_list_t retry_sul;
	lws_sorted_usec_list_t write_sul;
};

static struct db db_main_s = {.name = "database", .main = true, .state = DB_DOWN, .sock = -1,
			      .tag = {RAW_MAGIC, RAW_DB, &db_main_s}};
struct db *db_main = &db_main_s;
static struct db *db_all[64];
static int db_nall;

/* Remember a session for the watchdog and shutdown. */
static void
db_register(struct db *d)
{
	if (db_nall < (int) (sizeof(db_all) / sizeof(db_all[0])))
		db_all[db_nall++] = d;
}

static void db_lost(struct db *d, const char *why);

/* Timer: ask for POLLOUT on the database socket. */
static void
db_write_cb(lws_sorted_usec_list_t *sul)
{
	struct db *d = lws_container_of(sul, struct db, write_sul);

	if (d->wsi)
		lws_callback_on_writable(d->wsi);
}

/*
 * Ask for a WRITEABLE event.  Deferred through a zero-delay timer: the raw
 * file role clears POLLOUT after its WRITEABLE callback returns, so asking
 * from inside that callback would be lost.
 */
static void
db_want_write(struct db *d)
{
	lws_sul_schedule(main_context, 0, &d->write_sul, db_write_cb, 1);
}

/* 1 when this session is connected. */
int
db_ready_on(struct db *d)
{
	return d->state == DB_READY;
}

/* Queries queued or in flight on this session. */
int
db_queue_length_on(struct db *d)
{
	return d->count;
}

/* SQLSTATE of an error result, "" when none. */
const char *
db_sqlstate(const PGresult *res)
{
	const char *s = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

	return s ? s : "";
}

/* Primary message of an error result, one line. */
void
db_errmsg(const PGresult *res, char *buf, size_t n)
{
	const char *m = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;

	snprintf(buf, n, "%s", m ? m : (res ? PQresultErrorMessage(res) : "connection lost"));
	for (char *p = buf; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
}

/* Free one queue item. */
static void
db_item_free(struct db_item *it)
{
	for (int i = 0; i < it->nparams; i++)
		free(it->params[i]);
	free(it->params);
	free(it->sql);
	free(it);
}

/* Queue a query on a session; false when not ready and not DB_RETRY. */
bool
db_query_on(struct db *d, const char *sql, int nparams, const char *const *params, db_cb cb,
	 void *arg, int flags)
{
	struct db_item *it;

	if (d->state == DB_STOPPED || (d->state != DB_READY && !(flags & DB_RETRY)))
		return false;
	it = calloc(1, sizeof(*it));
	it->sql = strdup(sql);
	it->nparams = nparams;
	it->params = calloc((size_t) nparams + 1, sizeof(char *));
	for (int i = 0; i < nparams; i++)
		it->params[i] = params[i] ? strdup(params[i]) : NULL;
	it->cb = cb;
	it->arg = arg;
	it->flags = flags;
	if (d->tail)
		d->tail->next = it;
	else
		d->head = it;
	d->tail = it;
	d->count++;
	if (d->state == DB_READY && !d->inflight)
		db_want_write(d);
	return true;
}

/* Flush libpq's output buffer; ask for POLLOUT while it is not empty. */
static void
db_flush(struct db *d)
{
	int rc = PQflush(d->conn);

	if (rc == 1)
		db_want_write(d);
	else if (rc < 0)
		db_lost(d, PQerrorMessage(d->conn));
}

/* Send the head of the queue when nothing is in flight. */
static void
db_pump(struct db *d)
{
	struct db_item *it = d->head;

	if (d->state != DB_READY || d->inflight || !it)
		return;
	d->head = it->next;
	if (!d->head)
		d->tail = NULL;
	it->next = NULL;
	d->inflight = it;
	d->inflight_since = now_ms();
	if (!PQsendQueryParams(d->conn, it->sql, it->nparams, NULL,
			       (const char *const *) it->params, NULL, NULL, 0)) {
		db_lost(d, PQerrorMessage(d->conn));
		return;
	}
	db_flush(d);
}

/* The in-flight query is complete: answer it and send the next. */
static void
db_complete(struct db *d)
{
	struct db_item *it = d->inflight;
	PGresult *res = d->result;

	d->inflight = NULL;
	d->result = NULL;
	d->count--;
	if (res && PQresultStatus(res) == PGRES_FATAL_ERROR) {
		char msg[256];

		metrics.db_errors++;
		db_errmsg(res, msg, sizeof(msg));
		log_debug("query failed (SQLSTATE %s): %s", db_sqlstate(res), msg);
	}
	if (it->cb)
		it->cb(res, it->arg);
	PQclear(res);
	db_item_free(it);
	db_pump(d);
}

/* Read what the server sent: results and notifications. */
static void
db_read(struct db *d)
{
	PGnotify *n;

	if (!PQconsumeInput(d->conn)) {
		db_lost(d, PQerrorMessage(d->conn));
		return;
	}
	/*
	 * Results before notifications: the server sends a notification after
	 * the results of the transaction it arrived during, and a message
	 * delivered from a NOTIFY payload must find the connections that
	 * transaction registered (wsnotify_connect) already in the registry.
	 */
	while (d->state == DB_READY && d->inflight && !PQisBusy(d->conn)) {
		PGresult *r = PQgetResult(d->conn);

		if (!r) {
			db_complete(d);
			continue;
		}
		if (d->result)
			PQclear(r);
		else
			d->result = r;
	}
	while (d->state == DB_READY && (n = PQnotifies(d->conn))) {
		metrics.notifications++;
		if (d->main)
			deliver_on_notify(n->extra);
		PQfreemem(n);
	}
	if (d->state == DB_READY && PQstatus(d->conn) == CONNECTION_BAD)
		db_lost(d, PQerrorMessage(d->conn));
}

/* Drop the adopted wsi (not the PGconn). */
static void
db_unadopt(struct db *d)
{
	if (d->wsi)
		raw_drop(d->wsi);
	d->wsi = NULL;
	d->sock = -1;
}

/* Adopt a dup of PQsocket() into the loop when it changed. */
static bool
db_adopt(struct db *d)
{
	int s = PQsocket(d->conn), copy;

	if (s == d->sock && d->wsi)
		return true;
	db_unadopt(d);
	if (s < 0)
		return false;
	copy = dup(s);
	if (copy < 0)
		return false;
	d->wsi = raw_adopt(copy, &d->tag);
	if (!d->wsi) {
		close(copy);
		return false;
	}
	d->sock = s;
	return true;
}

/* Fail every queued query except DB_RETRY ones, which stay for next time. */
static void
db_fail_queue(struct db *d)
{
	struct db_item *list, *keep = NULL, *keep_tail = NULL, *it, *next;

	if (d->inflight) {
		d->inflight->next = d->head;
		d->head = d->inflight;
		d->inflight = NULL;
	}
	PQclear(d->result);
	d->result = NULL;
	list = d->head;
	d->head = d->tail = NULL;
	for (it = list; it; it = next) {
		next = it->next;
		it->next = NULL;
		if (it->flags & DB_RETRY) {
			if (keep_tail)
				keep_tail->next = it;
			else
				keep = it;
			keep_tail = it;
			continue;
		}
		d->count--;
		if (it->cb)
			it->cb(NULL, it->arg);
		db_item_free(it);
	}
	/* callbacks may have queued DB_RETRY items meanwhile: keep them after */
	if (keep_tail) {
		keep_tail->next = d->head;
		if (!d->head)
			d->tail = keep_tail;
		d->head = keep;
	}
}

/* Timer: try to connect again. */
static void
db_retry_cb(lws_sorted_usec_list_t *sul)
{
	struct db *d = lws_container_of(sul, struct db, retry_sul);

	if (d->state == DB_DOWN)
		db_start_on(d);
}

/* Schedule the next attempt with exponential backoff. */
static void
db_schedule_retry(struct db *d)
{
	if (d->backoff < cf_reconnect_min)
		d->backoff = cf_reconnect_min;
	lws_sul_schedule(main_context, 0, &d->retry_sul, db_retry_cb,
			 (lws_usec_t) d->backoff * 1000);
	log_info("%s: next connection attempt in %lld ms", d->name, d->backoff);
	d->backoff *= 2;
	if (d->backoff > cf_reconnect_max)
		d->backoff = cf_reconnect_max;
}

/* The connection failed or was lost: clean up and schedule a retry. */
static void
db_lost(struct db *d, const char *why)
{
	bool was_ready = d->state == DB_READY;
	char msg[512];

	if (d->state == DB_DOWN || d->state == DB_STOPPED)
		return;
	snprintf(msg, sizeof(msg), "%s", why && *why ? why : "unknown error");
	for (char *p = msg; *p; p++)
		if (*p == '\n')
			*p = ' ';
	if (was_ready) {
		log_error("%s connection lost: %s", d->name, msg);
		metrics.db_errors++;
	} else
		log_warn("%s connection failed: %s", d->name, msg);
	d->state = DB_DOWN;
	db_unadopt(d);
	PQfinish(d->conn);
	d->conn = NULL;
	db_fail_queue(d);
	if (was_ready && d->main)
		deliver_on_lost();
	db_schedule_retry(d);
}

/* Drop the delivery session's connection and reconnect. */
void
db_reset(const char *why)
{
	db_lost(db_main, why);
}

/* Connected: switch to non-blocking queries and let deliver.c set up. */
static void
db_on_connected(struct db *d)
{
	if (PQsetnonblocking(d->conn, 1) != 0) {
		db_lost(d, PQerrorMessage(d->conn));
		return;
	}
	d->state = DB_READY;
	d->backoff = cf_reconnect_min;
	if (d->ever_ready && d->main)
		metrics.db_reconnects++;
	log_info("%s connected (server %d, backend pid %d)%s", d->name,
		 PQserverVersion(d->conn), PQbackendPID(d->conn),
		 d->ever_ready ? ", reconnected" : "");
	if (d->main)
		deliver_on_ready(!d->ever_ready);
	d->ever_ready = true;
	db_pump(d);
}

/* Advance PQconnectPoll after a socket event. */
static void
db_poll_connect(struct db *d)
{
	PostgresPollingStatusType st = PQconnectPoll(d->conn);

	if (st == PGRES_POLLING_FAILED) {
		db_lost(d, PQerrorMessage(d->conn));
		return;
	}
	if (!db_adopt(d)) {
		db_lost(d, "cannot watch the database socket");
		return;
	}
	if (st == PGRES_POLLING_OK)
		db_on_connected(d);
	else if (st == PGRES_POLLING_WRITING)
		db_want_write(d);
}

/* Start connecting a session (asynchronously). */
void
db_start_on(struct db *d)
{
	const char *keys[] = {"dbname", "fallback_application_name", NULL};
	const char *vals[] = {cf_dsn, d->main ? "wsnotify-bridge" : "wsnotify-bridge-handlers", NULL};

	if (d->state == DB_STOPPED)
		return;
	d->conn = PQconnectStartParams(keys, vals, 1);
	if (!d->conn || PQstatus(d->conn) == CONNECTION_BAD) {
		d->state = DB_CONNECTING;
		db_lost(d, d->conn ? PQerrorMessage(d->conn) : "out of memory");
		return;
	}
	d->state = DB_CONNECTING;
	if (!db_adopt(d)) {
		db_lost(d, "cannot watch the database socket");
		return;
	}
	/* libpq: behave as if PQconnectPoll had returned WRITING */
	db_want_write(d);
}

/* Event on the adopted database socket. */
int
db_on_event(struct lws *wsi, int reason, void *obj)
{
	struct db *d = obj;

	if (wsi != d->wsi)
		return 0;
	switch (reason) {
	case LWS_CALLBACK_RAW_RX_FILE:
		if (d->state == DB_CONNECTING)
			db_poll_connect(d);
		else if (d->state == DB_READY)
			db_read(d);
		break;
	case LWS_CALLBACK_RAW_WRITEABLE_FILE:
		if (d->state == DB_CONNECTING)
			db_poll_connect(d);
		else if (d->state == DB_READY) {
			if (PQisBusy(d->conn) || d->inflight)
				db_flush(d);
			db_pump(d);
		}
		break;
	case LWS_CALLBACK_RAW_CLOSE_FILE:
		d->wsi = NULL;
		d->sock = -1;
		db_lost(d, "socket closed");
		break;
	}
	return 0;
}

/*
 * Watchdog (called every second): a query unanswered for three times
 * auth_timeout (handler sessions: handler_timeout + 10 s, if longer) means
 * the server or the network is gone without the socket noticing (a
 * half-open TCP connection); drop it and reconnect.
 */
void
db_check_stuck(void)
{
	for (int i = 0; i < db_nall; i++) {
		struct db *d = db_all[i];
		uint64_t limit = 3 * (uint64_t) cf_auth_timeout;

		/* a handler may legitimately run up to handler_timeout */
		if (!d->main && (uint64_t) cf_handler_timeout + 10000 > limit)
			limit = (uint64_t) cf_handler_timeout + 10000;
		if (d->state == DB_READY && d->inflight && now_ms() - d->inflight_since > limit)
			db_lost(d, "query unanswered far past its deadline");
	}
}

/* Close every session for good (shutdown). */
void
db_stop(void)
{
	for (int i = 0; i < db_nall; i++) {
		struct db *d = db_all[i];

		db_unadopt(d);
		if (d->conn)
			PQfinish(d->conn);
		d->conn = NULL;
		d->state = DB_STOPPED;
		lws_sul_cancel(&d->retry_sul);
		lws_sul_cancel(&d->write_sul);
	}
}

/* Start the delivery session. */
void
db_start(void)
{
	db_register(db_main);
	db_start_on(db_main);
}

/* A new session for a handler pool; started at once. */
struct db *
db_pool_new(const char *name)
{
	struct db *d = calloc(1, sizeof(*d));

	d->name = strdup(name);
	d->state = DB_DOWN;
	d->sock = -1;
	d->tag = (struct raw_tag) {RAW_MAGIC, RAW_DB, d};
	db_register(d);
	db_start_on(d);
	return d;
}

/* Queue a query on the delivery session. */
bool
db_query(const char *sql, int nparams, const char *const *params, db_cb cb,
	 void *arg, int flags)
{
	return db_query_on(db_main, sql, nparams, params, cb, arg, flags);
}

/* 1 when the delivery session is connected. */
int
db_ready(void)
{
	return db_ready_on(db_main);
}

/* Queries queued or in flight on the delivery session. */
int
db_queue_length(void)
{
	return db_queue_length_on(db_main);
}
