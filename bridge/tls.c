/*
 * tls.c: terminate TLS and relay the clear bytes to the gate (see tls.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libwebsockets.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "config.h"
#include "gate.h"
#include "log.h"
#include "loop.h"
#include "tls.h"
#include "util.h"

#define TLS_CHUNK 16384
#define TLS_DOWN_MAX (256 * 1024) /* pause the gate side past this */

struct tls_proxy {
	struct raw_tag tag; /* of the socketpair end: tls_on_pair_event */
	struct lws *tls;    /* the TLS connection (raw-skt role) */
	struct lws *pair;   /* our end of the socketpair (raw file) */
	int fd;
	char *up; /* client -> gate bytes not yet written */
	size_t up_len, up_off;
	unsigned char *down; /* gate -> client, after LWS_PRE bytes */
	size_t down_len, down_cap;
	bool pair_eof;
	struct loop_soon write_soon;
};

static struct lws_vhost *tls_vhost;
static SSL_CTX *tls_ctx; /* the vhost's, given to us by lws at its creation */

static int tls_on_pair_event(struct lws *wsi, int reason, void *obj);

/* Write pending client bytes to the gate; pause the client while they do not fit. */
static void
tls_flush_up(struct tls_proxy *p)
{
	while (p->up_off < p->up_len) {
		ssize_t n = write(p->fd, p->up + p->up_off, p->up_len - p->up_off);

		if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			if (p->tls)
				lws_rx_flow_control(p->tls, 0);
			loop_soon_writable(&p->write_soon, &p->pair);
			return;
		}
		if (n < 0) {
			if (p->tls)
				lws_set_timeout(p->tls, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
			p->up_off = p->up_len;
			break;
		}
		p->up_off += (size_t) n;
	}
	free(p->up);
	p->up = NULL;
	p->up_len = p->up_off = 0;
	if (p->tls)
		lws_rx_flow_control(p->tls, 1);
}

/* Append decrypted client bytes and push them on. */
static void
tls_on_rx(struct tls_proxy *p, const void *in, size_t len)
{
	p->up = realloc(p->up, p->up_len + len);
	memcpy(p->up + p->up_len, in, len);
	p->up_len += len;
	tls_flush_up(p);
}

/* A new TLS connection: make the socketpair, give one end to the gate. */
static int
tls_on_adopt(struct lws *wsi)
{
	struct tls_proxy *p = util_calloc(1, sizeof(*p));
	char remote[64] = "?";
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) {
		log_warn("TLS connection: socketpair failed: %s", strerror(errno));
		free(p);
		return -1;
	}
	p->tag = (struct raw_tag){RAW_MAGIC, tls_on_pair_event, p};
	p->tls = wsi;
	p->fd = sv[0];
	p->pair = raw_adopt(sv[0], &p->tag);
	if (!p->pair) {
		close(sv[0]);
		close(sv[1]);
		free(p);
		return -1;
	}
	lws_set_opaque_user_data(wsi, p);
	lws_get_peer_simple(wsi, remote, sizeof(remote));
	gate_accept_fd(sv[1], remote);
	return 0;
}

/* The TLS connection can take more: send what the gate side wrote. */
static int
tls_on_writeable(struct lws *wsi, struct tls_proxy *p)
{
	if (p->down_len) {
		if (lws_write(wsi, p->down + LWS_PRE, p->down_len, LWS_WRITE_RAW) <
		    (int) p->down_len)
			return -1;
		p->down_len = 0;
		if (p->pair)
			lws_rx_flow_control(p->pair, 1);
		if (p->pair_eof)
			lws_callback_on_writable(wsi); /* close once lws has sent it all */
		return 0;
	}
	return p->pair_eof ? -1 : 0;
}

/* Read what the gate side wrote into the down buffer; false at EOF or error. */
static bool
tls_read_pair(struct tls_proxy *p)
{
	for (;;) {
		ssize_t n;

		if (p->down_cap < LWS_PRE + p->down_len + TLS_CHUNK) {
			p->down_cap = p->down_cap ? p->down_cap * 2 : LWS_PRE + 2 * TLS_CHUNK;
			p->down = realloc(p->down, p->down_cap);
		}
		n = read(p->fd, p->down + LWS_PRE + p->down_len, TLS_CHUNK);
		if (n > 0) {
			p->down_len += (size_t) n;
			if (p->down_len >= TLS_DOWN_MAX)
				return true;
			continue;
		}
		return n < 0 && (errno == EAGAIN || errno == EINTR);
	}
}

/* The TLS connection is gone: drop our socketpair end and the proxy. */
static void
tls_on_close(struct tls_proxy *p)
{
	p->tls = NULL;
	loop_soon_cancel(&p->write_soon);
	if (p->pair)
		raw_drop(p->pair);
	free(p->up);
	free(p->down);
	free(p);
}

/* Callback of the raw TLS listener's protocol. */
static int
tls_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
	struct tls_proxy *p = lws_get_opaque_user_data(wsi);

	switch (reason) {
	case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS:
		/* lws hands over the vhost's SSL_CTX once: kept for tls_reload */
		tls_ctx = user;
		return 0;
	case LWS_CALLBACK_RAW_ADOPT:
		return tls_on_adopt(wsi);
	case LWS_CALLBACK_RAW_RX:
		if (p)
			tls_on_rx(p, in, len);
		return 0;
	case LWS_CALLBACK_RAW_WRITEABLE:
		return p ? tls_on_writeable(wsi, p) : 0;
	case LWS_CALLBACK_RAW_CLOSE:
		if (p) {
			lws_set_opaque_user_data(wsi, NULL);
			tls_on_close(p);
		}
		return 0;
	default:
		return 0;
	}
}

