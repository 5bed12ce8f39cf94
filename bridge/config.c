/*
 * config.c: one table of settings, an INI file (libinih) and flags.
 *
 * Precedence: flag > file > default.  At start a bad file or flag is fatal
 * with the line and the reason.  On SIGHUP the whole file is parsed into a
 * scratch copy first; only when every value is valid are the reloadable keys
 * switched over, and a changed non-reloadable key is reported and ignored.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <ini.h>

#include "config.h"
#include "log.h"

/* bridge/Makefile defines it from EXTVERSION; other builds (fuzz/) may not. */
#ifndef WSNOTIFY_VERSION
#define WSNOTIFY_VERSION "unknown"
#endif

char *cf_dsn, *cf_listen, *cf_bridge_id, *cf_static, *cf_tls_cert_file, *cf_tls_key_file,
	*cf_log_level, *cf_allowed_origins;
bool cf_verbose;
long long cf_max_connections, cf_max_message_size, cf_send_queue_max, cf_max_header_size,
	cf_ping_interval, cf_ping_timeout, cf_idle_timeout, cf_heartbeat_interval, cf_reap_after,
	cf_auth_timeout, cf_poll_interval, cf_fetch_batch, cf_reconnect_min, cf_reconnect_max,
	cf_drain_timeout, cf_token_leeway, cf_handler_pool_size, cf_handler_timeout,
	cf_client_rate_limit, cf_max_pending_requests, cf_max_connections_per_user,
	cf_connect_rate_limit, cf_auth_failure_rate_limit, cf_handshake_timeout,
	cf_db_pipeline_depth, cf_linger_timeout, cf_db_tcp_timeout, cf_signal_rate_limit,
	cf_signal_max_size;
bool cf_close_on_token_expiry, cf_connect_synchronous_commit;

enum cf_type { CF_STR, CF_BOOL, CF_INT, CF_SIZE, CF_DURATION };

struct cf_key {
	const char *name;
	enum cf_type type;
	void *var;
	bool reloadable;
	const char *def;
	const char *min, *max; /* numeric keys: the range, in the key's units; else NULL */
};

/*
 * The table: every setting the bridge has, with its default and (numbers,
 * sizes, durations) its range, checked at load.  docs/config.md mirrors it
 * (test/check_config_docs), which reads it one key a line: not reflowed.
 */
