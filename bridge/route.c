/*
 * route.c: client messages -> wsnotify_invoke on the handler pool -> replies.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "db.h"
#include "frame.h"
#include "log.h"
#include "metrics.h"
#include "registry.h"
#include "route.h"
#include "util.h"

#define ROUTE_POOL_MAX 64

static struct db *pool[ROUTE_POOL_MAX];
/*
 * The statement_timeout each session has, ms; -1 unknown.  A session that
 * reconnects is a new backend without it: its ready hook forgets the value
 * (once only the delivery session heard of reconnects, and a pool session
 * that came back ran handlers without handler_timeout).
 */
static long long pool_timeout[ROUTE_POOL_MAX];
static int pool_size;
static unsigned long long error_ref;

/* A handler call in flight. */
struct route_call {
	char conn_id[40];
	char *request_id;
	bool binary;  /* for the $binary route */
	bool refresh; /* a refresh action */
};

static void route_next(struct conn *c);

/* A pool session (re)connected: its backend has no statement_timeout yet. */
static void
route_session_ready(void *arg)
{
	pool_timeout[(long) arg] = -1;
}

void
route_init(void)
{
	pool_size = (int) (cf_handler_pool_size > ROUTE_POOL_MAX ? ROUTE_POOL_MAX :
								   cf_handler_pool_size);
	for (int i = 0; i < pool_size; i++) {
		struct db_hooks hooks = {.ready = route_session_ready, .arg = (void *) (long) i};
		char name[32];

		snprintf(name, sizeof(name), "handler pool %d", i + 1);
		pool_timeout[i] = -1;
		pool[i] = db_pool_new(name, &hooks);
	}
}

bool
route_ready(void)
{
	for (int i = 0; i < pool_size; i++)
		if (db_ready_on(pool[i]))
			return true;
	return pool_size == 0;
}

/* Send an error frame (docs/protocol.md) to one connection. */
static void
route_error(struct conn *c, const char *request_id, const char *code, const char *message)
{
	char *text = frame_error(request_id, code, message, c->envelope);

	metrics.error_frames++;
	conn_enqueue_text(c, text);
	free(text);
}

/* Send a handler's non-NULL result to one connection. */
static void
route_reply(struct conn *c, const char *request_id, const char *result)
{
	char *text = frame_reply(request_id, result, c->envelope);

	conn_enqueue_text(c, text);
	free(text);
}

/* Map a failed call to an error frame; log what the client must not see. */
static void
route_failed(struct conn *c, const char *request_id, PGresult *res)
{
	const char *st = db_sqlstate(res);
	char msg[512], generic[64];

	db_errmsg(res, msg, sizeof(msg));
	if (!res) {
		route_error(c, request_id, "handler_error", "database unavailable");
		return;
	}
	if (!strcmp(st, "42883") && strstr(msg, "route")) {
		route_error(c, request_id, "no_route", msg);
		return;
	}
	if (!strcmp(st, "57014")) {
		route_error(c, request_id, "timeout", "the handler ran past handler_timeout");
		return;
	}
	if (!strncmp(st, "P0", 2)) {
		route_error(c, request_id, "handler_error", msg);
		return;
	}
	snprintf(generic, sizeof(generic), "internal error (ref %llu)", ++error_ref);
	log_error("connection %s: handler failed (ref %llu, SQLSTATE %s): %s", c->id, error_ref, st,
		  msg);
	route_error(c, request_id, "handler_error", generic);
}

/*
 * A refresh the database accepted ({"refreshed": true, "expires_at": epoch
 * seconds or null}): the 4001 check (ws.c) now reads the new token's expiry.
 */
static void
route_refreshed(struct conn *c, const char *reply)
{
	json_t *o = json_loads(reply, 0, NULL);
	json_t *exp = json_object_get(o, "expires_at");

	if (json_is_true(json_object_get(o, "refreshed"))) {
		c->expires_at = json_is_number(exp) ? json_number_value(exp) : 0;
		log_info("connection %s: token refreshed", c->id);
	}
	json_decref(o);
}

/* Answer of wsnotify_invoke. */
static void
route_done(PGresult *res, void *arg)
{
	struct route_call *call = arg;
	struct conn *c = registry_find(call->conn_id);

	if (c) {
		c->req_inflight = false;
		if (res && PQresultStatus(res) == PGRES_TUPLES_OK) {
			if (call->refresh && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
				route_refreshed(c, PQgetvalue(res, 0, 0));
			if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
				route_reply(c, call->request_id, PQgetvalue(res, 0, 0));
		} else if (call->binary && res && !strcmp(db_sqlstate(res), "42883")) {
			log_info(
				"connection %s: binary frame and no $binary route, closing with 1003",
				c->id);
			conn_close(c, &frame_close_binary_refused);
		} else
			route_failed(c, call->request_id, res);
		route_next(c);
	}
	free(call->request_id);
	free(call);
}

/* Answer of SET statement_timeout on a pool session. */
static void
route_timeout_set(PGresult *res, void *arg)
{
	int slot = (int) (long) arg;

	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK)
		pool_timeout[slot] = -1;
}

/* The ready pool session with the fewest queries waiting; -1 when none. */
static int
route_pick(void)
{
	int best = -1;

	for (int i = 0; i < pool_size; i++)
		if (db_ready_on(pool[i]) &&
		    (best < 0 || db_queue_length_on(pool[i]) < db_queue_length_on(pool[best])))
			best = i;
	return best;
}

