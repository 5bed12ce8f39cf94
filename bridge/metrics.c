/*
 * metrics.c: Prometheus text rendering of the bridge's counters.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "util.h"

struct metrics metrics;

static const char *const auth_reasons[AUTH_NREASONS] = {
	"missing_token",  "invalid_token", "refused",	  "origin",	 "capacity",
	"db_unavailable", "timeout",	   "bad_request", "rate_limited"};

/* Name and help of each gauge, and its registered reader. */
static const struct {
	const char *name, *help;
} gauges[GAUGE_N] = {
	[GAUGE_CONNECTIONS] = {"connections", "Open WebSocket connections."},
	[GAUGE_UPGRADES_PENDING] = {"upgrades_pending", "Upgrades waiting for the database."},
	[GAUGE_SEND_QUEUE_BYTES] = {"send_queue_bytes",
				    "Bytes queued for clients, not yet written."},
	[GAUGE_DB_UP] = {"db_up", "1 when the database connection is ready."},
	[GAUGE_DB_QUEUE] = {"db_queue", "Queries queued or in flight on the database connection."},
	[GAUGE_DB_IN_FLIGHT] =
		{"db_in_flight",
		 "Queries sent on the delivery session and not yet answered (db_pipeline_depth bounds it)."},
};
static double (*gauge_read[GAUGE_N])(void);

void
metrics_gauge(enum metrics_gauge g, double (*read)(void))
{
	gauge_read[g] = read;
}

const char *
metrics_auth_reason(enum auth_failure r)
{
	return auth_reasons[r];
}

void
metrics_lag(double seconds)
{
	metrics.lag_sum += seconds;
	metrics.lag_count++;
	if (seconds > metrics.lag_max)
		metrics.lag_max = seconds;
}

/* The text being rendered. */
struct metrics_out {
	char *buf;
	size_t len, cap;
};

/* Append one metric family (HELP, TYPE, value) to the output. */
static void
metrics_put(struct metrics_out *o, const char *name, const char *type, const char *help,
	    const char *labels, double value)
{
	char line[512];
	int n;

	if (help)
		n = snprintf(line, sizeof(line), "# HELP %s %s\n# TYPE %s %s\n%s%s %.17g\n", name,
			     help, name, type, name, labels, value);
	else
		n = snprintf(line, sizeof(line), "%s%s %.17g\n", name, labels, value);
	if (o->len + (size_t) n + 1 > o->cap) {
		o->cap = (o->cap + (size_t) n + 1) * 2;
		o->buf = util_realloc(o->buf, o->cap);
	}
	memcpy(o->buf + o->len, line, (size_t) n + 1);
	o->len += (size_t) n;
}

char *
metrics_render(size_t *len)
{
	struct metrics_out o = {util_alloc(4096), 0, 4096};

	o.buf[0] = '\0';
#define G(n, h, v) metrics_put(&o, "wsnotify_" n, "gauge", h, "", (double) (v))
#define C(n, h, v) metrics_put(&o, "wsnotify_" n, "counter", h, "", (double) (v))
	for (int g = 0; g < GAUGE_N; g++) {
		char name[64];

		snprintf(name, sizeof(name), "wsnotify_%s", gauges[g].name);
		metrics_put(&o, name, "gauge", gauges[g].help, "",
			    gauge_read[g] ? gauge_read[g]() : 0.0);
	}
	C("connections_accepted_total", "Connections upgraded to WebSocket.",
	  metrics.connections_accepted);
	C("connections_closed_total", "WebSocket connections closed.", metrics.connections_closed);
	C("messages_out_total", "Messages written to clients.", metrics.messages_out);
	C("bytes_out_total", "Message payload bytes written to clients.", metrics.bytes_out);
	C("queue_drops_total", "Clients closed with 1008 for passing send_queue_max.",
	  metrics.queue_drops);
	for (int r = 0; r < AUTH_NREASONS; r++) {
		char lab[64];

		snprintf(lab, sizeof(lab), "{reason=\"%s\"}", auth_reasons[r]);
		metrics_put(&o, "wsnotify_auth_failures_total", "counter",
			    r == 0 ? "Refused upgrades by reason." : NULL, lab,
			    (double) metrics.auth_failures[r]);
	}
	C("db_reconnects_total", "Database reconnections after a loss.", metrics.db_reconnects);
	C("db_errors_total", "Database errors (failed queries and lost connections).",
	  metrics.db_errors);
	C("notifications_total", "NOTIFY wsnotify received.", metrics.notifications);
	C("fetches_total", "wsnotify_fetch calls.", metrics.fetches);
	C("rows_fetched_total", "Outbox rows fetched for this bridge.", metrics.rows_fetched);
	C("rows_inline_total", "Messages delivered from a NOTIFY payload, without a fetch.",
	  metrics.rows_inline);
	C("inline_held_total",
	  "Messages whose NOTIFY payload arrived during a fetch: held, then delivered or found fetched.",
	  metrics.inline_held);
	C("inline_rejected_total",
	  "NOTIFY payloads that did not open with the inline key or did not parse (then fetched).",
	  metrics.inline_rejected);
	C("ping_timeouts_total", "Clients closed for not answering a ping.",
	  metrics.pings_timed_out);
	C("client_frames_in_total", "Messages received from clients.", metrics.client_frames_in);
	C("handler_calls_total", "Route handler calls (wsnotify_invoke).", metrics.handler_calls);
	C("error_frames_total", "Error frames sent to clients.", metrics.error_frames);
	C("signals_out_total", "Signal frames queued for clients.", metrics.signals_out);
	C("signals_dropped_total",
	  "Signals dropped: too many waiting for their recipients, or the database unreachable.",
	  metrics.signals_dropped);
	C("delivery_lag_seconds_sum", "Time from NOTIFY to messages queued, summed.",
	  metrics.lag_sum);
	C("delivery_lag_seconds_count", "Delivery lag samples.", metrics.lag_count);
	G("delivery_lag_seconds_max", "Largest delivery lag seen.", metrics.lag_max);
	G("notify_queue_usage", "pg_notification_queue_usage() at the last heartbeat (0 to 1).",
	  metrics.notify_queue_usage);
#undef G
#undef C
	*len = o.len;
	return o.buf;
}
