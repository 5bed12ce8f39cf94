/*
 * gate.c: accept, read the request head, authorize through the database,
 * then refuse with an HTTP status or hand the socket to libwebsockets.
 * See gate.h for why the bridge does this itself.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include <utlist.h>

#include "config.h"
#include "db.h"
#include "deliver.h"
#include "frame.h"
#include "gate.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "policy.h"
#include "registry.h"
#include "request.h"
#include "response.h"
#include "util.h"
#include "ws.h"

/*
 * What a socket before its upgrade is doing.  A connection serves any number
 * of plain HTTP requests (keep-alive, pipelined) and then perhaps an upgrade.
 */
enum gate_state {
	GATE_HEAD,			/* reading a request head */
	GATE_WAITING,			/* wsnotify_connect in flight */
	GATE_WRITING,			/* writing a plain HTTP response */
	GATE_LINGER			/* final response sent: discarding what still comes */
};

struct gate {
	struct gate *next, *prev;
	struct lws *wsi;		/* NULL once the client side is done */
	int fd;
	struct raw_tag tag;
	enum gate_state state;
	char *buf;
	size_t len, cap;
	bool peer_eof;			/* the client half-closed: no further request */
	struct response out;		/* GATE_WRITING: the response */
	size_t out_off;			/* bytes of its head and body written */
	bool keep;			/* read the next request once it is written */
	struct loop_soon soon;		/* POLLOUT asked from the WRITEABLE callback */
	uint64_t started_ms;		/* this request began (or the last write progressed) */
	uint64_t linger_until;
	unsigned served;		/* plain HTTP requests answered on this connection */
	char conn_id[40];
	char remote[64];
	char path[256];			/* request path, token scrubbed */
	char user_agent[256];
	bool envelope;			/* asked for wsnotify.v1 */
	bool resume;			/* with ?since= */
	char *since;			/* ?since=, malloc'd */
	int retry_after;		/* seconds, for a 429 */
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

static void gate_replay(struct conn *c, const char *since);
static int gate_on_event(struct lws *wsi, int reason, void *obj);
static int gate_on_listen_event(struct lws *wsi, int reason, void *obj);
static int gates_waiting;
static int listen_fd = -1, listen_port;
static struct lws *listen_wsi;
static struct raw_tag listen_tag = {RAW_MAGIC, gate_on_listen_event, NULL};
static bool draining;			/* gate_drain: no new upgrade, no keep-alive */
static gate_responder respond;	/* the HTTP layer's, for plain requests */

/* Gauge: upgrades waiting for the database. */
static double
gate_gauge_pending(void)
{
	return gates_waiting;
}

void
gate_init(gate_responder r)
{
	respond = r;
	metrics_gauge(GAUGE_UPGRADES_PENDING, gate_gauge_pending);
}

/* The port actually bound. */
int
gate_port(void)
{
	return listen_port;
}

/* Record the port bound by another listener (TLS). */
void
gate_set_port(int port)
{
	listen_port = port;
}

/* Open the listening socket on cf_listen; false with a logged reason. */
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
	listen_port = ntohs(ss.ss_family == AF_INET6 ?
			    ((struct sockaddr_in6 *) &ss)->sin6_port :
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
	free(g->since);
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
gate_refuse(struct gate *g, int status, enum auth_failure why, const char *reason)
{
	char resp[1024], extra[64] = "";
	int n;

	metrics.auth_failures[why]++;
	/* failed authentications feed auth_failure_rate_limit (origin and bad requests do not) */
	if (why == AUTH_MISSING_TOKEN || why == AUTH_INVALID_TOKEN || why == AUTH_REFUSED)
		policy_auth_failed(g->remote, now_ms());
	if (status == 401)
		snprintf(extra, sizeof(extra), "WWW-Authenticate: Bearer\r\n");
	else if (status == 429 && g->retry_after > 0)	/* none for the per-user cap */
		snprintf(extra, sizeof(extra), "Retry-After: %d\r\n", g->retry_after);
	else if (status == 426)
		snprintf(extra, sizeof(extra), "Sec-WebSocket-Version: 13\r\n");
	log_info("refused upgrade from %s %s%s%s: %d %s (%s)", g->remote, g->path,
		 g->conn_id[0] ? " connection " : "", g->conn_id, status,
		 metrics_auth_reason(why), reason);
	if (!g->wsi)
		return;
	n = snprintf(resp, sizeof(resp),
		     "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
		     "Content-Length: %zu\r\nConnection: close\r\n%s\r\n%s\n",
		     status, response_reason(status), strlen(reason) + 1, extra, reason);
	if (write(g->fd, resp, (size_t) n) < 0)
		log_debug("refusal to %s not written: %s", g->remote, strerror(errno));
}

/* Hand the socket and the bytes read so far to lws (c: authorized connection or NULL). */
static void
gate_handoff(struct gate *g, struct conn *c)
{
	int nfd = dup(g->fd);

	if (nfd < 0) {
		log_error("connection %s: dup failed: %s", g->conn_id, strerror(errno));
		if (c) {
			deliver_disconnect(c->id);
			registry_remove(c);
		}
		gate_free(g);
		return;
	}
	/*
	 * Once lws claimed c, ws.c owns it: lws may already have refused the
	 * upgrade (no Sec-WebSocket-Key, bad version) and closed it inside the
	 * adopt call, freeing c.  Only an unclaimed c is still ours to remove.
	 */
	if (!ws_adopt(nfd, g->buf, g->len, c) && c) {
		log_warn("connection %s: libwebsockets did not take the socket", c->id);
		deliver_disconnect(c->id);
		registry_remove(c);
	}
	gate_free(g);
}

/* Map a wsnotify_connect error to a status; reason gets the client's text. */
static int
gate_error_status(const PGresult *res, enum auth_failure *why, char *reason, size_t n)
{
	const char *st = db_sqlstate(res);
	char msg[256];

	db_errmsg(res, msg, sizeof(msg));
	if (!strncmp(st, "28", 2)) {
		*why = AUTH_INVALID_TOKEN;
		snprintf(reason, n, "%s", msg);
		return 401;
	}
	if (!strcmp(st, "23502")) {
		*why = AUTH_INVALID_TOKEN;
		snprintf(reason, n, "token carries no user id");
		return 401;
	}
	if (!strncmp(st, "P0", 2) || !strcmp(st, "42501")) {
		*why = AUTH_REFUSED;
		snprintf(reason, n, "%s", msg);
		return 403;
	}
	*why = AUTH_DB_UNAVAILABLE;
	log_error("wsnotify_connect failed (SQLSTATE %s): %s", st, msg);
	snprintf(reason, n, "database error");
	return 503;
}

/* Queue one text frame for c (frame_refused_topics' emit). */
static void
gate_emit(const char *text, void *arg)
{
	conn_enqueue_text(arg, text);
}

/*
 * The $connect handler's result, then one error frame per topic of
 * ?topics= that the database refused (docs/protocol.md).
 */
static void
gate_first_frames(struct conn *c, const PGresult *res)
{
	if (PQnfields(res) > 4 && !PQgetisnull(res, 0, 4)) {
		char *text = frame_welcome(PQgetvalue(res, 0, 4), c->envelope);

		conn_enqueue_text(c, text);
		free(text);
	}
	if (PQnfields(res) > 5 && !PQgetisnull(res, 0, 5))
		metrics.error_frames += (uint64_t) frame_refused_topics(PQgetvalue(res, 0, 5),
									c->envelope, gate_emit, c);
}

/* Open connections of one user on this bridge. */
static long long
gate_user_count(const char *user_id)
{
	struct conn *c;
	long long n = 0;

	for (c = registry_user(user_id); c; c = c->unext)
		n++;
	return n;
}

/* The answer of wsnotify_connect. */
static void
gate_connect_done(PGresult *res, void *arg)
{
	struct gate *g = arg;
	enum auth_failure why;
	char reason[256];
	struct conn *c;
	int status;

	g->state = GATE_HEAD;
	gates_waiting--;
	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		if (!res)
			deliver_disconnect(g->conn_id);	/* the row may have committed */
		status = res ? gate_error_status(res, &why, reason, sizeof(reason)) : 503;
		if (!res) {
			why = AUTH_DB_UNAVAILABLE;
			snprintf(reason, sizeof(reason), "database unavailable");
		}
		if (g->wsi)
			gate_refuse(g, status, why, reason);
		gate_close(g);
		return;
	}
	if (!g->wsi || draining) {
		deliver_disconnect(g->conn_id);
		if (g->wsi)
			gate_refuse(g, 503, AUTH_DB_UNAVAILABLE, "shutting down");
		gate_close(g);
		return;
	}
	if (cf_max_connections_per_user > 0 &&
	    gate_user_count(PQgetvalue(res, 0, 0)) >= cf_max_connections_per_user) {
		/* the database made the row; take it back before refusing */
		deliver_disconnect(g->conn_id);
		gate_refuse(g, 429, AUTH_CAPACITY, "too many connections for this user");
		gate_close(g);
		return;
	}
	c = registry_add(&(struct conn_row) {
		.id = g->conn_id, .user_id = PQgetvalue(res, 0, 0),
		.claims = PQgetisnull(res, 0, 1) ? NULL : PQgetvalue(res, 0, 1),
		.remote_addr = g->remote, .user_agent = g->user_agent,
		.start_id = strtoll(PQgetvalue(res, 0, 3), NULL, 10),
		.expires_at = PQgetisnull(res, 0, 2) ? 0 : strtod(PQgetvalue(res, 0, 2), NULL),
	});
	c->envelope = g->envelope;
	log_info("connection %s authorized: user %s from %s%s", c->id, c->user_id, g->remote,
		 g->envelope ? " (wsnotify.v1)" : "");
	gate_first_frames(c, res);
	if (g->resume)
		gate_replay(c, g->since);
	gate_handoff(g, c);
}

/* A fresh random connection id (32 hex digits). */
static void
gate_new_id(char *out, size_t n)
{
	unsigned char r[16];

	if (getrandom(r, sizeof(r), 0) != sizeof(r))
		for (size_t i = 0; i < sizeof(r); i++)
			r[i] = (unsigned char) random();
	for (size_t i = 0; i < sizeof(r) && 2 * i + 2 < n; i++)
		snprintf(out + 2 * i, 3, "%02x", r[i]);
}

/*
 * Whether a failed replay is worth another try: the session was lost, or the
 * server was shutting down or out of connections (SQLSTATE classes 08, 57, 53).
 */
static bool
gate_replay_may_retry(const PGresult *res)
{
	const char *state = db_sqlstate(res);

	if (!res)
		return true;
	return strncmp(state, "08", 2) == 0 || strncmp(state, "57", 2) == 0 ||
		strncmp(state, "53", 2) == 0;
}

/* Answer of wsnotify_replay: the missed messages (or a reset), then live ones. */
static void
gate_replay_done(PGresult *res, void *arg)
{
	char *id = arg;
	struct conn *c = registry_find(id);
	char *frame;

	free(id);
	if (!c)
		return;
	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
		char msg[256];

		db_errmsg(res, msg, sizeof(msg));
		if (gate_replay_may_retry(res)) {
			/*
			 * The session went away under the replay (a restart, a
			 * terminated backend): a reset would make the client throw
			 * away a cursor that is still good.  It resumes again instead.
			 */
			log_warn("connection %s: wsnotify_replay interrupted: %s; closing with 1012 so the client resumes",
				 c->id, msg);
			conn_close(c, &frame_close_resume);
			return;
		}
		log_error("connection %s: wsnotify_replay failed: %s; sending reset", c->id, msg);
		frame = frame_reset(c->start_id);
		conn_enqueue_text(c, frame);
		free(frame);
		conn_release(c);
		return;
	}
	for (int i = 0; i < PQntuples(res); i++) {
		long long rid = strtoll(PQgetvalue(res, i, 0), NULL, 10);

		if (PQgetvalue(res, i, 1)[0] == 'r') {
			frame = frame_reset(rid);
			conn_enqueue_text(c, frame);
			free(frame);
		} else {
			struct payload *p = PQgetvalue(res, i, 4)[0] == 't' ?
				payload_new_base64(PQgetvalue(res, i, 3), (size_t) PQgetlength(res, i, 3)) :
				payload_new(PQgetvalue(res, i, 3), (size_t) PQgetlength(res, i, 3));

			if (p && PQgetvalue(res, i, 1)[0] == 't' && !PQgetisnull(res, i, 2))
				snprintf(p->topic, sizeof(p->topic), "%s", PQgetvalue(res, i, 2));
			if (p)
				conn_enqueue_now(c, p, rid);
			payload_unref(p);
		}
	}
	log_info("connection %s resumed: %d missed messages replayed", c->id, PQntuples(res));
	conn_release(c);
}

