/*
 * payload.h: one message body, reference-counted, shared by every send
 * queue that holds it.  Uses util only.
 */
#ifndef WSNOTIFY_PAYLOAD_H
#define WSNOTIFY_PAYLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct payload {
	int refs;
	bool binary;			/* written as a binary frame */
	char topic[129];		/* publish_ws's topic, named in the v1 text envelope; "" otherwise */
	struct payload *v1;		/* its wsnotify.v1 envelope for message v1_id, once built */
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

#endif
