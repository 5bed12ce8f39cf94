/*
 * test_units.c: table-driven tests of the bridge's modules that stand
 * alone: the gate's rate limits (policy.c), the send queues (queue.c), the
 * inline payload parser (payload.c) and the client frames (frame.c).  Run by
 * `make -C bridge check` (and so by `make test`, test/check_bridge_units).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "frame.h"
#include "payload.h"
#include "policy.h"
#include "queue.h"
#include "test_check.h"

/* policy.c reads these two settings (config.c defines them in the bridge). */
long long cf_connect_rate_limit;
long long cf_auth_failure_rate_limit;

/* connect_rate_limit: a burst of `limit`, then one per 1/limit s, per address. */
static void
test_policy_connect(void)
{
	static const struct {
		const char *addr;
		uint64_t at;
		bool ok;
		int retry_after; /* when refused */
	} steps[] = {
		{"10.0.0.1", 1000, true, 0},  {"10.0.0.1", 1000, true, 0},
		{"10.0.0.1", 1000, false, 1}, /* the burst of 2 is spent */
		{"10.0.0.2", 1000, true, 0},  /* another address has its own bucket */
		{"10.0.0.1", 1400, false, 1}, /* 0.8 tokens back */
		{"10.0.0.1", 1500, true, 0},  /* one token back after 0.5 s */
		{"10.0.0.1", 1500, false, 1},
	};

	cf_connect_rate_limit = 2;
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		int retry = 0;
		bool ok = policy_connect_ok(steps[i].addr, steps[i].at, &retry);

		check(ok == steps[i].ok, "policy_connect_ok", steps[i].addr);
		if (!ok)
			check(retry == steps[i].retry_after, "connect Retry-After", steps[i].addr);
	}
	cf_connect_rate_limit = 0;
	for (int i = 0; i < 10; i++) {
		int retry = 0;

		check(policy_connect_ok("10.0.0.1", 1500, &retry), "limit 0 is off", "10.0.0.1");
	}
	check(policy_sweep(1000000) == 0, "sweep drops full buckets", "");
}

/* auth_failure_rate_limit: failures, not attempts, spend the per-minute bucket. */
static void
test_policy_auth(void)
{
	int retry = 0;

	cf_auth_failure_rate_limit = 2;
	check(policy_auth_ok("10.0.0.3", 1000, &retry), "no failure yet", "10.0.0.3");
	check(policy_sweep(1000) == 0, "an address that only tried holds no entry", "");
	policy_auth_failed("10.0.0.3", 1000);
	check(policy_auth_ok("10.0.0.3", 1000, &retry), "one failure of two", "10.0.0.3");
	policy_auth_failed("10.0.0.3", 1000);
	check(!policy_auth_ok("10.0.0.3", 1000, &retry), "two failures of two", "10.0.0.3");
	check(retry == 30, "auth Retry-After: one token in 30 s", "10.0.0.3");
	check(policy_auth_ok("10.0.0.4", 1000, &retry), "another address", "10.0.0.4");
	check(policy_sweep(20000) == 1, "a limited address stays in the table", "");
	check(policy_auth_ok("10.0.0.3", 31000, &retry), "a token back after 30 s", "10.0.0.3");
	check(policy_sweep(61000) == 0, "full again after a minute: dropped", "");
	cf_auth_failure_rate_limit = 0;
}

/* A payload of text with one reference. */
static struct payload *
text(const char *s)
{
	return payload_new(s, strlen(s));
}

/* The ids in a list of queue entries, as "1,2,c,3" (c: a close). */
static void
ids(const struct out_item *it, char *out, size_t n)
{
	size_t len = 0;

	out[0] = '\0';
	for (; it && len < n; it = it->next)
		len += (size_t) snprintf(out + len, n - len, it->p ? "%s%lld" : "%sc",
					 len ? "," : "", (long long) it->id);
}

