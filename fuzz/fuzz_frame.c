/*
 * fuzz_frame.c: libFuzzer target for client-frame handling
 * (frame_parse in bridge/frame.c, called by route_on_message): what a
 * client text message turns into before it reaches wsnotify_invoke.
 * Checks: an accepted message's body is again a JSON object equal to the
 * input's, and its request_id is the input's request_id.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "frame.h"

/* Parse the input as a client message; check the body round-trips. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *body, *rid;
	json_t *in, *out;

	if (!frame_parse((const char *) data, size, &body, &rid)) {
		if (body || rid)
			abort();
		return 0;
	}
	in = json_loadb((const char *) data, size, JSON_REJECT_DUPLICATES, NULL);
	out = json_loads(body, JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(out) || !json_equal(in, out))
		abort();
	if (rid) {
		json_t *r = json_loads(rid, JSON_DECODE_ANY, NULL);

		if (!json_equal(r, json_object_get(in, "request_id")))
			abort();
		json_decref(r);
	}
	json_decref(in);
	json_decref(out);
	free(body);
	free(rid);
	return 0;
}
