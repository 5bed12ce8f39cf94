/*
 * response.h: an HTTP/1.1 response the bridge writes itself, before any
 * WebSocket upgrade: refusals of upgrades, /healthz, /metrics, static files.
 *
 * Pure formatting: no socket, no libwebsockets, so it is unit-tested on its
 * own (test_request.c).  The gate writes what this builds.
 */
#ifndef WSNOTIFY_RESPONSE_H
#define WSNOTIFY_RESPONSE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct response {
	int status;
	const char *content_type;
	char extra[256]; /* further header lines, each ending in CRLF */
	char *body;	 /* malloc'd, or NULL */
	size_t body_len;
	int file_fd; /* a file to send after the head, or -1 */
	off_t file_len;
	bool head_only; /* a HEAD request: the length, no body */
	bool cacheable; /* a static file: no-cache instead of no-store */
	char *head;	/* status line and headers, once finished */
	size_t head_len;
};

/* An empty response with this status (no body, no file). */
void response_init(struct response *r, int status);
/* Give r a copy of text as its body. */
void response_text(struct response *r, int status, const char *ctype, const char *text, size_t len);
/* Add header lines (formatted as printf, each ending in CRLF). */
void response_header(struct response *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* The reason phrase of a status code ("Error" when unknown). */
const char *response_reason(int status);
/* Format r->head: status line, headers, and Connection: keep-alive or close. */
bool response_finish(struct response *r, bool keep_alive);
/* Free what r holds and close its file. */
void response_free(struct response *r);

#endif
