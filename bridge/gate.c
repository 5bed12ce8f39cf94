/*
 * gate.c: accept, read request heads, answer plain HTTP, refuse or hand an
 * authorized upgrade to libwebsockets.  See gate.h for why the bridge does
 * this itself.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include <utlist.h>

#include "auth.h"
#include "config.h"
#include "gate.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "policy.h"
#include "request.h"
#include "response.h"
#include "util.h"
#include "ws.h"

/*
 * What a socket before its upgrade is doing.  A connection serves any number
 * of plain HTTP requests (keep-alive, pipelined) and then perhaps an upgrade.
 */
enum gate_state {
	GATE_HEAD,    /* reading a request head */
	GATE_WAITING, /* wsnotify_connect in flight */
	GATE_WRITING, /* writing a plain HTTP response */
	GATE_LINGER   /* final response sent: discarding what still comes */
};

struct gate {
	struct gate *next, *prev;
	struct lws *wsi; /* NULL once the client side is done */
	int fd;
	struct raw_tag tag;
	enum gate_state state;
	char *buf;
	size_t len, cap;
	bool peer_eof;	       /* the client half-closed: no further request */
	struct response out;   /* GATE_WRITING: the response */
	size_t out_off;	       /* bytes of its head and body written */
	bool keep;	       /* read the next request once it is written */
	struct loop_soon soon; /* POLLOUT asked from the WRITEABLE callback */
	uint64_t started_ms;   /* this request began (or the last write progressed) */
	uint64_t linger_until;
	unsigned served; /* plain HTTP requests answered on this connection */
	char remote[64];
	char path[256]; /* request path, token scrubbed */
	char user_agent[256];
	struct auth_wait auth; /* an upgrade being authorized */
};

static struct gate *gates;
/*
 * The gate whose requests gate_process is handling, and whether that gate
 * was freed meanwhile (a response that could not be written, a refusal of
 * a closed socket): it must not be touched after that.
 */
static struct gate *gate_current;
static bool gate_current_freed;

/*
 * First size of a request head's buffer, grown up to max_header_size: an
 * upgrade with a token in its query fits, and the buffers of many
 * handshakes at once leave less of the heap in holes between the
 * connections that stay.
 */
#define GATE_HEAD_START 1024

static int gate_on_event(struct lws *wsi, int reason, void *obj);
static int gate_on_listen_event(struct lws *wsi, int reason, void *obj);
static int listen_fd = -1, listen_port;
static struct lws *listen_wsi;
static struct raw_tag listen_tag = {RAW_MAGIC, gate_on_listen_event, NULL};
static bool draining;	       /* gate_drain: no new upgrade, no keep-alive */
static gate_responder respond; /* the HTTP layer's, for plain requests */

void
gate_init(gate_responder r)
{
	respond = r;
	auth_init();
}

int
gate_port(void)
{
	return listen_port;
}

void
gate_set_port(int port)
{
	listen_port = port;
}

bool
gate_listen(void)
{
	struct addrinfo hints = {0}, *ai = NULL;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[256], port[16];
	int one = 1, rc;

	if (!util_split_hostport(cf_listen, host, sizeof(host), port, sizeof(port))) {
		log_error("listen: \"%s\" is not HOST:PORT", cf_listen);
		return false;
	}
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai);
	if (rc != 0) {
		log_error("listen: cannot resolve \"%s\": %s", cf_listen, gai_strerror(rc));
		return false;
	}
	listen_fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (listen_fd < 0 ||
	    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(listen_fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(listen_fd, 4096) < 0) {
		log_error("listen: cannot listen on %s: %s", cf_listen, strerror(errno));
		freeaddrinfo(ai);
		return false;
	}
	freeaddrinfo(ai);
	getsockname(listen_fd, (struct sockaddr *) &ss, &sl);
	listen_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *) &ss)->sin6_port :
						       ((struct sockaddr_in *) &ss)->sin_port);
	listen_wsi = raw_adopt(listen_fd, &listen_tag);
	if (!listen_wsi) {
		log_error("listen: cannot add the listening socket to the loop");
		return false;
	}
	log_info("listening on %s (port %d)", cf_listen, listen_port);
	return true;
}

static void gate_refuse_all(void);

void
gate_drain(void)
{
	draining = true;
	if (listen_wsi)
		raw_drop(listen_wsi);
	listen_wsi = NULL;
	gate_refuse_all();
}

