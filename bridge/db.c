/*
 * db.c: libpq in the lws loop.
 *
 * State machine: DOWN (waiting for the backoff timer) -> CONNECTING
 * (PQconnectPoll on every socket event) -> READY (queries, notifications).
 * Any failure goes back to DOWN: the in-flight and queued queries are
 * answered with NULL except those marked DB_RETRY, which run again on the
 * next connection.  The session's owner hears of it through its hooks
 * (db.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <utlist.h>

#include "config.h"
#include "db.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "util.h"

enum db_state { DB_DOWN, DB_CONNECTING, DB_READY, DB_STOPPED };

struct db_item {
	struct db_item *next;
	char *sql;
	int nparams;
	char **params;
	db_cb cb;
	void *arg;
	int flags;
	uint64_t sent_ms; /* now_ms() when it was sent */
	PGresult *result; /* its result, kept until its Sync is answered */
};

/* One database session and its query FIFO. */
struct db {
	struct db *next, *prev; /* every session, for the watchdog and shutdown */
	const char *name;	/* for logs: "database", "handler pool 1", ... */
	bool main;		/* the delivery session: pipelined */
	struct db_hooks hooks;
	PGconn *conn;
	enum db_state state;
	struct lws *wsi;
	int sock;
	struct raw_tag tag;
	struct db_item *head, *tail;		  /* queued, not sent */
	struct db_item *inflight, *inflight_tail; /* sent, in order, awaiting their Sync */
	int ninflight;
	int count;
	long long backoff;
	bool ever_ready;
	lws_sorted_usec_list_t retry_sul;
	struct loop_soon write_soon;
	char *broken; /* a send failed where db_lost could not run: why */
};

static int db_on_event(struct lws *wsi, int reason, void *obj);

static struct db db_main_s = {.name = "database",
			      .main = true,
			      .state = DB_DOWN,
			      .sock = -1,
			      .tag = {RAW_MAGIC, db_on_event, &db_main_s}};
struct db *db_main = &db_main_s;
/*
 * Every session (utlist DL), however many: a fixed array of 64 once left
 * the 65th (64 pool sessions and the delivery session) out of the watchdog
 * and out of db_stop.
 */
static struct db *db_all;

static void db_lost(struct db *d, const char *why);
static int db_depth(struct db *d);
static void db_pump(struct db *d, bool from_query);

/* Ask for a WRITEABLE event, on the loop's next turn (see loop_soon_writable). */
static void
db_want_write(struct db *d)
{
	loop_soon_writable(&d->write_soon, &d->wsi);
}

int
db_ready_on(struct db *d)
{
	return d->state == DB_READY;
}

int
db_queue_length_on(struct db *d)
{
	return d->count;
}

const char *
db_sqlstate(const PGresult *res)
{
	const char *s = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

	return s ? s : "";
}

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
	/* parameters include tokens (wsnotify_connect): wipe before free */
	for (int i = 0; i < it->nparams; i++) {
		if (it->params[i])
			explicit_bzero(it->params[i], strlen(it->params[i]));
		free(it->params[i]);
	}
	free(it->params);
	free(it->sql);
	free(it);
}

bool
db_query_on(struct db *d, const char *sql, int nparams, const char *const *params, db_cb cb,
	    void *arg, int flags)
{
	struct db_item *it;

	if (d->state == DB_STOPPED || (d->state != DB_READY && !(flags & DB_RETRY)))
		return false;
	it = util_calloc(1, sizeof(*it));
	it->sql = util_strdup(sql);
	it->nparams = nparams;
	it->params = util_calloc((size_t) nparams + 1, sizeof(char *));
	for (int i = 0; i < nparams; i++)
		it->params[i] = params[i] ? util_strdup(params[i]) : NULL;
	it->cb = cb;
	it->arg = arg;
	it->flags = flags;
	if (d->tail)
		d->tail->next = it;
	else
		d->head = it;
	d->tail = it;
	d->count++;
	/*
	 * Sent at once rather than on the next WRITEABLE: with poll() over every
	 * open descriptor, each turn of the loop costs O(open connections), and
	 * waiting for POLLOUT took two more turns per burst of upgrades.
	 */
	if (d->state == DB_READY && d->ninflight < db_depth(d))
		db_pump(d, true);
	return true;
}

/*
 * A send failed inside db_query_on: its caller still holds what it passed
 * as arg, so the queries' callbacks (run by db_lost) must not run under it.
 * The next WRITEABLE event drops the connection instead.
 */
static void
db_fail_later(struct db *d)
{
	if (!d->broken)
		d->broken = util_strdup(PQerrorMessage(d->conn));
	db_want_write(d);
}

/* Flush libpq's output buffer; ask for POLLOUT while it is not empty. */
static void
db_flush(struct db *d, bool from_query)
{
	int rc = PQflush(d->conn);

	if (rc == 1)
		db_want_write(d);
	else if (rc < 0 && from_query)
		db_fail_later(d);
	else if (rc < 0)
		db_lost(d, PQerrorMessage(d->conn));
}

