/*
 * request.h: parsing of an HTTP/1.1 request head, as read by the gate.
 *
 * Pure functions with no libwebsockets or database in them, so they are
 * unit-tested (test_request.c) and fuzzed (fuzz_request.c) on their own.
 * Bad input never crashes them: long fields are refused or truncated.
 */
#ifndef WSNOTIFY_REQUEST_H
#define WSNOTIFY_REQUEST_H

#include <stdbool.h>
#include <stddef.h>

/* What the request head says. */
struct request {
	char method[16];
	char target[8192]; /* a ws_cursor() in ?since= can be long */
	int http_minor;	   /* HTTP/1.0 or HTTP/1.1 */
	bool upgrade;
	bool keep_alive;	  /* 1.1 without "Connection: close", 1.0 with keep-alive */
	long long content_length; /* -1: no Content-Length header */
	bool chunked;		  /* a Transfer-Encoding: a body of unknown length */
	char authorization[4096];
	char origin[512];
	char user_agent[256];
	char protocol[256];  /* Sec-WebSocket-Protocol */
	char ws_key[64];     /* Sec-WebSocket-Key */
	char ws_version[16]; /* Sec-WebSocket-Version */
};

/* Parse a NUL-terminated head (request line and headers); false when malformed. */
bool request_parse(const char *head, struct request *r);

/* What the bytes at the front of a connection's input hold. */
enum request_next {
	REQUEST_INCOMPLETE, /* no end of head yet, within max_head bytes */
	REQUEST_TOO_LARGE,  /* no end of head within max_head bytes */
	REQUEST_MALFORMED,  /* a head that request_parse refuses */
	REQUEST_COMPLETE    /* *r parsed, *head_len bytes of head */
};

/*
 * Find and parse the request head at the front of buf (len bytes, which may
 * hold NULs, a body and pipelined requests after the head).  A head with a
 * NUL in it is malformed, as are a Content-Length that is not one decimal
 * number and a Content-Length beside a Transfer-Encoding (request smuggling).
 */
enum request_next request_next(const char *buf, size_t len, size_t max_head, struct request *r,
			       size_t *head_len);
/* Does the request carry a body (Content-Length above 0, or a Transfer-Encoding)? */
bool request_has_body(const struct request *r);
/* The value of query parameter name in target, %-decoded; false when absent. */
bool request_query_param(const char *target, const char *name, char *out, size_t n);
/* Does a comma-separated token list (a header value) hold name? */
bool request_list_has(const char *list, const char *name);
/* The same, ignoring case (Connection, Transfer-Encoding tokens). */
bool request_list_has_nocase(const char *list, const char *name);
/*
 * A resume cursor: a message id (1-18 decimal digits, so it fits an int64)
 * or what ws_cursor() returns, EPOCH:POS:XMIN:XMAX:XIP,... (16 lower-case
 * hex digits, then numbers of 1-18 digits; the list may be empty).
 */
bool request_cursor_valid(const char *c);
/*
 * The ?since= resume cursor of target: false when absent; "0" (a cursor never
 * found, so the client gets a reset) when it is not a valid cursor or does
 * not fit in n bytes.
 */
bool request_cursor(const char *target, char *out, size_t n);
/* Is this Origin in the allowed list (comma list, "*" any; empty allows all)? */
bool request_origin_ok(const char *origin, const char *allowed);

#endif
