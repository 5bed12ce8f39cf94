/*
 * http.h: the plain HTTP endpoints: GET /healthz and GET /metrics.
 * Static files (--static) are served by an lws mount.
 */
#ifndef WSNOTIFY_HTTP_H
#define WSNOTIFY_HTTP_H

#include <libwebsockets.h>

/* Per-request state kept in the session data. */
struct http_reply {
	char *body;			/* LWS_PRE + len bytes */
	size_t len;
};

/* LWS_CALLBACK_HTTP: answer /healthz, /metrics, or 404. */
int http_on_request(struct lws *wsi, struct http_reply *r);
/* LWS_CALLBACK_HTTP_WRITEABLE: write the body and finish the transaction. */
int http_on_writeable(struct lws *wsi, struct http_reply *r);
/* Free the reply (connection closed). */
void http_reply_free(struct http_reply *r);

#endif