/*
 * How many queries one session may have sent and not yet seen answered.
 * The delivery session pipelines (libpq pipeline mode, one Sync after each
 * query): a burst of upgrades goes out in one write and its answers come
 * back in a few reads, instead of one round trip and one loop iteration per
 * upgrade.  The server still runs them one after the other, in queue order,
 * so connect, fetch and disconnect keep the order they had when serial.
 * Handler sessions stay at one: a handler may run for handler_timeout, and
 * route.c balances on queue length.
 */
static int
db_depth(struct db *d)
{
	return d->main && cf_db_pipeline_depth > 1 ? (int) cf_db_pipeline_depth : 1;
}

/* Queries sent and not yet answered on the delivery session. */
int
db_in_flight(void)
{
	return db_main->ninflight;
}

/*
 * Send queued queries while the pipeline has room.  Each is followed by its
 * own Sync, so each is its own transaction: an invalid token (an error)
 * aborts that upgrade only, never the ones pipelined behind it.
 */
static void
db_pump(struct db *d, bool from_query)
{
	bool sent = false;

	while (d->state == DB_READY && !d->broken && d->head && d->ninflight < db_depth(d)) {
		struct db_item *it = d->head;

		d->head = it->next;
		if (!d->head)
			d->tail = NULL;
		it->next = NULL;
		if (d->inflight_tail)
			d->inflight_tail->next = it;
		else
			d->inflight = it;
		d->inflight_tail = it;
		d->ninflight++;
		it->sent_ms = now_ms();
		if (!PQsendQueryParams(d->conn, it->sql, it->nparams, NULL,
				       (const char *const *) it->params, NULL, NULL, 0) ||
		    !PQpipelineSync(d->conn)) {
			if (from_query)
				db_fail_later(d);
			else
				db_lost(d, PQerrorMessage(d->conn));
			return;
		}
		sent = true;
	}
	if (sent)
		db_flush(d, from_query);
}

/* The oldest query in flight is answered (its Sync came back): run its callback. */
static void
db_complete(struct db *d)
{
	struct db_item *it = d->inflight;
	PGresult *res = it->result;

	d->inflight = it->next;
	if (!d->inflight)
		d->inflight_tail = NULL;
	d->ninflight--;
	d->count--;
	it->result = NULL;
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
}

/*
 * Take one result of the oldest query in flight.  Its rows (or its error)
 * come first, then NULL, then PGRES_PIPELINE_SYNC once its transaction has
 * committed: only then is it answered, so that an upgrade is never accepted
 * on a row that might still roll back.  An error wins over rows (a failed
 * commit comes after the rows).
 */
static void
db_take(struct db *d, PGresult *r)
{
	struct db_item *it = d->inflight;
	ExecStatusType st = PQresultStatus(r);

	if (st == PGRES_PIPELINE_SYNC) {
		PQclear(r);
		db_complete(d);
		return;
	}
	if (!it->result ||
	    (st == PGRES_FATAL_ERROR && PQresultStatus(it->result) != PGRES_FATAL_ERROR)) {
		PQclear(it->result);
		it->result = r;
	} else
		PQclear(r);
}

