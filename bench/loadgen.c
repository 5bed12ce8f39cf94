/*
 * loadgen.c: the benchmark load generator for wsnotify-bridge (issue 6).
 *
 * Opens many WebSocket connections, keeps them alive, and times every text
 * frame that carries a sender timestamp ({"t": <usec since the epoch>}).
 * A driver script runs several of these side by side and talks to them with
 * signals; each one writes JSON lines on stdout.
 *
 * Why raw non-blocking sockets and one epoll loop rather than libwebsockets:
 * the benchmark machine has two cores shared with the bridge and PostgreSQL,
 * so every cycle and every byte the generator spends is taken from what is
 * being measured.  Here an idle connection costs its kernel socket plus one
 * small struct (no per-connection read buffer: frames are parsed as they
 * arrive, and a buffer is allocated only for a control frame's payload or
 * unsent output), which lets one process hold ~19,000 connections.
 *
 * Signals: SIGUSR1 starts a new phase (counters and histogram reset),
 * SIGUSR2 prints a report, SIGTERM/SIGINT print a report and exit 0.
 * In a report, first/half/last_arrival_us are relative to min_t_us, the
 * smallest sender timestamp of the phase ("how long until the first, half,
 * all of the receivers had it"); null when not known.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

enum state {
	ST_IDLE,		/* not started yet, or waiting to reconnect */
	ST_TCP,			/* connect() in progress */
	ST_HTTP,		/* upgrade request sent, reading the response head */
	ST_OPEN,
	ST_CLOSING,		/* our close frame is being flushed */
	ST_DONE
};

/*
 * One connection.  Kept small on purpose (see the header comment): the
 * HTTP status line and the frame header share their bytes, and the payload
 * of data frames is never stored, only scanned.
 */
struct conn {
	int fd;
	uint8_t state;
	uint8_t hn;		/* header (or status line) bytes gathered */
	uint8_t in_payload;	/* header done, reading the payload */
	uint8_t op;		/* opcode of the frame being read */
	uint8_t fin;
	uint8_t msg_op;		/* opcode of the data message in progress */
	uint8_t scan;		/* "t": scanner state, see scan_byte() */
	uint8_t ctln;		/* control payload bytes gathered */
	uint8_t hdr[14];	/* frame header, or the start of the status line */
	uint8_t crlf;		/* progress through "\r\n\r\n" */
	uint8_t opened_once;
	uint64_t left;		/* payload bytes left in the current frame */
	int64_t tval;		/* digits of "t" read so far */
	uint8_t *ctl;		/* control frame payload (<= 125 bytes), while reading it */
	uint8_t *out;		/* unsent output */
	uint32_t outn, outoff;
};

/* Latency histogram: 1 us buckets below 1024 us, then 512 per octave (0.2%). */
#define LIN_BUCKETS 1024
#define SUB_BITS 9
#define OCTAVES 30
#define NBUCKETS (LIN_BUCKETS + OCTAVES * (1 << SUB_BITS))

/* Reconnect queue: connection numbers with the time they may start again. */
struct ring {
	uint32_t *idx;
	int64_t *at;
	uint32_t head, n, cap;
};

static struct {
	const char *host;
	int ports[64], nports;
	uint32_t conns, concurrency;
	double connect_rate;
	uint32_t sources;
	struct in_addr source_base;
	const char *secret;
	uint32_t users, user_offset;
	const char *user_prefix;
	const char *path;
	bool header_token;
	const char *subprotocol;
	const char *subscribe;
	bool reconnect;
	int stats_ms;
	uint64_t expect;
} opt = {
	.host = "127.0.0.1", .concurrency = 256, .user_prefix = "u",
	.path = "/", .stats_ms = 500, .secret = "",
};

static struct sockaddr_in *targets;
static struct conn *conns;
static int ep, sigfd;
static uint64_t rng_state;

static struct {
	uint32_t next_new;	/* next connection number never started */
	uint32_t inflight;	/* ST_TCP + ST_HTTP */
	uint32_t open;
	uint32_t settled;	/* first attempts that ended (opened or failed) */
	uint64_t failed, closed;
	int64_t next_connect_us;	/* rate limit: earliest next connect() */
	int64_t first_start_us, last_open_us;
	bool connected_printed;
	uint64_t fail_http[600], fail_errno[256], fail_eof, fail_proto;
} st;

static struct {
	uint64_t received, bytes, timed;
	uint64_t hist[NBUCKETS];
	int64_t max_us;
	int64_t min_t, first_arrival, half_arrival, last_arrival;
} ph;

static struct ring retry_now, retry_later;

#define RETRY_DELAY_US 1000000	/* after a failed reconnect attempt */

static int64_t
clock_us(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t
mono_us(void)
{
	return clock_us(CLOCK_MONOTONIC);
}

static int64_t
real_us(void)
{
	return clock_us(CLOCK_REALTIME);
}

/* xorshift64*: keys and masks need to vary, not to be secret. */
static uint64_t
rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545F4914F6CDD1DULL;
}

/*
 * Report an error on stderr at most once per second per kind, so that
 * 10,000 sockets failing the same way make one line, not 10,000.
 */
