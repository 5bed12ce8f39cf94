/*
 * frame.c: every frame the bridge sends a client, and the parser of what a
 * client sends (frame.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "frame.h"
#include "util.h"

const struct frame_close frame_close_going_away = {1001, "going away"};
const struct frame_close frame_close_binary_refused = {1003, "binary frames are not accepted"};
const struct frame_close frame_close_queue_full = {1008, "send queue full"};
const struct frame_close frame_close_too_big = {1009, "message too big"};
const struct frame_close frame_close_resume = {1012, "database restarted, resume again"};
const struct frame_close frame_close_idle = {1000, "idle timeout"};
const struct frame_close frame_close_expired = {4001, "token expired"};

bool
frame_parse(const char *data, size_t len, char **body, char **request_id)
{
	json_t *msg = json_loadb(data, len, JSON_REJECT_DUPLICATES, NULL);
	json_t *rid;

	*body = NULL;
	*request_id = NULL;
	if (!json_is_object(msg)) {
		json_decref(msg);
		return false;
	}
	rid = json_object_get(msg, "request_id");
	if (json_is_string(rid) || json_is_number(rid))
		*request_id = json_dumps(rid, JSON_ENCODE_ANY | JSON_COMPACT);
	*body = json_dumps(msg, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(msg);
	if (!*body) {
		/* jansson could not serialize it (out of memory): treat as bad */
		free(*request_id);
		*request_id = NULL;
		return false;
	}
	return true;
}

/* The binary v1 envelope: 0x01, the id (8 bytes, big-endian), the message. */
static struct payload *
frame_envelope_binary(const struct payload *p, int64_t id)
{
	struct payload *e = payload_alloc(9 + p->len, true);

	e->data[0] = 0x01;
	for (int i = 0; i < 8; i++)
		e->data[1 + i] = (char) ((uint64_t) id >> (56 - 8 * i));
	memcpy(e->data + 9, p->data, p->len);
	return e;
}

/* The wsnotify.v1 envelope of message id, with one reference. */
static struct payload *
frame_envelope(const struct payload *p, int64_t id)
{
	char head[224];
	int hl;
	struct payload *e;

	if (p->binary)
		return frame_envelope_binary(p, id);
	/* topic names need no escaping (the extension checks them) */
	hl = p->topic[0] ?
		     snprintf(head, sizeof(head),
			      "{\"id\": \"%lld\", \"topic\": \"%s\", \"data\": ", (long long) id,
			      p->topic) :
		     snprintf(head, sizeof(head), "{\"id\": \"%lld\", \"data\": ", (long long) id);
	e = payload_alloc((size_t) hl + p->len + 1, false);
	memcpy(e->data, head, (size_t) hl);
	memcpy(e->data + hl, p->data, p->len);
	e->data[e->len - 1] = '}';
	return e;
}

/*
 * The envelope is kept with the message (p->v1) when it is built for its
 * first v1 recipient, so a broadcast builds it once, not once a recipient.
 */
struct payload *
frame_form(struct payload *p, int64_t id, bool v1)
{
	if (!v1)
		return p;
	if (!p->v1 || p->v1_id != id) {
		payload_unref(p->v1);
		p->v1 = frame_envelope(p, id);
		p->v1_id = id;
	}
	return p->v1;
}

/* {"type": "reply", ["request_id": R, ]"data": D}: a reply or a welcome in v1. */
static char *
frame_reply_v1(const char *request_id, const char *data)
{
	size_t n = strlen(data) + (request_id ? strlen(request_id) : 0) + 64;
	char *frame = util_alloc(n);

	if (request_id)
		snprintf(frame, n, "{\"type\": \"reply\", \"request_id\": %s, \"data\": %s}",
			 request_id, data);
	else
		snprintf(frame, n, "{\"type\": \"reply\", \"data\": %s}", data);
	return frame;
}

