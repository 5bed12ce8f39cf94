/*
 * ws.c: the WebSocket side: established, writeable, receive, closed.
 */
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "deliver.h"
#include "gate.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "raw.h"
#include "registry.h"
#include "route.h"
#include "ws.h"

struct pss {
	struct http_reply http;
};

static unsigned char ws_txbuf[LWS_PRE + WS_TX_CHUNK];

/* Per-session data size for the protocol table. */
size_t
ws_pss_size(void)
{
	return sizeof(struct pss);
}

/* The connection's row must go: log, count, queue wsnotify_disconnect, free. */
static void
ws_conn_gone(struct conn *c, const char *why)
{
	log_info("connection %s closed (user %s): %s", c->id, c->user_id, why);
	metrics.connections_closed++;
	deliver_disconnect(c->id);
	registry_remove(c);
}

/* LWS_CALLBACK_ESTABLISHED: the handshake is done. */
static int
ws_on_established(struct lws *wsi, struct conn *c)
{
	c->wsi = wsi;
	c->state = CONN_OPEN;
	c->last_rx_ms = c->last_tx_ms = now_ms();
	metrics.connections_accepted++;
	log_info("connection %s open (user %s)", c->id, c->user_id);
	if (c->closing || c->head)
		lws_callback_on_writable(wsi);
	return 0;
}

/* Write a close frame with the connection's code and reason; the caller returns -1. */
static int
ws_send_close(struct lws *wsi, int code, const char *reason)
{
	size_t l = strlen(reason);

	/* a close reason holds at most 123 bytes: cut at a UTF-8 boundary */
	if (l > 123) {
		l = 123;
		while (l && ((unsigned char) reason[l] & 0xC0) == 0x80)
			l--;
	}
	lws_close_reason(wsi, (enum lws_close_status) code, (unsigned char *) reason, l);
	return -1;
}

/* Write the next fragment of the head message. */
static int
ws_write_message(struct lws *wsi, struct conn *c, struct out_item *it)
{
	size_t off = c->head_off, left = it->p->len - off;
	size_t chunk = left > WS_TX_CHUNK ? WS_TX_CHUNK : left;
	int flags = lws_write_ws_flags(it->p->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT,
				       off == 0, chunk == left);

	memcpy(ws_txbuf + LWS_PRE, it->p->data + off, chunk);
	if (lws_write(wsi, ws_txbuf + LWS_PRE, chunk, (enum lws_write_protocol) flags) < (int) chunk) {
		log_warn("connection %s: write failed, closing", c->id);
		return -1;
	}
	c->head_off += chunk;
	c->last_tx_ms = now_ms();
	if (c->head_off == it->p->len) {
		metrics.messages_out++;
		metrics.bytes_out += it->p->len;
		conn_pop(c);
	}
	return 0;
}

/* LWS_CALLBACK_SERVER_WRITEABLE: one write (or a close) per call. */
static int
ws_on_writeable(struct lws *wsi, struct conn *c)
{
	struct out_item *it = c->head;

	if (c->closing)
		return ws_send_close(wsi, c->close_code, c->close_reason);
	if (c->ping_due && c->head_off == 0) {
		c->ping_due = false;
		c->ping_outstanding = true;
		c->ping_sent_ms = now_ms();
		/*
		 * A payload, not an empty ping: lws 4.1 delivers no
		 * LWS_CALLBACK_RECEIVE_PONG for an empty pong, so every
		 * well-behaved client looked dead after ping_timeout.
		 */
		memcpy(ws_txbuf + LWS_PRE, "wsnotify", 8);
		if (lws_write(wsi, ws_txbuf + LWS_PRE, 8, LWS_WRITE_PING) < 0)
			return -1;
	} else if (it && !it->p) {
		log_info("connection %s: closing with %d as asked by close_ws", c->id, it->close_code);
		return ws_send_close(wsi, it->close_code, it->close_reason);
	} else if (it && ws_write_message(wsi, c, it) < 0)
		return -1;
	if (c->head || c->ping_due)
		lws_callback_on_writable(wsi);
	return 0;
}

/* LWS_CALLBACK_RECEIVE: gather a client message (max_message_size), then route it. */
static int
ws_on_receive(struct lws *wsi, struct conn *c, const void *in, size_t len)
{
	c->last_rx_ms = now_ms();
	c->ping_outstanding = false;
	if (lws_is_first_fragment(wsi))
		c->rx_binary = lws_frame_is_binary(wsi);
	/* count what the frame header announces too: do not wait for 1 GiB to refuse it */
	if (c->rx_len + len + lws_remaining_packet_payload(wsi) > (size_t) cf_max_message_size) {
		log_warn("connection %s: client message over max_message_size (%lld bytes), closing with 1009",
			 c->id, cf_max_message_size);
		return ws_send_close(wsi, 1009, "message too big");
	}
	if (c->rx_len + len > c->rx_cap) {
		c->rx_cap = (c->rx_len + len) * 2;
		c->rx_buf = realloc(c->rx_buf, c->rx_cap);
	}
	memcpy(c->rx_buf + c->rx_len, in, len);
	c->rx_len += len;
	if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi)) {
		metrics.client_frames_in++;
		if (c->rx_binary)
			route_on_binary(c, c->rx_buf, c->rx_len);
		else
			route_on_message(c, c->rx_buf, c->rx_len);
		/*
		 * Routing copied the message.  Most clients send a message or two
		 * (a subscribe) and then only listen: an idle connection keeps no
		 * buffer.
		 */
		c->rx_len = 0;
		free(c->rx_buf);
		c->rx_buf = NULL;
		c->rx_cap = 0;
	}
	return 0;
}