static void
report_error(const char *what, int err)
{
	static struct {
		const char *what;
		int err;
		int64_t last;
		uint64_t hidden;
	} seen[64];
	int64_t now = mono_us();
	int i;

	for (i = 0; i < 64 && seen[i].what; i++)
		if (seen[i].what == what && seen[i].err == err)
			break;
	if (i == 64)
		i = 63;		/* table full: share the last slot */
	if (seen[i].what == what && seen[i].err == err && now - seen[i].last < 1000000) {
		seen[i].hidden++;
		return;
	}
	fprintf(stderr, "%s%s%s", what, err ? ": " : "", err ? strerror(err) : "");
	if (seen[i].hidden)
		fprintf(stderr, " (and %" PRIu64 " more since the last such line)", seen[i].hidden);
	fputc('\n', stderr);
	seen[i].what = what;
	seen[i].err = err;
	seen[i].last = now;
	seen[i].hidden = 0;
}

static void
die(const char *msg)
{
	fprintf(stderr, "loadgen: %s\n", msg);
	exit(2);
}

/* ---- tokens ------------------------------------------------------------ */

static size_t
b64(char *dst, const uint8_t *src, size_t n, bool url)
{
	const char *abc = url
		? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
		: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0, i;

	for (i = 0; i + 2 < n; i += 3) {
		uint32_t v = src[i] << 16 | src[i + 1] << 8 | src[i + 2];

		dst[o++] = abc[v >> 18];
		dst[o++] = abc[(v >> 12) & 63];
		dst[o++] = abc[(v >> 6) & 63];
		dst[o++] = abc[v & 63];
	}
	if (i < n) {
		uint32_t v = src[i] << 16 | (i + 1 < n ? src[i + 1] << 8 : 0);

		dst[o++] = abc[v >> 18];
		dst[o++] = abc[(v >> 12) & 63];
		if (i + 1 < n)
			dst[o++] = abc[(v >> 6) & 63];
		else if (!url)
			dst[o++] = '=';
		if (!url)
			dst[o++] = '=';
	}
	dst[o] = '\0';
	return o;
}

/* The JWT of connection i; made when needed, since HMAC costs ~1 us. */
static void
make_token(char *dst, uint32_t i)
{
	static const char head[] = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";	/* {"alg":"HS256","typ":"JWT"} */
	char claims[256];
	uint8_t mac[EVP_MAX_MD_SIZE];
	unsigned maclen = 0;
	int n;
	size_t o;

	n = snprintf(claims, sizeof(claims), "{\"sub\":\"%s%" PRIu32 "\",\"exp\":%" PRId64 "}",
		     opt.user_prefix, opt.user_offset + i % opt.users, real_us() / 1000000 + 3600);
	o = sizeof(head) - 1;
	memcpy(dst, head, o);
	dst[o++] = '.';
	o += b64(dst + o, (uint8_t *) claims, n, true);
	HMAC(EVP_sha256(), opt.secret, strlen(opt.secret), (uint8_t *) dst, o, mac, &maclen);
	dst[o++] = '.';
	b64(dst + o, mac, maclen, true);
}

/* ---- output ------------------------------------------------------------ */

static void
set_events(struct conn *c, uint32_t ev)
{
	struct epoll_event e = {.events = ev, .data.u32 = c - conns};

	epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
}

/* Write what can be written now; keep the rest and ask for EPOLLOUT. */
static void
conn_write(struct conn *c, const void *p, size_t n)
{
	ssize_t w = 0;

	if (c->outn == 0) {
		w = send(c->fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno != EAGAIN) {
			report_error("send", errno);
			return;		/* the next read sees the error and closes */
		}
		if (w < 0)
			w = 0;
		if ((size_t) w == n)
			return;
		set_events(c, EPOLLIN | EPOLLOUT);
	}
	uint8_t *grown = realloc(c->out, c->outn + n - w);

	if (!grown)
		die("out of memory");
	c->out = grown;
	memcpy(c->out + c->outn, (const uint8_t *) p + w, n - w);
	c->outn += n - w;
}

/* A masked client frame, as the RFC requires of clients. */
static void
send_frame(struct conn *c, int opcode, const uint8_t *payload, size_t n)
{
	uint8_t f[14 + 256];
	uint8_t *buf = n <= 256 ? f : malloc(14 + n);
	size_t h = 2;
	uint32_t mask = rnd();

	if (!buf)
		die("out of memory");
	buf[0] = 0x80 | opcode;
	if (n < 126)
		buf[1] = 0x80 | n;
	else if (n < 65536) {
		buf[1] = 0x80 | 126;
		buf[2] = n >> 8;
		buf[3] = n;
		h = 4;
	} else {
		buf[1] = 0x80 | 127;
		for (int k = 0; k < 8; k++)
			buf[2 + k] = (uint64_t) n >> (56 - 8 * k);
		h = 10;
	}
	memcpy(buf + h, &mask, 4);
	for (size_t k = 0; k < n; k++)
		buf[h + 4 + k] = payload[k] ^ buf[h + k % 4];
	conn_write(c, buf, h + 4 + n);
	if (buf != f)
		free(buf);
}