char *
frame_action(const char *body, size_t *data_len)
{
	json_t *o = json_loads(body, 0, NULL);
	json_t *action = json_object_get(o, "action");
	json_t *data = json_object_get(o, "data");
	char *name = json_is_string(action) ? util_strdup(json_string_value(action)) : NULL;

	*data_len = data ? json_dumpb(data, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY) : 0;
	json_decref(o);
	return name;
}

struct payload *
frame_signal(const char *topic, const char *data, size_t data_len)
{
	char head[200];
	/* topic names need no escaping (the extension checks them) */
	int hl = snprintf(head, sizeof(head),
			  "{\"type\": \"signal\", \"topic\": \"%s\", \"data\": ", topic);
	struct payload *p = payload_alloc((size_t) hl + data_len + 1, false);

	memcpy(p->data, head, (size_t) hl);
	memcpy(p->data + hl, data, data_len);
	p->data[hl + data_len] = '}';
	return p;
}

char *
frame_welcome(const char *welcome, bool v1)
{
	return v1 ? frame_reply_v1(NULL, welcome) : util_strdup(welcome);
}

char *
frame_reply(const char *request_id, const char *result, bool v1)
{
	return v1 ? frame_reply_v1(request_id, result) : util_strdup(result);
}

/* The common head of an error frame: v1 {"type": "error", ...}, else {"error": code}. */
static json_t *
frame_error_object(const char *request_id, const char *code, bool v1)
{
	json_t *o = json_object();

	if (v1) {
		json_object_set_new(o, "type", json_string("error"));
		if (request_id)
			json_object_set_new(o, "request_id",
					    json_loads(request_id, JSON_DECODE_ANY, NULL));
		json_object_set_new(o, "code", json_string(code));
	} else
		json_object_set_new(o, "error", json_string(code));
	return o;
}

/* Serialize and free an error frame. */
static char *
frame_dump(json_t *o)
{
	char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);

	json_decref(o);
	if (!text)
		util_out_of_memory(0);
	return text;
}

char *
frame_error(const char *request_id, const char *code, const char *message, bool v1)
{
	json_t *o = frame_error_object(request_id, code, v1);

	json_object_set_new(o, "message", json_string(message));
	return frame_dump(o);
}

int
frame_refused_topics(const char *refused, bool v1, void (*emit)(const char *text, void *arg),
		     void *arg)
{
	json_t *list = json_loads(refused, 0, NULL);
	json_t *item;
	size_t i;
	int n = 0;

	json_array_foreach(list, i, item)
	{
		json_t *o = frame_error_object(NULL, "handler_error", v1);
		char *text;

		json_object_set(o, "topic", json_object_get(item, "topic"));
		json_object_set(o, "message", json_object_get(item, "message"));
		text = frame_dump(o);
		emit(text, arg);
		free(text);
		n++;
	}
	json_decref(list);
	return n;
}

char *
frame_reset(int64_t id)
{
	char *frame = util_alloc(64);

	snprintf(frame, 64, "{\"type\": \"reset\", \"id\": \"%lld\"}", (long long) id);
	return frame;
}

int
frame_close_code(long long n)
{
	if (n < 1000 || n > 4999 || (n >= 1004 && n <= 1006) || (n >= 1015 && n < 3000))
		return 1000;
	return (int) n;
}

size_t
frame_close_reason_len(const char *reason)
{
	size_t l = strlen(reason);

	if (l > 123) {
		l = 123;
		while (l && ((unsigned char) reason[l] & 0xC0) == 0x80)
			l--;
	}
	return l;
}

size_t
frame_ws_head(unsigned char *p, unsigned char opcode, bool fin, size_t len)
{
	p[0] = (unsigned char) (opcode | (fin ? 0x80 : 0));
	if (len < 126) {
		p[1] = (unsigned char) len;
		return 2;
	}
	if (len < 65536) {
		p[1] = 126;
		p[2] = (unsigned char) (len >> 8);
		p[3] = (unsigned char) len;
		return 4;
	}
	p[1] = 127;
	for (int i = 0; i < 8; i++)
		p[2 + i] = (unsigned char) ((uint64_t) len >> (56 - 8 * i));
	return 10;
}
