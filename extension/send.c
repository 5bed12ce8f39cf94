/*-------------------------------------------------------------------------
 *
 * send.c
 *	  send_ws, send_ws_connection, broadcast_ws and close_ws, and the binary
 *	  forms send_ws_binary, send_ws_connection_binary and broadcast_ws_binary
 *	  (publish_ws_binary is in topics.c): queue messages
 *	  in the sending transaction's memory, then write them to the outbox
 *	  (websocket_message) at pre-commit and wake the bridges with one NOTIFY.
 *
 * Nothing reaches the outbox unless the transaction commits: a rolled-back
 * transaction or subtransaction simply drops its part of the queue.
 *
 * Locking: at pre-commit the queue is written while holding the lock that
 * PreCommit_Notify uses to order NOTIFY commits (AccessExclusiveLock on
 * "database 0"), taken here a moment before async.c takes it again.  It is
 * held until after the commit is visible to other sessions, so message ids
 * drawn under it from websocket_message_id_seq are in commit order: once a
 * reader sees id N, every smaller id is already visible or never will be.
 * That is what lets bridges and resuming clients use a plain bigint cursor.
 * The NOTIFY we send anyway takes the same lock, so this adds no new point
 * of serialization; docs/design.md has the measurements.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_class.h"
#include "catalog/pg_database.h"
#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "commands/async.h"
#include "commands/sequence.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "tcop/utility.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "wsnotify.h"

/* Longest close reason RFC 6455 allows in a close frame, in bytes. */
#define CLOSE_REASON_MAX 123

/*
 * Senders purge expired messages themselves, so that the outbox stays bounded
 * even when no bridge runs (bridges purge on every heartbeat).  A commit
 * that sends n messages purges with probability n / SEND_PURGE_EVERY (always
 * when n is larger) up to SEND_PURGE_PER_MESSAGE expired rows per message
 * sent, at least SEND_PURGE_BATCH: on average ten rows purged for every row
 * written, whatever the sizes of transactions and the lengths of sessions.
 * The purge skips its turn rather than wait for another purger.
 */
#define SEND_PURGE_EVERY 100
#define SEND_PURGE_PER_MESSAGE 10
#define SEND_PURGE_BATCH (SEND_PURGE_EVERY * SEND_PURGE_PER_MESSAGE)

/*
 * Largest NOTIFY payload that carries the transaction's messages themselves
 * ("inline"), letting a bridge that has seen every earlier id deliver them
 * without a round trip to fetch them (commit-to-arrival p50 went from about
 * 1.5 ms to a few hundred microseconds: docs/design.md).  Small on purpose:
 * a bridge that stops reading holds the cluster's NOTIFY queue (8 GB), and a
 * 1 kB ceiling keeps that at millions of transactions rather than the
 * hundred thousands 8 kB payloads would allow.
 */
#define SEND_INLINE_MAX 1024

/*---- GUC variables ----*/
static int	send_max_message_size = 8 * 1024 * 1024;
static int	send_retention = 300;

/* A message waiting for its transaction to commit. */
typedef struct PendingMessage
{
	int			nest_level;		/* (sub)transaction that queued it */
	OutboxRow	row;			/* its id drawn at pre-commit */
} PendingMessage;

/* The queue of the current transaction, in TopTransactionContext. */
static List *pending_messages = NIL;

/* Schema of the extension, learnt from the function that queued. */
static Oid	pending_namespace = InvalidOid;

/* Plans kept for the backend's life (util.c). */
static UtilPlan plan_insert = {InvalidOid, NULL};
static UtilPlan plan_count_user = {InvalidOid, NULL};
static UtilPlan plan_count_all = {InvalidOid, NULL};
static UtilPlan plan_connection_exists = {InvalidOid, NULL};
static UtilPlan plan_purge = {InvalidOid, NULL};

PG_FUNCTION_INFO_V1(send_ws);
PG_FUNCTION_INFO_V1(send_ws_connection);
PG_FUNCTION_INFO_V1(broadcast_ws);
PG_FUNCTION_INFO_V1(close_ws);
PG_FUNCTION_INFO_V1(send_ws_binary);
PG_FUNCTION_INFO_V1(send_ws_connection_binary);
PG_FUNCTION_INFO_V1(broadcast_ws_binary);

