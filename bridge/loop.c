/*
 * loop.c: libev under libwebsockets, and raw descriptors dispatched by the
 * handler in their tag (loop.h).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "loop.h"

/* The libev plugin lws loads for LWS_SERVER_OPTION_LIBEV (libwebsockets-evlib-ev). */
#define LOOP_EVLIB_PLUGIN LWS_INSTALL_LIBDIR "/libwebsockets-evlib_ev.so"

struct lws_context *loop_context;
struct lws_vhost *loop_vhost;
static struct ev_loop *loop_ev;

/*
 * No validity timer for our wsis.  libwebsockets' default policy arms one
 * per connection (a ping after 300 s) and re-arms it on every upgrade and
 * pong; lws 4.1 keeps timers in one sorted list and inserts by walking it,
 * so with N open connections each arm costs O(N): at 10,000 connections that
 * was 38% of the bridge's CPU in a connect storm.  The bridge pings on its
 * own schedule (ping_interval, ping_timeout: ws_sweep), so the lws one only
 * duplicated it.  A zero secs_since_valid_hangup turns it off.
 */
const lws_retry_bo_t loop_retry_policy = {.secs_since_valid_ping = 0, .secs_since_valid_hangup = 0};

struct lws *
raw_adopt(int fd, struct raw_tag *tag)
{
	lws_sock_file_fd_type u;
	struct lws *wsi;

	u.filefd = fd;
	wsi = lws_adopt_descriptor_vhost(loop_vhost, LWS_ADOPT_RAW_FILE_DESC, u, "wsnotify-raw",
					 NULL);
	if (wsi)
		lws_set_opaque_user_data(wsi, tag);
	return wsi;
}

void
raw_drop(struct lws *wsi)
{
	lws_set_opaque_user_data(wsi, NULL);
	lws_rx_flow_control(wsi, 0);
	lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

int
raw_dispatch(struct lws *wsi, int reason)
{
	struct raw_tag *t = lws_get_opaque_user_data(wsi);

	if (!t || t->magic != RAW_MAGIC ||
	    (reason != LWS_CALLBACK_RAW_RX_FILE && reason != LWS_CALLBACK_RAW_WRITEABLE_FILE &&
	     reason != LWS_CALLBACK_RAW_CLOSE_FILE))
		return 0;
	return t->on_event(wsi, reason, t->obj);
}

int
loop_raw_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		  size_t len)
{
	(void) user;
	(void) in;
	(void) len;
	return raw_dispatch(wsi, (int) reason);
}

/* The libev timer of a loop_soon: ask for WRITEABLE now. */
static void
loop_soon_cb(struct ev_loop *loop, ev_timer *timer, int revents)
{
	struct loop_soon *s = (struct loop_soon *) timer;

	(void) loop;
	(void) revents;
	if (*s->wsi)
		lws_callback_on_writable(*s->wsi);
}

void
loop_soon_writable(struct loop_soon *s, struct lws *const *wsi)
{
	if (ev_is_active(&s->timer))
		return;
	s->wsi = wsi;
	ev_timer_init(&s->timer, loop_soon_cb, 0., 0.);
	ev_timer_start(loop_ev, &s->timer);
}

void
loop_soon_cancel(struct loop_soon *s)
{
	if (loop_ev && ev_is_active(&s->timer))
		ev_timer_stop(loop_ev, &s->timer);
}

bool
loop_create(const struct loop_options *o, char *err, size_t n)
{
	static void *foreign_loops[1];
	struct lws_context_creation_info info;

	/*
	 * lws 4.1's own loop is poll(2) over every descriptor: each wakeup
	 * (a NOTIFY, each part of a fetch result, a timer) cost time in
	 * proportion to the connections held, more than the writes themselves
	 * at 1,000 and up.  libev's epoll backend costs per ready descriptor.
	 * The loop is ours (foreign), so main() still runs one iteration at a
	 * time and signals stay with the signalfd.
	 *
	 * Without the plugin lws only says "unable to load evlib plugin"; say
	 * which package brings it.  No fallback to lws' poll() loop: it works,
	 * but its cost per event grows with the sockets held, which is the
	 * load this bridge is sized for.
	 */
	if (access(LOOP_EVLIB_PLUGIN, R_OK) != 0) {
		snprintf(err, n,
			 "event loop plugin %s: %s (install the package libwebsockets-evlib-ev)",
			 LOOP_EVLIB_PLUGIN, strerror(errno));
		return false;
	}
	loop_ev = ev_loop_new(EVBACKEND_EPOLL);
	if (!loop_ev) {
		snprintf(err, n, "cannot create the event loop (libev, epoll)");
		return false;
	}
	foreign_loops[0] = loop_ev;
	memset(&info, 0, sizeof(info));
	info.foreign_loops = foreign_loops;
	/*
	 * Invalid UTF-8 in a client text frame closes it with 1007; lws 4.1
	 * reads this option from the context, not only from the vhost.
	 */
	info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_VALIDATE_UTF8 |
		       LWS_SERVER_OPTION_LIBEV |
		       (o->tls ? LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT : 0);
	info.max_http_header_data = o->max_http_header_data;
	loop_context = lws_create_context(&info);
	if (!loop_context) {
		snprintf(
			err, n,
			"cannot create the lws context (is lws's libev plugin, Debian's libwebsockets-evlib-ev, installed?)");
		return false;
	}
	memset(&info, 0, sizeof(info));
	info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
	info.vhost_name = "wsnotify";
	info.protocols = o->protocols;
	info.retry_and_idle_policy = &loop_retry_policy;
	info.options = LWS_SERVER_OPTION_VALIDATE_UTF8;
	loop_vhost = lws_create_vhost(loop_context, &info);
	if (!loop_vhost) {
		snprintf(err, n, "cannot create the lws vhost");
		return false;
	}
	return true;
}

void
loop_run_once(void)
{
	ev_run(loop_ev, EVRUN_ONCE);
}

void
loop_destroy(void)
{
	lws_context_destroy(loop_context);
	ev_loop_destroy(loop_ev);
	loop_ev = NULL;
}
