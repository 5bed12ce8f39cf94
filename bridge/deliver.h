/*
 * deliver.h: from the outbox to the send queues.
 *
 * One bigint cursor per bridge: wsnotify_fetch(bridge, cursor, batch) returns
 * this bridge's messages after it in commit order, and its last row ('.') is
 * the next cursor.  A fetch runs on every NOTIFY wsnotify, after every
 * (re)connect, and every poll_interval as a safety net.  Each connection only
 * receives ids above its own start cursor (wsnotify_connect's last_id).
 */
#ifndef WSNOTIFY_DELIVER_H
#define WSNOTIFY_DELIVER_H

#include <stdbool.h>
#include <stdint.h>

/* The database connection is ready (first: this process's first one). */
void deliver_on_ready(bool first);
/* The database connection was lost. */
void deliver_on_lost(void);
/* A NOTIFY wsnotify arrived with this payload (the sender's last id). */
void deliver_on_notify(const char *payload);
/* True once wsnotify_bridge_start has answered. */
bool deliver_started(void);
/* Timers: heartbeat and safety-net poll. */
void deliver_start_timers(void);
/* The connection's row is gone: run wsnotify_disconnect (kept across reconnects). */
void deliver_disconnect(const char *connection_id);
/* Current cursor. */
int64_t deliver_cursor(void);

#endif
