/*
 * test_request.c: table-driven tests of the request-head parser (request.c).
 * Run by `make -C bridge check` (and so by `make test`).
 */
#include <stdio.h>
#include <string.h>

#include "request.h"

static int failures;

/* Report one check. */
static void
check(bool ok, const char *what, const char *input)
{
	if (!ok) {
		failures++;
		printf("FAIL %s: %.80s\n", what, input);
	}
}

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
		{"GET /?token=abc HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n",
		 true, "/?token=abc", true, "", "", ""},
		{"GET / HTTP/1.1\r\nUPGRADE:   WebSocket  \r\nAuthorization: Bearer t\r\n"
		 "Origin: https://a.example\r\nUser-Agent: ua/1\r\n\r\n",
		 true, "/", true, "Bearer t", "https://a.example", "ua/1"},
		{"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", true, "/healthz", false, "", "", ""},
		{"GET /healthz HTTP/1.1\r\nUpgrade: h2c\r\n\r\n", true, "/healthz", false, "", "", ""},

		{"GARBAGE\r\n\r\n", false, NULL, false, NULL, NULL, NULL},
		{"GET /\r\n\r\n", false, NULL, false, NULL, NULL, NULL},
		{"GET / HTTP/1.1\r\nno colon here\r\n\r\n", false, NULL, false, NULL, NULL, NULL},
		{"", false, NULL, false, NULL, NULL, NULL},
		{"AVERYLONGMETHODNAMEXXXXXXXXXX / HTTP/1.1\r\n\r\n", false, NULL, false, NULL, NULL, NULL},
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
	static char head[10000];
	struct request r;

	strcpy(head, "GET /");
	memset(head + 5, 'a', 5000);
	strcpy(head + 5005, " HTTP/1.1\r\n\r\n");
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
		check(request_origin_ok(cases[i].origin, cases[i].allowed) == cases[i].ok,
		      "origin", cases[i].origin);
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
		check(request_list_has(cases[i].list, cases[i].name) == cases[i].has,
		      "list", cases[i].list);
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
		{"/?since=1234567890123456789", true, "0"},	/* 19 digits: may not fit int64 */
		{"/?since=99999999999999999999999", true, "0"},
		{"/?since=4%002", true, "4"},			/* %00 ends the C string */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[24];
		bool found = request_cursor(cases[i].target, out, sizeof(out));

		check(found == cases[i].found, "cursor found", cases[i].target);
		if (found && cases[i].found)
			check(!strcmp(out, cases[i].value), "cursor value", cases[i].target);
		if (found)
			check(strlen(out) >= 1 && strlen(out) <= 18 &&
			      strspn(out, "0123456789") == strlen(out), "cursor digits", cases[i].target);
	}
}

/* Sec-WebSocket-Key and -Version are read for the gate's checks. */
static void
test_ws_headers(void)
{
	struct request r;

	check(request_parse("GET / HTTP/1.1\r\nSec-WebSocket-Key:  abc== \r\n"
			    "sec-websocket-version: 13\r\n\r\n", &r) &&
	      !strcmp(r.ws_key, "abc==") && !strcmp(r.ws_version, "13"), "ws headers", "key+version");
	check(request_parse("GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", &r) &&
	      !r.ws_key[0] && !r.ws_version[0], "ws headers absent", "no key");
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
	printf("%s\n", failures ? "request parser tests FAILED" : "request parser tests passed");
	return failures ? 1 : 0;
}
