/*
 * raw.h: foreign file descriptors in the lws loop.
 *
 * The database socket, the listening socket, sockets whose upgrade waits for
 * the database, and the signalfd are adopted into the one lws service loop as
 * raw file descriptors of the "wsnotify-raw" protocol.  Each such wsi carries
 * a raw_tag (lws opaque user data) saying which module owns it; a NULL tag
 * means "orphaned, ignore its events".
 */
#ifndef WSNOTIFY_RAW_H
#define WSNOTIFY_RAW_H

#include <stdint.h>

#include <libwebsockets.h>

enum raw_kind { RAW_DB, RAW_LISTEN, RAW_GATE, RAW_SIGNAL, RAW_TLS_PAIR };

#define RAW_MAGIC 0x72617721u

struct raw_tag {
	uint32_t magic;			/* RAW_MAGIC */
	enum raw_kind kind;
	void *obj;
};

/* Adopt fd into the loop with the given tag; NULL on failure (fd untouched). */
struct lws *raw_adopt(int fd, struct raw_tag *tag);
/* Detach the tag and close the wsi at the next service (and its fd). */
void raw_drop(struct lws *wsi);

/* Dispatch an event of a raw descriptor to its owner by tag. */
int raw_dispatch(struct lws *wsi, int reason);

/* The vhost every socket lives on (main.c). */
extern struct lws_vhost *main_vhost;
extern struct lws_context *main_context;
/* Every vhost's retry and idle policy: lws' validity checks off (main.c). */
extern const lws_retry_bo_t main_retry_policy;

#endif
