/*
 * ws.c: the WebSocket side: established, writeable, receive, closed.
 */
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "frame.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "queue.h"
#include "registry.h"
#include "route.h"
#include "session.h"
#include "util.h"
#include "ws.h"

#define WS_FRAME_HEAD_MAX FRAME_HEAD_MAX
/*
 * One batch: frames of at most WS_TX_CHUNK payload bytes plus their headers,
 * inside the protocols' tx_packet_size (WS_TX_CHUNK + 64, main.c): lws_issue_raw
 * sends no more than that per call and would buffer the rest of a larger one.
 */
#define WS_BATCH (WS_TX_CHUNK + 2 * WS_FRAME_HEAD_MAX)

static unsigned char ws_txbuf[LWS_PRE + WS_BATCH];

/* The socket being handed over by ws_adopt, claimed on its first callback. */
static struct conn *handoff_conn;
static int handoff_fd = -1;
static bool handoff_claimed; /* lws claimed handoff_conn (it may be freed already) */

enum ws_flush { WS_FLUSH_DONE, WS_FLUSH_CHOKED, WS_FLUSH_CLOSE, WS_FLUSH_FAILED };

/* The connection's row must go: log, count, queue wsnotify_disconnect, free. */
static void
ws_conn_gone(struct conn *c, const char *why)
{
	log_info("connection %s closed (user %s): %s", c->id, c->user_id, why);
	metrics.connections_closed++;
	session_disconnect(c->id);
	registry_remove(c);
}

/* LWS_CALLBACK_ESTABLISHED: the handshake is done. */
static int
ws_on_established(struct lws *wsi, struct conn *c)
{
	c->wsi = wsi;
	if (c->state == CONN_HANDSHAKE)
		c->state = CONN_OPEN;
	c->last_rx_ms = c->last_tx_ms = now_ms();
	metrics.connections_accepted++;
	log_info("connection %s open (user %s)", c->id, c->user_id);
	if (c->state == CONN_CLOSING || c->q.head)
		lws_callback_on_writable(wsi);
	return 0;
}

/* Write a close frame with the connection's code and reason; the caller returns -1. */
static int
ws_send_close(struct lws *wsi, struct conn *c, int code, const char *reason)
{
	c->state = CONN_CLOSED; /* nothing may follow the close frame */
	lws_close_reason(wsi, (enum lws_close_status) code, (unsigned char *) reason,
			 frame_close_reason_len(reason));
	return -1;
}

/*
 * Frame the head of the queue into one batch: whole small messages one
 * after the other, a message longer than what is left of the batch in a
 * batch of its own, cut into WS_TX_CHUNK fragments (TEXT or BINARY, then
 * CONTINUATION, FIN on the last) so that a 1 MB message never makes lws
 * buffer a large partial write.  A due ping goes between messages.  Items
 * leave the queue as they are framed: once lws_write takes the batch, lws
 * owns what the socket did not accept.
 */
static size_t
ws_fill_batch(struct conn *c)
{
	unsigned char *start = ws_txbuf + LWS_PRE, *p = start;
	unsigned char *end = start + WS_BATCH;
	struct out_item *it;

	while ((size_t) (end - p) > WS_FRAME_HEAD_MAX) {
		if (c->ping_due && c->q.head_off == 0) {
			/*
			 * A payload, not an empty ping: lws 4.1 delivers no
			 * LWS_CALLBACK_RECEIVE_PONG for an empty pong, so every
			 * well-behaved client looked dead after ping_timeout.
			 */
			if ((size_t) (end - p) < 2 + 8)
				break;
			p += frame_ws_head(p, 0x9, true, 8);
			memcpy(p, FRAME_PING, 8);
			p += 8;
			c->ping_due = false;
			c->ping_outstanding = true;
			c->ping_sent_ms = now_ms();
			continue;
		}
		if (!(it = c->q.head) || !it->p)
			break;

		size_t left = it->p->len - c->q.head_off;
		size_t room = (size_t) (end - p) - WS_FRAME_HEAD_MAX;
		size_t chunk = left > WS_TX_CHUNK ? WS_TX_CHUNK : left;

		/* WS_BATCH holds a ping and a whole fragment: never stuck here */
		if (chunk > room)
			break;
		p += frame_ws_head(p,
				   c->q.head_off ? 0x0 :
				   it->p->binary ? 0x2 :
						   0x1,
				   chunk == left, chunk);
		memcpy(p, it->p->data + c->q.head_off, chunk);
		p += chunk;
		c->q.head_off += chunk;
		if (c->q.head_off == it->p->len) {
			metrics.messages_out++;
			metrics.bytes_out += it->p->len;
			queue_pop(&c->q);
		}
	}
	return (size_t) (p - start);
}

