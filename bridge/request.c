/*
 * request.c: parsing of an HTTP/1.1 request head (see request.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "request.h"

/* Decode %XX and '+' in place. */
static void
request_url_decode(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (*s == '%' && s[1] && s[2]) {
			char hex[3] = {s[1], s[2], 0};

			*o++ = (char) strtol(hex, NULL, 16);
			s += 2;
		} else
			*o++ = *s == '+' ? ' ' : *s;
	}
	*o = '\0';
}

/* The value of query parameter `name` in target, decoded; false when absent. */
bool
request_query_param(const char *target, const char *name, char *out, size_t n)
{
	const char *q = strchr(target, '?');
	size_t nl = strlen(name);

	while (q) {
		q++;
		if (strncmp(q, name, nl) == 0 && q[nl] == '=') {
			const char *v = q + nl + 1, *e = strchr(v, '&');
			size_t l = e ? (size_t) (e - v) : strlen(v);

			snprintf(out, n, "%.*s", (int) l, v);
			request_url_decode(out);
			return true;
		}
		q = strchr(q, '&');
	}
	return false;
}

/* The ?since= cursor as decimal digits ("0", never found, when malformed). */
bool
request_cursor(const char *target, char *out, size_t n)
{
	if (!request_query_param(target, "since", out, n))
		return false;
	if (!out[0] || strspn(out, "0123456789") != strlen(out) || strlen(out) > 18)
		snprintf(out, n, "0");
	return true;
}

/* Copy a header value (trimmed) into out. */
static void
request_copy_value(char *out, size_t n, const char *v, size_t len)
{
	while (len && (*v == ' ' || *v == '\t')) {
		v++;
		len--;
	}
	while (len && (v[len - 1] == ' ' || v[len - 1] == '\t'))
		len--;
	snprintf(out, n, "%.*s", (int) len, v);
}

/* Parse the request head (NUL-terminated, ends with CRLFCRLF); false when malformed. */
bool
request_parse(const char *head, struct request *r)
{
	const char *line = head, *eol = strstr(line, "\r\n");
	const char *sp1, *sp2;

	memset(r, 0, sizeof(*r));
	if (!eol)
		return false;
	sp1 = memchr(line, ' ', (size_t) (eol - line));
	sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t) (eol - sp1 - 1)) : NULL;
	if (!sp1 || !sp2 || sp1 - line >= (long) sizeof(r->method) ||
	    sp2 - sp1 - 1 >= (long) sizeof(r->target))
		return false;
	snprintf(r->method, sizeof(r->method), "%.*s", (int) (sp1 - line), line);
	snprintf(r->target, sizeof(r->target), "%.*s", (int) (sp2 - sp1 - 1), sp1 + 1);
	for (line = eol + 2; (eol = strstr(line, "\r\n")) && eol != line; line = eol + 2) {
		const char *colon = memchr(line, ':', (size_t) (eol - line));
		size_t nl, vl;

		if (!colon)
			return false;
		nl = (size_t) (colon - line);
		vl = (size_t) (eol - colon - 1);
		if (nl == 7 && !strncasecmp(line, "upgrade", 7)) {
			char v[64];

			request_copy_value(v, sizeof(v), colon + 1, vl);
			r->upgrade = strcasecmp(v, "websocket") == 0;
		} else if (nl == 13 && !strncasecmp(line, "authorization", 13))
			request_copy_value(r->authorization, sizeof(r->authorization), colon + 1, vl);
		else if (nl == 6 && !strncasecmp(line, "origin", 6))
			request_copy_value(r->origin, sizeof(r->origin), colon + 1, vl);
		else if (nl == 17 && !strncasecmp(line, "sec-websocket-key", 17))
			request_copy_value(r->ws_key, sizeof(r->ws_key), colon + 1, vl);
		else if (nl == 21 && !strncasecmp(line, "sec-websocket-version", 21))
			request_copy_value(r->ws_version, sizeof(r->ws_version), colon + 1, vl);
		else if (nl == 10 && !strncasecmp(line, "user-agent", 10))
			request_copy_value(r->user_agent, sizeof(r->user_agent), colon + 1, vl);
		else if (nl == 22 && !strncasecmp(line, "sec-websocket-protocol", 22))
			request_copy_value(r->protocol, sizeof(r->protocol), colon + 1, vl);
	}
	return true;
}

/* Is this Origin in the allowed list (comma list, "*" any; empty allows all)? */
bool
request_origin_ok(const char *origin, const char *allowed)
{
	const char *p = allowed;
	size_t ol = strlen(origin);

	if (!*p || !*origin)
		return true;
	while (*p) {
		const char *e = strchr(p, ',');
		size_t l = e ? (size_t) (e - p) : strlen(p);

		while (l && *p == ' ') {
			p++;
			l--;
		}
		while (l && p[l - 1] == ' ')
			l--;
		if ((l == 1 && *p == '*') || (l == ol && !strncasecmp(p, origin, l)))
			return true;
		if (!e)
			break;
		p = e + 1;
	}
	return false;
}


/* Does a comma-separated token list (a header value) hold name? */
bool
request_list_has(const char *list, const char *name)
{
	size_t nl = strlen(name);

	while (*list) {
		const char *e = strchr(list, ',');
		size_t l = e ? (size_t) (e - list) : strlen(list);

		while (l && (*list == ' ' || *list == '\t')) {
			list++;
			l--;
		}
		while (l && (list[l - 1] == ' ' || list[l - 1] == '\t'))
			l--;
		if (l == nl && !strncmp(list, name, nl))
			return true;
		if (!e)
			break;
		list = e + 1;
	}
	return false;
}