/* Forget a gate: drop its socket (if still ours) and free it. */
static void
gate_free(struct gate *g)
{
	if (g->wsi)
		raw_drop(g->wsi);
	loop_soon_cancel(&g->soon);
	response_free(&g->out);
	if (g == gate_current)
		gate_current_freed = true;
	DL_DELETE(gates, g);
	free(g->buf);
	auth_release(&g->auth);
	free(g);
}

/* Release the client side now; the gate itself lives on while a query is in flight. */
static void
gate_done(struct gate *g)
{
	if (g->state == GATE_WAITING) {
		if (g->wsi)
			raw_drop(g->wsi);
		g->wsi = NULL;
		return;
	}
	gate_free(g);
}

static void gate_drain_input(struct gate *g);

/*
 * The final response is written: half-close and read what the client still
 * sends (a body, more requests) until it closes or linger_timeout passes,
 * as nginx's lingering close does.  Closing with unread input would send a
 * reset, which can destroy the response before the client has read it.
 */
static void
gate_close(struct gate *g)
{
	if (!g->wsi || g->state == GATE_WAITING) {
		gate_done(g);
		return;
	}
	shutdown(g->fd, SHUT_WR);
	g->state = GATE_LINGER;
	g->linger_until = now_ms() + (uint64_t) cf_linger_timeout;
	g->len = 0;
	lws_rx_flow_control(g->wsi, 1);
	if (g->peer_eof)
		gate_free(g);
	else
		gate_drain_input(g);
}

/* Write an HTTP refusal with a plain-text reason, log it, count it. */
static void
gate_refuse(struct gate *g, const struct auth_refusal *no)
{
	char resp[1024], extra[64] = "";
	int n;

	metrics.auth_failures[no->why]++;
	/* failed authentications feed auth_failure_rate_limit (origin and bad requests do not) */
	if (no->why == AUTH_MISSING_TOKEN || no->why == AUTH_INVALID_TOKEN ||
	    no->why == AUTH_REFUSED)
		policy_auth_failed(g->remote, now_ms());
	if (no->status == 401)
		snprintf(extra, sizeof(extra), "WWW-Authenticate: Bearer\r\n");
	else if (no->status == 429 && no->retry_after > 0) /* none for the per-user cap */
		snprintf(extra, sizeof(extra), "Retry-After: %d\r\n", no->retry_after);
	else if (no->status == 426)
		snprintf(extra, sizeof(extra), "Sec-WebSocket-Version: 13\r\n");
	log_info("refused upgrade from %s %s%s%s: %d %s (%s)", g->remote, g->path,
		 g->auth.conn_id[0] ? " connection " : "", g->auth.conn_id, no->status,
		 metrics_auth_reason(no->why), no->reason);
	if (!g->wsi)
		return;
	n = snprintf(resp, sizeof(resp),
		     "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
		     "Content-Length: %zu\r\nConnection: close\r\n%s\r\n%s\n",
		     no->status, response_reason(no->status), strlen(no->reason) + 1, extra,
		     no->reason);
	if (write(g->fd, resp, (size_t) n) < 0)
		log_debug("refusal to %s not written: %s", g->remote, strerror(errno));
}

/* Refuse with a fixed reason (no Retry-After), then close lingering. */
static void
gate_turn_away(struct gate *g, int status, enum auth_failure why, const char *reason)
{
	struct auth_refusal no = {.status = status, .why = why};

	snprintf(no.reason, sizeof(no.reason), "%s", reason);
	gate_refuse(g, &no);
	gate_close(g);
}

/* Hand the socket and the bytes read so far to lws (c: authorized connection or NULL). */
static void
gate_handoff(struct gate *g, struct conn *c)
{
	int nfd = dup(g->fd);

	if (nfd < 0) {
		log_error("connection %s: dup failed: %s", g->auth.conn_id, strerror(errno));
		if (c)
			auth_drop(c);
		gate_free(g);
		return;
	}
	/*
	 * Once lws claimed c, ws.c owns it: lws may already have refused the
	 * upgrade (no Sec-WebSocket-Key, bad version) and closed it inside the
	 * adopt call, freeing c.  Only an unclaimed c is still ours to remove.
	 */
	if (!ws_adopt(nfd, g->buf, g->len, c) && c) {
		log_warn("connection %s: libwebsockets did not take the socket", g->auth.conn_id);
		auth_drop(c);
	}
	gate_free(g);
}

