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
 * Run a function on the loop's next turn, whatever the load: a libev timer,
 * not an lws_sul, which lws 4.1 on libev runs only when the loop is idle or
 * its own timer fires (up to a second later on a busy bridge).
 */
struct main_soon {
	ev_timer timer;
	void (*fn)(struct main_soon *s);
	struct lws *const *wsi;		/* main_soon_writable's */
};
/* Schedule s (once: a pending s stays as it is). */
void main_soon(struct main_soon *s, void (*fn)(struct main_soon *s));
/*
 * Next turn: ask lws for a WRITEABLE event on *wsi, if it is still set by
 * then.  Deferred because the raw file role clears POLLOUT after its
 * WRITEABLE callback returns, so asking from inside that callback would be
 * lost (the database socket, the TLS relay's socketpair end).
 */
void main_soon_writable(struct main_soon *s, struct lws *const *wsi);
/* Unschedule s, before freeing what holds it. */
void main_soon_cancel(struct main_soon *s);

#endif
