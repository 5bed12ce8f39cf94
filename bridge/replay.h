/*
 * replay.h: ?since= for a resuming wsnotify.v1 connection.
 *
 * wsnotify_replay(connection, since, start_cursor) is queued on the
 * delivery session right after wsnotify_connect; until it answers, live
 * messages for the connection are held aside (conn.holding), then follow
 * the replayed ones, so the seam has no gap and no duplicate.  An unknown
 * or purged cursor yields a reset frame; a replay cut off by a lost session
 * closes with 1012 so that the client resumes with the cursor it has.  Uses
 * db, the registry, frame, payload and log.
 */
#ifndef WSNOTIFY_REPLAY_H
#define WSNOTIFY_REPLAY_H

struct conn;

/* Queue wsnotify_replay for c from since (a message id or a ws_cursor() value). */
void replay_start(struct conn *c, const char *since);

#endif