/* The database answered the upgrade's wsnotify_connect (the auth_wait's done). */
static void
gate_authorized(struct auth_wait *w, PGresult *res)
{
	struct gate *g = (struct gate *) ((char *) w - offsetof(struct gate, auth));
	struct auth_refusal no;
	struct conn *c;

	g->state = GATE_HEAD;
	c = auth_admit(w, res, !g->wsi || draining, &no);
	if (c) {
		gate_handoff(g, c);
		return;
	}
	if (g->wsi)
		gate_refuse(g, &no);
	gate_close(g);
}

/* Decide an upgrade request: refuse now, or ask the database. */
static void
gate_upgrade(struct gate *g, const struct request *r)
{
	struct auth_request a;
	struct auth_refusal no;

	if (draining)
		gate_turn_away(g, 503, AUTH_CAPACITY, "shutting down");
	else if (!auth_check(r, &g->auth, &a, &no)) {
		gate_refuse(g, &no);
		gate_close(g);
	} else if (!auth_ask(&g->auth, &a))
		gate_turn_away(g, 503, AUTH_DB_UNAVAILABLE, "database unavailable");
	else
		g->state = GATE_WAITING;
	/* refused or asked, no token stays on the stack */
	explicit_bzero(&a, sizeof(a));
}

/*
 * Write the response: head, then body or file, while the socket takes them.
 * True when it is all written; false when the socket is full (POLLOUT is
 * asked for) or the gate is gone.
 */
static bool
gate_write(struct gate *g)
{
	struct response *o = &g->out;
	size_t body = o->head_only ? 0 : o->body_len;

	while (g->out_off < o->head_len + body) {
		bool in_head = g->out_off < o->head_len;
		const char *p =
			in_head ? o->head + g->out_off : o->body + (g->out_off - o->head_len);
		size_t left = in_head ? o->head_len - g->out_off : o->head_len + body - g->out_off;
		ssize_t n = write(g->fd, p, left);

		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			goto full;
		if (n < 0) {
			log_debug("response to %s not written: %s", g->remote, strerror(errno));
			gate_free(g);
			return false;
		}
		g->out_off += (size_t) n;
		g->started_ms = now_ms();
	}
	while (o->file_fd >= 0 && !o->head_only && o->file_len > 0) {
		ssize_t n = sendfile(g->fd, o->file_fd, NULL, (size_t) o->file_len);

		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			goto full;
		if (n <= 0) {
			/* a file cut short under us cannot keep its Content-Length */
			log_warn("static file to %s: %s", g->remote,
				 n < 0 ? strerror(errno) : "file shrank");
			gate_free(g);
			return false;
		}
		o->file_len -= n;
		g->started_ms = now_ms();
	}
	return true;
full:
	loop_soon_writable(&g->soon, &g->wsi);
	return false;
}

/*
 * The response is written: read the next request on a keep-alive
 * connection (true: what is already buffered first), or close lingering.
 */
static bool
gate_written(struct gate *g)
{
	response_free(&g->out);
	g->out_off = 0;
	g->served++;
	if (!g->keep || g->peer_eof || draining) {
		gate_close(g);
		return false;
	}
	g->state = GATE_HEAD;
	g->started_ms = now_ms();
	lws_rx_flow_control(g->wsi, 1);
	return true;
}

/*
 * Answer a plain HTTP request.  A request with a body (no endpoint here
 * takes one) is answered and the connection closed lingering, which reads
 * and discards the body, however it is framed and whether or not it ends.
 */
static void
gate_serve(struct gate *g, const struct request *r, size_t head_len)
{
	respond(r, &g->out);
	g->keep = r->keep_alive && !request_has_body(r) && !g->peer_eof && !draining;
	if (!response_finish(&g->out, g->keep)) {
		log_error("request from %s: no memory for the response", g->remote);
		gate_free(g);
		return;
	}
	log_debug("request from %s: %s %s: %d", g->remote, r->method, g->path, g->out.status);
	memmove(g->buf, g->buf + head_len, g->len - head_len);
	g->len -= head_len;
	g->buf[g->len] = '\0';
	g->state = GATE_WRITING;
	g->out_off = 0;
	lws_rx_flow_control(g->wsi, 0); /* pipelined requests wait their turn */
	if (gate_write(g))
		gate_written(g);
}

