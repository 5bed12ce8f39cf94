/*
 * pgshim.h: the backend stand-ins of pgshim.c, for fuzz_token.c.
 */
#ifndef WSNOTIFY_PGSHIM_H
#define WSNOTIFY_PGSHIM_H

/* An RSA public key (PEM) for the explicit-key form. */
extern const char *const shim_rsa_public_key;
/* Free every palloc'd chunk; forget the PG_TRY stack. */
void shim_reset(void);

#endif
