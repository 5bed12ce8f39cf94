/*
 * pgshim.h: the backend stand-ins of pgshim.c, for fuzz_token.c.
 */
#ifndef WSNOTIFY_PGSHIM_H
#define WSNOTIFY_PGSHIM_H

/* The settings the harness gives token.c (shim_configure). */
extern const char *const shim_jwt_secret;
/* An RSA public key (PEM) for the explicit-key form. */
extern const char *const shim_rsa_public_key;
/* Free every palloc'd chunk; forget the PG_TRY stack. */
void shim_reset(void);
/* Set a setting token.c defined, through its check and assign hooks; false when refused. */
bool shim_set(const char *name, const char *value);
/* TokenInit, then the harness's configuration (secret, EC key, algorithms, aud, iss). */
void shim_configure(void);

#endif