/*
 * Write queued frames while the socket takes them, one write() per batch.
 * lws_write buffers what a write leaves over (lws_issue_raw) and asks for
 * POLLOUT itself; until that is flushed, lws_partial_buffered() says so
 * without a syscall (lws_send_pipe_choked would poll(2) every time) and the
 * rest waits in the queue, where send_queue_max applies.
 */
static enum ws_flush
ws_write_queue(struct conn *c)
{
	for (;;) {
		size_t n;

		if (c->state == CONN_CLOSING || (c->q.head && !c->q.head->p && !c->ping_due))
			return WS_FLUSH_CLOSE;
		if (lws_partial_buffered(c->wsi))
			return WS_FLUSH_CHOKED;
		if (!(n = ws_fill_batch(c)))
			return WS_FLUSH_DONE;
		if (lws_write(c->wsi, ws_txbuf + LWS_PRE, n, LWS_WRITE_RAW) < (int) n)
			return WS_FLUSH_FAILED;
		c->last_tx_ms = now_ms();
	}
}

/*
 * Write what is queued now, outside any callback of this connection (after
 * a fetch): a delivery costs its write() and no trip through the event
 * loop.  Closes still go through the WRITEABLE callback, the only place
 * that can return -1 to lws.
 */
static void
ws_flush(struct conn *c)
{
	if (!c->wsi || (c->state != CONN_OPEN && c->state != CONN_CLOSING))
		return;
	switch (ws_write_queue(c)) {
	case WS_FLUSH_CLOSE:
		lws_callback_on_writable(c->wsi);
		break;
	case WS_FLUSH_FAILED:
		log_warn("connection %s: write failed, closing", c->id);
		c->state = CONN_CLOSED;
		lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
		break;
	case WS_FLUSH_DONE:
	case WS_FLUSH_CHOKED: /* lws asked for POLLOUT when it buffered */
		break;
	}
}

/* The registry's writer: a WRITEABLE callback, please. */
static void
ws_want_write(struct conn *c)
{
	lws_callback_on_writable(c->wsi);
}

