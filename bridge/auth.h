/*
 * auth.h: authorizing an upgrade through the database.
 *
 * The gate reads a request head and hands an upgrade here: the checks that
 * need no database come first (Sec-WebSocket-Key and -Version, the
 * address's rate limits, Origin, subprotocol, ?topics=, the token's
 * presence, max_connections, a started bridge), then wsnotify_connect is
 * queued on the delivery session with the token.  Its answer comes back
 * through the gate's callback, which admits the connection (auth_admit:
 * registry, first frames, ?since= replay) or refuses it with the status
 * docs/bridge.md lists.  The token lives only in the caller's
 * auth_request, which the caller wipes.  Uses the session, replay, the
 * registry, db, frame, policy, request, metrics and config.
 */
#ifndef WSNOTIFY_AUTH_H
#define WSNOTIFY_AUTH_H

#include <stdbool.h>

#include <libpq-fe.h>

#include "metrics.h"

struct conn;
struct request;

/* Why an upgrade is refused: HTTP status, the metric's reason, the client's text. */
struct auth_refusal {
	int status;
	enum auth_failure why;
	int retry_after; /* seconds, for a 429 of a rate limit; 0: none */
	char reason[256];
};

/* What auth_check takes from a request head for wsnotify_connect. */
struct auth_request {
	char token[4096];
	char topics[4096]; /* ?topics=, comma-separated */
};

/* One upgrade, from its request head to the database's answer; the gate holds it. */
struct auth_wait {
	char conn_id[40];				  /* "" until asked */
	const char *remote;				  /* the peer's address (the gate's copy) */
	const char *user_agent;				  /* "" when none (the gate's copy) */
	bool envelope;					  /* asked for wsnotify.v1 */
	char *since;					  /* ?since= (malloc'd), or NULL */
	void (*done)(struct auth_wait *w, PGresult *res); /* the answer (NULL: session lost) */
};

/* Register the gauge of upgrades waiting for the database. */
void auth_init(void);
/* The checks before the database: true with *out filled, else false with *no. */
bool auth_check(const struct request *r, struct auth_wait *w, struct auth_request *out,
		struct auth_refusal *no);
/* Queue wsnotify_connect for w (a new connection id); false when the database is unavailable. */
bool auth_ask(struct auth_wait *w, const struct auth_request *a);
/*
 * The answer res of w: the registered connection, with its first frames
 * and replay queued, or NULL with *no (the row, if made, is removed again;
 * gone: the socket went away or the bridge is draining).
 */
struct conn *auth_admit(struct auth_wait *w, PGresult *res, bool gone, struct auth_refusal *no);
/* An admitted connection lws never took: remove its row and forget it. */
void auth_drop(struct conn *c);
/* Free what w holds. */
void auth_release(struct auth_wait *w);

#endif