/* ---- connection life --------------------------------------------------- */

static void
ring_push(struct ring *r, uint32_t i, int64_t at)
{
	uint32_t k = (r->head + r->n++) % r->cap;

	r->idx[k] = i;
	r->at[k] = at;
}

static void
release(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);	/* also removes it from the epoll set */
	c->fd = -1;
	free(c->ctl);
	free(c->out);
	c->ctl = c->out = NULL;
	c->outn = c->outoff = 0;
}

static void maybe_print_connected(void);

/* A connect or upgrade that did not end in 101. */
static void
conn_failed(struct conn *c)
{
	st.inflight--;
	st.failed++;
	release(c);
	if (!c->opened_once) {
		st.settled++;
		c->state = ST_DONE;
		maybe_print_connected();
	} else if (opt.reconnect) {
		c->state = ST_IDLE;
		ring_push(&retry_later, c - conns, mono_us() + RETRY_DELAY_US);
	} else
		c->state = ST_DONE;
}

static void
conn_error(struct conn *c, const char *what, int err)
{
	report_error(what, err);
	if (err > 0 && err < 256)
		st.fail_errno[err]++;
	else
		st.fail_proto++;
	conn_failed(c);
}

/* An open connection is gone (server close, reset, protocol error). */
static void
conn_closed(struct conn *c)
{
	st.open--;
	st.closed++;
	release(c);
	if (opt.reconnect) {
		c->state = ST_IDLE;
		ring_push(&retry_now, c - conns, 0);
	} else
		c->state = ST_DONE;
}

static void
send_upgrade(struct conn *c)
{
	uint32_t i = c - conns;
	const struct sockaddr_in *t = &targets[i % opt.nports];
	char tok[512], key[32], req[1024];
	uint8_t raw[16];
	uint64_t a = rnd(), b = rnd();
	int n;

	make_token(tok, i);
	memcpy(raw, &a, 8);
	memcpy(raw + 8, &b, 8);
	b64(key, raw, 16, false);
	n = snprintf(req, sizeof(req),
		     "GET %s%s%s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
		     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
		     "%s%s%s%s%s%s\r\n",
		     opt.path, opt.header_token ? "" : strchr(opt.path, '?') ? "&token=" : "?token=",
		     opt.header_token ? "" : tok, opt.host, ntohs(t->sin_port), key,
		     opt.header_token ? "Authorization: Bearer " : "", opt.header_token ? tok : "",
		     opt.header_token ? "\r\n" : "",
		     opt.subprotocol ? "Sec-WebSocket-Protocol: " : "",
		     opt.subprotocol ? opt.subprotocol : "", opt.subprotocol ? "\r\n" : "");
	if (n >= (int) sizeof(req)) {
		conn_error(c, "upgrade request too long", 0);
		return;
	}
	c->state = ST_HTTP;
	c->hn = c->crlf = 0;
	set_events(c, EPOLLIN);
	conn_write(c, req, n);
}

/* Start connection i: socket, bind to its source address, connect. */
static void
conn_start(uint32_t i)
{
	struct conn *c = &conns[i];
	int one = 1;
	struct epoll_event e = {.events = EPOLLIN | EPOLLOUT, .data.u32 = i};
	uint8_t opened_once = c->opened_once;	/* a failed retry is not a first failure */

	memset(c, 0, sizeof(*c));
	c->opened_once = opened_once;
	c->state = ST_TCP;
	st.inflight++;
	if (st.first_start_us == 0)
		st.first_start_us = real_us();
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		conn_error(c, "socket", errno);
		return;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (opt.sources) {
		struct sockaddr_in src = {.sin_family = AF_INET};

		src.sin_addr.s_addr = htonl(ntohl(opt.source_base.s_addr) + i % opt.sources);
		if (setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one)) < 0) {
			conn_error(c, "setsockopt IP_BIND_ADDRESS_NO_PORT", errno);
			return;
		}
		if (bind(c->fd, (struct sockaddr *) &src, sizeof(src)) < 0) {
			conn_error(c, "bind", errno);
			return;
		}
	}
	if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &e) < 0) {
		conn_error(c, "epoll_ctl", errno);
		return;
	}
	if (connect(c->fd, (struct sockaddr *) &targets[i % opt.nports], sizeof(*targets)) == 0)
		send_upgrade(c);
	else if (errno != EINPROGRESS)
		conn_error(c, "connect", errno);
}

/* connect() finished: see whether it worked. */
static void
tcp_ready(struct conn *c)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err)
		conn_error(c, "connect", err);
	else
		send_upgrade(c);
}

static void
conn_opened(struct conn *c)
{
	st.inflight--;
	st.open++;
	c->state = ST_OPEN;
	c->hn = 0;
	c->scan = 0;
	st.last_open_us = real_us();
	if (!c->opened_once) {
		c->opened_once = 1;
		st.settled++;
		maybe_print_connected();
	}
	if (opt.subscribe) {
		char msg[512];
		int n = snprintf(msg, sizeof(msg), "{\"action\":\"subscribe\",\"topic\":\"%s\"}",
				 opt.subscribe);

		send_frame(c, 1, (uint8_t *) msg, n);
	}
}

