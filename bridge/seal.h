/*
 * seal.h: open the sealed part of an inline NOTIFY payload.
 */
#ifndef WSNOTIFY_SEAL_H
#define WSNOTIFY_SEAL_H

#include <stdbool.h>
#include <stddef.h>

#define SEAL_KEY_LEN 32

/* Remember the key from wsnotify_inline_key() (bytea hex output); false if malformed. */
bool seal_set_key(const char *hex);
/* Forget it: nothing is opened until the next seal_set_key. */
void seal_forget_key(void);
/*
 * Decrypt and authenticate base64(iv | ciphertext | tag) with aad; on
 * success *plain (malloc'd, NUL-terminated) and *plain_len.
 */
bool seal_open(const char *aad, size_t aad_len, const char *b64, size_t b64_len, char **plain,
	       size_t *plain_len);

#endif