static void SendXactCallback(XactEvent event, void *arg);
static void SendSubXactCallback(SubXactEvent event, SubTransactionId mySubid,
								SubTransactionId parentSubid, void *arg);
static void SendFlush(void);
static void SendPurgeSometimes(Oid namespace, int count);
static int64 SendWriteOutbox(Oid namespace, Oid outbox_id, Oid sequence,
							 int64 *first_id);
static void SendInsertRows(Oid namespace, const OutboxRow *rows, int count,
						   TimestampTz sent_at);
static StringInfo SendInlineMessages(void);
static char *SendNotifyPayload(int64 first_id, int64 last_id,
							   StringInfo messages);
static text *SendRequiredText(FunctionCallInfo fcinfo, int argno,
							  const char *name);
static int64 SendCountQuery(Oid namespace, UtilPlan *plan,
							 const char *column, text *arg);

/*
 * Define the settings of message delivery and install the transaction
 * callbacks; called once from _PG_init.
 */
void
SendInit(void)
{
	DefineCustomIntVariable("wsnotify.max_message_size",
							"Largest message send_ws and its kin accept.",
							"Measured as the stored jsonb size.",
							&send_max_message_size,
							8 * 1024 * 1024, 1024, 256 * 1024 * 1024,
							PGC_SUSET, GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("wsnotify.retention",
							"How long sent messages are kept for clients that resume.",
							NULL,
							&send_retention, 300, 0, 7 * 24 * 3600,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	RegisterXactCallback(SendXactCallback, NULL);
	RegisterSubXactCallback(SendSubXactCallback, NULL);
}

/*
 * send_ws(user_id text, message jsonb) returns integer
 *
 * Queue a message for every live connection of a user, and for the user's
 * future resumes; return how many connections are live now.
 */
Datum
send_ws(PG_FUNCTION_ARGS)
{
	text	   *user_id = SendRequiredText(fcinfo, 0, "user_id");
	Jsonb	   *message = SendRequiredMessage(fcinfo, 1);
	Oid			namespace = get_func_namespace(fcinfo->flinfo->fn_oid);

	SendCheckWritable("send_ws()");
	SendQueue(fcinfo, 'u', user_id, message);
	PG_RETURN_INT32((int32) SendCountQuery(namespace, &plan_count_user,
										   "user_id", user_id));
}

/*
 * send_ws_connection(connection_id text, message jsonb) returns boolean
 *
 * Queue a message for one connection; false, and nothing queued, when that
 * connection is not live.
 */
Datum
send_ws_connection(PG_FUNCTION_ARGS)
{
	text	   *connection_id = SendRequiredText(fcinfo, 0, "connection_id");
	Jsonb	   *message = SendRequiredMessage(fcinfo, 1);
	Oid			namespace = get_func_namespace(fcinfo->flinfo->fn_oid);

	SendCheckWritable("send_ws_connection()");
	if (SendCountQuery(namespace, &plan_connection_exists,
					   "connection_id", connection_id) == 0)
		PG_RETURN_BOOL(false);
	SendQueue(fcinfo, 'c', connection_id, message);
	PG_RETURN_BOOL(true);
}

/*
 * broadcast_ws(message jsonb) returns integer
 *
 * Queue a message for every live connection; return how many there are.
 */
Datum
broadcast_ws(PG_FUNCTION_ARGS)
{
	Jsonb	   *message = SendRequiredMessage(fcinfo, 0);
	Oid			namespace = get_func_namespace(fcinfo->flinfo->fn_oid);

	SendCheckWritable("broadcast_ws()");
	SendQueue(fcinfo, 'b', NULL, message);
	PG_RETURN_INT32((int32) SendCountQuery(namespace, &plan_count_all,
										   NULL, NULL));
}

/*
 * send_ws_binary(user_id text, message bytea) returns integer
 *
 * send_ws for a binary message: delivered as a binary frame.
 */
Datum
send_ws_binary(PG_FUNCTION_ARGS)
{
	text	   *user_id = SendRequiredText(fcinfo, 0, "user_id");
	bytea	   *message = SendRequiredBinary(fcinfo, 1);
	Oid			namespace = get_func_namespace(fcinfo->flinfo->fn_oid);

	SendCheckWritable("send_ws_binary()");
	SendQueueBinary(fcinfo, 'u', user_id, message);
	PG_RETURN_INT32((int32) SendCountQuery(namespace, &plan_count_user,
										   "user_id", user_id));
}

/*
 * send_ws_connection_binary(connection_id text, message bytea) returns boolean
 *
 * send_ws_connection for a binary message.
 */
Datum
send_ws_connection_binary(PG_FUNCTION_ARGS)
{
	text	   *connection_id = SendRequiredText(fcinfo, 0, "connection_id");
	bytea	   *message = SendRequiredBinary(fcinfo, 1);
	Oid			namespace = get_func_namespace(fcinfo->flinfo->fn_oid);

	SendCheckWritable("send_ws_connection_binary()");
	if (SendCountQuery(namespace, &plan_connection_exists,
					   "connection_id", connection_id) == 0)
		PG_RETURN_BOOL(false);
	SendQueueBinary(fcinfo, 'c', connection_id, message);
	PG_RETURN_BOOL(true);
}

/*
 * broadcast_ws_binary(message bytea) returns integer
 *
 * broadcast_ws for a binary message.
 */
Datum
broadcast_ws_binary(PG_FUNCTION_ARGS)
{
	bytea	   *message = SendRequiredBinary(fcinfo, 0);
	Oid			namespace = get_func_namespace(fcinfo->flinfo->fn_oid);

	SendCheckWritable("broadcast_ws_binary()");
	SendQueueBinary(fcinfo, 'b', NULL, message);
	PG_RETURN_INT32((int32) SendCountQuery(namespace, &plan_count_all,
										   NULL, NULL));
}

/*
 * close_ws(connection_id text, code int, reason text) returns boolean
 *
 * Close one connection at commit, after any message queued before it;
 * false when it is not live.
 */
Datum
close_ws(PG_FUNCTION_ARGS)
{
	text	   *connection_id = SendRequiredText(fcinfo, 0, "connection_id");
	Oid			namespace = get_func_namespace(fcinfo->flinfo->fn_oid);
	int32		code;
	text	   *reason;
	char	   *reason_str;
	JsonbParseState *state = NULL;
	JsonbValue	key;
	JsonbValue	value;
	JsonbValue *result;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("code must not be null")));
	code = PG_GETARG_INT32(1);
	reason = SendRequiredText(fcinfo, 2, "reason");
	reason_str = text_to_cstring(reason);

	if (!(code == 1000 || (code >= 3000 && code <= 4999)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("close code %d is not allowed", code),
				 errdetail("An application may close with 1000 or a code from 3000 to 4999."),
				 errhint("Use 4000-4999 for codes private to your application.")));
	if (strlen(reason_str) > CLOSE_REASON_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("close reason is too long"),
				 errdetail("The reason is %zu bytes; a close frame holds at most %d.",
						   strlen(reason_str), CLOSE_REASON_MAX)));

	SendCheckWritable("close_ws()");
	if (SendCountQuery(namespace, &plan_connection_exists,
					   "connection_id", connection_id) == 0)
		PG_RETURN_BOOL(false);

	/* The close travels through the outbox as {"code": n, "reason": s}. */
	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	key.type = jbvString;
	key.val.string.val = "code";
	key.val.string.len = 4;
	pushJsonbValue(&state, WJB_KEY, &key);
	value.type = jbvNumeric;
	value.val.numeric = int64_to_numeric(code);
	pushJsonbValue(&state, WJB_VALUE, &value);
	key.val.string.val = "reason";
	key.val.string.len = 6;
	pushJsonbValue(&state, WJB_KEY, &key);
	value.type = jbvString;
	value.val.string.val = reason_str;
	value.val.string.len = strlen(reason_str);
	pushJsonbValue(&state, WJB_VALUE, &value);
	result = pushJsonbValue(&state, WJB_END_OBJECT, NULL);

	SendQueue(fcinfo, 'x', connection_id, JsonbValueToJsonb(result));
	PG_RETURN_BOOL(true);
}

