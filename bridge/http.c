/*
 * http.c: /healthz (200 when the database is reachable, else 503),
 * /metrics (Prometheus text format) and static files (see http.h).
 */
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "db.h"
#include "files.h"
#include "http.h"
#include "metrics.h"
#include "route.h"
#include "session.h"

#define HTTP_TEXT "text/plain; charset=utf-8"

/* Is the target's path (before any query) exactly path? */
static bool
http_path_is(const char *target, const char *path)
{
	size_t l = strlen(path);

	return !strncmp(target, path, l) && (target[l] == '\0' || target[l] == '?');
}

/* GET /healthz: the delivery session is started and a handler session is up. */
static void
http_healthz(struct response *resp)
{
	if (session_started() && db_ready() && route_ready())
		response_text(resp, 200, HTTP_TEXT, "ok\n", 3);
	else
		response_text(resp, 503, HTTP_TEXT, "database unavailable\n", 21);
}

/* GET /metrics. */
static void
http_metrics(struct response *resp)
{
	size_t len;
	char *text = metrics_render(&len);

	response_text(resp, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
	free(text);
}

/* Answer a request that is not an upgrade. */
void
http_respond(const struct request *r, struct response *resp)
{
	bool get = !strcmp(r->method, "GET"), head = !strcmp(r->method, "HEAD");
	bool known = http_path_is(r->target, "/healthz") || http_path_is(r->target, "/metrics") ||
		     cf_static[0];

	response_init(resp, 404);
	resp->head_only = head;
	if (known && !get && !head) {
		response_text(resp, 405, HTTP_TEXT, "method not allowed\n", 19);
		response_header(resp, "Allow: GET, HEAD\r\n");
	} else if (http_path_is(r->target, "/healthz"))
		http_healthz(resp);
	else if (http_path_is(r->target, "/metrics"))
		http_metrics(resp);
	else if (cf_static[0])
		files_respond(cf_static, r->target, resp);
	else
		response_text(resp, 404, HTTP_TEXT, "not found\n", 10);
}
