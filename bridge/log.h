/*
 * log.h: leveled logging to stderr, one line per event.
 *
 * Every line carries a timestamp and a level.  Lines are scrubbed so that a
 * token never reaches the log: "token=..." query values and "Bearer ..."
 * credentials are replaced by "***" whatever the caller passed in.
 */
#ifndef WSNOTIFY_LOG_H
#define WSNOTIFY_LOG_H

#include <stddef.h>

enum log_level { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };

/* Set the level below which lines are dropped. */
void log_set_level(enum log_level level);
/* Parse "error|warn|info|debug"; -1 when unknown. */
int log_level_parse(const char *name);
/* Write one line at the given level (printf-style). */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Copy src into dst (size n) with every token value masked. */
void log_scrub(char *dst, size_t n, const char *src);
/*
 * Send libwebsockets' own errors to log_msg, at debug level (they repeat what
 * the bridge logs itself); WSNOTIFY_LWS_LOG=1 adds its warnings, notices and info.
 */
void log_hook_lws(void);

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
