/*
 * signal.c: signals relayed by the ordering worker (extension/signal.c).
 *
 * The payload "s<n> <sealed>" opens, with "s<n>" as the authenticated data,
 * to "<sender bytes> <topic bytes> <data bytes>\n<sender><topic><data>".
 * Which of this bridge's connections subscribe to the topic only the
 * database knows (a $connect handler or a trigger may subscribe them), so
 * the signals that arrive while one question is out wait and are asked
 * about together: one wsnotify_signal_recipients round trip per batch, not
 * per signal.  Each signal's frame is built once for plain clients and once
 * for wsnotify.v1 ones; the sender connection does not get its own back.
 */
#include "signal.h"
#include "config.h"
#include "db.h"
#include "frame.h"
#include "log.h"
#include "metrics.h"
#include "payload.h"
#include "registry.h"
#include "seal.h"
#include "util.h"
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utlist.h>

/* Signals waiting for their recipients; past it new ones are dropped. */
#define SIGNAL_PENDING_MAX 4096

struct pending {
	char sender[257]; /* "" when everybody gets it (extension: 256 at most) */
	char topic[129];
	struct payload *plain; /* the data, as plain clients get it */
	struct payload *v1;    /* {"type": "signal", "topic": T, "data": D} */
	struct pending *prev, *next;
};

static struct pending *waiting; /* not yet asked about */
static int waiting_count;
static bool asking; /* a recipients query is out */

static void signal_ask(void);

/* Free a batch. */
static void
signal_free(struct pending *batch)
{
	struct pending *s, *tmp;

	DL_FOREACH_SAFE(batch, s, tmp)
	{
		payload_unref(s->plain);
		payload_unref(s->v1);
		free(s);
	}
}

/* Queue one signal for every connection of a JSON array of ids but its sender. */
static void
signal_send(const struct pending *s, const char *connections)
{
	struct conn *list[256];
	size_t n, from = 0;

	do {
		n = registry_listed(connections, list, 256, &from);
		for (size_t i = 0; i < n; i++)
			if (strcmp(list[i]->id, s->sender) != 0) {
				conn_enqueue_formed(list[i], list[i]->envelope ? s->v1 : s->plain);
				metrics.signals_out++;
			}
	} while (n == 256);
}

/* Answer of wsnotify_signal_recipients: send the batch. */
static void
signal_recipients_done(PGresult *res, void *arg)
{
	struct pending *batch = arg, *s;

	asking = false;
	if (res && PQresultStatus(res) == PGRES_TUPLES_OK) {
		registry_batch_begin();
		for (int r = 0; r < PQntuples(res); r++)
			DL_FOREACH(batch, s)
		if (!strcmp(s->topic, PQgetvalue(res, r, 0)))
			signal_send(s, PQgetvalue(res, r, 1));
		registry_batch_end();
	} else if (res) {
		char msg[256];

		db_errmsg(res, msg, sizeof(msg));
		log_error("wsnotify_signal_recipients failed (SQLSTATE %s): %s; signals dropped",
			  db_sqlstate(res), msg);
	}
	signal_free(batch);
	signal_ask();
}

/* Ask for the recipients of every waiting signal, unless a question is out. */
static void
signal_ask(void)
{
	struct pending *batch = waiting, *s;
	const char *params[2];
	size_t cap = 3, len = 0;
	char *topics;

	if (asking || !batch)
		return;
	DL_FOREACH(batch, s)
	cap += strlen(s->topic) + 3;
	/* a text[] literal; topic names need no escaping (the extension checks them) */
	topics = util_alloc(cap);
	topics[len++] = '{';
	DL_FOREACH(batch, s)
	len += (size_t) snprintf(topics + len, cap - len, "%s\"%s\"", s == batch ? "" : ",",
				 s->topic);
	snprintf(topics + len, cap - len, "}");
	params[0] = cf_bridge_id;
	params[1] = topics;
	waiting = NULL;
	waiting_count = 0;
	if (db_query("SELECT topic, connections FROM wsnotify_signal_recipients($1, $2)", 2, params,
		     signal_recipients_done, batch, 0))
		asking = true;
	else {
		DL_COUNT(batch, s, waiting_count);
		metrics.signals_dropped += (uint64_t) waiting_count;
		waiting_count = 0;
		signal_free(batch); /* no database: best effort, as documented */
	}
	free(topics);
}

/* Read "<a> <b> <c>\n" at the head of plain; false when it does not parse. */
static bool
signal_lengths(const char *plain, size_t len, size_t out[3], size_t *head)
{
	const char *p = plain, *end = plain + len;

	for (int i = 0; i < 3; i++) {
		char *next;
		unsigned long v;

		if (p >= end || *p < '0' || *p > '9')
			return false;
		v = strtoul(p, &next, 10);
		if (next >= end || *next != (i < 2 ? ' ' : '\n'))
			return false;
		out[i] = v;
		p = next + 1;
	}
	*head = (size_t) (p - plain);
	return out[0] < sizeof(((struct pending *) 0)->sender) && out[1] > 0 &&
	       out[1] < sizeof(((struct pending *) 0)->topic) &&
	       *head + out[0] + out[1] + out[2] == len;
}

bool
signal_on_notify(const char *payload)
{
	const char *space;
	char *plain = NULL;
	size_t plain_len, lens[3], head;
	struct pending *s;

	if (payload[0] != 's')
		return false;
	if (!(space = strchr(payload, ' ')) ||
	    !seal_open(payload, (size_t) (space - payload), space + 1, strlen(space + 1), &plain,
		       &plain_len) ||
	    !signal_lengths(plain, plain_len, lens, &head)) {
		metrics.inline_rejected++;
		free(plain);
		return true;
	}
	if (waiting_count >= SIGNAL_PENDING_MAX) {
		metrics.signals_dropped++;
		free(plain);
		return true;
	}
	s = util_calloc(1, sizeof(*s));
	memcpy(s->sender, plain + head, lens[0]);
	memcpy(s->topic, plain + head + lens[0], lens[1]);
	s->plain = payload_new(plain + head + lens[0] + lens[1], lens[2]);
	s->v1 = frame_signal(s->topic, s->plain->data, s->plain->len);
	free(plain);
	DL_APPEND(waiting, s);
	waiting_count++;
	signal_ask();
	return true;
}