/*
 * Fetch a text argument that must not be NULL, with an error naming it.
 */
static text *
SendRequiredText(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", name)));
	return PG_GETARG_TEXT_PP(argno);
}

/*
 * Fetch the message argument: not NULL, and within wsnotify.max_message_size.
 */
Jsonb *
SendRequiredMessage(FunctionCallInfo fcinfo, int argno)
{
	Jsonb	   *message;
	Size		size;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("message must not be null"),
				 errhint("To send a JSON null, pass 'null'::jsonb.")));
	message = PG_GETARG_JSONB_P(argno);
	size = VARSIZE(message) - VARHDRSZ;
	if (size > (Size) send_max_message_size)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("message is too large"),
				 errdetail("The message takes %zu bytes; wsnotify.max_message_size is %d bytes.",
						   size, send_max_message_size)));
	return message;
}

/*
 * Fetch a binary message argument: not NULL, and within
 * wsnotify.max_message_size bytes.
 */
bytea *
SendRequiredBinary(FunctionCallInfo fcinfo, int argno)
{
	bytea	   *message;
	Size		size;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("message must not be null"),
				 errhint("To send an empty binary message, pass ''::bytea.")));
	message = PG_GETARG_BYTEA_PP(argno);
	size = VARSIZE_ANY_EXHDR(message);
	if (size > (Size) send_max_message_size)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("message is too large"),
				 errdetail("The message is %zu bytes; wsnotify.max_message_size is %d bytes.",
						   size, send_max_message_size)));
	return message;
}

