/*
 * session.h: the SQL of the delivery session's life, beside the fetches.
 *
 * Each time the session is (again) connected: wsnotify_inline_key() (the
 * key of sealed inline payloads), LISTEN wsnotify, then
 * wsnotify_bridge_start (the first time: the rows of this bridge id's
 * previous life go, and the cursor to start from comes back) or
 * wsnotify_restore (after a loss: the rows of the live connections that
 * other bridges reaped meanwhile come back).  Then wsnotify_heartbeat every
 * heartbeat_interval, and wsnotify_disconnect for every connection gone
 * (kept across reconnects).  Delivery owns the session (deliver.c installs
 * the db_hooks) and hears back through the callback it gives.  Uses db,
 * the registry, seal, config, log, metrics and the loop.
 */
#ifndef WSNOTIFY_SESSION_H
#define WSNOTIFY_SESSION_H

#include <stdbool.h>
#include <stdint.h>

/* The bridge is started (cursor: where to fetch from) or restored (cursor NULL). */
typedef void (*session_started_cb)(const int64_t *cursor);

/* The delivery session is connected (again): key, LISTEN, start or restore, then started. */
void session_on_ready(session_started_cb started);
/* Start the heartbeat timer. */
void session_heartbeat_start(void);
/* True once wsnotify_bridge_start has answered (and ever after). */
bool session_started(void);
/* The connection's row must go: run wsnotify_disconnect (kept across reconnects). */
void session_disconnect(const char *connection_id);

#endif
