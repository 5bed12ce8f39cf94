/*
 * main.h: process-wide state of the bridge (draining, shutdown).
 */
#ifndef WSNOTIFY_MAIN_H
#define WSNOTIFY_MAIN_H

#include <stdbool.h>

#include <ev.h>

struct lws;

/* True once SIGTERM/SIGINT started the drain. */
bool main_draining(void);

/*
 * Next turn: ask lws for a WRITEABLE event on *wsi, if it is still set by
 * then.  Deferred because the raw file role clears POLLOUT after its
 * WRITEABLE callback returns, so asking from inside that callback would be
 * lost (the database socket, the TLS relay's socketpair end).  A libev
 * timer, not an lws_sul, which lws 4.1 on libev runs only when the loop is
 * idle or its own timer fires (up to a second later on a busy bridge).
 */
struct main_soon {
	ev_timer timer;
	struct lws *const *wsi;
};
/* Schedule s (once: a pending s stays as it is). */
void main_soon_writable(struct main_soon *s, struct lws *const *wsi);
/* Unschedule s, before freeing what holds it. */
void main_soon_cancel(struct main_soon *s);

#endif
