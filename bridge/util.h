/*
 * util.h: small pure helpers that several bridge modules share.
 */
#ifndef WSNOTIFY_UTIL_H
#define WSNOTIFY_UTIL_H

/* The value of one hexadecimal digit, or -1 when c is none. */
int util_hex_value(char c);

#endif