/* Queue wsnotify_replay for a resuming wsnotify.v1 connection. */
static void
gate_replay(struct conn *c, const char *since)
{
	char upto[24];
	const char *params[3] = {c->id, since, upto};

	snprintf(upto, sizeof(upto), "%lld", (long long) c->start_id);
	c->holding = true;
	if (!db_query("SELECT id, kind, target, body, is_binary FROM wsnotify_replay($1, $2, $3)",
		      3, params, gate_replay_done, util_strdup(c->id), 0)) {
		log_warn("connection %s: database unavailable for the replay; closing with 1012 so the client resumes",
			 c->id);
		conn_close(c, &frame_close_resume);
	}
}

static void gate_ask(struct gate *g, struct request *r, const char *token);

/* Decide an upgrade request: refuse now, or ask the database. */
static void
gate_upgrade(struct gate *g, struct request *r)
{
	char token[4096] = "";

	if (draining) {
		gate_refuse(g, 503, AUTH_CAPACITY, "shutting down");
		gate_close(g);
		return;
	}
	/*
	 * What lws would refuse anyway is refused before the database is asked:
	 * no row is made and dropped for it (RFC 6455 4.2.2: 426 names 13).
	 */
	if (!r->ws_key[0]) {
		gate_refuse(g, 400, AUTH_BAD_REQUEST, "missing Sec-WebSocket-Key");
		gate_close(g);
		return;
	}
	if (strcmp(r->ws_version, "13") != 0) {
		gate_refuse(g, 426, AUTH_BAD_REQUEST, "unsupported Sec-WebSocket-Version (13 only)");
		gate_close(g);
		return;
	}
	if (!policy_connect_ok(g->remote, now_ms(), &g->retry_after)) {
		gate_refuse(g, 429, AUTH_RATE_LIMITED, "too many connection attempts; retry later");
		gate_close(g);
		return;
	}
	if (!policy_auth_ok(g->remote, now_ms(), &g->retry_after)) {
		gate_refuse(g, 429, AUTH_RATE_LIMITED, "too many failed authentications; retry later");
		gate_close(g);
		return;
	}
	if (!request_origin_ok(r->origin, cf_allowed_origins)) {
		gate_refuse(g, 403, AUTH_ORIGIN, "origin not allowed");
		gate_close(g);
		return;
	}
	if (!request_query_param(r->target, "token", token, sizeof(token)) &&
	    !strncasecmp(r->authorization, "Bearer ", 7))
		snprintf(token, sizeof(token), "%s", r->authorization + 7);
	gate_ask(g, r, token);
	/* every way out of gate_ask, refused or asked, leaves no token on the stack */
	explicit_bzero(token, sizeof(token));
}