/* queue.c: bounded pushes, the held list, closes, byte counts and references. */
static void
test_queue(void)
{
	struct send_queue q = {0};
	struct payload *p = text("abcd"), *big = text("0123456789");
	char order[64];

	check(queue_push(&q, p, 1, 10), "push within the bound", "4 of 10");
	check(queue_push(&q, p, 2, 4), "push with the backlog at the bound, exactly", "4 of 4");
	check(!queue_push(&q, p, 3, 7), "push with the backlog past the bound refused", "8 of 7");
	check(q.bytes == 8 && queue_total_bytes() == 8, "bytes counted", "8");
	check(p->refs == 3, "one reference per entry", "abcd");
	{
		struct send_queue lone = {0};

		check(queue_push(&lone, big, 9, 4),
		      "one message over the bound, nothing ahead of it", "10, bound 4");
		queue_push_replayed(&lone, big, 10);
		check(queue_push(&lone, p, 11, 10), "replayed bytes are outside the bound",
		      "20, 10 of 10");
		check(!queue_push(&lone, p, 12, 10), "live bytes still count", "24, 14 of 10");
		queue_pop(&lone);
		queue_pop(&lone);
		check(lone.bytes == 4 && lone.replayed == 0, "popping uncounts replayed bytes",
		      "4");
		queue_clear(&lone);
	}
	queue_hold(&q, big, 4);
	queue_push_close(&q, 1000, "bye", true);
	check(q.bytes == 18, "held bytes count", "18");
	check(queue_push(&q, p, 5, 100), "live push while holding", "5");
	ids(q.head, order, sizeof(order));
	check(!strcmp(order, "1,2,5"), "queue before release", order);
	queue_release(&q);
	ids(q.head, order, sizeof(order));
	check(!strcmp(order, "1,2,5,4,c"), "held entries follow the queue", order);
	check(!q.held && !q.held_tail, "nothing held after release", order);
	queue_push(&q, p, 6, 100);
	ids(q.head, order, sizeof(order));
	check(!strcmp(order, "1,2,5,4,c,6"), "tail after release", order);
	q.head_off = 3;
	queue_pop(&q);
	check(q.head_off == 0 && q.head->id == 2 && q.bytes == 22, "pop", "1");
	queue_hold(&q, p, 7);
	queue_drop_held(&q);
	check(q.bytes == 22 && !q.held, "drop held", "7");
	queue_clear(&q);
	check(!q.head && !q.tail && q.bytes == 0 && queue_total_bytes() == 0, "clear", "");
	check(p->refs == 1 && big->refs == 1, "references back", "");
	queue_release(&q);
	check(!q.head && !q.tail, "release of nothing", "");
	payload_unref(p);
	payload_unref(big);
}

/* payload_inline_next: one message of an opened inline payload. */
static void
test_inline(void)
{
	static const struct {
		const char *in;
		bool ok;
		char kind;
		const char *target; /* NULL: none (a broadcast) */
		const char *body;
		size_t rest; /* bytes left after it */
	} cases[] = {
		{"u 5 7\nalice{\"a\":1}", true, 'u', "alice", "{\"a\":1}", 0},
		{"c 2 2\nc1{}u 1 2\nb{}", true, 'c', "c1", "{}", 9},
		{"b 0 4\n1234", true, 'b', NULL, "1234", 0},
		{"x 2 0\nc1", true, 'x', "c1", "", 0},
		{"t 1 2\nt{}", false, 0, NULL, NULL, 0},	 /* topics are never inline */
		{"u 5 7\nalice{\"a\"", false, 0, NULL, NULL, 0}, /* body runs past the end */
		{"u 9 0\nalice", false, 0, NULL, NULL, 0},	 /* target runs past the end */
		{"u5 2\nab{}", false, 0, NULL, NULL, 0},
		{"u 1 2 b{}", false, 0, NULL, NULL, 0},
		{"u x 2\nb{}", false, 0, NULL, NULL, 0},
		{"u 1", false, 0, NULL, NULL, 0},
		{"", false, 0, NULL, NULL, 0},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *at = cases[i].in, *end = at + strlen(at);
		struct payload_row m = {0};
		bool ok = payload_inline_next(&at, end, &m);

		check(ok == cases[i].ok, "inline parse result", cases[i].in);
		if (!ok || !cases[i].ok)
			continue;
		check(m.kind == cases[i].kind, "inline kind", cases[i].in);
		check(cases[i].target ? m.target && m.target_len == strlen(cases[i].target) &&
						!memcmp(m.target, cases[i].target, m.target_len) :
					!m.target,
		      "inline target", cases[i].in);
		check(m.body_len == strlen(cases[i].body) &&
			      !memcmp(m.body, cases[i].body, m.body_len),
		      "inline body", cases[i].in);
		check((size_t) (end - at) == cases[i].rest, "inline advances past it", cases[i].in);
	}
}

