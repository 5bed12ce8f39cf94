/*
 * replay.c: wsnotify_replay's answer into the connection's queue (replay.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "frame.h"
#include "log.h"
#include "payload.h"
#include "registry.h"
#include "replay.h"
#include "util.h"

/*
 * Whether a failed replay is worth another try: the session was lost, or the
 * server was shutting down or out of connections (SQLSTATE classes 08, 57, 53).
 */
static bool
replay_may_retry(const PGresult *res)
{
	const char *state = db_sqlstate(res);

	if (!res)
		return true;
	return strncmp(state, "08", 2) == 0 || strncmp(state, "57", 2) == 0 ||
	       strncmp(state, "53", 2) == 0;
}

/* Queue a v1 reset frame: the client's cursor is gone, start again from id. */
static void
replay_reset(struct conn *c, int64_t id)
{
	char *frame = frame_reset(id);

	conn_enqueue_text(c, frame);
	free(frame);
}

/* The replay failed: 1012 when the client should resume again, else a reset. */
static void
replay_failed(struct conn *c, const PGresult *res)
{
	char msg[256];

	db_errmsg(res, msg, sizeof(msg));
	if (replay_may_retry(res)) {
		/*
		 * The session went away under the replay (a restart, a
		 * terminated backend): a reset would make the client throw
		 * away a cursor that is still good.  It resumes again instead.
		 */
		log_warn(
			"connection %s: wsnotify_replay interrupted: %s; closing with 1012 so the client resumes",
			c->id, msg);
		conn_close(c, &frame_close_resume);
		return;
	}
	log_error("connection %s: wsnotify_replay failed: %s; sending reset", c->id, msg);
	replay_reset(c, c->start_id);
	conn_release(c);
}

/* One replayed row: a reset ('r') or a message, queued ahead of what is held. */
static void
replay_row(struct conn *c, const PGresult *res, int i)
{
	long long rid = strtoll(PQgetvalue(res, i, 0), NULL, 10);
	const char *body = PQgetvalue(res, i, 3);
	size_t len = (size_t) PQgetlength(res, i, 3);
	struct payload *p;

	if (PQgetvalue(res, i, 1)[0] == 'r') {
		replay_reset(c, rid);
		return;
	}
	p = PQgetvalue(res, i, 4)[0] == 't' ? payload_new_base64(body, len) :
					      payload_new(body, len);
	if (!p)
		return;
	if (PQgetvalue(res, i, 1)[0] == 't' && !PQgetisnull(res, i, 2))
		snprintf(p->topic, sizeof(p->topic), "%s", PQgetvalue(res, i, 2));
	conn_enqueue_replayed(c, p, rid);
	payload_unref(p);
}

/* Answer of wsnotify_replay: the missed messages (or a reset), then live ones. */
static void
replay_done(PGresult *res, void *arg)
{
	char *id = arg;
	struct conn *c = registry_find(id);

	free(id);
	if (!c)
		return;
	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
		replay_failed(c, res);
		return;
	}
	for (int i = 0; i < PQntuples(res); i++)
		replay_row(c, res, i);
	log_info("connection %s resumed: %d missed messages replayed", c->id, PQntuples(res));
	conn_release(c);
}

void
replay_start(struct conn *c, const char *since)
{
	char upto[24], *id = util_strdup(c->id);
	const char *params[3] = {c->id, since, upto};

	snprintf(upto, sizeof(upto), "%lld", (long long) c->start_id);
	c->holding = true;
	if (!db_query("SELECT id, kind, target, body, is_binary FROM wsnotify_replay($1, $2, $3)",
		      3, params, replay_done, id, 0)) {
		free(id);
		log_warn(
			"connection %s: database unavailable for the replay; closing with 1012 so the client resumes",
			c->id);
		conn_close(c, &frame_close_resume);
	}
}
