/*
 * http.c: /healthz (200 when the database is reachable, else 503) and
 * /metrics (Prometheus text format).
 */
#include <stdlib.h>
#include <string.h>

#include "deliver.h"
#include "http.h"
#include "metrics.h"
#include "route.h"

/* Copy text into a fresh body with LWS_PRE headroom. */
static void
http_set_body(struct http_reply *r, const char *text, size_t len)
{
	free(r->body);
	r->body = malloc(LWS_PRE + len + 1);
	memcpy(r->body + LWS_PRE, text, len);
	r->len = len;
}

/* Send status and headers, then ask for WRITEABLE to send the body. */
static int
http_send_headers(struct lws *wsi, struct http_reply *r, unsigned status, const char *ctype)
{
	uint8_t buf[LWS_PRE + 1024], *start = &buf[LWS_PRE], *p = start,
		*end = &buf[sizeof(buf) - 1];

	if (lws_add_http_common_headers(wsi, status, ctype, (lws_filepos_t) r->len, &p, end) ||
	    lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
					 (const unsigned char *) "no-store", 8, &p, end) ||
	    lws_finalize_write_http_header(wsi, start, &p, end))
		return 1;
	lws_callback_on_writable(wsi);
	return 0;
}

/* LWS_CALLBACK_HTTP: answer /healthz, /metrics, or 404. */
int
http_on_request(struct lws *wsi, struct http_reply *r)
{
	char uri[256] = "";
	char *text;
	size_t len;

	if (lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) < 0)
		uri[0] = '\0';
	if (!strcmp(uri, "/healthz")) {
		if (deliver_started() && route_ready()) {
			http_set_body(r, "ok\n", 3);
			return http_send_headers(wsi, r, 200, "text/plain; charset=utf-8");
		}
		http_set_body(r, "database unavailable\n", 21);
		return http_send_headers(wsi, r, 503, "text/plain; charset=utf-8");
	}
	if (!strcmp(uri, "/metrics")) {
		text = metrics_render(&len);
		http_set_body(r, text, len);
		free(text);
		return http_send_headers(wsi, r, 200, "text/plain; version=0.0.4; charset=utf-8");
	}
	http_set_body(r, "not found\n", 10);
	return http_send_headers(wsi, r, 404, "text/plain; charset=utf-8");
}

/* LWS_CALLBACK_HTTP_WRITEABLE: write the body and finish the transaction. */
int
http_on_writeable(struct lws *wsi, struct http_reply *r)
{
	if (!r->body)
		return 0;
	if (lws_write(wsi, (unsigned char *) r->body + LWS_PRE, r->len,
		      LWS_WRITE_HTTP_FINAL) != (int) r->len)
		return 1;
	http_reply_free(r);
	if (lws_http_transaction_completed(wsi))
		return -1;
	return 0;
}

/* Free the reply. */
void
http_reply_free(struct http_reply *r)
{
	free(r->body);
	r->body = NULL;
	r->len = 0;
}
