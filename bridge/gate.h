/*
 * gate.h: the listening socket and the asynchronous upgrade.
 *
 * libwebsockets 4.1 decides a WebSocket upgrade synchronously inside its
 * callbacks (LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION / _HTTP_CONFIRM_UPGRADE
 * can only accept or refuse on the spot), so the database round trip cannot
 * happen there without blocking the loop.  The bridge therefore owns the
 * listening socket: each accepted socket is adopted as a raw descriptor, its
 * request head is read and parsed here, and an upgrade goes to auth.c,
 * which asks the database (wsnotify_connect) and answers through the
 * auth_wait's done hook.  Refusals (401/403/503) are written here;
 * an authorized socket is handed to lws with the bytes already read
 * (lws_adopt_socket_vhost_readbuf on a dup of the descriptor), and lws
 * performs the WebSocket handshake as if it had read them itself.  Plain
 * HTTP requests (/healthz, /metrics, static files) are answered here too,
 * keep-alive and pipelined, and lws never sees them (docs/bridge.md, Plain
 * HTTP: lws 4.1 spins on a body adopted with its head), through the
 * responder that the HTTP layer installs (gate_init).  Uses auth, ws
 * (ws_adopt), policy, request, response and the loop.
 */
#ifndef WSNOTIFY_GATE_H
#define WSNOTIFY_GATE_H

#include <stdbool.h>

struct request;
struct response;

/* Answer a plain HTTP request (not an upgrade) into *resp (initialized by it). */
typedef void (*gate_responder)(const struct request *r, struct response *resp);

/* Start the gate: plain HTTP requests go to respond; its gauge is registered. */
void gate_init(gate_responder respond);
/* Open the listening socket on cf_listen; false with a logged reason. */
bool gate_listen(void);
/*
 * Begin the drain: stop accepting, refuse every upgrade still waiting and
 * every later one, close keep-alive connections after their response.
 */
void gate_drain(void);
/* The port actually bound. */
int gate_port(void);
/* Record the port bound by another listener (TLS). */
void gate_set_port(int port);
/* Take one connected socket in (from accept4, or the TLS front's socketpair). */
void gate_accept_fd(int fd, const char *remote);
/* Periodic check: requests too slow to arrive or to be authorized. */
void gate_sweep(void);

#endif