/*
 * Refuse early, with the function's name, what would fail at commit.
 */
void
SendCheckWritable(const char *function_name)
{
	PreventCommandIfReadOnly(function_name);
	PreventCommandDuringRecovery(function_name);
}

/*
 * Append a message, JSON or binary (exactly one of body and body_binary), to
 * the transaction's queue, copied into memory that lives until its end.
 */
static void
SendQueueMessage(FunctionCallInfo fcinfo, char kind, text *target,
				 Jsonb *body, bytea *body_binary)
{
	MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);
	PendingMessage *message = palloc(sizeof(PendingMessage));

	message->nest_level = GetCurrentTransactionNestLevel();
	message->row.kind = kind;
	message->row.target = target ? (text *) PG_DETOAST_DATUM_COPY(PointerGetDatum(target)) : NULL;
	message->row.body = body ? (Jsonb *) PG_DETOAST_DATUM_COPY(PointerGetDatum(body)) : NULL;
	message->row.body_binary = body_binary ?
		(bytea *) PG_DETOAST_DATUM_COPY(PointerGetDatum(body_binary)) : NULL;
	pending_messages = lappend(pending_messages, message);
	pending_namespace = get_func_namespace(fcinfo->flinfo->fn_oid);
	MemoryContextSwitchTo(old);
}

/*
 * Append a JSON message to the transaction's queue.
 */
void
SendQueue(FunctionCallInfo fcinfo, char kind, text *target, Jsonb *body)
{
	SendQueueMessage(fcinfo, kind, target, body, NULL);
}

/*
 * Append a binary message to the transaction's queue.
 */
void
SendQueueBinary(FunctionCallInfo fcinfo, char kind, text *target, bytea *body)
{
	SendQueueMessage(fcinfo, kind, target, NULL, body);
}

/*
 * At pre-commit, write the queue; at prepare, refuse it; at the end of the
 * transaction, forget it (its memory goes with TopTransactionContext).
 */
static void
SendXactCallback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			SendFlush();
			break;
		case XACT_EVENT_PRE_PREPARE:
			if (pending_messages != NIL)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that has queued WebSocket messages"),
						 errdetail("Messages are sent at commit, and a prepared transaction commits in another session.")));
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			pending_messages = NIL;
			pending_namespace = InvalidOid;
			break;
		default:
			break;
	}
}

/*
 * A subtransaction that rolls back takes its messages with it; one that
 * commits hands them to its parent.
 */
