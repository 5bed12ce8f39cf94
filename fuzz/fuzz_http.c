/*
 * fuzz_http.c: libFuzzer target for what the gate does with the bytes of a
 * connection before any upgrade: find each request head (request_next,
 * pipelined one after another, bodies and NULs included), decide whether a
 * body follows, resolve a static path (files_path) and format the response
 * (response.c) — every step of bridge/gate.c that reads client bytes,
 * without the sockets.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "files.h"
#include "request.h"
#include "response.h"

/* Does a path from files_path climb out of the root (a ".." segment, a leading /)? */
static int
fuzz_climbs(const char *path)
{
	const char *seg = path;

	if (*path == '/')
		return 1;
	while (seg) {
		const char *slash = strchr(seg, '/');
		size_t l = slash ? (size_t) (slash - seg) : strlen(seg);

		if (l == 2 && seg[0] == '.' && seg[1] == '.')
			return 1;
		seg = slash ? slash + 1 : NULL;
	}
	return 0;
}

/* Treat data as a connection's input: serve requests until one ends it. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *) data;
	struct request r;
	size_t head_len;

	for (int turns = 0; turns < 64; turns++) {
		struct response resp;
		char path[256];

		if (request_next(p, size, 1024, &r, &head_len) != REQUEST_COMPLETE)
			break;
		if (head_len > size)
			abort();
		response_init(&resp, 0);
		if (!files_path(r.target, path, sizeof(path)))
			path[0] = '\0';
		else if (fuzz_climbs(path))
			abort();	/* a path that climbs out must never be produced */
		response_text(&resp, 404, files_type(path), "not found\n", 10);
		response_header(&resp, "X-Len: %lld\r\n", r.content_length);
		response_finish(&resp, r.keep_alive);
		response_free(&resp);
		if (!r.keep_alive || request_has_body(&r) || r.upgrade)
			break;
		p += head_len;
		size -= head_len;
	}
	return 0;
}