/* clang-format off */
static const struct cf_key cf_keys[] = {
	{"dsn", CF_STR, &cf_dsn, false, "", NULL, NULL},
	{"listen", CF_STR, &cf_listen, false, "127.0.0.1:8080", NULL, NULL},
	{"bridge_id", CF_STR, &cf_bridge_id, false, "", NULL, NULL},
	{"static", CF_STR, &cf_static, false, "", NULL, NULL},
	{"tls_cert_file", CF_STR, &cf_tls_cert_file, false, "", NULL, NULL},
	{"tls_key_file", CF_STR, &cf_tls_key_file, false, "", NULL, NULL},
	{"log_level", CF_STR, &cf_log_level, true, "info", NULL, NULL},
	{"verbose", CF_BOOL, &cf_verbose, true, "false", NULL, NULL},
	{"allowed_origins", CF_STR, &cf_allowed_origins, true, "", NULL, NULL},
	{"max_connections", CF_INT, &cf_max_connections, true, "10000", "0", "10000000"},
	{"max_message_size", CF_SIZE, &cf_max_message_size, true, "1MiB", "1", "1GiB"},
	{"send_queue_max", CF_SIZE, &cf_send_queue_max, true, "8MiB", "0", "16GiB"},
	{"max_header_size", CF_SIZE, &cf_max_header_size, true, "8KiB", "1KiB", "64KiB"},
	{"ping_interval", CF_DURATION, &cf_ping_interval, true, "30s", "0", "24h"},
	{"ping_timeout", CF_DURATION, &cf_ping_timeout, true, "10s", "0", "24h"},
	{"idle_timeout", CF_DURATION, &cf_idle_timeout, true, "0", "0", "168h"},
	{"heartbeat_interval", CF_DURATION, &cf_heartbeat_interval, true, "10s", "1ms", "1h"},
	{"reap_after", CF_DURATION, &cf_reap_after, true, "60s", "0", "168h"},
	{"auth_timeout", CF_DURATION, &cf_auth_timeout, true, "10s", "0", "1h"},
	{"poll_interval", CF_DURATION, &cf_poll_interval, true, "5s", "0", "1h"},
	{"fetch_batch", CF_INT, &cf_fetch_batch, true, "1000", "1", "1000000"},
	{"reconnect_min", CF_DURATION, &cf_reconnect_min, true, "100ms", "1ms", "1h"},
	{"reconnect_max", CF_DURATION, &cf_reconnect_max, true, "5s", "0", "24h"},
	{"drain_timeout", CF_DURATION, &cf_drain_timeout, true, "10s", "0", "24h"},
	{"token_leeway", CF_DURATION, &cf_token_leeway, true, "30s", "0", "24h"},
	{"handler_pool_size", CF_INT, &cf_handler_pool_size, false, "4", "0", "64"},
	{"handler_timeout", CF_DURATION, &cf_handler_timeout, true, "5s", "0", "24h"},
	{"client_rate_limit", CF_INT, &cf_client_rate_limit, true, "50", "0", "1000000"},
	{"max_pending_requests", CF_INT, &cf_max_pending_requests, true, "16", "0", "1000000"},
	{"signal_rate_limit", CF_INT, &cf_signal_rate_limit, true, "20", "0", "1000000"},
	/* at most what the extension relays (SIGNAL_MAX_SIZE, extension/wsnotify.h) */
	{"signal_max_size", CF_SIZE, &cf_signal_max_size, true, "4KiB", "1", "4KiB"},
	{"max_connections_per_user", CF_INT, &cf_max_connections_per_user, true, "100", "0", "10000000"},
	{"connect_rate_limit", CF_INT, &cf_connect_rate_limit, true, "0", "0", "1000000"},
	{"auth_failure_rate_limit", CF_INT, &cf_auth_failure_rate_limit, true, "60", "0", "1000000"},
	{"handshake_timeout", CF_DURATION, &cf_handshake_timeout, true, "5s", "0", "1h"},
	{"linger_timeout", CF_DURATION, &cf_linger_timeout, true, "2s", "0", "1h"},
	{"close_on_token_expiry", CF_BOOL, &cf_close_on_token_expiry, true, "true", NULL, NULL},
	{"db_pipeline_depth", CF_INT, &cf_db_pipeline_depth, true, "64", "1", "100000"},
	{"db_tcp_timeout", CF_DURATION, &cf_db_tcp_timeout, true, "10s", "0", "1h"},
	{"connect_synchronous_commit", CF_BOOL, &cf_connect_synchronous_commit, true, "false", NULL, NULL},
};
/* clang-format on */
#define CF_NKEYS (sizeof(cf_keys) / sizeof(cf_keys[0]))

/* A parsed value of one key. */
union cf_value {
	char *s;
	bool b;
	long long i;
};

static char *cf_file;	       /* -c FILE, or NULL */
static char *cf_cli[CF_NKEYS]; /* values given as flags */

/* Scratch state for one pass over the file. */
struct cf_pass {
	char *file_val[CF_NKEYS];
	char err[512];
};

/* Index of a key by name (dashes and underscores alike); -1 when unknown. */
static int
cf_find(const char *name)
{
	char norm[64];
	size_t i;

	for (i = 0; i < sizeof(norm) - 1 && name[i]; i++)
		norm[i] = name[i] == '-' ? '_' : name[i];
	norm[i] = '\0';
	for (size_t k = 0; k < CF_NKEYS; k++)
		if (strcmp(cf_keys[k].name, norm) == 0)
			return (int) k;
	return -1;
}

/*
 * v * mult into *out; false when it does not fit a long long (or is NaN):
 * converting such a double is undefined behaviour (found by fuzz_config).
 */
static bool
cf_scale(double v, long long mult, long long *out)
{
	double r = v * (double) mult;

	if (!(r >= 0.0 && r < 9.2e18))
		return false;
	*out = (long long) r;
	return true;
}

