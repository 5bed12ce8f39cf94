/*
 * session.c: start, restore, heartbeat and disconnects on the delivery
 * session (session.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "config.h"
#include "db.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "registry.h"
#include "seal.h"
#include "session.h"

static bool started; /* bridge_start answered */
static session_started_cb on_started;
static lws_sorted_usec_list_t heartbeat_sul;

bool
session_started(void)
{
	return started;
}

/* Log a failed query of this module: what failed, its SQLSTATE and message. */
static void
session_failed(const char *what, const PGresult *res)
{
	char msg[256];

	db_errmsg(res, msg, sizeof(msg));
	log_error("%s failed (SQLSTATE %s): %s", what, db_sqlstate(res), msg);
}

/* Answer of wsnotify_inline_key(): without it every message is fetched. */
static void
session_key_done(PGresult *res, void *arg)
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

/* Answer of LISTEN. */
static void
session_listen_done(PGresult *res, void *arg)
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
session_start_done(PGresult *res, void *arg)
{
	char msg[256];
	int64_t cursor;

	(void) arg;
	if (!res)
		return;
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		db_errmsg(res, msg, sizeof(msg));
		log_error(
			"wsnotify_bridge_start failed (SQLSTATE %s): %s; is the extension installed and the role a member of wsnotify_bridge?",
			db_sqlstate(res), msg);
		db_reset("bridge start failed");
		return;
	}
	cursor = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	started = true;
	log_info("bridge %s started: reaped %s rows of its previous life, cursor %lld",
		 cf_bridge_id, PQgetvalue(res, 0, 0), (long long) cursor);
	on_started(&cursor);
}

/* Answer of wsnotify_restore. */
static void
session_restore_done(PGresult *res, void *arg)
{
	(void) arg;
	if (!res)
		return;
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		session_failed("wsnotify_restore", res);
	else if (strcmp(PQgetvalue(res, 0, 0), "0") != 0)
		log_warn("restored %s connection rows reaped while the database was unreachable",
			 PQgetvalue(res, 0, 0));
	started = true;
	on_started(NULL);
}

/* JSON array of the live connections, for wsnotify_restore. */
static char *
session_connections_json(void)
{
	json_t *arr = json_array();
	struct conn *c, *tmp;
	char *s;

	HASH_ITER(hh, registry_all(), c, tmp)
	{
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

void
session_on_ready(session_started_cb started_cb)
{
	const char *p1[1] = {cf_bridge_id};

	on_started = started_cb;
	seal_forget_key();
	db_query("SELECT wsnotify_inline_key()", 0, NULL, session_key_done, NULL, 0);
	db_query("LISTEN wsnotify", 0, NULL, session_listen_done, NULL, 0);
	if (!started) {
		db_query("SELECT reaped, last_id FROM wsnotify_bridge_start($1)", 1, p1,
			 session_start_done, NULL, 0);
	} else {
		char *json = session_connections_json();
		const char *p2[2] = {cf_bridge_id, json};

		db_query("SELECT wsnotify_restore($1, $2::jsonb)", 2, p2, session_restore_done,
			 NULL, 0);
		free(json);
	}
}

/* Answer of wsnotify_disconnect. */
static void
session_disconnect_done(PGresult *res, void *arg)
{
	(void) arg;
	if (res && PQresultStatus(res) != PGRES_TUPLES_OK)
		session_failed("wsnotify_disconnect", res);
}

void
session_disconnect(const char *connection_id)
{
	const char *p[1] = {connection_id};

	db_query("SELECT wsnotify_disconnect($1)", 1, p, session_disconnect_done, NULL, DB_RETRY);
}

/* Answer of wsnotify_heartbeat. */
static void
session_heartbeat_done(PGresult *res, void *arg)
{
	(void) arg;
	if (!res)
		return;
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		session_failed("wsnotify_heartbeat", res);
	else {
		metrics.notify_queue_usage = strtod(PQgetvalue(res, 0, 1), NULL);
		if (strcmp(PQgetvalue(res, 0, 0), "0") != 0)
			log_info("heartbeat reaped %s connection rows of dead bridges",
				 PQgetvalue(res, 0, 0));
	}
}

/* Timer: record liveness and reap dead bridges. */
static void
session_heartbeat_cb(lws_sorted_usec_list_t *sul)
{
	char reap[32];
	const char *p[2] = {cf_bridge_id, reap};

	if (started && db_ready()) {
		snprintf(reap, sizeof(reap), "%lld milliseconds", cf_reap_after);
		db_query("SELECT wsnotify_heartbeat($1, $2::interval), "
			 "pg_notification_queue_usage()",
			 2, p, session_heartbeat_done, NULL, 0);
	}
	lws_sul_schedule(loop_context, 0, sul, session_heartbeat_cb,
			 (lws_usec_t) cf_heartbeat_interval * 1000);
}

void
session_heartbeat_start(void)
{
	lws_sul_schedule(loop_context, 0, &heartbeat_sul, session_heartbeat_cb,
			 (lws_usec_t) cf_heartbeat_interval * 1000);
}
