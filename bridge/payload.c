/*
 * payload.c: reference-counted message bodies (payload.h).
 */
#include <stdlib.h>
#include <string.h>

#include "payload.h"
#include "util.h"

struct payload *
payload_alloc(size_t len, bool binary)
{
	struct payload *p = util_alloc(sizeof(*p) + len + 1);

	p->refs = 1;
	p->binary = binary;
	p->topic[0] = '\0';
	p->v1 = NULL;
	p->v1_id = 0;
	p->len = len;
	p->data[len] = '\0';
	return p;
}

struct payload *
payload_new(const char *data, size_t len)
{
	struct payload *p = payload_alloc(len, false);

	memcpy(p->data, data, len);
	return p;
}

struct payload *
payload_new_base64(const char *b64, size_t len)
{
	struct payload *p = payload_alloc(len * 3 / 4, true);

	if (!util_base64_decode(b64, len, p->data, &p->len)) {
		free(p);
		return NULL;
	}
	return p;
}

void
payload_unref(struct payload *p)
{
	if (p && --p->refs == 0) {
		payload_unref(p->v1);
		free(p);
	}
}