/* Parse a number with an optional unit suffix from a table of units. */
static bool
cf_parse_scaled(const char *s, const char *const *units, const long long *mult, long long *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (end == s || errno || v < 0)
		return false;
	while (*end == ' ')
		end++;
	if (*end == '\0')
		return cf_scale(v, mult[0], out);
	for (int i = 0; units[i]; i++)
		if (strcasecmp(end, units[i]) == 0)
			return cf_scale(v, mult[i], out);
	return false;
}

/* Convert the text of one key into its value; false with err filled. */
static bool
cf_parse(const struct cf_key *k, const char *s, union cf_value *v, char *err, size_t errlen)
{
	static const char *const size_units[] = {"B",  "K",   "KB", "KiB", "M",
						 "MB", "MiB", "G",  "GiB", NULL};
	static const long long size_mult[] = {1,       1024,	1024,	    1024,      1048576,
					      1048576, 1048576, 1073741824, 1073741824};
	static const char *const dur_units[] = {"s", "ms", "s", "sec", "min", "h", NULL};
	static const long long dur_mult[] = {1000, 1, 1000, 1000, 60000, 3600000};
	char *end;

	switch (k->type) {
	case CF_STR:
		v->s = strdup(s);
		return true;
	case CF_BOOL:
		if (!strcasecmp(s, "true") || !strcasecmp(s, "on") || !strcasecmp(s, "yes") ||
		    !strcmp(s, "1"))
			v->b = true;
		else if (!strcasecmp(s, "false") || !strcasecmp(s, "off") || !strcasecmp(s, "no") ||
			 !strcmp(s, "0"))
			v->b = false;
		else
			goto bad;
		return true;
	case CF_INT:
		errno = 0;
		v->i = strtoll(s, &end, 10);
		if (end == s || *end || errno || v->i < 0)
			goto bad;
		return true;
	case CF_SIZE:
		/* size_units[0] is "B" but a bare number is bytes too */
		if (!cf_parse_scaled(s, size_units + 0, size_mult, &v->i))
			goto bad;
		return true;
	case CF_DURATION:
		if (!cf_parse_scaled(s, dur_units + 0, dur_mult, &v->i))
			goto bad;
		return true;
	}
bad:
	snprintf(err, errlen, "invalid value \"%s\" for %s", s, k->name);
	return false;
}

/* libinih callback: record one key=value of the file. */
static int
cf_ini_handler(void *user, const char *section, const char *name, const char *value)
{
	struct cf_pass *p = user;
	int k;

	if (section[0] && strcmp(section, "bridge") && strcmp(section, "wsnotify-bridge")) {
		if (!p->err[0])
			snprintf(p->err, sizeof(p->err), "unknown section [%s]", section);
		return 0;
	}
	k = cf_find(name);
	if (k < 0) {
		if (!p->err[0])
			snprintf(p->err, sizeof(p->err), "unknown key \"%s\"", name);
		return 0;
	}
	free(p->file_val[k]);
	p->file_val[k] = strdup(value);
	return 1;
}

/* Read the file into p; false with p->err when it is unreadable or bad. */
static bool
cf_read_file(struct cf_pass *p)
{
	int rc;

	if (!cf_file)
		return true;
	rc = ini_parse(cf_file, cf_ini_handler, p);
	if (rc == -1) {
		snprintf(p->err, sizeof(p->err), "cannot open %s: %s", cf_file, strerror(errno));
		return false;
	}
	if (rc != 0) {
		char tmp[600];

		/* libinih reports the first bad line; our handler says why */
		snprintf(tmp, sizeof(tmp), "%s:%d: %s", cf_file, rc,
			 p->err[0] ? p->err : "syntax error (expected key = value)");
		snprintf(p->err, sizeof(p->err), "%.*s", (int) sizeof(p->err) - 1, tmp);
		return false;
	}
	return true;
}

/* Free a pass's strings. */
static void
cf_pass_free(struct cf_pass *p)
{
	for (size_t k = 0; k < CF_NKEYS; k++)
		free(p->file_val[k]);
}