/* A complete request head: serve it, refuse it, or ask the database. */
static void
gate_on_head(struct gate *g, struct request *r, size_t head_len)
{
	log_scrub(g->path, sizeof(g->path), r->target);
	snprintf(g->user_agent, sizeof(g->user_agent), "%s", r->user_agent);
	if (!r->upgrade)
		gate_serve(g, r, head_len);
	else if (request_has_body(r)) {
		/* lws would read the body as WebSocket frames after the 101 */
		gate_turn_away(g, 400, AUTH_BAD_REQUEST, "an upgrade request carries no body");
	} else
		gate_upgrade(g, r);
}

/*
 * Handle every request the buffer holds, one at a time: each is answered
 * (and its response written, or waiting for POLLOUT) before the next.
 */
static void
gate_process(struct gate *g)
{
	struct request *r = malloc(sizeof(*r));
	size_t head_len = 0;

	gate_current = g;
	gate_current_freed = false;
	while (r && g->state == GATE_HEAD) {
		switch (request_next(g->buf, g->len, (size_t) cf_max_header_size, r, &head_len)) {
		case REQUEST_INCOMPLETE:
			if (g->peer_eof)
				gate_done(g); /* closed before its request was whole */
			goto out;
		case REQUEST_TOO_LARGE:
			gate_turn_away(g, 431, AUTH_BAD_REQUEST, "request header too large");
			goto out;
		case REQUEST_MALFORMED:
			gate_turn_away(g, 400, AUTH_BAD_REQUEST, "malformed request");
			goto out;
		case REQUEST_COMPLETE:
			gate_on_head(g, r, head_len);
			explicit_bzero(r, sizeof(*r));
			if (gate_current_freed)
				goto out;
			break;
		}
	}
out:
	gate_current = NULL;
	free(r);
}
/*
 * Discard what a lingering connection still sends; free it at EOF.  At most
 * GATE_DRAIN_READS reads a turn, so a client that floods cannot hold the loop.
 */
#define GATE_DRAIN_READS 16
static void
gate_drain_input(struct gate *g)
{
	char scratch[16384];

	for (int i = 0; i < GATE_DRAIN_READS; i++) {
		ssize_t n = read(g->fd, scratch, sizeof(scratch));

		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			gate_free(g);
			return;
		}
	}
}

/* Grow the input buffer toward max_header_size + 1; false when it cannot grow. */
static bool
gate_grow(struct gate *g)
{
	size_t max = (size_t) cf_max_header_size + 1;
	size_t cap = g->cap * 2 < max ? g->cap * 2 : max;
	char *buf;

	if (g->cap >= max || g->state != GATE_HEAD || !(buf = realloc(g->buf, cap)))
		return false;
	g->buf = buf;
	g->cap = cap;
	return true;
}

/*
 * Read what the client sent, then handle the requests it completes.  Input
 * is bounded by max_header_size: past it reading stops, and a head that
 * has not ended by then is refused with 431.
 */
static int
gate_read(struct gate *g)
{
	if (g->state == GATE_LINGER) {
		gate_drain_input(g);
		return 0;
	}
	for (;;) {
		ssize_t n;

		if (g->len + 1 >= g->cap && !gate_grow(g)) {
			/* full: what is buffered must be handled before more is read */
			lws_rx_flow_control(g->wsi, 0);
			break;
		}
		n = read(g->fd, g->buf + g->len, g->cap - g->len - 1);
		if (n == 0) {
			g->peer_eof = true;
			lws_rx_flow_control(g->wsi, 0);
			break;
		}
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			gate_done(g);
			return 0;
		}
		g->len += (size_t) n;
		g->buf[g->len] = '\0';
	}
	if (g->state == GATE_HEAD)
		gate_process(g);
	else if (g->state == GATE_WAITING && g->peer_eof)
		gate_done(g); /* gone before the database answered */
	return 0;
}

/* Event on a socket before its upgrade (its raw_tag's handler). */
static int
gate_on_event(struct lws *wsi, int reason, void *obj)
{
	struct gate *g = obj;

	if (g->wsi != wsi)
		return 0;
	switch (reason) {
	case LWS_CALLBACK_RAW_RX_FILE:
		return gate_read(g);
	case LWS_CALLBACK_RAW_WRITEABLE_FILE:
		if (g->state == GATE_WRITING && gate_write(g) && gate_written(g))
			gate_process(g);
		return 0;
	case LWS_CALLBACK_RAW_CLOSE_FILE:
		g->wsi = NULL;
		gate_done(g);
		return 0;
	}
	return 0;
}

