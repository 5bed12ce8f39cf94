/*-------------------------------------------------------------------------
 *
 * wsnotify.h
 *	  Declarations shared by the modules of the wsnotify extension: the
 *	  init each module's settings are defined in (called by _PG_init) and
 *	  the entry points each module offers the others.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WSNOTIFY_H
#define WSNOTIFY_H

#include "postgres.h"

#include "access/transam.h"
#include "fmgr.h"
#include "utils/jsonb.h"
#include "utils/relcache.h"
#include "utils/timestamp.h"

#include "util.h"

/* The version of the library (Makefile EXTVERSION). */
#define WSNOTIFY_VERSION "1.1"

/* The NOTIFY channel the ordering worker wakes the bridges on. */
#define WSNOTIFY_CHANNEL "wsnotify"

/* True when the library was loaded through shared_preload_libraries. */
extern bool wsnotify_preloaded;

/*---- send.c ----*/
extern void SendInit(void);
extern void SendQueue(FunctionCallInfo fcinfo, char kind, text *target,
					  Jsonb *body);
extern Jsonb *SendRequiredMessage(FunctionCallInfo fcinfo, int argno);
extern void SendQueueBinary(FunctionCallInfo fcinfo, char kind, text *target,
							bytea *body);
extern bytea *SendRequiredBinary(FunctionCallInfo fcinfo, int argno);
extern void SendCheckWritable(const char *function_name);

/*---- topics.c ----*/
extern void TopicsInit(void);
extern void TopicCheckName(const char *topic, int sqlstate);
extern bool TopicIsClientAction(const char *action);
extern Jsonb *TopicClientAction(Oid namespace, const char *connection_id,
								const char *action, Jsonb *message);
extern int32 TopicSubscribers(Oid namespace, const char *topic);

/*---- signal.c ----*/

/*
 * Largest signal, in bytes of JSON text: with its topic and sender, sealed
 * and in base64, it still fits one NOTIFY payload (under 8000 bytes).  The
 * bridge's signal_max_size cannot be set above it.
 */
#define SIGNAL_MAX_SIZE 4096
#define SIGNAL_SENDER_MAX 256

extern void SignalInit(void);
extern bool SignalPending(void);
extern int	SignalRelay(Oid namespace);

/*---- routes.c ----*/
extern void RoutesInit(void);
extern char *RoutesJsonbField(Jsonb *object, const char *key, bool as_text);

/*---- token.c ----*/
extern Jsonb *TokenVerifyConfigured(const char *token);
extern Jsonb *TokenVerifyWithKey(const char *token, const char *key,
								 const char *algorithm);
extern void TokenInit(void);

/*---- order.c ----*/
extern void OrderInit(void);
extern bool OrderAvailable(void);
extern void OrderAppend(FullTransactionId xid);
extern void OrderKick(void);

/* seal.c: inline NOTIFY payloads, sealed with AES-256-GCM */
extern void SealPrepare(Oid namespace);
extern bool SealAppend(StringInfo out, const char *plain, int plain_len);

/* clients.c: live connections counted without the executor */
extern int64 ClientCount(Oid namespace, const char *column, text *value);

/* outbox.c: websocket_message rows written without the executor */
#define OUTBOX_NATTS 8

/* A message row as its sender writes it: no position yet. */
typedef struct OutboxRow
{
	FullTransactionId xid;		/* the sending (top) transaction */
	int32		seq;			/* its order within that transaction */
	char		kind;			/* 'u', 'c', 'b', 't' or 'x' */
	text	   *target;			/* user, connection or topic; NULL to all */
	Jsonb	   *body;			/* a JSON message, or NULL when binary */
	bytea	   *body_binary;	/* a binary message, or NULL when JSON */
} OutboxRow;

/* The outbox's indexes that take a sender's rows, and the slots. */
typedef struct OutboxWriter
{
	Relation	outbox;
	Relation   *indexes;
	struct IndexInfo **index_infos;
	int			index_count;
	struct TupleTableSlot **slots;
	int			slot_count;
} OutboxWriter;

extern OutboxWriter *OutboxWriterBegin(Relation outbox, int count);
extern void OutboxWriterWrite(OutboxWriter *writer, const OutboxRow *rows,
							  int count, TimestampTz sent_at);
extern void OutboxWriterEnd(OutboxWriter *writer);

#endif							/* WSNOTIFY_H */
