/*
 * registry.h: the live connections of this bridge, by connection id and by
 * user id (uthash), their life cycle, and what may be queued for each.
 *
 * A connection exists from the moment the database accepted it
 * (wsnotify_connect returned) until its socket is gone; messages fetched in
 * between are queued (queue.c) and written once the WebSocket is
 * established.  A message's payload is reference-counted and shared by
 * every queue that holds it; its wsnotify.v1 envelope is built once
 * (frame_form) and shared by every v1 queue.  The registry decides what a
 * queue takes: nothing after a close, held messages during a replay, a
 * 1008 close past send_queue_max.
 *
 * The registry writes nothing itself: it asks the writer that the
 * WebSocket layer installs (registry_init) to write a connection's queue.
 * Uses config, log, metrics, frame, payload, queue and util.
 */
#ifndef WSNOTIFY_REGISTRY_H
#define WSNOTIFY_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <uthash.h>

#include "frame.h"
#include "payload.h"
#include "queue.h"

struct lws;
struct user_entry;

/* A client message waiting for its route handler (route.c). */
struct route_req {
	struct route_req *next;
	char *body;	  /* the JSON object, as text; binary: "\\x" + hex */
	char *request_id; /* its "request_id" as JSON text, or NULL */
	bool binary;	  /* a binary frame, for the $binary route */
	bool refresh;	  /* a refresh action: its reply moves expires_at */
};

/* A connection's life: each state only ever moves to a later one. */
enum conn_state {
	CONN_HANDSHAKE, /* authorized; lws has not finished the handshake */
	CONN_OPEN,	/* established: queued messages are written */
	CONN_CLOSING,	/* close asked (conn_close): only the close frame follows */
	CONN_CLOSED	/* close frame sent, peer closed or write failed: nothing more */
};

#define CONN_MAGIC 0x636f6e6eu

struct conn {
	uint32_t magic; /* CONN_MAGIC: tells a conn from a raw_tag */
	char id[40];
	const char *user_id; /* the user entry's copy */
	const char *claims;  /* these three point into text[], or are NULL */
	const char *remote_addr;
	const char *user_agent;
	time_t connected_at;
	int64_t start_id;  /* deliver only ids above this */
	double expires_at; /* epoch seconds; 0 = none */
	struct lws *wsi;   /* NULL until established */
	enum conn_state state;
	int close_code;
	struct send_queue q;
	const char *close_reason; /* set by conn_close (static text), else NULL */
	uint64_t last_rx_ms, last_tx_ms, ping_sent_ms;
	bool ping_due, ping_outstanding;
	bool claimed;	/* lws took it (ws_adopt): the WebSocket layer owns it */
	bool envelope;	/* wsnotify.v1: {"id": cursor, "data": message} */
	bool holding;	/* replay in flight: live messages wait in q.held */
	bool rx_binary; /* the client message being gathered is binary */
	size_t rx_len;	/* bytes of the client message so far */
	char *rx_buf;	/* the client message so far */
	size_t rx_cap;
	struct route_req *req_head, *req_tail; /* waiting for a handler */
	int req_count;
	bool req_inflight;  /* one handler call at a time: replies in order */
	double rate_tokens; /* client_rate_limit bucket */
	uint64_t rate_ms;
	double signal_tokens; /* signal_rate_limit bucket */
	uint64_t signal_ms;
	UT_hash_handle hh;
	struct conn *unext, *uprev;
	struct user_entry *user;
	struct conn *flush_next, *flush_prev; /* in the batch's list of connections to write */
	bool flush_pending;
	/*
	 * claims, remote_addr and user_agent, kept only for wsnotify_restore:
	 * one allocation with the conn rather than one each (idle connections
	 * are what a bridge holds most of).
	 */
	char text[];
};

struct user_entry {
	struct conn *conns;
	UT_hash_handle hh;
	char user_id[];
};

/* What the database said of a new connection (wsnotify_connect's row). */
struct conn_row {
	const char *id;
	const char *user_id;
	const char *claims; /* may be NULL, like the next two */
	const char *remote_addr;
	const char *user_agent;
	int64_t start_id;
	double expires_at;
};

/* How a connection's queue reaches its socket (installed by the WebSocket layer). */
struct registry_writer {
	void (*want_write)(struct conn *c); /* ask for a WRITEABLE callback */
	void (*flush)(struct conn *c);	    /* write what is queued now, outside callbacks */
};

/* Start the registry: writes go through *w; its gauges are registered. */
void registry_init(const struct registry_writer *w);
/* Create and index a connection. */
struct conn *registry_add(const struct conn_row *row);
/* Unindex and free a connection and its queue. */
void registry_remove(struct conn *c);
/* Find a connection by id. */
struct conn *registry_find(const char *id);
/* Find a connection by an id of len bytes, not NUL-terminated. */
struct conn *registry_find_len(const char *id, size_t len);
/* The connections of a user (utlist DL list), or NULL. */
struct conn *registry_user(const char *user_id);
/* The same for a user id of len bytes, not NUL-terminated. */
struct conn *registry_user_len(const char *user_id, size_t len);
/*
 * The connections of this bridge a JSON array of connection ids names (as
 * jsonb prints it), read in place from byte *from: up to n of them into
 * list; *from moves past what was read.  Returns how many were put there
 * (fewer than n: the array is done).
 */
size_t registry_listed(const char *ids, struct conn **list, size_t n, size_t *from);
/* All connections (uthash head; iterate with HASH_ITER). */
struct conn *registry_all(void);
/* Number of connections. */
unsigned registry_count(void);

/* Queue a message; past send_queue_max the connection is closed with 1008. */
void conn_enqueue(struct conn *c, struct payload *p, int64_t id);
/* Queue a message now, even while holding (welcome, replay). */
void conn_enqueue_now(struct conn *c, struct payload *p, int64_t id);
/* Queue a replayed message now: unbounded (queue_push_replayed). */
void conn_enqueue_replayed(struct conn *c, struct payload *p, int64_t id);
/* Queue a frame given as text (welcome, reset), bypassing the hold. */
void conn_enqueue_text(struct conn *c, const char *text);
/* Queue a payload already in its final form (a signal's), bypassing the hold. */
void conn_enqueue_formed(struct conn *c, struct payload *p);
/* The replay is done: live messages held meanwhile follow it. */
void conn_release(struct conn *c);
/* Queue a close after the messages already queued. */
void conn_enqueue_close(struct conn *c, int code, const char *reason);
/* Close now: drop the queue, send why's code and reason. */
void conn_close(struct conn *c, const struct frame_close *why);
/* True once a close was asked or done: nothing more is queued. */
bool conn_closing(const struct conn *c);
/* Ask lws for a WRITEABLE callback when there is something to write. */
void conn_want_write(struct conn *c);
/*
 * Between these two, conn_want_write only notes the connection; the end
 * writes to each noted connection what its socket takes (the writer's flush), so the
 * messages of one fetch go out without a trip through poll and several for
 * one connection share a write.
 */
void registry_batch_begin(void);
void registry_batch_end(void);

#endif