/* ---- the response head ------------------------------------------------- */

/* The three digits at p as a number, or -1. */
static int
status_code(const uint8_t *p)
{
	int code = 0;

	for (int k = 0; k < 3; k++) {
		if (p[k] < '0' || p[k] > '9')
			return -1;
		code = code * 10 + (p[k] - '0');
	}
	return code;
}

/*
 * Consume the HTTP response head; return how many bytes it used (the rest
 * are WebSocket frames), or -1 when the connection is no longer upgrading.
 * Only the status line's first bytes are kept: the status code is all we need.
 */
static ssize_t
http_input(struct conn *c, const uint8_t *p, size_t n)
{
	static const char end[] = "\r\n\r\n";
	size_t k;
	int code;

	for (k = 0; k < n; k++) {
		if (c->hn < sizeof(c->hdr))
			c->hdr[c->hn++] = p[k];
		if (p[k] == (uint8_t) end[c->crlf])
			c->crlf++;
		else
			c->crlf = p[k] == '\r';
		if (c->crlf == 4)
			break;
	}
	if (c->crlf < 4)
		return n;
	if (c->hn < 12 || memcmp(c->hdr, "HTTP/1.", 7) != 0 ||
	    (code = status_code(c->hdr + 9)) < 100) {
		report_error("upgrade: response is not HTTP", 0);
		st.fail_proto++;
		conn_failed(c);
		return -1;
	}
	if (code != 101) {
		static const char *what[600];
		static char text[600][32];

		if (!what[code]) {
			snprintf(text[code], sizeof(text[code]), "upgrade refused: %d", code);
			what[code] = text[code];
		}
		report_error(what[code], 0);
		st.fail_http[code]++;
		conn_failed(c);
		return -1;
	}
	conn_opened(c);
	return k + 1;
}

/* ---- frames ------------------------------------------------------------ */

static int
bucket_of(int64_t v)
{
	int e;

	if (v < LIN_BUCKETS)
		return v < 0 ? 0 : v;
	e = 63 - __builtin_clzll(v);
	if (e - 10 >= OCTAVES)
		return NBUCKETS - 1;
	return LIN_BUCKETS + (e - 10) * (1 << SUB_BITS) + ((v >> (e - SUB_BITS)) & ((1 << SUB_BITS) - 1));
}

/* The middle of bucket b's range. */
static int64_t
value_of(int b)
{
	int e, sub;
	int64_t lo, width;

	if (b < LIN_BUCKETS)
		return b;
	e = (b - LIN_BUCKETS) / (1 << SUB_BITS) + 10;
	sub = (b - LIN_BUCKETS) % (1 << SUB_BITS);
	width = (int64_t) 1 << (e - SUB_BITS);
	lo = ((int64_t) 1 << e) + sub * width;
	return lo + width / 2;
}

static void
record_t(int64_t t, int64_t now)
{
	int64_t lat = now - t;

	if (lat < 0)
		lat = 0;
	ph.hist[bucket_of(lat)]++;
	ph.timed++;
	if (lat > ph.max_us)
		ph.max_us = lat;
	if (ph.min_t == 0 || t < ph.min_t)
		ph.min_t = t;
}

/*
 * The "t": scanner, fed a text message's bytes as they arrive.
 * States 0-3: that many bytes of "t": matched; 4: spaces after the colon;
 * 5: reading digits (value in c->tval); 6: found, ignore the rest.
 * Matching the quotes too keeps "topic": or "at": from counting.
 */
static void
scan_byte(struct conn *c, uint8_t b, int64_t now)
{
	static const char pat[] = "\"t\":";

	switch (c->scan) {
	case 0: case 1: case 2: case 3:
		if (b == (uint8_t) pat[c->scan])
			c->scan++;
		else if (c->scan == 3 && b == 't')
			c->scan = 2;	/* the last quote may open "t" */
		else
			c->scan = b == '"';
		return;
	case 4:
		if (b == ' ' || b == '\t' || b == '\n' || b == '\r')
			return;
		if (b >= '0' && b <= '9') {
			c->tval = b - '0';
			c->scan = 5;
		} else
			c->scan = b == '"';	/* not an integer: keep looking */
		return;
	case 5:
		if (b >= '0' && b <= '9' && c->tval < INT64_MAX / 10 - 9) {
			c->tval = c->tval * 10 + (b - '0');
			return;
		}
		record_t(c->tval, now);
		c->scan = 6;
		return;
	default:
		return;
	}
}

static void
message_done(struct conn *c, int64_t now)
{
	if (c->scan == 5)
		record_t(c->tval, now);
	ph.received++;
	if (ph.first_arrival == 0)
		ph.first_arrival = now;
	ph.last_arrival = now;
	if (opt.expect && ph.received == (opt.expect + 1) / 2)
		ph.half_arrival = now;
}

