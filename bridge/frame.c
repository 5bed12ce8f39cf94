/*
 * frame.c: parse a client text message (see frame.h).
 */
#include <stdlib.h>

#include <jansson.h>

#include "frame.h"

/* Parse one client message into its compact body and request_id. */
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
