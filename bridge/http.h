/*
 * http.h: the plain HTTP endpoints, answered by the bridge itself before
 * (and instead of) any WebSocket upgrade: GET /healthz, GET /metrics, and
 * the static files of --static.  libwebsockets never sees these requests:
 * lws 4.1 spins on a request body that arrives with a head adopted through
 * lws_adopt_socket_vhost_readbuf (docs/bridge.md, "Plain HTTP").
 */
#ifndef WSNOTIFY_HTTP_H
#define WSNOTIFY_HTTP_H

#include "request.h"
#include "response.h"

/* Answer a request that is not an upgrade into *resp (initialized here). */
void http_respond(const struct request *r, struct response *resp);

#endif
