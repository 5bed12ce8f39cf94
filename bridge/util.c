/*
 * util.c: small pure helpers that several bridge modules share (util.h).
 */
#include "util.h"

/* The value of one hexadecimal digit, or -1. */
int
util_hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}
