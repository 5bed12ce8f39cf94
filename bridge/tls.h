/*
 * tls.h: wss:// in front of the gate.
 *
 * The gate must read the request head in clear (gate.h), and lws cannot
 * take over a TLS session begun elsewhere, so with tls_cert_file the bridge
 * terminates TLS on an lws vhost that listens in raw mode (no HTTP), and
 * relays each decrypted byte stream through a socketpair: one end is given to
 * the gate exactly like an accepted plain socket, the other is pumped to and
 * from the TLS connection inside the same loop, with flow control both ways.
 * While draining, new TLS connections still complete their handshake and
 * are refused by the gate with 503 (lws 4.1 cannot close one vhost's
 * listener alone).
 */
#ifndef WSNOTIFY_TLS_H
#define WSNOTIFY_TLS_H

#include <stdbool.h>

struct lws_context;

/* Create the TLS listening vhost on cf_listen; false with a logged reason. */
bool tls_listen(struct lws_context *ctx);
/* SIGHUP: load the certificate and key files again, if they are a valid pair. */
void tls_reload(void);

#endif