static void
SendSubXactCallback(SubXactEvent event, SubTransactionId mySubid,
					SubTransactionId parentSubid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();
	ListCell   *cell;

	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		foreach(cell, pending_messages)
		{
			PendingMessage *message = lfirst(cell);

			if (message->nest_level >= level)
				pending_messages = foreach_delete_current(pending_messages, cell);
		}
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		foreach(cell, pending_messages)
		{
			PendingMessage *message = lfirst(cell);

			if (message->nest_level >= level)
				message->nest_level = level - 1;
		}
	}
}

/*
 * Write the transaction's queue to the outbox under the NOTIFY commit lock,
 * with ids in commit order, and queue the NOTIFY that wakes the bridges.
 */
static void
SendFlush(void)
{
	Oid			namespace = pending_namespace;
	Oid			outbox;
	Oid			sequence;
	int64		first_id = 0;
	int64		last_id;
	StringInfo	messages;

	if (pending_messages == NIL)
		return;

	outbox = get_relname_relid("websocket_message", namespace);
	sequence = get_relname_relid("websocket_message_id_seq", namespace);
	if (!OidIsValid(outbox) || !OidIsValid(sequence))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("wsnotify outbox is missing"),
				 errdetail("Messages were queued but websocket_message no longer exists."),
				 errhint("Was the wsnotify extension dropped in this transaction?")));

	/*
	 * Lay out the inline payload's messages now, before the commit lock, which every committing
	 * NOTIFY in the cluster waits for: only the ids and the seal over them
	 * need to wait until the ids are drawn.
	 */
	messages = SendInlineMessages();

	/* Pre-commit runs after the last portal closed: bring a snapshot. */
	PushActiveSnapshot(GetTransactionSnapshot());
	SendPurgeSometimes(namespace, list_length(pending_messages));
	SealPrepare(namespace);
	last_id = SendWriteOutbox(namespace, outbox, sequence, &first_id);
	PopActiveSnapshot();

	Async_Notify(WSNOTIFY_CHANNEL,
				 SendNotifyPayload(first_id, last_id, messages));
	pending_messages = NIL;
}

/*
 * The messages of an inline NOTIFY payload, in clear: for each one
 * "<kind> <target bytes> <body bytes>\n<target><body>", the body as jsonb's
 * text output (what wsnotify_fetch would return); NULL when the transaction's
 * messages are too many or too large to ride inline.  Topic messages (a
 * bridge needs their subscribers from the database) and binary ones are never
 * inline; neither is anything outside UTF-8 databases, where the bridge's text
 * would not be these bytes.
 */
static StringInfo
SendInlineMessages(void)
{
	StringInfo	messages;
	ListCell   *cell;

	if (GetDatabaseEncoding() != PG_UTF8 ||
		list_length(pending_messages) * 8 > SEND_INLINE_MAX)
		return NULL;
	messages = makeStringInfo();
	foreach(cell, pending_messages)
	{
		PendingMessage *message = lfirst(cell);
		text	   *target = message->row.target;
		int			target_len = target ? VARSIZE_ANY_EXHDR(target) : 0;
		char	   *body;

		if (message->row.kind == 't' || message->row.body == NULL ||
			messages->len + target_len + VARSIZE(message->row.body) > SEND_INLINE_MAX * 2)
			return NULL;
		body = JsonbToCString(NULL, &message->row.body->root, VARSIZE(message->row.body));
		appendStringInfo(messages, "%c %d %zu\n", message->row.kind, target_len, strlen(body));
		if (target_len > 0)
			appendBinaryStringInfo(messages, VARDATA_ANY(target), target_len);
		appendStringInfoString(messages, body);
		pfree(body);
		if (messages->len > SEND_INLINE_MAX)
			return NULL;
	}
	return messages;
}

/*
 * The NOTIFY payload: the last id the transaction wrote; then, when there
 * are inline messages (SendInlineMessages) and their ids have no hole,
 * " <first id> " and the messages sealed (seal.c) with the ids in front as
 * authenticated data.  Runs under the commit lock.
 */