/* frame_form: plain is the message itself; v1 envelopes, built once per message. */
static void
test_frame_form(void)
{
	struct payload *p = text("{\"x\":1}"), *e, *b;

	check(frame_form(p, 7, false) == p, "plain form is the message", "");
	e = frame_form(p, 7, true);
	check(e->len == strlen("{\"id\": \"7\", \"data\": {\"x\":1}}") &&
		      !memcmp(e->data, "{\"id\": \"7\", \"data\": {\"x\":1}}", e->len),
	      "v1 text envelope", e->data);
	check(frame_form(p, 7, true) == e, "one envelope per message", "");
	snprintf(p->topic, sizeof(p->topic), "news");
	e = frame_form(p, 8, true);
	check(!strcmp(e->data, "{\"id\": \"8\", \"topic\": \"news\", \"data\": {\"x\":1}}"),
	      "v1 topic envelope", e->data);
	payload_unref(p);

	b = payload_alloc(2, true);
	b->data[0] = 'h';
	b->data[1] = 'i';
	e = frame_form(b, 0x0102030405060708LL, true);
	check(e->binary && e->len == 11 && e->data[0] == 1 && e->data[1] == 1 && e->data[8] == 8 &&
		      !memcmp(e->data + 9, "hi", 2),
	      "v1 binary envelope", "");
	payload_unref(b);
}

/* frame_parse: which client messages are accepted, and their request_id. */
static void
test_frame_parse(void)
{
	static const struct {
		const char *in;
		bool ok;
		const char *body, *request_id; /* request_id NULL: none */
	} cases[] = {
		{"{\"action\": \"x\"}", true, "{\"action\":\"x\"}", NULL},
		{"{\"b\":1,\"a\":2}", true, "{\"b\":1,\"a\":2}", NULL}, /* order kept */
		{"{\"request_id\": \"r1\"}", true, "{\"request_id\":\"r1\"}", "\"r1\""},
		{"{\"request_id\": 5}", true, "{\"request_id\":5}", "5"},
		{"{\"request_id\": [1]}", true, "{\"request_id\":[1]}", NULL},
		{"[1, 2]", false, NULL, NULL},
		{"\"text\"", false, NULL, NULL},
		{"{\"a\": 1, \"a\": 2}", false, NULL, NULL},
		{"{\"a\": ", false, NULL, NULL},
		{"", false, NULL, NULL},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *body = NULL, *rid = NULL;
		bool ok = frame_parse(cases[i].in, strlen(cases[i].in), &body, &rid);

		check(ok == cases[i].ok, "frame_parse result", cases[i].in);
		if (ok && cases[i].ok) {
			check(!strcmp(body, cases[i].body), "frame_parse body", body);
			check(cases[i].request_id ? rid && !strcmp(rid, cases[i].request_id) : !rid,
			      "frame_parse request_id", cases[i].in);
		} else
			check(!body && !rid, "nothing returned when refused", cases[i].in);
		free(body);
		free(rid);
	}
}

