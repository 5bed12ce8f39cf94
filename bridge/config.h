/*
 * config.h: the bridge's settings.
 *
 * One table (config.c) lists every key: name, type, variable, whether SIGHUP
 * reloads it, default.  Each key is also a command-line flag of the same name
 * with dashes for underscores; flags override the file.  Durations are kept
 * in milliseconds, sizes in bytes.
 */
#ifndef WSNOTIFY_CONFIG_H
#define WSNOTIFY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

extern char *cf_dsn;
extern char *cf_listen;
extern char *cf_bridge_id;
extern char *cf_static;
extern char *cf_tls_cert_file;
extern char *cf_tls_key_file;
extern char *cf_log_level;
extern bool cf_verbose;
extern char *cf_allowed_origins;
extern long long cf_max_connections;
extern long long cf_max_message_size;
extern long long cf_send_queue_max;
extern long long cf_max_header_size;
extern long long cf_ping_interval;
extern long long cf_ping_timeout;
extern long long cf_idle_timeout;
extern long long cf_heartbeat_interval;
extern long long cf_reap_after;
extern long long cf_auth_timeout;
extern long long cf_poll_interval;
extern long long cf_fetch_batch;
extern long long cf_reconnect_min;
extern long long cf_reconnect_max;
extern long long cf_drain_timeout;
extern long long cf_token_leeway;
extern long long cf_handler_pool_size;
extern long long cf_handler_timeout;
extern long long cf_client_rate_limit;
extern long long cf_max_pending_requests;
extern long long cf_signal_rate_limit;
extern long long cf_signal_max_size;
extern long long cf_max_connections_per_user;
extern long long cf_connect_rate_limit;
extern long long cf_auth_failure_rate_limit;
extern long long cf_handshake_timeout;
extern long long cf_linger_timeout;
extern bool cf_close_on_token_expiry;
extern long long cf_db_pipeline_depth;
extern long long cf_db_tcp_timeout;
extern bool cf_connect_synchronous_commit;

/* Parse argv and the -c file; on error print why and return false. */
bool config_load(int argc, char **argv);
/* Re-read the file (SIGHUP); on error log why and keep the old settings. */
bool config_reload(void);
/* Apply derived settings (log level). */
void config_apply(void);
/* Release everything config_load allocated. */
void config_free(void);

#endif
