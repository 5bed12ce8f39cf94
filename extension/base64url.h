/*-------------------------------------------------------------------------
 *
 * base64url.h
 *	  Strict base64url decoding (base64url.c), shared by token.c and jwks.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WSNOTIFY_BASE64URL_H
#define WSNOTIFY_BASE64URL_H

#include "postgres.h"

extern unsigned char *Base64UrlDecode(const char *in, size_t len,
									  size_t *out_len);

#endif							/* WSNOTIFY_BASE64URL_H */
