/*
 * db.h: one libpq connection driven by the lws loop without blocking.
 *
 * Queries go through a FIFO and run in order on the same session, so
 * connect, fetch and disconnect are serial (the outbox contract); the
 * delivery session pipelines them (up to db_pipeline_depth in flight, one
 * Sync each), which saves the round trips, not the order.  The
 * connection is made with PQconnectStartParams/PQconnectPoll, a dup of
 * PQsocket() is adopted into lws, and PQconsumeInput/PQnotifies run on
 * POLLIN.  A lost connection is retried with exponential backoff.
 *
 * A session tells its owner what happens to it through the db_hooks the
 * owner gave when it opened it (deliver.c for the delivery session, route.c
 * for the handler pool); it calls no module above it.
 */
#ifndef WSNOTIFY_DB_H
#define WSNOTIFY_DB_H

#include <stdbool.h>

#include <libpq-fe.h>

/* Kept across a reconnect and run again (disconnects). */
#define DB_RETRY 1

/* Called with the result (NULL: connection lost before the answer). */
typedef void (*db_cb)(PGresult *res, void *arg);

struct db;

/* What a session reports to its owner; any hook may be NULL. */
struct db_hooks {
	void (*ready)(void *arg); /* connected (again): queue what a new session needs */
	void (*lost)(void *arg);  /* the connection is gone; queries were answered NULL */
	void (*notify)(const char *payload, void *arg); /* NOTIFY wsnotify arrived */
	void *arg;
};

/* The delivery session (LISTEN, connect, fetch, disconnect). */
extern struct db *db_main;

/* Start connecting the delivery session (asynchronously), reporting to *hooks. */
void db_start(const struct db_hooks *hooks);
/* A new session for a handler pool, reporting to *hooks; started at once. */
struct db *db_pool_new(const char *name, const struct db_hooks *hooks);
/* Start connecting a session. */
void db_start_on(struct db *d);
/* Queue a query on a session; false when not ready and not DB_RETRY. */
bool db_query_on(struct db *d, const char *sql, int nparams, const char *const *params, db_cb cb,
		 void *arg, int flags);
/* 1 when this session is connected. */
int db_ready_on(struct db *d);
/* Queries queued or in flight on this session. */
int db_queue_length_on(struct db *d);
/* Queries sent and not yet answered on the delivery session (pipeline). */
int db_in_flight(void);
/* Queue a query; false (nothing queued) when not ready and not DB_RETRY. */
bool db_query(const char *sql, int nparams, const char *const *params, db_cb cb, void *arg,
	      int flags);
/* 1 when connected. */
int db_ready(void);
/* Queries queued or in flight. */
int db_queue_length(void);
/* Watchdog (every session): reconnect when a query stays unanswered far too long. */
void db_check_stuck(void);
/* Close every session for good (shutdown). */
void db_stop(void);
/* Drop the delivery session's connection and reconnect. */
void db_reset(const char *why);
/* SQLSTATE of an error result, "" when none. */
const char *db_sqlstate(const PGresult *res);
/* Primary message of an error result, one line. */
void db_errmsg(const PGresult *res, char *buf, size_t n);

#endif
