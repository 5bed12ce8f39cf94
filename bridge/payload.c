/*
 * payload.c: reference-counted message bodies and the inline payload
 * format (payload.h).
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

bool
payload_inline_next(const char **at, const char *end, struct payload_row *m)
{
	const char *s = *at;
	char *next;
	unsigned long long tl, bl;

	if (end - s < 6 || s[1] != ' ')
		return false;
	m->kind = s[0];
	if (!strchr("ubcx", m->kind))
		return false;
	tl = strtoull(s + 2, &next, 10);
	if (*next != ' ')
		return false;
	bl = strtoull(next + 1, &next, 10);
	if (*next != '\n' || next + 1 > end || tl > (size_t) (end - next - 1) ||
	    bl > (size_t) (end - next - 1) - tl)
		return false;
	m->target = m->kind == 'b' ? NULL : next + 1;
	m->target_len = tl;
	m->body = next + 1 + tl;
	m->body_len = bl;
	*at = m->body + bl;
	return true;
}
