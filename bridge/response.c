/*
 * response.c: HTTP/1.1 responses the bridge writes itself (see response.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "response.h"

/* An empty response with this status. */
void
response_init(struct response *r, int status)
{
	memset(r, 0, sizeof(*r));
	r->status = status;
	r->file_fd = -1;
}

void
response_text(struct response *r, int status, const char *ctype, const char *text, size_t len)
{
	r->status = status;
	r->content_type = ctype;
	free(r->body);
	r->body = malloc(len ? len : 1);
	if (!r->body)
		len = 0;
	else
		memcpy(r->body, text, len);
	r->body_len = len;
}

/* Add header lines. */
void
response_header(struct response *r, const char *fmt, ...)
{
	size_t used = strlen(r->extra);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->extra + used, sizeof(r->extra) - used, fmt, ap);
	va_end(ap);
}

/* The reason phrase of a status code. */
const char *
response_reason(int status)
{
	static const struct {
		int code;
		const char *text;
	} names[] = {{200, "OK"},
		     {400, "Bad Request"},
		     {401, "Unauthorized"},
		     {403, "Forbidden"},
		     {404, "Not Found"},
		     {405, "Method Not Allowed"},
		     {413, "Content Too Large"},
		     {426, "Upgrade Required"},
		     {429, "Too Many Requests"},
		     {431, "Request Header Fields Too Large"},
		     {500, "Internal Server Error"},
		     {503, "Service Unavailable"}};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].code == status)
			return names[i].text;
	return "Error";
}

/* Format r->head: status line, headers, and Connection. */
bool
response_finish(struct response *r, bool keep_alive)
{
	long long len = r->file_fd >= 0 ? (long long) r->file_len : (long long) r->body_len;
	int n;

	free(r->head);
	n = asprintf(&r->head,
		     "HTTP/1.1 %d %s\r\n%s%s%sContent-Length: %lld\r\n"
		     "Cache-Control: %s\r\nX-Content-Type-Options: nosniff\r\n"
		     "Connection: %s\r\n%s\r\n",
		     r->status, response_reason(r->status), r->content_type ? "Content-Type: " : "",
		     r->content_type ? r->content_type : "", r->content_type ? "\r\n" : "", len,
		     r->cacheable ? "no-cache" : "no-store", keep_alive ? "keep-alive" : "close",
		     r->extra);
	if (n < 0) {
		r->head = NULL;
		return false;
	}
	r->head_len = (size_t) n;
	return true;
}

void
response_free(struct response *r)
{
	free(r->body);
	free(r->head);
	if (r->file_fd >= 0)
		close(r->file_fd);
	response_init(r, 0);
}
