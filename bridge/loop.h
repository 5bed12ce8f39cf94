/*
 * loop.h: the one event loop: libev (epoll) as lws's foreign loop, the lws
 * context and vhost, and foreign descriptors adopted into it.
 *
 * The database sockets, the listening socket, sockets before their upgrade,
 * the TLS relay's socketpair ends and the signalfd join the loop as raw
 * file descriptors of the "wsnotify-raw" protocol.  Each such wsi carries a
 * raw_tag (lws opaque user data) with its owner's event handler: the loop
 * calls it and knows nothing of the kinds.  A NULL tag means "orphaned,
 * ignore its events".  Uses util only.
 */
#ifndef WSNOTIFY_LOOP_H
#define WSNOTIFY_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>
#include <libwebsockets.h>

#define RAW_MAGIC 0x72617721u

/* An event of a raw descriptor: LWS_CALLBACK_RAW_{RX,WRITEABLE,CLOSE}_FILE. */
typedef int (*raw_handler)(struct lws *wsi, int reason, void *obj);

struct raw_tag {
	uint32_t magic; /* RAW_MAGIC: tells a raw_tag from a conn */
	raw_handler on_event;
	void *obj;
};

/* The context and the vhost every socket lives on (NULL before loop_create). */
extern struct lws_context *loop_context;
extern struct lws_vhost *loop_vhost;
/* Every vhost's retry and idle policy: lws' validity checks off. */
extern const lws_retry_bo_t loop_retry_policy;

/* What loop_create needs from its caller. */
struct loop_options {
	const struct lws_protocols *protocols; /* the vhost's, LOOP_RAW_PROTOCOL among them */
	bool tls;			       /* some vhost will use TLS: global OpenSSL init */
	unsigned short max_http_header_data;
};

/* The callback of the "wsnotify-raw" protocol: put LOOP_RAW_PROTOCOL in the vhost's list. */
int loop_raw_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		      size_t len);
#define LOOP_RAW_PROTOCOL(id)                                        \
	{                                                            \
		"wsnotify-raw", loop_raw_callback, 0, 0, id, NULL, 0 \
	}

/* Create the libev loop, the lws context and the vhost; false with the reason in err. */
bool loop_create(const struct loop_options *o, char *err, size_t n);
/* Run one iteration of the loop. */
void loop_run_once(void);
/* Destroy the context and the loop. */
void loop_destroy(void);

/* Adopt fd into the loop with the given tag; NULL on failure (fd untouched). */
struct lws *raw_adopt(int fd, struct raw_tag *tag);
/* Detach the tag and close the wsi at the next service (and its fd). */
void raw_drop(struct lws *wsi);
/* Hand an event of a raw descriptor to its tag's handler (also for wsis lws bound elsewhere). */
int raw_dispatch(struct lws *wsi, int reason);

/*
 * Next turn: ask lws for a WRITEABLE event on *wsi, if it is still set by
 * then.  Deferred because the raw file role clears POLLOUT after its
 * WRITEABLE callback returns, so asking from inside that callback would be
 * lost (the database socket, the TLS relay's socketpair end).  A libev
 * timer, not an lws_sul, which lws 4.1 on libev runs only when the loop is
 * idle or its own timer fires (up to a second later on a busy bridge).
 */
struct loop_soon {
	ev_timer timer;
	struct lws *const *wsi;
};
/* Schedule s (once: a pending s stays as it is). */
void loop_soon_writable(struct loop_soon *s, struct lws *const *wsi);
/* Unschedule s, before freeing what holds it. */
void loop_soon_cancel(struct loop_soon *s);

#endif
