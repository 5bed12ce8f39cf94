/*
 * log.c: leveled, scrubbed, one-line-per-event logging to stderr.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

#include <libwebsockets.h>

#include "log.h"

static enum log_level log_current = LOG_INFO;
static const char *const log_names[] = {"error", "warn", "info", "debug"};

void
log_set_level(enum log_level level)
{
	log_current = level;
}

/* Parse a level name; -1 when unknown. */
int
log_level_parse(const char *name)
{
	for (int i = 0; i <= LOG_DEBUG; i++)
		if (strcasecmp(name, log_names[i]) == 0)
			return i;
	if (strcasecmp(name, "warning") == 0)
		return LOG_WARN;
	return -1;
}

/* Does src at position p start a secret that must be masked? Returns its prefix length. */
static size_t
log_secret_prefix(const char *p)
{
	if (strncasecmp(p, "token=", 6) == 0)
		return 6;
	if (strncasecmp(p, "bearer ", 7) == 0)
		return 7;
	return 0;
}

/* Copy src into dst with token values masked and control characters escaped. */
void
log_scrub(char *dst, size_t n, const char *src)
{
	size_t o = 0;

	if (n == 0)
		return;
	while (*src && o + 4 < n) {
		size_t pre = log_secret_prefix(src);

		if (pre) {
			memcpy(dst + o, src, pre);
			o += pre;
			src += pre;
			while (*src && *src != '&' && *src != ' ' && *src != '"' && *src != '\'' &&
			       *src != '\r' && *src != '\n')
				src++;
			if (o + 4 < n) {
				memcpy(dst + o, "***", 3);
				o += 3;
			}
			continue;
		}
		dst[o++] = (*src == '\t' || *src == '\n') ? ' ' :
			   iscntrl((unsigned char) *src)  ? '?' :
							    *src;
		src++;
	}
	dst[o] = '\0';
}

/* Write one line at the given level. */
void
log_msg(enum log_level level, const char *fmt, ...)
{
	char raw[2048], clean[2048], stamp[32];
	struct timeval tv;
	struct tm tm;
	va_list ap;

	if (level > log_current)
		return;
	va_start(ap, fmt);
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	log_scrub(clean, sizeof(clean), raw);
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(stderr, "%s.%03dZ %s: %s\n", stamp, (int) (tv.tv_usec / 1000), log_names[level],
		clean);
}

/* libwebsockets log sink: strip the trailing newline, keep the level. */
static void
log_lws_emit(int level, const char *line)
{
	char buf[1024];
	size_t len;

	snprintf(buf, sizeof(buf), "%s", line);
	len = strlen(buf);
	while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		buf[--len] = '\0';
	(void) level;
	log_msg(LOG_DEBUG, "libwebsockets: %s", buf);
}

void
log_hook_lws(void)
{
	/* WSNOTIFY_LWS_LOG=1: libwebsockets' own notices too, at debug level */
	lws_set_log_level(getenv("WSNOTIFY_LWS_LOG") ? LLL_ERR | LLL_WARN | LLL_NOTICE | LLL_INFO :
						       LLL_ERR,
			  log_lws_emit);
}