/* LWS_CALLBACK_SERVER_WRITEABLE: as many frames as the socket takes, or a close. */
static int
ws_on_writeable(struct lws *wsi, struct conn *c)
{
	struct out_item *it;

	if (c->state != CONN_OPEN && c->state != CONN_CLOSING)
		return 0;
	switch (ws_write_queue(c)) {
	case WS_FLUSH_CLOSE:
		if (c->state == CONN_CLOSING)
			return ws_send_close(wsi, c, c->close_code, c->close_reason);
		it = c->q.head;
		log_info("connection %s: closing with %d as asked by close_ws", c->id,
			 it->close_code);
		return ws_send_close(wsi, c, it->close_code, it->close_reason);
	case WS_FLUSH_FAILED:
		log_warn("connection %s: write failed, closing", c->id);
		return -1;
	case WS_FLUSH_DONE:
	case WS_FLUSH_CHOKED:
		break;
	}
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
		log_warn(
			"connection %s: client message over max_message_size (%lld bytes), closing with 1009",
			c->id, cf_max_message_size);
		return ws_send_close(wsi, c, frame_close_too_big.code, frame_close_too_big.reason);
	}
	if (c->rx_len + len > c->rx_cap) {
		c->rx_cap = (c->rx_len + len) * 2;
		c->rx_buf = util_realloc(c->rx_buf, c->rx_cap);
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

/* The connection ws_adopt is handing to lws, for the wsi of its descriptor, once. */
static struct conn *
ws_claim(struct lws *wsi)
{
	struct conn *c = handoff_conn;

	if (!c || c->claimed || lws_get_socket_fd(wsi) != handoff_fd)
		return NULL;
	c->claimed = true;
	handoff_claimed = true;
	return c;
}

bool
ws_adopt(int fd, const char *head, size_t len, struct conn *c)
{
	handoff_conn = c;
	handoff_fd = fd;
	handoff_claimed = false;
	/* NULL or not, whether lws claimed c is what tells who owns it now */
	lws_adopt_socket_vhost_readbuf(loop_vhost, fd, head, len);
	handoff_conn = NULL;
	handoff_fd = -1;
	return handoff_claimed;
}

static const struct registry_writer ws_writer = {.want_write = ws_want_write, .flush = ws_flush};

void
ws_init(void)
{
	registry_init(&ws_writer);
}

int
ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
	struct conn *c = lws_get_opaque_user_data(wsi);

	if (c && c->magic != CONN_MAGIC) /* a raw descriptor bound to protocols[0] */
		return raw_dispatch(wsi, (int) reason);
	if (!c && (c = ws_claim(wsi)))
		lws_set_opaque_user_data(wsi, c);
	switch (reason) {
	case LWS_CALLBACK_HTTP:
		/*
		 * The gate answers plain HTTP itself and hands lws only upgrades
		 * it authorized; one that lws reads as plain HTTP is not served.
		 */
		return -1;
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
		/* only sockets authorized by the gate may upgrade */
		return c ? 0 : 1;
	case LWS_CALLBACK_ESTABLISHED:
		return c ? ws_on_established(wsi, c) : -1;
	case LWS_CALLBACK_SERVER_WRITEABLE:
		return c ? ws_on_writeable(wsi, c) : 0;
	case LWS_CALLBACK_RECEIVE:
		return c ? ws_on_receive(wsi, c, in, len) : -1;
	case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
		/* lws answers the close: write nothing after it */
		if (c)
			c->state = CONN_CLOSED;
		break;
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
			ws_conn_gone(c, c->close_reason ? c->close_reason : "socket closed");
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
		conn_close(c, &frame_close_expired);
		return;
	}
	if (c->ping_outstanding && cf_ping_timeout > 0 &&
	    now - c->ping_sent_ms > (uint64_t) cf_ping_timeout) {
		metrics.pings_timed_out++;
		log_info("connection %s: no pong within ping_timeout, closing", c->id);
		lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
		c->state = CONN_CLOSED; /* no more writes */
		return;
	}
	if (cf_idle_timeout > 0 && now - c->last_rx_ms > (uint64_t) cf_idle_timeout &&
	    now - c->last_tx_ms > (uint64_t) cf_idle_timeout) {
		log_info("connection %s: idle for idle_timeout, closing", c->id);
		conn_close(c, &frame_close_idle);
		return;
	}
	if (cf_ping_interval > 0 && !c->ping_outstanding && !c->ping_due &&
	    now - c->last_rx_ms >= (uint64_t) cf_ping_interval &&
	    now - c->ping_sent_ms >= (uint64_t) cf_ping_interval) {
		c->ping_due = true;
		lws_callback_on_writable(c->wsi);
	}
}

void
ws_sweep(void)
{
	uint64_t now = now_ms();
	double wall = (double) time(NULL);
	struct conn *c, *tmp;

	HASH_ITER(hh, registry_all(), c, tmp)
	if (c->state == CONN_OPEN && c->wsi)
		ws_check(c, now, wall);
}

void
ws_close_all(void)
{
	struct conn *c, *tmp;

	HASH_ITER(hh, registry_all(), c, tmp)
	conn_close(c, &frame_close_going_away);
}
