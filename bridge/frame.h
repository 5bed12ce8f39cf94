/*
 * frame.h: what a client text message is, before any routing state is
 * involved: a JSON object (re-serialized compactly for wsnotify_invoke) and
 * its request_id.  Pure (jansson only), so it is fuzzed on its own
 * (fuzz/fuzz_frame.c); route.c decides rate limits and queueing.
 */
#ifndef WSNOTIFY_FRAME_H
#define WSNOTIFY_FRAME_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Parse one client message.  True when it is a JSON object without duplicate
 * keys: *body gets it as compact JSON text (key order kept).  *request_id
 * gets its "request_id" as JSON text when that is a string or a number, else
 * NULL.  Both malloc'd; both NULL when false is returned.
 */
bool frame_parse(const char *data, size_t len, char **body, char **request_id);

#endif
