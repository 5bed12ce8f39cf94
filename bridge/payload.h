/*
 * payload.h: one message body, reference-counted, shared by every send
 * queue that holds it; and the outbox row a body comes in, fetched or
 * parsed from an inline NOTIFY payload (payload_inline_next).  Uses util
 * only: unit-tested in test_units.c.
 */
#ifndef WSNOTIFY_PAYLOAD_H
#define WSNOTIFY_PAYLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct payload {
	int refs;
	bool binary;	    /* written as a binary frame */
	char topic[129];    /* publish_ws's topic, named in the v1 text envelope; "" otherwise */
	struct payload *v1; /* its wsnotify.v1 envelope for message v1_id, once built */
	int64_t v1_id;
	size_t len;
	char data[];
};

/* A new payload holding a copy of data, with one reference. */
struct payload *payload_new(const char *data, size_t len);
/* A new payload of len bytes (data uninitialized, NUL after it), with one reference. */
struct payload *payload_alloc(size_t len, bool binary);
/* A new binary payload from one line of standard base64; NULL when invalid. */
struct payload *payload_new_base64(const char *b64, size_t len);
/* Drop one reference (and the envelope's, with the last). */
void payload_unref(struct payload *p);

/*
 * One outbox row, fetched or from an inline payload.  target is target_len
 * bytes, not necessarily NUL-terminated: an inline payload's target runs
 * straight into its body, and is looked up in place rather than copied.
 */
struct payload_row {
	int64_t id;
	char kind;	    /* u user, c connection, b broadcast, t topic, x close */
	const char *target; /* NULL for a broadcast */
	size_t target_len;
	const char *body; /* binary: base64 */
	size_t body_len;
	const char *connections; /* t: the JSON array of this bridge's subscribers */
	bool binary;
};

/*
 * One message of an opened inline NOTIFY payload, "<kind> <target bytes>
 * <body bytes>\n<target><body>" at *at (kind u, b, c or x): into *m (kind,
 * target and body; a broadcast's target is NULL), and *at moved past it.
 * False when it does not parse or runs past end.
 */
bool payload_inline_next(const char **at, const char *end, struct payload_row *m);

#endif