/* The rest of the checks, then wsnotify_connect with the token. */
static void
gate_ask(struct gate *g, struct request *r, const char *token)
{
	char topics[4096] = "";		/* ?topics=, comma-separated */
	const char *params[6];

	if (r->protocol[0]) {
		g->envelope = request_list_has(r->protocol, "wsnotify.v1");
		if (!g->envelope && !request_list_has(r->protocol, "wsnotify")) {
			gate_refuse(g, 400, AUTH_BAD_REQUEST, "unsupported subprotocol (wsnotify.v1 or none)");
			gate_close(g);
			return;
		}
	}
	if (g->envelope && (g->since = malloc(sizeof(r->target))) &&
	    request_cursor(r->target, g->since, sizeof(r->target)))
		g->resume = true;
	if (request_query_param(r->target, "topics", topics, sizeof(topics)) &&
	    strlen(topics) == sizeof(topics) - 1) {
		gate_refuse(g, 400, AUTH_BAD_REQUEST, "too many topics");
		gate_close(g);
		return;
	}
	if (!token[0]) {
		gate_refuse(g, 401, AUTH_MISSING_TOKEN, "missing token");
		gate_close(g);
		return;
	}
	if (registry_count() + (unsigned) gates_waiting >= (unsigned long long) cf_max_connections) {
		gate_refuse(g, 503, AUTH_CAPACITY, "at capacity");
		gate_close(g);
		return;
	}
	if (!deliver_started()) {
		gate_refuse(g, 503, AUTH_DB_UNAVAILABLE, "database unavailable");
		gate_close(g);
		return;
	}
	gate_new_id(g->conn_id, sizeof(g->conn_id));
	params[0] = g->conn_id;
	params[1] = cf_bridge_id;
	params[2] = token;
	params[3] = g->remote;
	params[4] = g->user_agent[0] ? g->user_agent : NULL;
	params[5] = topics[0] ? topics : NULL;
	/*
	 * Unless connect_synchronous_commit is set, the row's commit does not
	 * wait for the WAL flush (set_config(..., true) lasts for this
	 * transaction only): one session commits upgrades one at a time, so a
	 * flush each would bound the rate by the disk.  A row lost in a server
	 * crash is put back by wsnotify_restore when this session reconnects
	 * (deliver.c), since the connection is still in the registry.
	 */
	if (!db_query(cf_connect_synchronous_commit ?
		      "SELECT user_id, claims::text, extract(epoch FROM expires_at), last_id, "
		      "welcome::text, refused_topics::text "
		      "FROM wsnotify_connect($1, $2, $3, $4, $5, string_to_array($6, ','))" :
		      "SELECT user_id, claims::text, extract(epoch FROM expires_at), last_id, "
		      "welcome::text, refused_topics::text "
		      "FROM set_config('synchronous_commit', 'off', true), "
		      "wsnotify_connect($1, $2, $3, $4, $5, string_to_array($6, ','))",
		      6, params, gate_connect_done, g, 0)) {
		gate_refuse(g, 503, AUTH_DB_UNAVAILABLE, "database unavailable");
		gate_close(g);
		return;
	}
	g->state = GATE_WAITING;
	gates_waiting++;
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
		const char *p = in_head ? o->head + g->out_off : o->body + (g->out_off - o->head_len);
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
			log_warn("static file to %s: %s", g->remote, n < 0 ? strerror(errno) : "file shrank");
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
	lws_rx_flow_control(g->wsi, 0);	/* pipelined requests wait their turn */
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
		gate_refuse(g, 400, AUTH_BAD_REQUEST, "an upgrade request carries no body");
		gate_close(g);
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
				gate_done(g);	/* closed before its request was whole */
			goto out;
		case REQUEST_TOO_LARGE:
			gate_refuse(g, 431, AUTH_BAD_REQUEST, "request header too large");
			gate_close(g);
			goto out;
		case REQUEST_MALFORMED:
			gate_refuse(g, 400, AUTH_BAD_REQUEST, "malformed request");
			gate_close(g);
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
		gate_done(g);	/* gone before the database answered */
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
	response_init(&g->out, 0);	/* no file: calloc's zero is a descriptor */
	g->cap = (size_t) cf_max_header_size + 1 < GATE_HEAD_START ?
		(size_t) cf_max_header_size + 1 : GATE_HEAD_START;
	g->buf = util_alloc(g->cap);
	g->buf[0] = '\0';
	g->started_ms = now_ms();
	g->tag = (struct raw_tag) {RAW_MAGIC, gate_on_event, g};
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

	DL_FOREACH_SAFE(gates, g, tmp) {
		if (!g->wsi || (g->state != GATE_HEAD && g->state != GATE_WAITING))
			continue;
		if (g->state == GATE_HEAD && g->len == 0) {
			gate_free(g);	/* nothing asked yet, or an idle keep-alive */
			continue;
		}
		gate_refuse(g, 503, AUTH_CAPACITY, "shutting down");
		gate_close(g);
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
			log_info("response to %s: not read within handshake_timeout, closing", g->remote);
			gate_free(g);
		}
		return;
	case GATE_HEAD:
		if (slow && g->len == 0 && g->served) {
			log_debug("keep-alive connection from %s idle for handshake_timeout, closing",
				  g->remote);
			gate_free(g);
		} else if (slow) {
			/* slowloris: the head trickles in, or never completes */
			metrics.auth_failures[AUTH_TIMEOUT]++;
			log_info("request from %s: head not complete after handshake_timeout, closing",
				 g->remote);
			gate_done(g);
		} else if (age >= (uint64_t) cf_auth_timeout) {
			log_debug("request from %s: head not complete after auth_timeout, closing", g->remote);
			gate_done(g);
		}
		return;
	case GATE_WAITING:
		if (age >= (uint64_t) cf_auth_timeout) {
			gate_refuse(g, 503, AUTH_TIMEOUT, "database did not answer in time");
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