/* A complete control frame: answer pings and closes. */
static void
control_done(struct conn *c)
{
	switch (c->op) {
	case 0x9:
		send_frame(c, 0xA, c->ctl, c->ctln);
		break;
	case 0x8:
		/* echo the status code, as RFC 6455 5.5.1 asks */
		send_frame(c, 0x8, c->ctl, c->ctln >= 2 ? 2 : 0);
		c->state = ST_CLOSING;
		break;
	default:
		break;		/* pong: nothing to do */
	}
	free(c->ctl);
	c->ctl = NULL;
	c->ctln = 0;
}

/* The frame header in c->hdr is complete: set up for its payload. */
static bool
frame_start(struct conn *c)
{
	int len7 = c->hdr[1] & 0x7f;

	c->fin = c->hdr[0] >> 7;
	c->op = c->hdr[0] & 0x0f;
	if (len7 == 126)
		c->left = c->hdr[2] << 8 | c->hdr[3];
	else if (len7 == 127) {
		c->left = 0;
		for (int k = 0; k < 8; k++)
			c->left = c->left << 8 | c->hdr[2 + k];
	} else
		c->left = len7;
	if (c->op >= 0x8) {
		if (!c->fin || c->left > 125) {
			report_error("server sent a fragmented or long control frame", 0);
			return false;
		}
		if (c->left && !(c->ctl = malloc(c->left)))
			die("out of memory");
		c->ctln = 0;
	} else if (c->op == 0x1 || c->op == 0x2) {
		c->msg_op = c->op;
		c->scan = 0;
	} else if (c->op != 0x0 || !c->msg_op) {
		report_error("server sent an unknown opcode or a stray continuation", 0);
		return false;
	}
	c->in_payload = 1;
	return true;
}

/* The frame's payload is complete. */
static void
frame_done(struct conn *c, int64_t now)
{
	c->in_payload = 0;
	c->hn = 0;
	if (c->op >= 0x8)
		control_done(c);
	else if (c->fin) {
		message_done(c, now);
		c->msg_op = 0;
	}
}

/* How many header bytes this frame has, as far as is known yet. */
static int
header_size(const struct conn *c)
{
	int len7;

	if (c->hn < 2)
		return 2;
	len7 = c->hdr[1] & 0x7f;
	return 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0);
}

/* Feed bytes from the server to the frame parser; false: close the connection. */
static bool
ws_input(struct conn *c, const uint8_t *p, size_t n, int64_t now)
{
	while (n > 0 && c->state == ST_OPEN) {
		if (!c->in_payload) {
			c->hdr[c->hn++] = *p++;
			n--;
			if (c->hn == 2 && (c->hdr[1] & 0x80)) {
				report_error("server sent a masked frame", 0);
				return false;
			}
			if (c->hn == header_size(c)) {
				if (!frame_start(c))
					return false;
				if (c->left == 0)
					frame_done(c, now);
			}
			continue;
		}
		size_t take = n < c->left ? n : c->left;

		if (c->op >= 0x8) {
			memcpy(c->ctl + c->ctln, p, take);
			c->ctln += take;
		} else {
			ph.bytes += take;
			if (c->msg_op == 0x1)
				for (size_t k = 0; k < take && c->scan != 6; k++)
					scan_byte(c, p[k], now);
		}
		p += take;
		n -= take;
		c->left -= take;
		if (c->left == 0)
			frame_done(c, now);
	}
	return true;
}

/* ---- socket events ----------------------------------------------------- */

static uint8_t rbuf[65536];

static void
on_readable(struct conn *c)
{
	ssize_t n = recv(c->fd, rbuf, sizeof(rbuf), 0);
	ssize_t used = 0;
	int64_t now;

	if (n <= 0) {
		if (n < 0 && errno == EAGAIN)
			return;
		if (c->state == ST_HTTP) {
			if (n == 0) {
				report_error("upgrade: server closed before answering", 0);
				st.fail_eof++;
				conn_failed(c);
			} else
				conn_error(c, "recv", errno);
		} else {
			if (n < 0 && errno != ECONNRESET)
				report_error("recv", errno);
			conn_closed(c);
		}
		return;
	}
	now = real_us();
	if (c->state == ST_HTTP && (used = http_input(c, rbuf, n)) < 0)
		return;
	if (c->state == ST_OPEN && !ws_input(c, rbuf + used, n - used, now)) {
		conn_closed(c);
		return;
	}
	if (c->state == ST_CLOSING && c->outn == 0)
		conn_closed(c);
}

static void
on_writable(struct conn *c)
{
	ssize_t w = send(c->fd, c->out + c->outoff, c->outn - c->outoff, MSG_NOSIGNAL);

	if (w < 0) {
		if (errno == EAGAIN)
			return;
		if (c->state == ST_HTTP)
			conn_error(c, "send", errno);
		else {
			report_error("send", errno);
			conn_closed(c);
		}
		return;
	}
	c->outoff += w;
	if (c->outoff < c->outn)
		return;
	free(c->out);
	c->out = NULL;
	c->outn = c->outoff = 0;
	if (c->state == ST_CLOSING)
		conn_closed(c);
	else
		set_events(c, EPOLLIN);
}

