/*-------------------------------------------------------------------------
 *
 * seal.c
 *	  Seal (AES-256-GCM: encrypt and authenticate) the messages an inline
 *	  NOTIFY payload carries (docs/design.md).
 *
 * Any role that can connect may LISTEN on any channel and NOTIFY on it.
 * Bare ids in the payload told a listener little and a forged one made a
 * bridge fetch for nothing; message bodies are another matter: in clear, any
 * role could read everyone's messages, and a forged payload could put words
 * in any user's socket.  So they travel sealed under a key that only the
 * extension's owner (websocket_inline_key) and the bridges
 * (wsnotify_inline_key(), granted to wsnotify_bridge) can read; the ids in
 * front are the additional authenticated data, so they cannot be moved.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/evp.h>

#include "common/base64.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "wsnotify.h"

#define SEAL_KEY_LEN 32
#define SEAL_IV_LEN 12
#define SEAL_TAG_LEN 16

/* The key, read once per backend for the schema in key_namespace. */
static unsigned char seal_key[SEAL_KEY_LEN];
static Oid	key_namespace = InvalidOid;
static bool key_loaded = false;

/*
 * Read the key, as the table's owner, if this backend has not yet.
 * Without a usable key nothing is sealed: messages are fetched instead, as
 * before inline payloads existed.
 */
void
SealPrepare(Oid namespace)
{
	bool		isnull;
	Datum		value;
	bytea	   *key;
	UtilStatement stmt = {NULL, 0, NULL, NULL, "websocket_inline_key", true,
	NULL};

	if (key_namespace == namespace)
		return;
	key_namespace = namespace;
	key_loaded = false;
	stmt.sql = psprintf("SELECT key FROM %s",
						UtilQualifiedName(namespace, "websocket_inline_key"));
	if (UtilExec(namespace, &stmt, &value, &isnull, 1) != 1 || isnull)
		return;
	key = DatumGetByteaPP(value);
	if (VARSIZE_ANY_EXHDR(key) != SEAL_KEY_LEN)
		return;
	memcpy(seal_key, VARDATA_ANY(key), SEAL_KEY_LEN);
	key_loaded = true;
}

/*
 * Append " " and base64(iv | ciphertext | tag) of plain to out, with out's
 * current contents as the authenticated data.  False, and out unchanged,
 * when there is no key or OpenSSL fails.
 */
bool
SealAppend(StringInfo out, const char *plain, int plain_len)
{
	int			sealed_len = SEAL_IV_LEN + plain_len + SEAL_TAG_LEN;
	unsigned char *sealed;
	EVP_CIPHER_CTX *ctx;
	int			len;
	bool		ok;
	int			encoded;
	int			before = out->len;

	if (!key_loaded)
		return false;
	sealed = palloc(sealed_len);
	if (!pg_strong_random(sealed, SEAL_IV_LEN))
	{
		pfree(sealed);
		return false;
	}
	ctx = EVP_CIPHER_CTX_new();
	ok = ctx &&
		EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, SEAL_IV_LEN, NULL) == 1 &&
		EVP_EncryptInit_ex(ctx, NULL, NULL, seal_key, sealed) == 1 &&
		EVP_EncryptUpdate(ctx, NULL, &len, (unsigned char *) out->data, out->len) == 1 &&
		EVP_EncryptUpdate(ctx, sealed + SEAL_IV_LEN, &len, (const unsigned char *) plain,
						  plain_len) == 1 &&
		EVP_EncryptFinal_ex(ctx, sealed + SEAL_IV_LEN + len, &len) == 1 &&
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, SEAL_TAG_LEN,
							sealed + SEAL_IV_LEN + plain_len) == 1;
	EVP_CIPHER_CTX_free(ctx);
	if (!ok)
	{
		pfree(sealed);
		return false;
	}
	appendStringInfoChar(out, ' ');
	enlargeStringInfo(out, pg_b64_enc_len(sealed_len) + 1);
	encoded = pg_b64_encode((char *) sealed, sealed_len, out->data + out->len,
							out->maxlen - out->len);
	pfree(sealed);
	if (encoded < 0)
	{
		out->len = before;
		out->data[before] = '\0';
		return false;
	}
	out->len += encoded;
	out->data[out->len] = '\0';
	return true;
}
