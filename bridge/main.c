/*
 * main.c: wsnotify-bridge, real-time push from PostgreSQL to WebSocket
 * clients.  The top layer: it starts every module in order (docs/bridge.md,
 * Layers), runs the loop and the sweep timer, and handles SIGTERM/SIGINT
 * (drain) and SIGHUP (reload) through a signalfd, so no work happens inside
 * a signal handler.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "config.h"
#include "db.h"
#include "deliver.h"
#include "gate.h"
#include "http.h"
#include "log.h"
#include "loop.h"
#include "registry.h"
#include "route.h"
#include "tls.h"
#include "util.h"
#include "ws.h"

static bool draining, done;
static uint64_t drain_started;
static int signal_fd = -1;
static lws_sorted_usec_list_t sweep_sul;

static void main_sweep_cb(lws_sorted_usec_list_t *sul);
static int main_on_signal(struct lws *wsi, int reason, void *obj);

static struct raw_tag signal_tag = {RAW_MAGIC, main_on_signal, NULL};

static struct lws_protocols protocols[] = {
	{"wsnotify", ws_callback, 0, WS_RX_BUFFER, 0, NULL, WS_TX_CHUNK + 64},
	{"wsnotify.v1", ws_callback, 0, WS_RX_BUFFER, 1, NULL, WS_TX_CHUNK + 64},
	LOOP_RAW_PROTOCOL(2),
	{NULL, NULL, 0, 0, 0, NULL, 0}};

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
	gate_drain();
	ws_close_all();
	lws_sul_schedule(loop_context, 0, &sweep_sul, main_sweep_cb, 50000);
}

/* The signalfd is readable: act on what arrived. */
static int
main_on_signal(struct lws *wsi, int reason, void *obj)
{
	struct signalfd_siginfo si;

	(void) wsi;
	(void) obj;
	if (reason != LWS_CALLBACK_RAW_RX_FILE)
		return 0;
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
			log_warn(
				"drain_timeout passed with %u connections and %d queries left; exiting",
				registry_count(), db_queue_length());
			done = true;
		}
	}
	if (done)
		lws_cancel_service(loop_context);
	lws_sul_schedule(loop_context, 0, sul, main_sweep_cb, draining ? 50000 : 1000000);
}

/* Block the signals we handle and read them from a signalfd in the loop. */
static bool
main_signals(void)
{
	sigset_t set;

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
	return raw_adopt(signal_fd, &signal_tag) != NULL;
}

/* The loop, with the protocols of every layer above it. */
static bool
main_create_loop(void)
{
	struct loop_options o = {
		.protocols = protocols,
		.tls = cf_tls_cert_file[0] != '\0',
		.max_http_header_data = (unsigned short) (cf_max_header_size + 1024 > 65535 ?
								  65535 :
								  cf_max_header_size + 1024),
	};
	char err[512];

	if (!loop_create(&o, err, sizeof(err))) {
		log_error("%s", err);
		return false;
	}
	return true;
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
	cf_bridge_id = util_strdup(id);
}

int
main(int argc, char **argv)
{
	if (!config_load(argc, argv))
		return 2;
	log_hook_lws();
	ws_init();
	gate_init(http_respond);
	if (!main_create_loop() || !main_signals() ||
	    !(cf_tls_cert_file[0] ? tls_listen(loop_context) : gate_listen()))
		return 1;
	main_default_bridge_id();
	log_info("wsnotify-bridge starting: bridge id %s", cf_bridge_id);
	deliver_start();
	route_init();
	lws_sul_schedule(loop_context, 0, &sweep_sul, main_sweep_cb, 1000000);
	while (!done)
		loop_run_once();
	db_stop();
	loop_destroy();
	log_info("wsnotify-bridge stopped");
	config_free();
	return 0;
}
