/*
 * auth.c: from an upgrade's request head to an admitted connection or a
 * refusal (auth.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "auth.h"
#include "config.h"
#include "db.h"
#include "frame.h"
#include "log.h"
#include "policy.h"
#include "registry.h"
#include "replay.h"
#include "request.h"
#include "session.h"
#include "util.h"

static int pending; /* wsnotify_connect calls in flight */

/* Gauge: upgrades waiting for the database. */
static double
auth_gauge_pending(void)
{
	return pending;
}

void
auth_init(void)
{
	metrics_gauge(GAUGE_UPGRADES_PENDING, auth_gauge_pending);
}

/* Fill *no; false, so that a check can return auth_refuse(...). */
static bool
auth_refuse(struct auth_refusal *no, int status, enum auth_failure why, const char *reason)
{
	no->status = status;
	no->why = why;
	snprintf(no->reason, sizeof(no->reason), "%s", reason);
	return false;
}

/*
 * What lws would refuse anyway is refused before the database is asked:
 * no row is made and dropped for it (RFC 6455 4.2.2: 426 names 13).  Then
 * the address's rate limits and Origin.
 */
static bool
auth_check_head(const struct request *r, struct auth_wait *w, struct auth_refusal *no)
{
	if (!r->ws_key[0])
		return auth_refuse(no, 400, AUTH_BAD_REQUEST, "missing Sec-WebSocket-Key");
	if (strcmp(r->ws_version, "13") != 0)
		return auth_refuse(no, 426, AUTH_BAD_REQUEST,
				   "unsupported Sec-WebSocket-Version (13 only)");
	if (!policy_connect_ok(w->remote, now_ms(), &no->retry_after))
		return auth_refuse(no, 429, AUTH_RATE_LIMITED,
				   "too many connection attempts; retry later");
	if (!policy_auth_ok(w->remote, now_ms(), &no->retry_after))
		return auth_refuse(no, 429, AUTH_RATE_LIMITED,
				   "too many failed authentications; retry later");
	if (!request_origin_ok(r->origin, cf_allowed_origins))
		return auth_refuse(no, 403, AUTH_ORIGIN, "origin not allowed");
	return true;
}

bool
auth_check(const struct request *r, struct auth_wait *w, struct auth_request *out,
	   struct auth_refusal *no)
{
	no->retry_after = 0;
	out->token[0] = out->topics[0] = '\0';
	if (!auth_check_head(r, w, no))
		return false;
	if (!request_query_param(r->target, "token", out->token, sizeof(out->token)) &&
	    !strncasecmp(r->authorization, "Bearer ", 7))
		snprintf(out->token, sizeof(out->token), "%s", r->authorization + 7);
	if (r->protocol[0]) {
		w->envelope = request_list_has(r->protocol, "wsnotify.v1");
		if (!w->envelope && !request_list_has(r->protocol, "wsnotify"))
			return auth_refuse(no, 400, AUTH_BAD_REQUEST,
					   "unsupported subprotocol (wsnotify.v1 or none)");
	}
	if (w->envelope && !w->since && (w->since = malloc(sizeof(r->target))) &&
	    !request_cursor(r->target, w->since, sizeof(r->target))) {
		free(w->since);
		w->since = NULL;
	}
	if (request_query_param(r->target, "topics", out->topics, sizeof(out->topics)) &&
	    strlen(out->topics) == sizeof(out->topics) - 1)
		return auth_refuse(no, 400, AUTH_BAD_REQUEST, "too many topics");
	if (!out->token[0])
		return auth_refuse(no, 401, AUTH_MISSING_TOKEN, "missing token");
	if (registry_count() + (unsigned) pending >= (unsigned long long) cf_max_connections)
		return auth_refuse(no, 503, AUTH_CAPACITY, "at capacity");
	if (!session_started() || !db_ready())
		return auth_refuse(no, 503, AUTH_DB_UNAVAILABLE, "database unavailable");
	return true;
}

/* A fresh random connection id (32 hex digits). */
static void
auth_new_id(char *out, size_t n)
{
	unsigned char r[16];

	if (getrandom(r, sizeof(r), 0) != sizeof(r))
		for (size_t i = 0; i < sizeof(r); i++)
			r[i] = (unsigned char) random();
	for (size_t i = 0; i < sizeof(r) && 2 * i + 2 < n; i++)
		snprintf(out + 2 * i, 3, "%02x", r[i]);
}

/* Answer of wsnotify_connect: to the gate, which still holds w. */
static void
auth_answered(PGresult *res, void *arg)
{
	struct auth_wait *w = arg;

	pending--;
	w->done(w, res);
}

