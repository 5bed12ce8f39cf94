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

/* Skip 1-18 decimal digits at *p; false when there are none or more. */
static bool
request_digits(const char **p)
{
	size_t n = strspn(*p, "0123456789");

	*p += n;
	return n >= 1 && n <= 18;
}

/* Is c a message id or what ws_cursor() returns (see request.h)? */
bool
request_cursor_valid(const char *c)
{
	const char *p = c;

	if (request_digits(&p) && *p == '\0')
		return true;
	if (strspn(c, "0123456789abcdef") != 16 || c[16] != ':')
		return false;
	p = c + 17;
	for (int i = 0; i < 3; i++)
		if (!request_digits(&p) || *p++ != ':')
			return false;
	if (*p == '\0')
		return true; /* no transaction in progress */
	for (;;) {
		if (!request_digits(&p))
			return false;
		if (*p == '\0')
			return true;
		if (*p++ != ',')
			return false;
	}
}

/* The ?since= cursor ("0", never found, when malformed). */
bool
request_cursor(const char *target, char *out, size_t n)
{
	if (!request_query_param(target, "since", out, n))
		return false;
	if (strlen(out) == n - 1 || !request_cursor_valid(out))
		snprintf(out, n, "0"); /* cut short or malformed: a reset */
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

/*
 * Content-Length: one decimal number of at most 18 digits (so it fits a long
 * long); a second header must repeat the first value.  False when malformed.
 */
static bool
request_content_length(struct request *r, const char *v, size_t len)
{
	char num[32];
	long long n;

	request_copy_value(num, sizeof(num), v, len);
	if (!num[0] || strlen(num) > 18 || strspn(num, "0123456789") != strlen(num))
		return false;
	n = strtoll(num, NULL, 10);
	if (r->content_length >= 0 && r->content_length != n)
		return false;
	r->content_length = n;
	return true;
}

/* One header line (name: value); false when it makes the head malformed. */
static bool
request_header(struct request *r, const char *line, const char *colon, const char *eol, bool *close,
	       bool *keep)
{
	size_t nl = (size_t) (colon - line), vl = (size_t) (eol - colon - 1);
	const char *v = colon + 1;
	char list[256];

	if (nl == 7 && !strncasecmp(line, "upgrade", 7)) {
		request_copy_value(list, sizeof(list), v, vl);
		r->upgrade = strcasecmp(list, "websocket") == 0;
	} else if (nl == 14 && !strncasecmp(line, "content-length", 14))
		return request_content_length(r, v, vl);
	else if (nl == 17 && !strncasecmp(line, "transfer-encoding", 17))
		r->chunked = true;
	else if (nl == 10 && !strncasecmp(line, "connection", 10)) {
		request_copy_value(list, sizeof(list), v, vl);
		*close |= request_list_has_nocase(list, "close");
		*keep |= request_list_has_nocase(list, "keep-alive");
	} else if (nl == 13 && !strncasecmp(line, "authorization", 13))
		request_copy_value(r->authorization, sizeof(r->authorization), v, vl);
	else if (nl == 6 && !strncasecmp(line, "origin", 6))
		request_copy_value(r->origin, sizeof(r->origin), v, vl);
	else if (nl == 17 && !strncasecmp(line, "sec-websocket-key", 17))
		request_copy_value(r->ws_key, sizeof(r->ws_key), v, vl);
	else if (nl == 21 && !strncasecmp(line, "sec-websocket-version", 21))
		request_copy_value(r->ws_version, sizeof(r->ws_version), v, vl);
	else if (nl == 10 && !strncasecmp(line, "user-agent", 10))
		request_copy_value(r->user_agent, sizeof(r->user_agent), v, vl);
	else if (nl == 22 && !strncasecmp(line, "sec-websocket-protocol", 22))
		request_copy_value(r->protocol, sizeof(r->protocol), v, vl);
	return true;
}

/* Parse the request head (NUL-terminated, ends with CRLFCRLF); false when malformed. */
bool
request_parse(const char *head, struct request *r)
{
	const char *line = head, *eol = strstr(line, "\r\n");
	const char *sp1, *sp2;
	bool close = false, keep = false;

	memset(r, 0, sizeof(*r));
	r->content_length = -1;
	if (!eol)
		return false;
	sp1 = memchr(line, ' ', (size_t) (eol - line));
	sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t) (eol - sp1 - 1)) : NULL;
	if (!sp1 || !sp2 || sp1 - line >= (long) sizeof(r->method) ||
	    sp2 - sp1 - 1 >= (long) sizeof(r->target))
		return false;
	/* HTTP/1.0 and 1.1 only: the bridge speaks no other version */
	if (eol - sp2 - 1 != 8 || strncmp(sp2 + 1, "HTTP/1.", 7) ||
	    (sp2[8] != '0' && sp2[8] != '1'))
		return false;
	r->http_minor = sp2[8] - '0';
	snprintf(r->method, sizeof(r->method), "%.*s", (int) (sp1 - line), line);
	snprintf(r->target, sizeof(r->target), "%.*s", (int) (sp2 - sp1 - 1), sp1 + 1);
	for (line = eol + 2; (eol = strstr(line, "\r\n")) && eol != line; line = eol + 2) {
		const char *colon = memchr(line, ':', (size_t) (eol - line));

		if (!colon || !request_header(r, line, colon, eol, &close, &keep))
			return false;
	}
	/* both framings at once is how requests are smuggled past a proxy */
	if (r->chunked && r->content_length >= 0)
		return false;
	r->keep_alive = r->http_minor == 1 ? !close : keep && !close;
	return true;
}

/* Find and parse the request head at the front of buf (see request.h). */
enum request_next
request_next(const char *buf, size_t len, size_t max_head, struct request *r, size_t *head_len)
{
	const char *end = memmem(buf, len, "\r\n\r\n", 4);
	size_t hl;
	char *head;
	bool ok;

	if (!end)
		return len >= max_head ? REQUEST_TOO_LARGE : REQUEST_INCOMPLETE;
	hl = (size_t) (end - buf) + 4;
	if (hl > max_head)
		return REQUEST_TOO_LARGE;
	if (memchr(buf, '\0', hl))
		return REQUEST_MALFORMED;
	if (!(head = strndup(buf, hl)))
		return REQUEST_MALFORMED;
	ok = request_parse(head, r);
	free(head);
	*head_len = hl;
	return ok ? REQUEST_COMPLETE : REQUEST_MALFORMED;
}

/* Does the request carry a body? */
bool
request_has_body(const struct request *r)
{
	return r->chunked || r->content_length > 0;
}

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

/* Does a comma-separated token list hold name (compared by cmp)? */
static bool
request_list_find(const char *list, const char *name,
		  int (*cmp)(const char *, const char *, size_t))
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
		if (l == nl && !cmp(list, name, nl))
			return true;
		if (!e)
			break;
		list = e + 1;
	}
	return false;
}

bool
request_list_has(const char *list, const char *name)
{
	return request_list_find(list, name, strncmp);
}

/* The same, ignoring case. */
bool
request_list_has_nocase(const char *list, const char *name)
{
	return request_list_find(list, name, strncasecmp);
}
