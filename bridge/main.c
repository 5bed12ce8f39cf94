/*
 * main.c: wsnotify-bridge, real-time push from PostgreSQL to WebSocket
 * clients.  Sets up the one libwebsockets service loop, adopts the foreign
 * descriptors (database, listener, pending upgrades, signals), runs the
 * timers and handles SIGTERM/SIGINT (drain) and SIGHUP (reload) through a
 * signalfd, so no work happens inside a signal handler.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <ev.h>

#include "config.h"
#include "db.h"
#include "deliver.h"
#include "gate.h"
#include "log.h"
#include "main.h"
#include "raw.h"
#include "registry.h"
#include "route.h"
#include "tls.h"
#include "ws.h"

struct lws_context *main_context;
struct lws_vhost *main_vhost;
static struct ev_loop *main_loop;

/* The libev plugin lws loads for LWS_SERVER_OPTION_LIBEV (libwebsockets-evlib-ev). */
#define MAIN_EVLIB_PLUGIN LWS_INSTALL_LIBDIR "/libwebsockets-evlib_ev.so"

static bool draining, done;
static uint64_t drain_started;
static int signal_fd = -1;
static struct raw_tag signal_tag = {RAW_MAGIC, RAW_SIGNAL, NULL};
static lws_sorted_usec_list_t sweep_sul;

static void main_sweep_cb(lws_sorted_usec_list_t *sul);

/* True once SIGTERM/SIGINT started the drain. */
bool
main_draining(void)
{
	return draining;
}

/* Adopt fd into the loop with the given tag; NULL on failure. */
struct lws *
raw_adopt(int fd, struct raw_tag *tag)
{
	lws_sock_file_fd_type u;
	struct lws *wsi;

	u.filefd = fd;
	wsi = lws_adopt_descriptor_vhost(main_vhost, LWS_ADOPT_RAW_FILE_DESC, u,
					 "wsnotify-raw", NULL);
	if (wsi)
		lws_set_opaque_user_data(wsi, tag);
	return wsi;
}

/* Detach the tag and close the wsi at the next service (and its fd). */
void
raw_drop(struct lws *wsi)
{
	lws_set_opaque_user_data(wsi, NULL);
	lws_rx_flow_control(wsi, 0);
	lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

/* Begin the drain: stop accepting, refuse pending upgrades, close with 1001. */
static void
main_begin_drain(void)
{
	if (draining) {
		log_warn("second signal: exiting without waiting for the drain");
		done = true;
		return;
	}
	draining = true;
	drain_started = now_ms();
	log_info("draining: closing %u connections with 1001", registry_count());
	gate_close_listener();
	gate_refuse_all();
	ws_close_all();
	lws_sul_schedule(main_context, 0, &sweep_sul, main_sweep_cb, 50000);
}

/* Read the signalfd and act on what arrived. */
static int
main_on_signal(void)
{
	struct signalfd_siginfo si;

	while (read(signal_fd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGHUP) {
			log_info("SIGHUP: reloading the configuration");
			config_reload();
			tls_reload();
		} else {
			log_info("%s: shutting down", strsignal((int) si.ssi_signo));
			main_begin_drain();
		}
	}
	return 0;
}

/* Dispatch an event of a raw descriptor to its owner by tag. */
int
raw_dispatch(struct lws *wsi, int reason)
{
	struct raw_tag *t = lws_get_opaque_user_data(wsi);

	if (!t || t->magic != RAW_MAGIC || (reason != LWS_CALLBACK_RAW_RX_FILE &&
		   reason != LWS_CALLBACK_RAW_WRITEABLE_FILE &&
		   reason != LWS_CALLBACK_RAW_CLOSE_FILE))
		return 0;
	switch (t->kind) {
	case RAW_DB:
		return db_on_event(wsi, reason, t->obj);
	case RAW_LISTEN:
		return gate_on_listen_event(wsi, reason);
	case RAW_GATE:
		return gate_on_event(wsi, reason, t->obj);
	case RAW_TLS_PAIR:
		return tls_on_pair_event(wsi, reason, t->obj);
	case RAW_SIGNAL:
		return reason == LWS_CALLBACK_RAW_RX_FILE ? main_on_signal() : 0;
	}
	return 0;
}

/* The callback of the "wsnotify-raw" protocol. */
static int
raw_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
	     void *in, size_t len)
{
	(void) user;
	(void) in;
	(void) len;
	return raw_dispatch(wsi, (int) reason);
}

static struct lws_protocols protocols[] = {
	{"wsnotify", ws_callback, 0, WS_RX_BUFFER, 0, NULL, WS_TX_CHUNK + 64},
	{"wsnotify.v1", ws_callback, 0, WS_RX_BUFFER, 1, NULL, WS_TX_CHUNK + 64},
	{"wsnotify-raw", raw_callback, 0, 0, 2, NULL, 0},
	{NULL, NULL, 0, 0, 0, NULL, 0}
};

static void
main_soon_cb(struct ev_loop *loop, ev_timer *timer, int revents)
{
	struct main_soon *s = (struct main_soon *) timer;

	(void) loop;
	(void) revents;
	if (*s->wsi)
		lws_callback_on_writable(*s->wsi);
}

void
main_soon_writable(struct main_soon *s, struct lws *const *wsi)
{
	if (ev_is_active(&s->timer))
		return;
	s->wsi = wsi;
	ev_timer_init(&s->timer, main_soon_cb, 0., 0.);
	ev_timer_start(main_loop, &s->timer);
}