bool
auth_ask(struct auth_wait *w, const struct auth_request *a)
{
	const char *params[6];

	auth_new_id(w->conn_id, sizeof(w->conn_id));
	params[0] = w->conn_id;
	params[1] = cf_bridge_id;
	params[2] = a->token;
	params[3] = w->remote;
	params[4] = w->user_agent[0] ? w->user_agent : NULL;
	params[5] = a->topics[0] ? a->topics : NULL;
	/*
	 * Unless connect_synchronous_commit is set, the row's commit does not
	 * wait for the WAL flush (set_config(..., true) lasts for this
	 * transaction only): one session commits upgrades one at a time, so a
	 * flush each would bound the rate by the disk.  A row lost in a server
	 * crash is put back by wsnotify_restore when this session reconnects
	 * (session.c), since the connection is still in the registry.
	 */
	if (!db_query(
		    cf_connect_synchronous_commit ?
			    "SELECT user_id, claims::text, extract(epoch FROM expires_at), last_id, "
			    "welcome::text, refused_topics::text "
			    "FROM wsnotify_connect($1, $2, $3, $4, $5, string_to_array($6, ','))" :
			    "SELECT user_id, claims::text, extract(epoch FROM expires_at), last_id, "
			    "welcome::text, refused_topics::text "
			    "FROM set_config('synchronous_commit', 'off', true), "
			    "wsnotify_connect($1, $2, $3, $4, $5, string_to_array($6, ','))",
		    6, params, auth_answered, w, 0))
		return false;
	pending++;
	return true;
}

/* Map a wsnotify_connect error to a refusal. */
static void
auth_error(const PGresult *res, struct auth_refusal *no)
{
	const char *st = db_sqlstate(res);
	char msg[256];

	db_errmsg(res, msg, sizeof(msg));
	if (!strncmp(st, "28", 2))
		auth_refuse(no, 401, AUTH_INVALID_TOKEN, msg);
	else if (!strcmp(st, "23502"))
		auth_refuse(no, 401, AUTH_INVALID_TOKEN, "token carries no user id");
	else if (!strncmp(st, "P0", 2) || !strcmp(st, "42501"))
		auth_refuse(no, 403, AUTH_REFUSED, msg);
	else {
		log_error("wsnotify_connect failed (SQLSTATE %s): %s", st, msg);
		auth_refuse(no, 503, AUTH_DB_UNAVAILABLE, "database error");
	}
}

/* Queue one text frame for c (frame_refused_topics' emit). */
static void
auth_emit(const char *text, void *arg)
{
	conn_enqueue_text(arg, text);
}

/*
 * The $connect handler's result, then one error frame per topic of
 * ?topics= that the database refused (docs/protocol.md).
 */
static void
auth_first_frames(struct conn *c, const PGresult *res)
{
	if (PQnfields(res) > 4 && !PQgetisnull(res, 0, 4)) {
		char *text = frame_welcome(PQgetvalue(res, 0, 4), c->envelope);

		conn_enqueue_text(c, text);
		free(text);
	}
	if (PQnfields(res) > 5 && !PQgetisnull(res, 0, 5))
		metrics.error_frames += (uint64_t) frame_refused_topics(PQgetvalue(res, 0, 5),
									c->envelope, auth_emit, c);
}

/* Open connections of one user on this bridge. */
static long long
auth_user_count(const char *user_id)
{
	struct conn *c;
	long long n = 0;

	for (c = registry_user(user_id); c; c = c->unext)
		n++;
	return n;
}

struct conn *
auth_admit(struct auth_wait *w, PGresult *res, bool gone, struct auth_refusal *no)
{
	struct conn *c;

	no->retry_after = 0;
	if (!res) {
		session_disconnect(w->conn_id); /* the row may have committed */
		auth_refuse(no, 503, AUTH_DB_UNAVAILABLE, "database unavailable");
		return NULL;
	}
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		auth_error(res, no);
		return NULL;
	}
	if (gone) {
		session_disconnect(w->conn_id);
		auth_refuse(no, 503, AUTH_DB_UNAVAILABLE, "shutting down");
		return NULL;
	}
	if (cf_max_connections_per_user > 0 &&
	    auth_user_count(PQgetvalue(res, 0, 0)) >= cf_max_connections_per_user) {
		/* the database made the row; take it back before refusing */
		session_disconnect(w->conn_id);
		auth_refuse(no, 429, AUTH_CAPACITY, "too many connections for this user");
		return NULL;
	}
	c = registry_add(&(struct conn_row){
		.id = w->conn_id,
		.user_id = PQgetvalue(res, 0, 0),
		.claims = PQgetisnull(res, 0, 1) ? NULL : PQgetvalue(res, 0, 1),
		.remote_addr = w->remote,
		.user_agent = w->user_agent,
		.start_id = strtoll(PQgetvalue(res, 0, 3), NULL, 10),
		.expires_at = PQgetisnull(res, 0, 2) ? 0 : strtod(PQgetvalue(res, 0, 2), NULL),
	});
	c->envelope = w->envelope;
	log_info("connection %s authorized: user %s from %s%s", c->id, c->user_id, w->remote,
		 w->envelope ? " (wsnotify.v1)" : "");
	auth_first_frames(c, res);
	if (w->since)
		replay_start(c, w->since);
	return c;
}

void
auth_drop(struct conn *c)
{
	session_disconnect(c->id);
	registry_remove(c);
}

void
auth_release(struct auth_wait *w)
{
	free(w->since);
	w->since = NULL;
}