/* Read what the server sent: results and notifications. */
static void
db_read(struct db *d)
{
	PGnotify *n;
	int nulls = 0;

	if (!PQconsumeInput(d->conn)) {
		db_lost(d, PQerrorMessage(d->conn));
		return;
	}
	/*
	 * Results before notifications: the server sends a notification only
	 * between transactions, after the Sync of the one it arrived during,
	 * and a message delivered from a NOTIFY payload must find the
	 * connections that transaction registered (wsnotify_connect) already
	 * in the registry.
	 *
	 * libpq returns NULL between one query's results and its Sync's, and
	 * keeps returning NULL when it has nothing: two in a row mean "wait for
	 * more input".
	 */
	while (d->state == DB_READY && d->inflight && !PQisBusy(d->conn)) {
		PGresult *r = PQgetResult(d->conn);

		if (!r) {
			if (nulls++)
				break;
			continue;
		}
		nulls = 0;
		db_take(d, r);
	}
	while (d->state == DB_READY && (n = PQnotifies(d->conn))) {
		metrics.notifications++;
		if (d->hooks.notify)
			d->hooks.notify(n->extra, d->hooks.arg);
		PQfreemem(n);
	}
	db_pump(d, false);
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

	/* what was sent goes back before what was not, in order */
	for (it = d->inflight; it; it = it->next) {
		PQclear(it->result);
		it->result = NULL;
	}
	if (d->inflight_tail) {
		d->inflight_tail->next = d->head;
		d->head = d->inflight;
	}
	d->inflight = d->inflight_tail = NULL;
	d->ninflight = 0;
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
	lws_sul_schedule(loop_context, 0, &d->retry_sul, db_retry_cb,
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
	free(d->broken);
	d->broken = NULL;
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
	if (was_ready && d->hooks.lost)
		d->hooks.lost(d->hooks.arg);
	db_schedule_retry(d);
}

void
db_reset(const char *why)
{
	db_lost(db_main, why);
}

/* Connected: switch to non-blocking queries and let deliver.c set up. */
static void
db_on_connected(struct db *d)
{
	if (PQsetnonblocking(d->conn, 1) != 0 || PQenterPipelineMode(d->conn) != 1) {
		db_lost(d, PQerrorMessage(d->conn));
		return;
	}
	d->state = DB_READY;
	d->backoff = cf_reconnect_min;
	if (d->ever_ready && d->main)
		metrics.db_reconnects++;
	log_info("%s connected (server %d, backend pid %d)%s", d->name, PQserverVersion(d->conn),
		 PQbackendPID(d->conn), d->ever_ready ? ", reconnected" : "");
	d->ever_ready = true;
	if (d->hooks.ready)
		d->hooks.ready(d->hooks.arg);
	db_pump(d, false);
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

/*
 * Start connecting a session (asynchronously).  A silent partition (packets
 * dropped, no reset) would otherwise go unnoticed for as long as TCP
 * retransmits, about 15 minutes: with db_tcp_timeout T, unacknowledged data
 * fails the socket after T (tcp_user_timeout) and an idle session is probed
 * after T/2, twice at T/4 (keepalives).  They come before dbname, so that a
 * DSN that sets them wins.
 */
void
db_start_on(struct db *d)
{
	char user_timeout[24], idle[24], interval[24];
	long long t = cf_db_tcp_timeout;
	const char *keys[] = {"keepalives",
			      "keepalives_idle",
			      "keepalives_interval",
			      "keepalives_count",
			      "tcp_user_timeout",
			      "dbname",
			      "fallback_application_name",
			      NULL};
	const char *vals[] = {"1",
			      idle,
			      interval,
			      "2",
			      user_timeout,
			      cf_dsn,
			      d->main ? "wsnotify-bridge" : "wsnotify-bridge-handlers",
			      NULL};
	int first = t > 0 ? 0 : 5; /* 0: libpq's and the system's defaults */

	if (d->state == DB_STOPPED)
		return;
	snprintf(user_timeout, sizeof(user_timeout), "%lld", t);
	snprintf(idle, sizeof(idle), "%lld", t / 2000 > 0 ? t / 2000 : 1);
	snprintf(interval, sizeof(interval), "%lld", t / 4000 > 0 ? t / 4000 : 1);
	d->conn = PQconnectStartParams(keys + first, vals + first, 1);
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

/* Event on the adopted database socket (its raw_tag's handler). */
static int
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
		else if (d->state == DB_READY && d->broken)
			db_lost(d, d->broken);
		else if (d->state == DB_READY) {
			if (d->inflight)
				db_flush(d, false);
			db_pump(d, false);
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
	struct db *d;

	DL_FOREACH(db_all, d)
	{
		uint64_t limit = 3 * (uint64_t) cf_auth_timeout;

		/* a handler may legitimately run up to handler_timeout */
		if (!d->main && (uint64_t) cf_handler_timeout + 10000 > limit)
			limit = (uint64_t) cf_handler_timeout + 10000;
		if (d->state == DB_READY && d->inflight && now_ms() - d->inflight->sent_ms > limit)
			db_lost(d, "query unanswered far past its deadline");
	}
}

void
db_stop(void)
{
	struct db *d;

	DL_FOREACH(db_all, d)
	{
		db_unadopt(d);
		if (d->conn)
			PQfinish(d->conn);
		d->conn = NULL;
		d->state = DB_STOPPED;
		lws_sul_cancel(&d->retry_sul);
		loop_soon_cancel(&d->write_soon);
	}
}

/* Gauges of the delivery session. */
static double
db_gauge_up(void)
{
	return db_ready();
}

static double
db_gauge_queue(void)
{
	return db_queue_length();
}

static double
db_gauge_in_flight(void)
{
	return db_in_flight();
}

void
db_start(const struct db_hooks *hooks)
{
	db_main->hooks = *hooks;
	metrics_gauge(GAUGE_DB_UP, db_gauge_up);
	metrics_gauge(GAUGE_DB_QUEUE, db_gauge_queue);
	metrics_gauge(GAUGE_DB_IN_FLIGHT, db_gauge_in_flight);
	DL_APPEND(db_all, db_main);
	db_start_on(db_main);
}

struct db *
db_pool_new(const char *name, const struct db_hooks *hooks)
{
	struct db *d = util_calloc(1, sizeof(*d));

	d->name = util_strdup(name);
	d->hooks = *hooks;
	d->state = DB_DOWN;
	d->sock = -1;
	d->tag = (struct raw_tag){RAW_MAGIC, db_on_event, d};
	DL_APPEND(db_all, d);
	db_start_on(d);
	return d;
}

/* Queue a query on the delivery session. */
bool
db_query(const char *sql, int nparams, const char *const *params, db_cb cb, void *arg, int flags)
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