void
main_soon_cancel(struct main_soon *s)
{
	if (main_loop && ev_is_active(&s->timer))
		ev_timer_stop(main_loop, &s->timer);
}

/* Timer: sweeps, and the end of the drain. */
static void
main_sweep_cb(lws_sorted_usec_list_t *sul)
{
	ws_sweep();
	gate_sweep();
	db_check_stuck();
	if (draining) {
		if (registry_count() == 0 && db_queue_length() == 0) {
			log_info("drained: every connection closed and its row removed");
			done = true;
		} else if (now_ms() - drain_started > (uint64_t) cf_drain_timeout) {
			log_warn("drain_timeout passed with %u connections and %d queries left; exiting",
				 registry_count(), db_queue_length());
			done = true;
		}
	}
	if (done)
		lws_cancel_service(main_context);
	lws_sul_schedule(main_context, 0, sul, main_sweep_cb, draining ? 50000 : 1000000);
}

/* Block the signals we handle and read them from a signalfd in the loop. */
static bool
main_signals(void)
{
	sigset_t set;
	lws_sock_file_fd_type u;
	struct lws *wsi;

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0 ||
	    (signal_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)) < 0) {
		log_error("signalfd: %s", strerror(errno));
		return false;
	}
	u.filefd = signal_fd;
	wsi = lws_adopt_descriptor_vhost(main_vhost, LWS_ADOPT_RAW_FILE_DESC, u,
					 "wsnotify-raw", NULL);
	if (!wsi)
		return false;
	lws_set_opaque_user_data(wsi, &signal_tag);
	return true;
}

/*
 * No validity timer for our wsis.  libwebsockets' default policy arms one
 * per connection (a ping after 300 s) and re-arms it on every upgrade and
 * pong; lws 4.1 keeps timers in one sorted list and inserts by walking it,
 * so with N open connections each arm costs O(N): at 10,000 connections that
 * was 38% of the bridge's CPU in a connect storm.  The bridge pings on its
 * own schedule (ping_interval, ping_timeout: ws_sweep), so the lws one only
 * duplicated it.  A zero secs_since_valid_hangup turns it off.
 */
const lws_retry_bo_t main_retry_policy = {.secs_since_valid_ping = 0,
						 .secs_since_valid_hangup = 0};

/* Create the lws context and the vhost (without an lws listener). */
static bool
main_create_context(void)
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
	 */
	/*
	 * Without the plugin lws only says "unable to load evlib plugin"; say
	 * which package brings it.  No fallback to lws' poll() loop: it works,
	 * but its cost per event grows with the sockets held, which is the
	 * load this bridge is sized for.
	 */
	if (access(MAIN_EVLIB_PLUGIN, R_OK) != 0) {
		log_error("event loop plugin %s: %s (install the package libwebsockets-evlib-ev)",
			  MAIN_EVLIB_PLUGIN, strerror(errno));
		return false;
	}
	main_loop = ev_loop_new(EVBACKEND_EPOLL);
	if (!main_loop) {
		log_error("cannot create the event loop (libev, epoll)");
		return false;
	}
	foreign_loops[0] = main_loop;
	memset(&info, 0, sizeof(info));
	info.foreign_loops = foreign_loops;
	/*
	 * Invalid UTF-8 in a client text frame closes it with 1007; lws 4.1
	 * reads this option from the context, not only from the vhost.
	 */
	info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_VALIDATE_UTF8 |
		LWS_SERVER_OPTION_LIBEV |
		(cf_tls_cert_file[0] ? LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT : 0);
	info.max_http_header_data = (unsigned short)
		(cf_max_header_size + 1024 > 65535 ? 65535 : cf_max_header_size + 1024);
	main_context = lws_create_context(&info);
	if (!main_context) {
		log_error("cannot create the lws context (is lws's libev plugin, Debian's libwebsockets-evlib-ev, installed?)");
		return false;
	}
	memset(&info, 0, sizeof(info));
	info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
	info.vhost_name = "wsnotify";
	info.protocols = protocols;
	info.retry_and_idle_policy = &main_retry_policy;
	info.options = LWS_SERVER_OPTION_VALIDATE_UTF8;
	main_vhost = lws_create_vhost(main_context, &info);
	return main_vhost != NULL;
}

/* Default bridge id: HOSTNAME:PORT. */
static void
main_default_bridge_id(void)
{
	char host[256], id[300];

	if (cf_bridge_id[0])
		return;
	if (gethostname(host, sizeof(host)) != 0)
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	snprintf(id, sizeof(id), "%s:%d", host, gate_port());
	free(cf_bridge_id);
	cf_bridge_id = strdup(id);
}

int
main(int argc, char **argv)
{
	if (!config_load(argc, argv))
		return 2;
	log_hook_lws();
	if (!main_create_context() || !main_signals() ||
	    !(cf_tls_cert_file[0] ? tls_listen(main_context) : gate_listen()))
		return 1;
	main_default_bridge_id();
	log_info("wsnotify-bridge starting: bridge id %s", cf_bridge_id);
	db_start();
	route_init();
	deliver_start_timers();
	lws_sul_schedule(main_context, 0, &sweep_sul, main_sweep_cb, 1000000);
	while (!done)
		ev_run(main_loop, EVRUN_ONCE);
	db_stop();
	lws_context_destroy(main_context);
	ev_loop_destroy(main_loop);
	log_info("wsnotify-bridge stopped");
	config_free();
	return 0;
}