/* Take one accepted socket in; remote is the peer's address for logs and the row. */
void
gate_accept_fd(int fd, const char *remote)
{
	struct gate *g = util_calloc(1, sizeof(*g));

	snprintf(g->remote, sizeof(g->remote), "%s", remote);
	g->fd = fd;
	response_init(&g->out, 0); /* no file: calloc's zero is a descriptor */
	g->cap = (size_t) cf_max_header_size + 1 < GATE_HEAD_START ?
			 (size_t) cf_max_header_size + 1 :
			 GATE_HEAD_START;
	g->buf = util_alloc(g->cap);
	g->buf[0] = '\0';
	g->started_ms = now_ms();
	g->tag = (struct raw_tag){RAW_MAGIC, gate_on_event, g};
	g->auth.remote = g->remote;
	g->auth.user_agent = g->user_agent;
	g->auth.done = gate_authorized;
	DL_APPEND(gates, g);
	g->wsi = raw_adopt(fd, &g->tag);
	if (!g->wsi) {
		close(fd);
		gate_free(g);
	}
}

/* Take one socket from accept4 in. */
static void
gate_accept_one(int fd, struct sockaddr_storage *ss)
{
	char addr[INET6_ADDRSTRLEN] = "?";

	if (ss->ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *) ss)->sin_addr, addr, sizeof(addr));
	else if (ss->ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *) ss)->sin6_addr, addr, sizeof(addr));
	gate_accept_fd(fd, addr);
}

/* Event on the listening socket: accept what is waiting. */
static int
gate_on_listen_event(struct lws *wsi, int reason, void *obj)
{
	(void) wsi;
	(void) obj;
	if (reason != LWS_CALLBACK_RAW_RX_FILE)
		return 0;
	for (int i = 0; i < 256; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(listen_fd, (struct sockaddr *) &ss, &sl,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				log_warn("accept failed: %s", strerror(errno));
			break;
		}
		gate_accept_one(fd, &ss);
	}
	return 0;
}

/* Refuse every upgrade still waiting (drain). */
static void
gate_refuse_all(void)
{
	struct gate *g, *tmp;

	DL_FOREACH_SAFE(gates, g, tmp)
	{
		if (!g->wsi || (g->state != GATE_HEAD && g->state != GATE_WAITING))
			continue;
		if (g->state == GATE_HEAD && g->len == 0) {
			gate_free(g); /* nothing asked yet, or an idle keep-alive */
			continue;
		}
		gate_turn_away(g, 503, AUTH_CAPACITY, "shutting down");
	}
}

/* Periodic check of one gate: its state's deadline. */
static void
gate_check(struct gate *g, uint64_t now)
{
	uint64_t age = now - g->started_ms;
	bool slow = cf_handshake_timeout > 0 && age >= (uint64_t) cf_handshake_timeout;

	switch (g->state) {
	case GATE_LINGER:
		if (now >= g->linger_until)
			gate_free(g);
		return;
	case GATE_WRITING:
		if (slow) {
			log_info("response to %s: not read within handshake_timeout, closing",
				 g->remote);
			gate_free(g);
		}
		return;
	case GATE_HEAD:
		if (slow && g->len == 0 && g->served) {
			log_debug(
				"keep-alive connection from %s idle for handshake_timeout, closing",
				g->remote);
			gate_free(g);
		} else if (slow) {
			/* slowloris: the head trickles in, or never completes */
			metrics.auth_failures[AUTH_TIMEOUT]++;
			log_info(
				"request from %s: head not complete after handshake_timeout, closing",
				g->remote);
			gate_done(g);
		} else if (age >= (uint64_t) cf_auth_timeout) {
			log_debug("request from %s: head not complete after auth_timeout, closing",
				  g->remote);
			gate_done(g);
		}
		return;
	case GATE_WAITING:
		if (age >= (uint64_t) cf_auth_timeout) {
			struct auth_refusal no = {503, AUTH_TIMEOUT, 0,
						  "database did not answer in time"};

			gate_refuse(g, &no);
			gate_done(g);
		}
		return;
	}
}

/* Periodic check: requests too slow to arrive, be authorized, or be read. */
void
gate_sweep(void)
{
	uint64_t now = now_ms();
	struct gate *g, *tmp;

	policy_sweep(now);
	DL_FOREACH_SAFE(gates, g, tmp)
	if (g->wsi)
		gate_check(g, now);
}