/* Event on the bridge's end of a socketpair (its raw_tag's handler). */
static int
tls_on_pair_event(struct lws *wsi, int reason, void *obj)
{
	struct tls_proxy *p = obj;

	if (wsi != p->pair)
		return 0;
	switch (reason) {
	case LWS_CALLBACK_RAW_RX_FILE:
		if (!p->tls)
			return 0;
		if (!tls_read_pair(p)) {
			p->pair_eof = true; /* the gate or lws closed: close TLS after the rest */
			lws_rx_flow_control(wsi, 0);
		} else if (p->down_len >= TLS_DOWN_MAX)
			lws_rx_flow_control(wsi, 0);
		if (p->down_len || p->pair_eof)
			lws_callback_on_writable(p->tls);
		return 0;
	case LWS_CALLBACK_RAW_WRITEABLE_FILE:
		tls_flush_up(p);
		return 0;
	case LWS_CALLBACK_RAW_CLOSE_FILE:
		/* hung up (POLLHUP): take what is still buffered before lws closes the fd */
		if (p->tls)
			tls_read_pair(p);
		p->pair = NULL;
		p->pair_eof = true;
		if (p->tls)
			lws_callback_on_writable(p->tls);
		return 0;
	}
	return 0;
}

static struct lws_protocols tls_protocols[] = {
	{"wsnotify-tls", tls_callback, 0, TLS_CHUNK, 0, NULL, 0}, {NULL, NULL, 0, 0, 0, NULL, 0}};

bool
tls_listen(struct lws_context *ctx)
{
	struct lws_context_creation_info info;
	static char host[256];
	char port[16];

	/* the gate's parser: "[v6]:port" reaches lws without its brackets */
	if (!util_split_hostport(cf_listen, host, sizeof(host), port, sizeof(port))) {
		log_error("listen: \"%s\" is not HOST:PORT", cf_listen);
		return false;
	}
	memset(&info, 0, sizeof(info));
	info.vhost_name = "wsnotify-tls";
	info.port = atoi(port);
	info.iface = host[0] ? host : NULL;
	info.protocols = tls_protocols;
	info.ssl_cert_filepath = cf_tls_cert_file;
	info.ssl_private_key_filepath = cf_tls_key_file;
	/* lws 4.1 enables TLS on a vhost only when its own options ask for it */
	info.options = LWS_SERVER_OPTION_ADOPT_APPLY_LISTEN_ACCEPT_CONFIG |
		       LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	/*
	 * Given an IPv4 address, lws 4.1 still makes an IPv6 socket and binds
	 * it to [::] (the address lands in sin6_flowinfo): every interface,
	 * not the one configured, and EADDRINUSE whenever any socket of the
	 * machine holds that port number.  Only IPv4 when the host is IPv4.
	 */
	if (host[0] && !strchr(host, ':'))
		info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
	info.alpn = "http/1.1"; /* the gate speaks HTTP/1.1 only */
	info.listen_accept_role = "raw-skt";
	info.listen_accept_protocol = "wsnotify-tls";
	info.retry_and_idle_policy = &loop_retry_policy;
	tls_vhost = lws_create_vhost(ctx, &info);
	if (!tls_vhost) {
		log_error("cannot listen with TLS on %s (certificate %s, key %s)", cf_listen,
			  cf_tls_cert_file, cf_tls_key_file);
		return false;
	}
	gate_set_port(lws_get_vhost_listen_port(tls_vhost));
	log_info("listening with TLS on %s (port %d)", cf_listen, gate_port());
	return true;
}

/* Do the certificate (chain) and key files load and match?  Into ctx when given. */
static bool
tls_load_pair(SSL_CTX *ctx, char *why, size_t n)
{
	unsigned long e;

	if (SSL_CTX_use_certificate_chain_file(ctx, cf_tls_cert_file) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, cf_tls_key_file, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		e = ERR_peek_last_error();
		snprintf(why, n, "%s", e ? ERR_reason_error_string(e) : "unknown error");
		ERR_clear_error();
		return false;
	}
	return true;
}

/*
 * SIGHUP: read tls_cert_file and tls_key_file again (a renewed certificate
 * at the same paths).  The pair is checked on a scratch context first, so a
 * half-written or mismatched pair changes nothing.  Open connections keep
 * the certificate they were made with; new handshakes get the new one.
 */
void
tls_reload(void)
{
	SSL_CTX *scratch;
	char why[256] = "";

	if (!tls_vhost)
		return;
	if (!tls_ctx) {
		log_warn(
			"TLS reload: libwebsockets gave no SSL_CTX; restart to load a new certificate");
		return;
	}
	scratch = SSL_CTX_new(TLS_server_method());
	if (!scratch || !tls_load_pair(scratch, why, sizeof(why))) {
		log_error("TLS reload failed, keeping the previous certificate: %s or %s: %s",
			  cf_tls_cert_file, cf_tls_key_file, scratch ? why : "out of memory");
		SSL_CTX_free(scratch);
		return;
	}
	SSL_CTX_free(scratch);
	if (!tls_load_pair(tls_ctx, why, sizeof(why))) {
		log_error("TLS reload failed after checking: %s", why);
		return;
	}
	log_info("TLS certificate reloaded from %s", cf_tls_cert_file);
}
