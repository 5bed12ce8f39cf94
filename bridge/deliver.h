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

/* Open the delivery session (db_start, with this module's hooks) and start the timers. */
void deliver_start(void);
/* True once wsnotify_bridge_start has answered. */
bool deliver_started(void);
/* The connection's row is gone: run wsnotify_disconnect (kept across reconnects). */
void deliver_disconnect(const char *connection_id);

#endif
