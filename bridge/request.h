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
	char target[2048];
	bool upgrade;
	char authorization[4096];
	char origin[512];
	char user_agent[256];
	char protocol[256];		/* Sec-WebSocket-Protocol */
	char ws_key[64];		/* Sec-WebSocket-Key */
	char ws_version[16];		/* Sec-WebSocket-Version */
};

/* Parse a NUL-terminated head (request line and headers); false when malformed. */
bool request_parse(const char *head, struct request *r);
/* The value of query parameter name in target, %-decoded; false when absent. */
bool request_query_param(const char *target, const char *name, char *out, size_t n);
/* Does a comma-separated token list (a header value) hold name? */
bool request_list_has(const char *list, const char *name);
/*
 * The ?since= resume cursor of target as decimal digits: false when absent;
 * "0" (a cursor never found, so the client gets a reset) when it is empty,
 * not all digits or longer than 18 digits (it must fit an int64).
 */
bool request_cursor(const char *target, char *out, size_t n);
/* Is this Origin in the allowed list (comma list, "*" any; empty allows all)? */
bool request_origin_ok(const char *origin, const char *allowed);

#endif