/* The frames built as text: welcome, reply, error, reset; plain and v1. */
static void
test_frame_text(void)
{
	char *f = frame_welcome("{\"hi\":1}", false);
	check(!strcmp(f, "{\"hi\":1}"), "plain welcome is the result", f);
	free(f);
	f = frame_welcome("{\"hi\":1}", true);
	check(!strcmp(f, "{\"type\": \"reply\", \"data\": {\"hi\":1}}"), "v1 welcome", f);
	free(f);
	f = frame_reply("\"r\"", "2", true);
	check(!strcmp(f, "{\"type\": \"reply\", \"request_id\": \"r\", \"data\": 2}"), "v1 reply",
	      f);
	free(f);
	f = frame_reply("\"r\"", "2", false);
	check(!strcmp(f, "2"), "plain reply is the result", f);
	free(f);
	f = frame_error("7", "no_route", "none", true);
	check(!strcmp(f,
		      "{\"type\":\"error\",\"request_id\":7,\"code\":\"no_route\",\"message\":\"none\"}"),
	      "v1 error", f);
	free(f);
	f = frame_error(NULL, "bad_json", "no", false);
	check(!strcmp(f, "{\"error\":\"bad_json\",\"message\":\"no\"}"), "plain error", f);
	free(f);
	f = frame_reset(42);
	check(!strcmp(f, "{\"type\": \"reset\", \"id\": \"42\"}"), "reset", f);
	free(f);
}

/* A signal's v1 frame, and what the bridge reads of a client action itself. */
static void
test_frame_signal(void)
{
	struct payload *p = frame_signal("room:1", "{\"x\":1}", 7);
	size_t data_len = 99;
	char *action;

	check(!strcmp(p->data,
		      "{\"type\": \"signal\", \"topic\": \"room:1\", \"data\": {\"x\":1}}"),
	      "v1 signal frame", p->data);
	check(p->len == strlen(p->data) && !p->binary, "signal frame length, text", p->data);
	payload_unref(p);
	action = frame_action("{\"action\":\"signal\",\"data\":[1, 2,3]}", &data_len);
	check(action && !strcmp(action, "signal"), "action named", action ? action : "NULL");
	check(data_len == 7, "data counted as compact JSON", "[1,2,3]");
	free(action);
	action = frame_action("{\"action\":3}", &data_len);
	check(!action && data_len == 0, "no action string, no data", "");
}

/* Close codes a row may ask for, reasons cut to fit, frame headers. */
static void
test_frame_close(void)
{
	static const struct {
		long long asked;
		int sent;
	} codes[] = {
		{1000, 1000}, {1001, 1001}, {1003, 1003}, {1004, 1000}, {1005, 1000},
		{1006, 1000}, {1011, 1011}, {1015, 1000}, {2999, 1000}, {3000, 3000},
		{4001, 4001}, {4999, 4999}, {5000, 1000}, {999, 1000},	{-1, 1000},
	};
	static const struct {
		size_t len;
		size_t head;
		unsigned char b1;
	} heads[] = {
		{0, 2, 0}, {125, 2, 125}, {126, 4, 126}, {65535, 4, 126}, {65536, 10, 127},
	};
	char reason[200];
	unsigned char h[FRAME_HEAD_MAX];

	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
		check(frame_close_code(codes[i].asked) == codes[i].sent, "frame_close_code", "");
	memset(reason, 'a', 130);
	reason[130] = '\0';
	check(frame_close_reason_len(reason) == 123, "reason cut to 123 bytes", "");
	memcpy(reason + 122, "\xc3\xa9", 2); /* an é across the cut */
	check(frame_close_reason_len(reason) == 122, "cut at a UTF-8 boundary", "");
	check(frame_close_reason_len("short") == 5, "short reason kept", "");
	for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
		size_t n = frame_ws_head(h, 0x1, true, heads[i].len);

		check(n == heads[i].head && h[0] == 0x81 && h[1] == heads[i].b1, "frame_ws_head",
		      "");
	}
	check(frame_ws_head(h, 0x0, false, 3) == 2 && h[0] == 0x00, "continuation, not fin", "");
}

int
main(void)
{
	test_policy_connect();
	test_policy_auth();
	test_queue();
	test_inline();
	test_frame_form();
	test_frame_parse();
	test_frame_text();
	test_frame_signal();
	test_frame_close();
	if (failures) {
		printf("%d failures\n", failures);
		return 1;
	}
	printf("test_units: all passed\n");
	return 0;
}
