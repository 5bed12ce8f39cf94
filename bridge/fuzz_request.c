/*
 * fuzz_request.c: libFuzzer target for the request-head parser.
 * Build and run: make -C bridge fuzz && bridge/fuzz_request -max_total_time=60
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "request.h"

/* Parse arbitrary bytes as a request head, then query it. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *head = malloc(size + 1);
	struct request r;
	char out[256];

	memcpy(head, data, size);
	head[size] = '\0';
	if (request_parse(head, &r)) {
		request_query_param(r.target, "token", out, sizeof(out));
		request_origin_ok(r.origin, "https://a.example, *");
	}
	request_query_param(head, "token", out, sizeof(out));
	request_list_has(head, "wsnotify.v1");
	free(head);
	return 0;
}
