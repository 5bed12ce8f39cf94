/*
 * frame.h: the client wire protocol, both ways, and nothing else
 * (docs/protocol.md).  Every frame the bridge sends a client is built here:
 * plain messages and the wsnotify.v1 text and binary envelopes, the
 * welcome, reply, error and reset frames, the close codes with their
 * reasons, and the WebSocket frame headers.  What a client sends is parsed
 * here too: a JSON object (re-serialized compactly for wsnotify_invoke) and
 * its request_id.  Pure (jansson, payload and util only), so it is
 * unit-tested (test_units.c) and fuzzed (fuzz/fuzz_frame.c) on its own.
 */
#ifndef WSNOTIFY_FRAME_H
#define WSNOTIFY_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "payload.h"

/*
 * Parse one client message.  True when it is a JSON object without duplicate
 * keys: *body gets it as compact JSON text (key order kept).  *request_id
 * gets its "request_id" as JSON text when that is a string or a number, else
 * NULL.  Both malloc'd; both NULL when false is returned.
 */
bool frame_parse(const char *data, size_t len, char **body, char **request_id);

/*
 * What a connection is sent for message p of id: p itself (plain), or for
 * v1 its wsnotify.v1 envelope, built once per message and shared by every
 * v1 recipient (no reference is added: queue_push takes its own).  Text
 * {"id": "N", "data": BODY} ("topic": "T" after the id for a topic
 * message); binary 0x01, the id as 8 bytes big-endian, then the message.
 */
struct payload *frame_form(struct payload *p, int64_t id, bool v1);

/* The frames below are malloc'd text; v1: the client asked for wsnotify.v1. */

/* The $connect handler's result, the first frame a client gets. */
char *frame_welcome(const char *welcome, bool v1);
/* A route handler's non-NULL result (request_id: JSON text or NULL). */
char *frame_reply(const char *request_id, const char *result, bool v1);
/* An error frame: code ("bad_json", "no_route", ...) and a message. */
char *frame_error(const char *request_id, const char *code, const char *message, bool v1);
/*
 * One error frame per topic of ?topics= the database refused (refused: its
 * JSON array of {"topic", "message"}), each given to emit; returns how many.
 */
int frame_refused_topics(const char *refused, bool v1, void (*emit)(const char *text, void *arg),
			 void *arg);
/*
 * The "action" of a client message as frame_parse gave it (malloc'd, NULL
 * when it has none), and the bytes of its "data" as compact JSON (0 when
 * absent): what the bridge checks itself before a signal reaches the database.
 */
char *frame_action(const char *body, size_t *data_len);
/* The v1 frame of a signal: {"type": "signal", "topic": T, "data": D}. */
struct payload *frame_signal(const char *topic, const char *data, size_t data_len);
/* A v1 reset frame: the client's cursor is gone, start again from id. */
char *frame_reset(int64_t id);

/* A close the bridge decides itself: its code and its reason. */
struct frame_close {
	int code;
	const char *reason;
};
extern const struct frame_close frame_close_going_away;	    /* 1001: drain */
extern const struct frame_close frame_close_binary_refused; /* 1003: no $binary route */
extern const struct frame_close frame_close_queue_full;	    /* 1008: send_queue_max */
extern const struct frame_close frame_close_too_big;	    /* 1009: max_message_size */
extern const struct frame_close frame_close_resume;	    /* 1012: replay interrupted */
extern const struct frame_close frame_close_idle;	    /* 1000: idle_timeout */
extern const struct frame_close frame_close_expired;	    /* 4001: the token's exp */

/* A close code a row (close_ws) may ask for, else 1000 (RFC 6455 7.4). */
int frame_close_code(long long code);
/* How many bytes of reason fit a close frame (123), cut at a UTF-8 boundary. */
size_t frame_close_reason_len(const char *reason);

/* The longest server frame header. */
#define FRAME_HEAD_MAX 10
/* Put an unmasked server frame header at p; returns its length. */
size_t frame_ws_head(unsigned char *p, unsigned char opcode, bool fin, size_t len);
/* The 8-byte ping payload (lws 4.1 reports no pong to an empty ping). */
#define FRAME_PING "wsnotify"

#endif