static void
on_event(uint32_t i, uint32_t ev)
{
	struct conn *c = &conns[i];

	if (c->state == ST_TCP) {
		tcp_ready(c);
		return;
	}
	if ((ev & EPOLLOUT) && c->outn)
		on_writable(c);
	if (c->fd >= 0 && (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)))
		on_readable(c);
}

/* ---- scheduling connects ----------------------------------------------- */

/* Start what the concurrency and rate limits allow; return us until the next slot (-1: none). */
static int64_t
start_connects(void)
{
	int64_t now = mono_us();
	int64_t interval = opt.connect_rate > 0 ? (int64_t) (1e6 / opt.connect_rate) : 0;

	while (st.inflight < opt.concurrency) {
		uint32_t i;

		if (retry_now.n)
			i = retry_now.idx[retry_now.head];
		else if (st.next_new < opt.conns)
			i = st.next_new;
		else if (retry_later.n && retry_later.at[retry_later.head] <= now)
			i = retry_later.idx[retry_later.head];
		else
			return retry_later.n ? retry_later.at[retry_later.head] - now : -1;
		if (interval && st.next_connect_us > now)
			return st.next_connect_us - now;
		if (retry_now.n) {
			retry_now.head = (retry_now.head + 1) % retry_now.cap;
			retry_now.n--;
		} else if (st.next_new < opt.conns)
			st.next_new++;
		else {
			retry_later.head = (retry_later.head + 1) % retry_later.cap;
			retry_later.n--;
		}
		/* a little credit, since epoll_wait sleeps in whole milliseconds */
		if (st.next_connect_us < now - 2000)
			st.next_connect_us = now - 2000;
		st.next_connect_us += interval;
		conn_start(i);
	}
	return -1;
}

/* ---- reports ----------------------------------------------------------- */

static void
print_progress(void)
{
	printf("{\"type\":\"progress\",\"pid\":%d,\"connected\":%" PRIu32 ",\"connecting\":%" PRIu32
	       ",\"failed\":%" PRIu64 ",\"closed\":%" PRIu64 ",\"received\":%" PRIu64
	       ",\"bytes\":%" PRIu64 "}\n",
	       (int) getpid(), st.open, st.inflight, st.failed, st.closed, ph.received, ph.bytes);
	fflush(stdout);
}

static void
maybe_print_connected(void)
{
	bool first = true;
	double secs;

	if (st.connected_printed || st.settled < opt.conns)
		return;
	st.connected_printed = true;
	secs = (st.last_open_us - st.first_start_us) / 1e6;
	printf("{\"type\":\"connected\",\"connected\":%" PRIu32 ",\"failed\":%" PRIu64 ",\"fail_codes\":{",
	       st.open, st.failed);
	for (int k = 0; k < 600; k++)
		if (st.fail_http[k]) {
			printf("%s\"%d\":%" PRIu64, first ? "" : ",", k, st.fail_http[k]);
			first = false;
		}
	for (int k = 0; k < 256; k++)
		if (st.fail_errno[k]) {
			printf("%s\"%s\":%" PRIu64, first ? "" : ",", strerrorname_np(k) ?: "errno",
			       st.fail_errno[k]);
			first = false;
		}
	if (st.fail_eof) {
		printf("%s\"eof\":%" PRIu64, first ? "" : ",", st.fail_eof);
		first = false;
	}
	if (st.fail_proto)
		printf("%s\"protocol\":%" PRIu64, first ? "" : ",", st.fail_proto);
	printf("},\"first_start_us\":%" PRId64 ",\"last_open_us\":%" PRId64 ",\"connects_per_s\":%.1f}\n",
	       st.first_start_us, st.last_open_us, st.open && secs > 0 ? st.open / secs : 0.0);
	fflush(stdout);
}

static int64_t
percentile(double q)
{
	uint64_t want = (uint64_t) (q * ph.timed + 0.999999), sum = 0;

	if (ph.timed == 0)
		return 0;
	if (want == 0)
		want = 1;
	for (int b = 0; b < NBUCKETS; b++) {
		sum += ph.hist[b];
		if (sum >= want) {
			int64_t v = value_of(b);

			return v > ph.max_us ? ph.max_us : v;
		}
	}
	return ph.max_us;
}

/* A time relative to the phase's smallest t, or null. */
static void
print_rel(const char *key, int64_t when)
{
	if (when && ph.min_t)
		printf(",\"%s\":%" PRId64, key, when - ph.min_t);
	else
		printf(",\"%s\":null", key);
}

static void
print_report(void)
{
	printf("{\"type\":\"report\",\"connected\":%" PRIu32 ",\"received\":%" PRIu64 ",\"timed\":%" PRIu64
	       ",\"p50_us\":%" PRId64 ",\"p90_us\":%" PRId64 ",\"p99_us\":%" PRId64 ",\"p999_us\":%" PRId64
	       ",\"max_us\":%" PRId64,
	       st.open, ph.received, ph.timed, percentile(0.5), percentile(0.9), percentile(0.99),
	       percentile(0.999), ph.max_us);
	if (ph.min_t)
		printf(",\"min_t_us\":%" PRId64, ph.min_t);
	else
		printf(",\"min_t_us\":null");
	print_rel("first_arrival_us", ph.first_arrival);
	if (opt.expect)
		print_rel("half_arrival_us", ph.half_arrival);
	print_rel("last_arrival_us", ph.last_arrival);
	printf(",\"expect\":%" PRIu64 "}\n", opt.expect);
	fflush(stdout);
}

