/*
 * test_request.c: table-driven tests of the request-head parser (request.c),
 * the static file paths (files.c) and the responses (response.c).
 * Run by `make -C bridge check` (and so by `make test`).
 */
#include <stdio.h>
#include <string.h>

#include "files.h"
#include "request.h"
#include "response.h"
#include "test_check.h"

/* request_parse: which heads parse, and what they yield. */
static void
test_parse(void)
{
	static const struct {
		const char *head;
		bool ok;
		const char *target;
		bool upgrade;
		const char *auth, *origin, *ua;
	} cases[] = {
		{"GET /?token=abc HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n", true,
		 "/?token=abc", true, "", "", ""},
		{"GET / HTTP/1.1\r\nUPGRADE:   WebSocket  \r\nAuthorization: Bearer t\r\n"
		 "Origin: https://a.example\r\nUser-Agent: ua/1\r\n\r\n",
		 true, "/", true, "Bearer t", "https://a.example", "ua/1"},
		{"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", true, "/healthz", false, "", "", ""},
		{"GET /healthz HTTP/1.1\r\nUpgrade: h2c\r\n\r\n", true, "/healthz", false, "", "",
		 ""},

		{"GARBAGE\r\n\r\n", false, NULL, false, NULL, NULL, NULL},
		{"GET /\r\n\r\n", false, NULL, false, NULL, NULL, NULL},
		{"GET / HTTP/1.1\r\nno colon here\r\n\r\n", false, NULL, false, NULL, NULL, NULL},
		{"", false, NULL, false, NULL, NULL, NULL},
		{"AVERYLONGMETHODNAMEXXXXXXXXXX / HTTP/1.1\r\n\r\n", false, NULL, false, NULL, NULL,
		 NULL},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct request r;
		bool ok = request_parse(cases[i].head, &r);

		check(ok == cases[i].ok, "parse result", cases[i].head);
		if (!ok || !cases[i].ok)
			continue;
		check(!strcmp(r.target, cases[i].target), "target", cases[i].head);
		check(r.upgrade == cases[i].upgrade, "upgrade", cases[i].head);
		check(!strcmp(r.authorization, cases[i].auth), "authorization", cases[i].head);
		check(!strcmp(r.origin, cases[i].origin), "origin", cases[i].head);
		check(!strcmp(r.user_agent, cases[i].ua), "user-agent", cases[i].head);
	}
}

/* A target longer than the buffer is refused, never overflowed. */
static void
test_parse_long_target(void)
{
	static char head[20000];
	struct request r;

	strcpy(head, "GET /");
	memset(head + 5, 'a', 10000);
	strcpy(head + 10005, " HTTP/1.1\r\n\r\n");
	check(!request_parse(head, &r), "long target refused", "GET /aaaa...");
}

