/*
 * route.h: client messages run SQL route handlers (issue 5).
 *
 * A text frame holding a JSON object goes to wsnotify_invoke(connection,
 * message) on a pool of handler_pool_size database sessions, separate from
 * the delivery session so a slow handler delays neither deliveries nor other
 * clients.  One call per connection is in flight at a time, so its replies
 * come in the order of its requests.  Errors become error frames and the
 * connection stays open (docs/protocol.md).
 */
#ifndef WSNOTIFY_ROUTE_H
#define WSNOTIFY_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

struct conn;

/* Open the handler pool's sessions. */
void route_init(void);
/* True when client messages can run: a pool session is ready (or no pool). */
bool route_ready(void);
/* A complete client text message. */
void route_on_message(struct conn *c, const char *data, size_t len);

/* A complete client binary message: to the $binary route, or close 1003. */
void route_on_binary(struct conn *c, const char *data, size_t len);

#endif