/* The callback for "wsnotify", "wsnotify.v1" and plain HTTP. */
int
ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
	    void *in, size_t len)
{
	struct pss *pss = user;
	struct conn *c = lws_get_opaque_user_data(wsi);

	if (c && c->magic != CONN_MAGIC)	/* a raw descriptor bound to protocols[0] */
		return raw_dispatch(wsi, (int) reason);
	if (!c && (c = gate_handoff_conn(wsi)))
		lws_set_opaque_user_data(wsi, c);
	switch (reason) {
	case LWS_CALLBACK_HTTP:
		return http_on_request(wsi, &pss->http);
	case LWS_CALLBACK_HTTP_WRITEABLE:
		if (pss && pss->http.body)
			return http_on_writeable(wsi, &pss->http);
		break;
	case LWS_CALLBACK_CLOSED_HTTP:
		if (pss)
			http_reply_free(&pss->http);
		break;
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
		/* only sockets authorized by the gate may upgrade */
		return c ? 0 : 1;
	case LWS_CALLBACK_ESTABLISHED:
		return c ? ws_on_established(wsi, c) : -1;
	case LWS_CALLBACK_SERVER_WRITEABLE:
		return c ? ws_on_writeable(wsi, c) : 0;
	case LWS_CALLBACK_RECEIVE:
		return c ? ws_on_receive(wsi, c, in, len) : -1;
	case LWS_CALLBACK_RECEIVE_PONG:
		if (c) {
			c->ping_outstanding = false;
			c->last_rx_ms = now_ms();
		}
		return 0;
	case LWS_CALLBACK_CLOSED:
		if (c) {
			lws_set_opaque_user_data(wsi, NULL);
			c->wsi = NULL;
			ws_conn_gone(c, c->closing ? c->close_reason : "socket closed");
		}
		return 0;
	case LWS_CALLBACK_WSI_DESTROY:
		if (c) {
			/* authorized but never established */
			lws_set_opaque_user_data(wsi, NULL);
			ws_conn_gone(c, "closed before the handshake completed");
		}
		return 0;
	default:
		break;
	}
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* Check one open connection's ping, idle and expiry deadlines. */
static void
ws_check(struct conn *c, uint64_t now, double wall)
{
	if (cf_close_on_token_expiry && c->expires_at > 0 &&
	    wall > c->expires_at + (double) cf_token_leeway / 1000.0) {
		log_info("connection %s: token expired, closing with 4001", c->id);
		conn_close(c, 4001, "token expired");
		return;
	}
	if (c->ping_outstanding && cf_ping_timeout > 0 &&
	    now - c->ping_sent_ms > (uint64_t) cf_ping_timeout) {
		metrics.pings_timed_out++;
		log_info("connection %s: no pong within ping_timeout, closing", c->id);
		lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
		c->state = CONN_PENDING;	/* no more writes */
		return;
	}
	if (cf_idle_timeout > 0 && now - c->last_rx_ms > (uint64_t) cf_idle_timeout &&
	    now - c->last_tx_ms > (uint64_t) cf_idle_timeout) {
		log_info("connection %s: idle for idle_timeout, closing", c->id);
		conn_close(c, 1000, "idle timeout");
		return;
	}
	if (cf_ping_interval > 0 && !c->ping_outstanding && !c->ping_due &&
	    now - c->last_rx_ms >= (uint64_t) cf_ping_interval &&
	    now - c->ping_sent_ms >= (uint64_t) cf_ping_interval) {
		c->ping_due = true;
		lws_callback_on_writable(c->wsi);
	}
}

/* Periodic check: pings, pong timeouts, idle and expired connections. */
void
ws_sweep(void)
{
	uint64_t now = now_ms();
	double wall = (double) time(NULL);
	struct conn *c, *tmp;

	HASH_ITER(hh, registry_all(), c, tmp)
		if (c->state == CONN_OPEN && c->wsi && !c->closing)
			ws_check(c, now, wall);
}

/* Close every connection with 1001 (drain). */
void
ws_close_all(void)
{
	struct conn *c, *tmp;

	HASH_ITER(hh, registry_all(), c, tmp)
		conn_close(c, 1001, "going away");
}