static void
phase_reset(void)
{
	memset(&ph, 0, sizeof(ph));
	printf("{\"type\":\"phase_reset\"}\n");
	fflush(stdout);
}

/* Say goodbye on every open socket (best effort, no waiting), then exit. */
static void
shutdown_all(void)
{
	static const uint8_t going_away[2] = {1001 >> 8, 1001 & 0xff};

	print_report();
	for (uint32_t i = 0; i < opt.conns; i++) {
		struct conn *c = &conns[i];

		if (c->state == ST_OPEN && c->outn == 0)
			send_frame(c, 0x8, going_away, 2);
		release(c);
	}
	exit(0);
}

/* Returns after a signal that does not end the program. */
static void
on_signal(void)
{
	struct signalfd_siginfo si;

	while (read(sigfd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGUSR1)
			phase_reset();
		else if (si.ssi_signo == SIGUSR2)
			print_report();
		else
			shutdown_all();
	}
}

/* ---- setup ------------------------------------------------------------- */

static void
usage(FILE *f)
{
	fprintf(f,
		"usage: loadgen --conns N [options]\n"
		"Opens N WebSocket connections to wsnotify-bridge and times text frames that carry\n"
		"{\"t\": <usec since the epoch>}. JSON lines on stdout. SIGUSR1: new phase,\n"
		"SIGUSR2: report, SIGTERM/SIGINT: report and exit.\n"
		"  --host ADDR            target address (127.0.0.1)\n"
		"  --ports P[,P...]       connection i goes to ports[i %% nports] (8080)\n"
		"  --conns N              connections to open\n"
		"  --concurrency C        connects+handshakes in flight at once (256)\n"
		"  --connect-rate R       at most R new connects per second (0: unlimited)\n"
		"  --sources K            bind connection i to source-base + i %% K (0: let the kernel pick)\n"
		"  --source-base ADDR     first source address (127.0.0.1)\n"
		"  --secret S             HS256 key for the tokens\n"
		"  --users U              connection i is user PREFIX(OFFSET + i %% U) (N: one each)\n"
		"  --user-offset O        (0)\n"
		"  --user-prefix P        (u)\n"
		"  --path PATH            request path (/); the token goes in ?token= or &token=\n"
		"  --token-mode M         query (default) or header (Authorization: Bearer)\n"
		"  --subprotocol NAME     send Sec-WebSocket-Protocol: NAME (e.g. wsnotify.v1)\n"
		"  --subscribe TOPIC      after opening, send {\"action\":\"subscribe\",\"topic\":TOPIC}\n"
		"  --reconnect            reopen connections the server closes\n"
		"  --expect N             messages expected per phase (for half_arrival_us)\n"
		"  --stats-interval MS    progress line period (500)\n"
		"  --help\n");
}

static uint32_t
parse_u32(const char *s, const char *name)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);

	if (*s == '\0' || *end != '\0' || v > UINT32_MAX) {
		fprintf(stderr, "loadgen: --%s wants a number, not \"%s\"\n", name, s);
		exit(2);
	}
	return v;
}

/* Refuse values that would need escaping in the JSON we write. */
static void
check_json_safe(const char *s, const char *name)
{
	for (; *s; s++)
		if (*s == '"' || *s == '\\' || (uint8_t) *s < 0x20) {
			fprintf(stderr, "loadgen: --%s must not contain quotes, backslashes or control characters\n",
				name);
			exit(2);
		}
}

static void
parse_ports(char *s)
{
	for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ",")) {
		uint32_t p = parse_u32(tok, "ports");

		if (opt.nports == 64 || p == 0 || p > 65535)
			die("--ports: at most 64 ports, each 1-65535");
		opt.ports[opt.nports++] = p;
	}
}