/* Run the next waiting request of a connection, if none is in flight. */
static void
route_next(struct conn *c)
{
	struct route_req *r;
	struct route_call *call;
	const char *params[2];
	int slot;

	if (c->req_inflight || !(r = c->req_head))
		return;
	c->req_head = r->next;
	if (!c->req_head)
		c->req_tail = NULL;
	c->req_count--;
	slot = route_pick();
	if (slot < 0) {
		route_error(c, r->request_id, "handler_error", "database unavailable");
		goto done;
	}
	if (pool_timeout[slot] != cf_handler_timeout) {
		char ms[32];
		const char *p[1] = {ms};

		snprintf(ms, sizeof(ms), "%lld", cf_handler_timeout);
		db_query_on(pool[slot], "SELECT set_config('statement_timeout', $1, false)", 1, p,
			    route_timeout_set, (void *) (long) slot, 0);
		pool_timeout[slot] = cf_handler_timeout;
	}
	call = util_calloc(1, sizeof(*call));
	snprintf(call->conn_id, sizeof(call->conn_id), "%s", c->id);
	call->request_id = r->request_id;
	call->binary = r->binary;
	call->refresh = r->refresh;
	r->request_id = NULL;
	params[0] = c->id;
	params[1] = r->body;
	if (!db_query_on(pool[slot],
			 r->binary ? "SELECT wsnotify_invoke_binary($1, $2::bytea)::text" :
				     "SELECT wsnotify_invoke($1, $2::jsonb)::text",
			 2, params, route_done, call, 0)) {
		route_error(c, call->request_id, "handler_error", "database unavailable");
		free(call->request_id);
		free(call);
		goto done;
	}
	c->req_inflight = true;
	metrics.handler_calls++;
done:
	free(r->body);
	free(r->request_id);
	free(r);
	if (!c->req_inflight)
		route_next(c);
}

/* Take one token from a connection's bucket of limit per second (0: no limit). */
static bool
route_bucket_ok(double *tokens, uint64_t *last_ms, long long per_second)
{
	uint64_t now = now_ms();
	double limit = (double) per_second;

	if (per_second <= 0)
		return true;
	if (!*last_ms)
		*tokens = limit;
	else
		*tokens += (double) (now - *last_ms) * limit / 1000.0;
	if (*tokens > limit)
		*tokens = limit;
	*last_ms = now;
	if (*tokens < 1.0)
		return false;
	*tokens -= 1.0;
	return true;
}

static bool
route_rate_ok(struct conn *c)
{
	return route_bucket_ok(&c->rate_tokens, &c->rate_ms, cf_client_rate_limit);
}

/*
 * The bridge's own checks of a built-in action before it reaches the
 * database: a signal's bucket and size.  False when an error frame was sent.
 */
static bool
route_action_ok(struct conn *c, struct route_req *r)
{
	size_t data_len;
	char *action = frame_action(r->body, &data_len);
	bool ok = true;

	if (action && !strcmp(action, "signal")) {
		if (data_len > (size_t) cf_signal_max_size) {
			char msg[96];

			snprintf(msg, sizeof(msg),
				 "a signal's data is at most %lld bytes; this one is %zu",
				 cf_signal_max_size, data_len);
			route_error(c, r->request_id, "too_large", msg);
			ok = false;
		} else if (!route_bucket_ok(&c->signal_tokens, &c->signal_ms,
					    cf_signal_rate_limit)) {
			route_error(c, r->request_id, "rate_limited",
				    "too many signals; slow down");
			ok = false;
		}
	}
	r->refresh = action && !strcmp(action, "refresh");
	free(action);
	return ok;
}

/* Queue a request for a connection's handler calls, in arrival order. */
static void
route_push(struct conn *c, struct route_req *r)
{
	if (c->req_tail)
		c->req_tail->next = r;
	else
		c->req_head = r;
	c->req_tail = r;
	c->req_count++;
	route_next(c);
}

void
route_on_message(struct conn *c, const char *data, size_t len)
{
	struct route_req *r;
	char *body, *request_id;

	if (!frame_parse(data, len, &body, &request_id))
		route_error(c, NULL, "bad_json", "a message must be a JSON object");
	else if (!route_rate_ok(c) || c->req_count >= cf_max_pending_requests)
		route_error(c, request_id, "rate_limited", "too many messages; slow down");
	else if (pool_size == 0)
		route_error(c, request_id, "no_route", "routes are disabled on this bridge");
	else {
		r = util_calloc(1, sizeof(*r));
		r->body = body;
		r->request_id = request_id;
		body = request_id = NULL;
		if (route_action_ok(c, r))
			route_push(c, r);
		else {
			free(r->body);
			free(r->request_id);
			free(r);
		}
	}
	free(body);
	free(request_id);
}

/*
 * A complete client binary message: to the $binary route as bytea (sent as
 * "\\x" + hex text), whose absence closes the connection with 1003.
 */
void
route_on_binary(struct conn *c, const char *data, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	struct route_req *r;

	if (pool_size == 0) {
		log_info("connection %s: binary frame and routes disabled, closing with 1003",
			 c->id);
		conn_close(c, &frame_close_binary_refused);
		return;
	}
	if (!route_rate_ok(c) || c->req_count >= cf_max_pending_requests) {
		route_error(c, NULL, "rate_limited", "too many messages; slow down");
		return;
	}
	r = util_calloc(1, sizeof(*r));
	r->binary = true;
	r->body = util_alloc(2 * len + 3);
	r->body[0] = '\\';
	r->body[1] = 'x';
	for (size_t i = 0; i < len; i++) {
		r->body[2 + 2 * i] = hex[(unsigned char) data[i] >> 4];
		r->body[3 + 2 * i] = hex[(unsigned char) data[i] & 15];
	}
	r->body[2 + 2 * len] = '\0';
	route_push(c, r);
}