/* Cross-key checks; false with err filled. */
static bool
cf_validate(union cf_value *v, char *err, size_t errlen)
{
	const char *lvl = v[cf_find("log_level")].s;

	if (log_level_parse(lvl) < 0) {
		snprintf(err, errlen,
			 "invalid value \"%s\" for log_level (error, warn, info, debug)", lvl);
		return false;
	}
	if (!strchr(v[cf_find("listen")].s, ':')) {
		snprintf(err, errlen, "listen must be HOST:PORT");
		return false;
	}
	if (!*v[cf_find("tls_cert_file")].s != !*v[cf_find("tls_key_file")].s) {
		snprintf(err, errlen, "tls_cert_file and tls_key_file go together");
		return false;
	}
	return true;
}

/* Is the value v (given as s) of key k within its range?  False with err filled. */
static bool
cf_in_range(const struct cf_key *k, const char *s, const union cf_value *v, char *err,
	    size_t errlen)
{
	union cf_value lo, hi;

	if (!k->min)
		return true;
	/* the table's own bounds always parse (the unit tests of the table would say) */
	if (!cf_parse(k, k->min, &lo, err, errlen) || !cf_parse(k, k->max, &hi, err, errlen))
		return false;
	if (v->i >= lo.i && v->i <= hi.i)
		return true;
	snprintf(err, errlen, "value \"%s\" for %s is out of range (%s to %s)", s, k->name, k->min,
		 k->max);
	return false;
}

/* Compute every value (flag > file > default) into v; false with err. */
static bool
cf_compute(struct cf_pass *p, union cf_value *v, char *err, size_t errlen)
{
	for (size_t k = 0; k < CF_NKEYS; k++) {
		const char *s = cf_cli[k]      ? cf_cli[k] :
				p->file_val[k] ? p->file_val[k] :
						 cf_keys[k].def;

		if (!cf_parse(&cf_keys[k], s, &v[k], err, errlen) ||
		    !cf_in_range(&cf_keys[k], s, &v[k], err, errlen)) {
			for (size_t j = 0; j < k; j++)
				if (cf_keys[j].type == CF_STR)
					free(v[j].s);
			return false;
		}
	}
	if (!cf_validate(v, err, errlen)) {
		for (size_t j = 0; j < CF_NKEYS; j++)
			if (cf_keys[j].type == CF_STR)
				free(v[j].s);
		return false;
	}
	return true;
}

/* Do two values of a key differ? */
static bool
cf_differs(const struct cf_key *k, union cf_value *v)
{
	switch (k->type) {
	case CF_STR:
		return strcmp(*(char **) k->var, v->s) != 0;
	case CF_BOOL:
		return *(bool *) k->var != v->b;
	default:
		return *(long long *) k->var != v->i;
	}
}

/* Store v into the key's variable (first load, or reload of a reloadable key). */
static void
cf_store(const struct cf_key *k, union cf_value *v)
{
	switch (k->type) {
	case CF_STR:
		free(*(char **) k->var);
		*(char **) k->var = v->s;
		break;
	case CF_BOOL:
		*(bool *) k->var = v->b;
		break;
	default:
		*(long long *) k->var = v->i;
	}
}

/* Print usage to out. */
static void
cf_usage(FILE *out)
{
	fprintf(out,
		"usage: wsnotify-bridge [-c FILE] [--dsn CONNINFO] [--listen HOST:PORT]\n"
		"                       [--bridge-id ID] [--static DIR] [-v] [--KEY VALUE ...]\n"
		"       wsnotify-bridge --version | --help\n"
		"every config key is also a flag (dashes for underscores):\n");
	for (size_t k = 0; k < CF_NKEYS; k++) {
		char flag[64];

		snprintf(flag, sizeof(flag), "%s", cf_keys[k].name);
		for (char *c = flag; *c; c++)
			if (*c == '_')
				*c = '-';
		fprintf(out, "  --%-22s default \"%s\"%s\n", flag, cf_keys[k].def,
			cf_keys[k].reloadable ? " (reloadable)" : "");
	}
}