static void
parse_args(int argc, char **argv)
{
	static const struct option lo[] = {
		{"host", 1, 0, 'h'}, {"ports", 1, 0, 'p'}, {"conns", 1, 0, 'n'},
		{"concurrency", 1, 0, 'c'}, {"connect-rate", 1, 0, 'r'}, {"sources", 1, 0, 's'},
		{"source-base", 1, 0, 'b'}, {"secret", 1, 0, 'k'}, {"users", 1, 0, 'u'},
		{"user-offset", 1, 0, 'o'}, {"user-prefix", 1, 0, 'x'}, {"path", 1, 0, 'P'},
		{"token-mode", 1, 0, 'm'}, {"subprotocol", 1, 0, 'S'}, {"subscribe", 1, 0, 'T'},
		{"reconnect", 0, 0, 'R'}, {"stats-interval", 1, 0, 'i'}, {"expect", 1, 0, 'e'},
		{"help", 0, 0, 'H'}, {0, 0, 0, 0}
	};
	const char *base = "127.0.0.1";
	int ch;

	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 'h': opt.host = optarg; break;
		case 'p': parse_ports(optarg); break;
		case 'n': opt.conns = parse_u32(optarg, "conns"); break;
		case 'c': opt.concurrency = parse_u32(optarg, "concurrency"); break;
		case 'r': opt.connect_rate = parse_u32(optarg, "connect-rate"); break;
		case 's': opt.sources = parse_u32(optarg, "sources"); break;
		case 'b': base = optarg; break;
		case 'k': opt.secret = optarg; break;
		case 'u': opt.users = parse_u32(optarg, "users"); break;
		case 'o': opt.user_offset = parse_u32(optarg, "user-offset"); break;
		case 'x': opt.user_prefix = optarg; break;
		case 'P': opt.path = optarg; break;
		case 'm':
			if (strcmp(optarg, "query") && strcmp(optarg, "header"))
				die("--token-mode is query or header");
			opt.header_token = optarg[0] == 'h';
			break;
		case 'S': opt.subprotocol = optarg; break;
		case 'T': opt.subscribe = optarg; break;
		case 'R': opt.reconnect = true; break;
		case 'i': opt.stats_ms = parse_u32(optarg, "stats-interval"); break;
		case 'e': opt.expect = parse_u32(optarg, "expect"); break;
		case 'H': usage(stdout); exit(0);
		default: usage(stderr); exit(2);
		}
	}
	if (optind < argc || opt.conns == 0) {
		usage(stderr);
		exit(2);
	}
	if (opt.nports == 0)
		opt.ports[opt.nports++] = 8080;
	if (opt.users == 0)
		opt.users = opt.conns;
	if (opt.concurrency == 0 || opt.stats_ms == 0)
		die("--concurrency and --stats-interval must be positive");
	if (inet_pton(AF_INET, base, &opt.source_base) != 1)
		die("--source-base is not an IPv4 address");
	check_json_safe(opt.user_prefix, "user-prefix");
	if (opt.subscribe)
		check_json_safe(opt.subscribe, "subscribe");
	if (strlen(opt.path) > 200 || strlen(opt.user_prefix) > 100 ||
	    (opt.subscribe && strlen(opt.subscribe) > 200))
		die("--path, --user-prefix or --subscribe is too long");
}

static void
setup(void)
{
	struct in_addr host;
	sigset_t mask;
	struct epoll_event e = {.events = EPOLLIN, .data.u32 = UINT32_MAX};

	if (inet_pton(AF_INET, opt.host, &host) != 1)
		die("--host is not an IPv4 address");
	targets = calloc(opt.nports, sizeof(*targets));
	conns = calloc(opt.conns, sizeof(*conns));
	retry_now = (struct ring) {calloc(opt.conns, 4), calloc(opt.conns, 8), 0, 0, opt.conns};
	retry_later = (struct ring) {calloc(opt.conns, 4), calloc(opt.conns, 8), 0, 0, opt.conns};
	if (!targets || !conns || !retry_now.idx || !retry_now.at || !retry_later.idx || !retry_later.at)
		die("out of memory");
	for (int k = 0; k < opt.nports; k++) {
		targets[k].sin_family = AF_INET;
		targets[k].sin_addr = host;
		targets[k].sin_port = htons(opt.ports[k]);
	}
	for (uint32_t i = 0; i < opt.conns; i++)
		conns[i].fd = -1;
	if (getrandom(&rng_state, sizeof(rng_state), 0) != sizeof(rng_state) || rng_state == 0)
		rng_state = real_us() | 1;

	sigemptyset(&mask);
	sigaddset(&mask, SIGUSR1);
	sigaddset(&mask, SIGUSR2);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	ep = epoll_create1(EPOLL_CLOEXEC);
	sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (ep < 0 || sigfd < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, sigfd, &e) < 0) {
		perror("loadgen: epoll/signalfd");
		exit(2);
	}
}

int
main(int argc, char **argv)
{
	struct epoll_event evs[1024];
	int64_t next_stats;

	parse_args(argc, argv);
	setup();
	next_stats = mono_us() + opt.stats_ms * 1000LL;
	for (;;) {
		int64_t wait_us = start_connects();
		int64_t until_stats = next_stats - mono_us();
		int n;

		if (wait_us < 0 || wait_us > until_stats)
			wait_us = until_stats;
		n = epoll_wait(ep, evs, 1024, wait_us > 0 ? (int) ((wait_us + 999) / 1000) : 0);
		if (n < 0 && errno != EINTR) {
			perror("loadgen: epoll_wait");
			exit(2);
		}
		for (int k = 0; k < n; k++) {
			if (evs[k].data.u32 == UINT32_MAX)
				on_signal();
			else
				on_event(evs[k].data.u32, evs[k].events);
		}
		if (mono_us() >= next_stats) {
			print_progress();
			next_stats += opt.stats_ms * 1000LL;
			if (next_stats < mono_us())
				next_stats = mono_us() + opt.stats_ms * 1000LL;
		}
	}
}