/* request_query_param: finding and decoding a parameter. */
static void
test_query(void)
{
	static const struct {
		const char *target, *name;
		bool found;
		const char *value;
	} cases[] = {
		{"/?token=abc", "token", true, "abc"},
		{"/?a=1&token=x%2Ey+z&b=2", "token", true, "x.y z"},
		{"/?xtoken=1", "token", false, NULL},
		{"/?token", "token", false, NULL},
		{"/", "token", false, NULL},
		{"/?token=", "token", true, ""},
		{"/?token=%", "token", true, "%"},
		{"/?since=42&token=t", "since", true, "42"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[64];
		bool found = request_query_param(cases[i].target, cases[i].name, out, sizeof(out));

		check(found == cases[i].found, "query found", cases[i].target);
		if (found && cases[i].found)
			check(!strcmp(out, cases[i].value), "query value", cases[i].target);
	}
}

/* request_origin_ok: the allowed_origins list. */
static void
test_origin(void)
{
	static const struct {
		const char *origin, *allowed;
		bool ok;
	} cases[] = {
		{"https://a.example", "", true},
		{"", "https://a.example", true},
		{"https://a.example", "https://a.example", true},
		{"https://A.example", "https://b.example, https://a.example", true},
		{"https://c.example", "https://b.example, https://a.example", false},
		{"https://a.example.evil", "https://a.example", false},
		{"https://x", "*", true},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check(request_origin_ok(cases[i].origin, cases[i].allowed) == cases[i].ok, "origin",
		      cases[i].origin);
}

/* request_list_has: Sec-WebSocket-Protocol style lists. */
static void
test_list(void)
{
	static const struct {
		const char *list, *name;
		bool has;
	} cases[] = {
		{"wsnotify.v1", "wsnotify.v1", true},
		{"chat, wsnotify.v1 ", "wsnotify.v1", true},
		{"wsnotify.v10", "wsnotify.v1", false},
		{"wsnotify.v1", "wsnotify", false},
		{"", "wsnotify", false},
		{",,", "wsnotify", false},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check(request_list_has(cases[i].list, cases[i].name) == cases[i].has, "list",
		      cases[i].list);
}

/* request_cursor: the ?since= resume cursor (fuzzed by fuzz/fuzz_cursor.c). */
static void
test_cursor(void)
{
	static const struct {
		const char *target;
		bool found;
		const char *value;
	} cases[] = {
		{"/?since=42&token=t", true, "42"},
		{"/?token=t", false, NULL},
		{"/?since=", true, "0"},
		{"/?since=-1", true, "0"},
		{"/?since=1e3", true, "0"},
		{"/?since=%34%32", true, "42"},
		{"/?since=123456789012345678", true, "123456789012345678"},
		{"/?since=1234567890123456789", true, "0"}, /* 19 digits: may not fit int64 */
		{"/?since=99999999999999999999999", true, "0"},
		{"/?since=4%002", true, "4"}, /* %00 ends the C string */
		{"/?since=0123456789abcdef:42:100:105:101,103", true,
		 "0123456789abcdef:42:100:105:101,103"}, /* ws_cursor() */
		{"/?since=0123456789abcdef%3A42%3A100%3A100%3A", true,
		 "0123456789abcdef:42:100:100:"},
		{"/?since=0123456789ABCDEF:42:1:1:", true, "0"},
		{"/?since=0123456789abcdef:42:1:1:2,", true, "0"},
		{"/?since=0123456789abcdef:42:1:1", true, "0"},
		{"/?since=0123456789abcdef:42:1:1:2;x", true, "0"},
		{"/?since=0123456789abcdef:42:1:1:2,3,4,5,6,7,8,9,10,11,12,13,14", true,
		 "0"}, /* too long */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[48];
		bool found = request_cursor(cases[i].target, out, sizeof(out));

		check(found == cases[i].found, "cursor found", cases[i].target);
		if (found && cases[i].found)
			check(!strcmp(out, cases[i].value), "cursor value", cases[i].target);
		if (found)
			check(request_cursor_valid(out), "cursor valid", cases[i].target);
	}
}

/* Sec-WebSocket-Key and -Version are read for the gate's checks. */
static void
test_ws_headers(void)
{
	struct request r;

	check(request_parse("GET / HTTP/1.1\r\nSec-WebSocket-Key:  abc== \r\n"
			    "sec-websocket-version: 13\r\n\r\n",
			    &r) &&
		      !strcmp(r.ws_key, "abc==") && !strcmp(r.ws_version, "13"),
	      "ws headers", "key+version");
	check(request_parse("GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", &r) && !r.ws_key[0] &&
		      !r.ws_version[0],
	      "ws headers absent", "no key");
}

/* request_next: framing of what a connection sent (head, body, pipelining). */
static void
test_next(void)
{
	static const struct {
		const char *in;
		size_t len; /* 0: strlen(in) */
		enum request_next want;
		size_t head_len;
		long long content_length;
		bool chunked, keep_alive;
	} cases[] = {
		{"GET / HTTP/1.1\r\nHost: x\r\n", 0, REQUEST_INCOMPLETE, 0, 0, false, false},
		{"GET / HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n", 0, REQUEST_COMPLETE, 18, -1,
		 false, true},
		{"GET / HTTP/1.0\r\n\r\n", 0, REQUEST_COMPLETE, 18, -1, false, false},
		{"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", 0, REQUEST_COMPLETE, 42, -1,
		 false, true},
		{"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 0, REQUEST_COMPLETE, 37, -1, false,
		 false},
		{"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", 0, REQUEST_COMPLETE, 38, 2,
		 false, true},
		{"POST / HTTP/1.1\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\n", 0,
		 REQUEST_COMPLETE, 57, 2, false, true},
		{"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n", 0, REQUEST_COMPLETE,
		 47, -1, true, true},
		{"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n", 0,
		 REQUEST_MALFORMED, 0, 0, false, false},
		{"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 0,
		 REQUEST_MALFORMED, 0, 0, false, false},
		{"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 0, REQUEST_MALFORMED, 0, 0, false,
		 false},
		{"POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n", 0, REQUEST_MALFORMED, 0, 0,
		 false, false},
		{"POST / HTTP/1.1\r\nContent-Length: 1234567890123456789\r\n\r\n", 0,
		 REQUEST_MALFORMED, 0, 0, false, false},
		{"GET / HTTP/2.0\r\n\r\n", 0, REQUEST_MALFORMED, 0, 0, false, false},
		{"GET / HTTP/1.1\r\nX: a\0b\r\n\r\n", 26, REQUEST_MALFORMED, 0, 0, false, false},
		{"GET / HTTP/1.1\r\n\r\n\0binary body", 30, REQUEST_COMPLETE, 18, -1, false, true},
		{"GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		 0, REQUEST_TOO_LARGE, 0, 0, false, false},
		{"GET /aaaaaaaa HTTP/1.1\r\nHost: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n\r\n",
		 0, REQUEST_TOO_LARGE, 0, 0, false, false},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct request r;
		size_t hl = 0, len = cases[i].len ? cases[i].len : strlen(cases[i].in);
		enum request_next got = request_next(cases[i].in, len, 80, &r, &hl);

		check(got == cases[i].want, "next result", cases[i].in);
		if (got != REQUEST_COMPLETE || cases[i].want != REQUEST_COMPLETE)
			continue;
		check(hl == cases[i].head_len, "next head length", cases[i].in);
		check(r.content_length == cases[i].content_length, "content length", cases[i].in);
		check(r.chunked == cases[i].chunked, "chunked", cases[i].in);
		check(r.keep_alive == cases[i].keep_alive, "keep-alive", cases[i].in);
		check(request_has_body(&r) == (cases[i].chunked || cases[i].content_length > 0),
		      "has body", cases[i].in);
	}
}

/* files_path: what a static request names, and what it may never name. */
static void
test_files_path(void)
{
	static const struct {
		const char *target;
		bool ok;
		const char *path;
	} cases[] = {
		{"/", true, ""},
		{"/index.html?v=1#top", true, "index.html"},
		{"//a/./b//c.js", true, "a/b/c.js"},
		{"/a%20b.txt", true, "a b.txt"},
		{"/../etc/passwd", false, NULL},
		{"/a/../../etc/passwd", false, NULL},
		{"/%2e%2e/etc/passwd", false, NULL},
		{"/a%2f..%2f..%2fetc", false, NULL},
		{"/a%00.html", false, NULL},
		{"/a%5c..", false, NULL},
		{"/%zz", true, "%zz"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[256];
		bool ok = files_path(cases[i].target, out, sizeof(out));

		check(ok == cases[i].ok, "files path result", cases[i].target);
		if (ok && cases[i].ok)
			check(!strcmp(out, cases[i].path), "files path", cases[i].target);
	}
	check(!strcmp(files_type("a/b.JS"), "text/javascript; charset=utf-8"), "type js", "b.JS");
	check(!strcmp(files_type("a.d/README"), "application/octet-stream"), "type none", "README");
}

/* response_finish: the head the bridge writes. */
static void
test_response(void)
{
	struct response r;

	response_init(&r, 0);
	response_text(&r, 405, "text/plain", "no\n", 3);
	response_header(&r, "Allow: GET, HEAD\r\n");
	check(response_finish(&r, false) &&
		      !strcmp(r.head,
			      "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain\r\n"
			      "Content-Length: 3\r\nCache-Control: no-store\r\n"
			      "X-Content-Type-Options: nosniff\r\nConnection: close\r\n"
			      "Allow: GET, HEAD\r\n\r\n"),
	      "response head", "405");
	response_free(&r);
	check(r.file_fd == -1 && !r.body && !r.head, "response freed", "405");
}

int
main(void)
{
	test_parse();
	test_parse_long_target();
	test_query();
	test_origin();
	test_list();
	test_cursor();
	test_ws_headers();
	test_next();
	test_files_path();
	test_response();
	printf("%s\n", failures ? "request parser tests FAILED" : "request parser tests passed");
	return failures ? 1 : 0;
}
