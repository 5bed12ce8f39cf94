/*
 * fuzz_cursor.c: libFuzzer target for the ?since= cursor parser
 * (request_cursor in bridge/request.c, used by the gate for resume).
 * Checks the promise the gate relies on: what it passes on is a message id
 * (1-18 decimal digits) or a ws_cursor() value (request_cursor_valid).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "request.h"

/* Parse the input as a request target; check what a found cursor looks like. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *target = malloc(size + 1);
	char since[24];

	memcpy(target, data, size);
	target[size] = '\0';
	if (request_cursor(target, since, sizeof(since))) {
		size_t n = strlen(since);

		if (n < 1 || strspn(since, "0123456789abcdef:,") != n || !request_cursor_valid(since))
			abort();
		/* an id fits an int64, as positions do */
		if (strchr(since, ':') == NULL && strtoll(since, NULL, 10) < 0)
			abort();
	}
	free(target);
	return 0;
}
