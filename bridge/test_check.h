/*
 * test_check.h: the one assertion of the table-driven tests (test_request.c,
 * test_units.c): a failed check prints what failed and on which input, and
 * counts in failures, which main turns into the exit status.
 */
#ifndef WSNOTIFY_TEST_CHECK_H
#define WSNOTIFY_TEST_CHECK_H

#include <stdbool.h>
#include <stdio.h>

static int failures;

/* Report one check. */
static void
check(bool ok, const char *what, const char *input)
{
	if (!ok) {
		failures++;
		printf("FAIL %s: %.80s\n", what, input);
	}
}

#endif
