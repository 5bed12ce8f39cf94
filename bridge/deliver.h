/*
 * deliver.h: from the outbox to the send queues.
 *
 * One bigint cursor per bridge: wsnotify_fetch(bridge, cursor, batch) returns
 * this bridge's messages after it in commit order, and its last row ('.') is
 * the next cursor.  A fetch runs on every NOTIFY wsnotify, after every
 * (re)connect, and every poll_interval as a safety net.  Each connection only
 * receives ids above its own start cursor (wsnotify_connect's last_id).
 * Delivery owns the delivery session: it opens it, and the session's own
 * SQL (start, restore, heartbeat, disconnects) is session.c's.  Uses the
 * session, db, the registry, seal, payload, frame and the loop.
 */
#ifndef WSNOTIFY_DELIVER_H
#define WSNOTIFY_DELIVER_H

/* Open the delivery session (db_start, with this module's hooks) and start the timers. */
void deliver_start(void);

#endif
