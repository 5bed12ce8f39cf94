/*
 * ws.h: libwebsockets callbacks for the WebSocket and HTTP side.
 *
 * One callback serves the protocols "wsnotify" (the default: bare messages)
 * and "wsnotify.v1" (envelopes with a cursor; the envelope is built when a
 * message is queued, see registry.c), and the plain HTTP requests
 * (/healthz, /metrics, static files).  Queued frames are written in
 * batches of up to WS_TX_CHUNK bytes, one lws_write each, right after a
 * fetch queued them (ws_flush) and in LWS_CALLBACK_SERVER_WRITEABLE when
 * the socket had no room; large messages go out as fragments of
 * WS_TX_CHUNK bytes.
 */
#ifndef WSNOTIFY_WS_H
#define WSNOTIFY_WS_H

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
int ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
		void *in, size_t len);
struct conn;

/* Write what the connection has queued, as far as its socket takes it now. */
void ws_flush(struct conn *c);
/* Periodic check: pings, pong timeouts, idle and expired connections. */
void ws_sweep(void);
/* Close every connection with 1001 (drain). */
void ws_close_all(void);

#endif
