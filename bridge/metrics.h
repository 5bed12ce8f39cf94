/*
 * metrics.h: the bridge's counters and gauges, rendered for GET /metrics in
 * the Prometheus text format.  Single-threaded: plain integers suffice.
 *
 * Counters are fields of one struct that every module bumps.  Gauges belong
 * to the module that knows them: it registers a reader (metrics_gauge) when
 * it starts, and /metrics calls the readers; this module names no other.
 */
#ifndef WSNOTIFY_METRICS_H
#define WSNOTIFY_METRICS_H

#include <stddef.h>
#include <stdint.h>

enum auth_failure {
	AUTH_MISSING_TOKEN,
	AUTH_INVALID_TOKEN,
	AUTH_REFUSED,
	AUTH_ORIGIN,
	AUTH_CAPACITY,
	AUTH_DB_UNAVAILABLE,
	AUTH_TIMEOUT,
	AUTH_BAD_REQUEST,
	AUTH_RATE_LIMITED,
	AUTH_NREASONS
};

struct metrics {
	uint64_t connections_accepted;
	uint64_t connections_closed;
	uint64_t messages_out;
	uint64_t bytes_out;
	uint64_t queue_drops;
	uint64_t auth_failures[AUTH_NREASONS];
	uint64_t db_reconnects;
	uint64_t db_errors;
	uint64_t notifications;
	uint64_t fetches;
	uint64_t rows_fetched;
	uint64_t rows_inline;
	uint64_t inline_rejected;
	uint64_t inline_held;
	uint64_t pings_timed_out;
	uint64_t client_frames_in;
	uint64_t handler_calls;
	uint64_t error_frames;
	uint64_t signals_out;
	uint64_t signals_dropped;
	double lag_sum;
	uint64_t lag_count;
	double lag_max;
	double notify_queue_usage; /* pg_notification_queue_usage() at the last heartbeat */
};

extern struct metrics metrics;

/* The gauges, in the order /metrics shows them. */
enum metrics_gauge {
	GAUGE_CONNECTIONS,
	GAUGE_UPGRADES_PENDING,
	GAUGE_SEND_QUEUE_BYTES,
	GAUGE_DB_UP,
	GAUGE_DB_QUEUE,
	GAUGE_DB_IN_FLIGHT,
	GAUGE_N
};

/* Register the function that reads gauge g (an unregistered gauge shows 0). */
void metrics_gauge(enum metrics_gauge g, double (*read)(void));

/* Name of an auth failure reason as used in labels and logs. */
const char *metrics_auth_reason(enum auth_failure r);
/* Record one delivery lag sample in seconds. */
void metrics_lag(double seconds);
/* Render every metric into a malloc'd string; *len gets its length. */
char *metrics_render(size_t *len);

#endif