static char *
SendNotifyPayload(int64 first_id, int64 last_id, StringInfo messages)
{
	StringInfoData buf;
	int			plain_len;

	initStringInfo(&buf);
	appendStringInfo(&buf, INT64_FORMAT, last_id);
	plain_len = buf.len;
	/* a bridge can only tell nothing is missing when the ids have no hole */
	if (messages == NULL ||
		last_id - first_id + 1 != list_length(pending_messages))
		return buf.data;
	appendStringInfo(&buf, " " INT64_FORMAT, first_id);
	if (SealAppend(&buf, messages->data, messages->len))
		return buf.data;
	/* no key: the bare id, and the bridge fetches */
	buf.len = plain_len;
	buf.data[plain_len] = '\0';
	return buf.data;
}

/*
 * Purge a batch of expired messages, on average SEND_PURGE_PER_MESSAGE per
 * message this commit sends, before the commit lock is taken so that no
 * other sender waits for it.  After a purge that found nothing expired (or
 * another purger at work), small commits skip their turns for a tenth of
 * the retention, at most a second: the oldest row was younger than the
 * retention then, so at worst it stays that much longer, and a purge that
 * finds nothing still reads its batch of rows (7% of a small send_ws
 * transaction's time when every commit's turn came to that).  Commits of
 * SEND_PURGE_EVERY messages or more always purge.
 */
static void
SendPurgeSometimes(Oid namespace, int count)
{
	static TimestampTz idle_until = 0;
	Oid			types[1] = {INT4OID};
	Datum		batch[1];
	UtilStatement stmt = {NULL, 1, types, batch, "websocket_message", false,
	&plan_purge};
	TimestampTz now;

	if (count < SEND_PURGE_EVERY &&
		pg_prng_double(&pg_global_prng_state) * SEND_PURGE_EVERY >= count)
		return;
	now = GetCurrentTimestamp();
	if (count < SEND_PURGE_EVERY && now < idle_until)
		return;
	batch[0] = Int32GetDatum(Max(SEND_PURGE_BATCH, count * SEND_PURGE_PER_MESSAGE));
	stmt.sql = psprintf("SELECT %s($1)",
						UtilQualifiedName(namespace, "wsnotify_purge"));
	if (UtilExecInt8(namespace, &stmt) == 0)
		idle_until = TimestampTzPlusMilliseconds(now,
												 Min((int64) send_retention * 100, 1000));
}

/*
 * Take the commit lock, give each queued message the next id and write them
 * all to the outbox; return the last id, and the first in *first_id.  The
 * lock is held until the commit is visible, so everything done after taking
 * it makes every other sending commit in the cluster wait: the rows are laid
 * out and the outbox and its indexes opened before.
 */
static int64
SendWriteOutbox(Oid namespace, Oid outbox_id, Oid sequence, int64 *first_id)
{
	int			count = list_length(pending_messages);
	OutboxRow  *rows = palloc(sizeof(OutboxRow) * count);
	Relation	outbox = table_open(outbox_id, RowExclusiveLock);
	OutboxWriter *writer;
	TimestampTz sent_at;
	int			i = 0;
	ListCell   *cell;

	foreach(cell, pending_messages)
	{
		PendingMessage *message = lfirst(cell);

		rows[i++] = message->row;
	}
	writer = OutboxWriterBegin(outbox, count);

	LockSharedObject(DatabaseRelationId, InvalidOid, 0, AccessExclusiveLock);
	sent_at = GetCurrentTimestamp();
	for (i = 0; i < count; i++)
		rows[i].id = nextval_internal(sequence, false);
	if (writer)
	{
		OutboxWriterWrite(writer, rows, count, sent_at);
		OutboxWriterEnd(writer);
	}
	else
		SendInsertRows(namespace, rows, count, sent_at);
	table_close(outbox, NoLock);

	*first_id = rows[0].id;
	return rows[count - 1].id;
}

/*
 * Insert the rows with an INSERT statement, for an outbox that someone has
 * changed in a way the executor has to handle (outbox.c).
 */
