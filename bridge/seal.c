/*
 * seal.c: open inline NOTIFY payloads sealed by the extension (AES-256-GCM,
 * extension/seal.c).  Any database role can NOTIFY on the bridges' channel:
 * what does not open with the key is ignored and the bridge fetches, so a
 * forged payload costs one fetch and delivers nothing.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "seal.h"
#include "util.h"

#define SEAL_IV_LEN 12
#define SEAL_TAG_LEN 16

static unsigned char key[SEAL_KEY_LEN];
static bool have_key;

bool
seal_set_key(const char *hex)
{
	have_key = false;
	if (!hex || strncmp(hex, "\\x", 2) != 0 || strlen(hex) != 2 + 2 * SEAL_KEY_LEN)
		return false;
	for (int i = 0; i < SEAL_KEY_LEN; i++) {
		int hi = util_hex_value(hex[2 + 2 * i]), lo = util_hex_value(hex[3 + 2 * i]);

		if (hi < 0 || lo < 0)
			return false;
		key[i] = (unsigned char) (hi << 4 | lo);
	}
	have_key = true;
	return true;
}

void
seal_forget_key(void)
{
	OPENSSL_cleanse(key, sizeof(key));
	have_key = false;
}

bool
seal_open(const char *aad, size_t aad_len, const char *b64, size_t b64_len, char **plain,
	  size_t *plain_len)
{
	char *sealed;
	size_t sealed_len;
	EVP_CIPHER_CTX *ctx;
	char *out;
	int len, n;
	bool ok;

	if (!have_key)
		return false;
	sealed = util_alloc(b64_len * 3 / 4 + 1);
	if (!util_base64_decode(b64, b64_len, sealed, &sealed_len) ||
	    sealed_len < SEAL_IV_LEN + SEAL_TAG_LEN) {
		free(sealed);
		return false;
	}
	n = (int) (sealed_len - SEAL_IV_LEN - SEAL_TAG_LEN);
	out = util_alloc((size_t) n + 1);
	ctx = EVP_CIPHER_CTX_new();
	ok = ctx && EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
	     EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, SEAL_IV_LEN, NULL) == 1 &&
	     EVP_DecryptInit_ex(ctx, NULL, NULL, key, (unsigned char *) sealed) == 1 &&
	     EVP_DecryptUpdate(ctx, NULL, &len, (const unsigned char *) aad, (int) aad_len) == 1 &&
	     EVP_DecryptUpdate(ctx, (unsigned char *) out, &len,
			       (unsigned char *) sealed + SEAL_IV_LEN, n) == 1 &&
	     EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, SEAL_TAG_LEN,
				 sealed + SEAL_IV_LEN + n) == 1 &&
	     EVP_DecryptFinal_ex(ctx, (unsigned char *) out + len, &len) == 1;
	EVP_CIPHER_CTX_free(ctx);
	free(sealed);
	if (!ok) {
		free(out);
		return false;
	}
	out[n] = '\0';
	*plain = out;
	*plain_len = (size_t) n;
	return true;
}
