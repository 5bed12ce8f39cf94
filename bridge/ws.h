/*
 * ws.h: libwebsockets callbacks for the WebSocket and HTTP side.
 *
 * One callback serves the protocols "wsnotify" (the default: bare messages)
 * and "wsnotify.v1" (envelopes with a cursor; the envelope is built once
 * per message when it is first queued for a v1 connection, frame_form).  Queued frames are written in
 * batches of up to WS_TX_CHUNK bytes, one lws_write each, right after a
 * fetch queued them (the registry's writer, installed by ws_init) and in
 * LWS_CALLBACK_SERVER_WRITEABLE when the socket had no room; large messages
 * go out as fragments of WS_TX_CHUNK bytes.  The gate hands each
 * authorized socket over with ws_adopt.  Uses the database session
 * (session_disconnect), routes, the registry, queue, frame and the loop.
 */
#ifndef WSNOTIFY_WS_H
#define WSNOTIFY_WS_H

#include <stdbool.h>

#include <libwebsockets.h>

#define WS_TX_CHUNK (64 * 1024)
/*
 * The protocols' rx_buffer_size.  lws 4.1 mallocs it (plus LWS_PRE) for
 * every connection when it is established and keeps it until the close, so
 * it is paid by every idle connection.  A longer frame reaches
 * LWS_CALLBACK_RECEIVE in pieces of this size, which ws_on_receive gathers
 * anyway.  A control frame must fit in one piece (lws would answer a ping
 * or read a close in several parts): its payload is at most 125 bytes.
 */
#define WS_RX_BUFFER 128

/* The protocol callback for "wsnotify" and "wsnotify.v1". */
int ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		size_t len);
struct conn;

/* Install the registry's writer (before any connection exists). */
void ws_init(void);
/*
 * Give lws an authorized socket (a dup: the caller keeps fd) with the
 * request head already read, for c.  True when lws took c: it owns it now
 * (and may already have freed it); false: c is still the caller's.
 */
bool ws_adopt(int fd, const char *head, size_t len, struct conn *c);
/* Periodic check: pings, pong timeouts, idle and expired connections. */
void ws_sweep(void);
/* Close every connection with 1001 (drain). */
void ws_close_all(void);

#endif