static void
SendInsertRows(Oid namespace, const OutboxRow *rows, int count,
			   TimestampTz sent_at)
{
	Oid			types[6] = {INT8ARRAYOID, CHARARRAYOID, TEXTARRAYOID,
	JSONBARRAYOID, TIMESTAMPTZOID, BYTEAARRAYOID};
	Datum	   *ids = palloc(sizeof(Datum) * count);
	Datum	   *kinds = palloc(sizeof(Datum) * count);
	Datum	   *targets = palloc(sizeof(Datum) * count);
	bool	   *target_nulls = palloc(sizeof(bool) * count);
	Datum	   *bodies = palloc(sizeof(Datum) * count);
	bool	   *body_nulls = palloc(sizeof(bool) * count);
	Datum	   *binaries = palloc(sizeof(Datum) * count);
	bool	   *binary_nulls = palloc(sizeof(bool) * count);
	Datum		args[6];
	UtilStatement stmt = {NULL, 6, types, args, "websocket_message", false,
	&plan_insert};
	int			dims[1] = {count};
	int			lbs[1] = {1};
	int			i;

	for (i = 0; i < count; i++)
	{
		ids[i] = Int64GetDatum(rows[i].id);
		kinds[i] = CharGetDatum(rows[i].kind);
		targets[i] = PointerGetDatum(rows[i].target);
		target_nulls[i] = (rows[i].target == NULL);
		bodies[i] = PointerGetDatum(rows[i].body);
		body_nulls[i] = (rows[i].body == NULL);
		binaries[i] = PointerGetDatum(rows[i].body_binary);
		binary_nulls[i] = (rows[i].body_binary == NULL);
	}
	args[0] = PointerGetDatum(construct_md_array(ids, NULL, 1, dims, lbs,
												 INT8OID, 8, FLOAT8PASSBYVAL,
												 TYPALIGN_DOUBLE));
	args[1] = PointerGetDatum(construct_md_array(kinds, NULL, 1, dims, lbs,
												 CHAROID, 1, true,
												 TYPALIGN_CHAR));
	args[2] = PointerGetDatum(construct_md_array(targets, target_nulls, 1,
												 dims, lbs, TEXTOID, -1,
												 false, TYPALIGN_INT));
	args[3] = PointerGetDatum(construct_md_array(bodies, body_nulls, 1, dims,
												 lbs, JSONBOID, -1, false,
												 TYPALIGN_INT));
	args[4] = TimestampTzGetDatum(sent_at);
	args[5] = PointerGetDatum(construct_md_array(binaries, binary_nulls, 1,
												 dims, lbs, BYTEAOID, -1,
												 false, TYPALIGN_INT));
	stmt.sql = psprintf("INSERT INTO %s (id, sent_at, kind, target, body, body_binary) "
						"SELECT u.id, $5, u.kind, u.target, u.body, u.body_binary "
						"FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), "
						"pg_catalog.unnest($3), pg_catalog.unnest($4), "
						"pg_catalog.unnest($6)) "
						"AS u(id, kind, target, body, body_binary)",
						UtilQualifiedName(namespace, "websocket_message"));
	UtilExec(namespace, &stmt, NULL, NULL, 0);
}

/*
 * Count the rows of websocket_client whose column is arg (all of them when
 * arg is NULL), in the caller's snapshot and with the caller's rights:
 * through the index when clients.c can, else with a count(*) statement.
 */
static int64
SendCountQuery(Oid namespace, UtilPlan *plan, const char *column, text *arg)
{
	Oid			types[1] = {TEXTOID};
	Datum		args[1];
	UtilStatement stmt = {NULL, arg ? 1 : 0, types, args, NULL, true, plan};
	int64		result;

	if (arg != NULL && (result = ClientCount(namespace, column, arg)) >= 0)
		return result;
	args[0] = PointerGetDatum(arg);
	stmt.sql = arg == NULL ?
		psprintf("SELECT count(*) FROM %s",
				 UtilQualifiedName(namespace, "websocket_client")) :
		psprintf("SELECT count(*) FROM %s WHERE %s = $1",
				 UtilQualifiedName(namespace, "websocket_client"),
				 quote_identifier(column));
	return UtilExecInt8(namespace, &stmt);
}