/* Parse the command line into cf_file and cf_cli; false on a bad flag. */
static bool
cf_parse_args(int argc, char **argv)
{
	struct option opts[CF_NKEYS + 5];
	char names[CF_NKEYS][64];
	int n = 0, c, idx;

	for (size_t k = 0; k < CF_NKEYS; k++) {
		snprintf(names[k], sizeof(names[k]), "%s", cf_keys[k].name);
		for (char *p = names[k]; *p; p++)
			if (*p == '_')
				*p = '-';
		opts[n++] = (struct option){names[k],
					    cf_keys[k].type == CF_BOOL ? optional_argument :
									 required_argument,
					    NULL, 1000 + (int) k};
	}
	opts[n++] = (struct option){"config", required_argument, NULL, 'c'};
	opts[n++] = (struct option){"help", no_argument, NULL, 'h'};
	opts[n++] = (struct option){"version", no_argument, NULL, 'V'};
	opts[n] = (struct option){NULL, 0, NULL, 0};
	optind = 1;
	while ((c = getopt_long(argc, argv, "c:vh", opts, &idx)) != -1) {
		if (c == 'c') {
			free(cf_file);
			cf_file = strdup(optarg);
		} else if (c == 'v') {
			free(cf_cli[cf_find("verbose")]);
			cf_cli[cf_find("verbose")] = strdup("true");
		} else if (c == 'h') {
			cf_usage(stdout);
			exit(0);
		} else if (c == 'V') {
			/* the Makefile's EXTVERSION, the extension's version too */
			printf("wsnotify-bridge %s\n", WSNOTIFY_VERSION);
			exit(0);
		} else if (c >= 1000) {
			free(cf_cli[c - 1000]);
			cf_cli[c - 1000] = strdup(optarg ? optarg : "true");
		} else {
			cf_usage(stderr);
			return false;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "wsnotify-bridge: unexpected argument \"%s\"\n", argv[optind]);
		return false;
	}
	return true;
}

bool
config_load(int argc, char **argv)
{
	union cf_value v[CF_NKEYS];
	struct cf_pass p = {0};
	char err[256];

	if (!cf_parse_args(argc, argv))
		return false;
	if (!cf_read_file(&p)) {
		fprintf(stderr, "wsnotify-bridge: fatal: %s\n", p.err);
		cf_pass_free(&p);
		return false;
	}
	if (!cf_compute(&p, v, err, sizeof(err))) {
		fprintf(stderr, "wsnotify-bridge: fatal: %s\n", err);
		cf_pass_free(&p);
		return false;
	}
	for (size_t k = 0; k < CF_NKEYS; k++)
		cf_store(&cf_keys[k], &v[k]);
	cf_pass_free(&p);
	config_apply();
	return true;
}

bool
config_reload(void)
{
	union cf_value v[CF_NKEYS];
	struct cf_pass p = {0};
	char err[256];
	int changed = 0;

	if (!cf_read_file(&p) || !cf_compute(&p, v, err, sizeof(err))) {
		log_error("reload failed, keeping the previous settings: %s",
			  p.err[0] ? p.err : err);
		cf_pass_free(&p);
		return false;
	}
	for (size_t k = 0; k < CF_NKEYS; k++) {
		const struct cf_key *key = &cf_keys[k];

		if (!cf_differs(key, &v[k])) {
			if (key->type == CF_STR)
				free(v[k].s);
			continue;
		}
		if (key->reloadable) {
			cf_store(key, &v[k]);
			changed++;
			log_info("reload: %s changed", key->name);
		} else {
			log_warn(
				"reload: %s changed but needs a restart; keeping the running value",
				key->name);
			if (key->type == CF_STR)
				free(v[k].s);
		}
	}
	cf_pass_free(&p);
	config_apply();
	log_info("configuration reloaded (%d settings changed)", changed);
	return true;
}

void
config_apply(void)
{
	log_set_level(cf_verbose ? LOG_DEBUG : (enum log_level) log_level_parse(cf_log_level));
}

void
config_free(void)
{
	for (size_t k = 0; k < CF_NKEYS; k++) {
		free(cf_cli[k]);
		cf_cli[k] = NULL;
		if (cf_keys[k].type == CF_STR) {
			free(*(char **) cf_keys[k].var);
			*(char **) cf_keys[k].var = NULL;
		}
	}
	free(cf_file);
	cf_file = NULL;
}
