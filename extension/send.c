/*-------------------------------------------------------------------------
 *
 * send.c
 *	  send_ws, send_ws_connection, broadcast_ws and close_ws, and the binary
 *	  forms send_ws_binary, send_ws_connection_binary and broadcast_ws_binary
 *	  (publish_ws_binary is in topics.c): queue messages in the sending
 *	  transaction's memory, then write them to the outbox (websocket_message)
 *	  at pre-commit, without a position, and hand the transaction to the
 *	  ordering worker (order.c).
 *
 * Nothing reaches the outbox unless the transaction commits: a rolled-back
 * transaction or subtransaction simply drops its part of the queue.
 *
 * Locking: none beyond the outbox's RowExclusiveLock.  A sending
 * transaction takes no cluster-wide lock, sends no NOTIFY and waits for no
 * other sending transaction (DESIGN.md rule 8): the position a message is
 * delivered and resumed by is given after the commit, by the worker, in
 * the order the worker learns of commits (docs/design.md).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
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
#include "utils/xid8.h"

#include "wsnotify.h"

/* Longest close reason RFC 6455 allows in a close frame, in bytes. */
#define CLOSE_REASON_MAX 123

/*---- GUC variables ----*/
static int	send_max_message_size = 8 * 1024 * 1024;

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
static void SendCheckOrdering(void);
static void SendInsertRows(Oid namespace, const OutboxRow *rows, int count,
						   TimestampTz sent_at);
static text *SendRequiredText(FunctionCallInfo fcinfo, int argno,
							  const char *name);
static int64 SendCountQuery(Oid namespace, UtilPlan *plan,
							 const char *column, text *arg);

/*
 * Define the settings of sending and install the transaction callbacks;
 * called once from _PG_init.
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
	SendCheckOrdering();
}

/*
 * Refuse to queue when no ordering worker can exist: its ring lives in the
 * shared memory that only shared_preload_libraries gives the library.
 */
static void
SendCheckOrdering(void)
{
	if (!OrderAvailable())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("wsnotify is not in shared_preload_libraries"),
				 errdetail("Messages are ordered for delivery by a background worker, which needs the library preloaded."),
				 errhint("Add wsnotify to shared_preload_libraries and restart the server.")));
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
 * Write the transaction's queue to the outbox, without positions, and hand
 * the transaction to the ordering worker (order.c), which positions its
 * messages and wakes the bridges once the commit is visible.  No lock but
 * the outbox's RowExclusiveLock, no NOTIFY, nothing that waits for another
 * sending transaction: group commit batches these commits as it batches
 * any other.
 */
static void
SendFlush(void)
{
	Oid			namespace = pending_namespace;
	Oid			outbox_id;
	Relation	outbox;
	OutboxWriter *writer;
	OutboxRow  *rows;
	int			count = list_length(pending_messages);
	FullTransactionId xid;
	TimestampTz sent_at = GetCurrentTimestamp();
	int			i = 0;
	ListCell   *cell;

	if (pending_messages == NIL)
		return;
	SendCheckOrdering();
	outbox_id = get_relname_relid("websocket_message", namespace);
	if (!OidIsValid(outbox_id))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("wsnotify outbox is missing"),
				 errdetail("Messages were queued but websocket_message no longer exists."),
				 errhint("Was the wsnotify extension dropped in this transaction?")));

	if (get_attnum(outbox_id, "xid") == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("wsnotify extension needs ALTER EXTENSION wsnotify UPDATE"),
				 errdetail("The library is version %s; the extension's tables in this database are of an older version.",
						   WSNOTIFY_VERSION),
				 errhint("Run ALTER EXTENSION wsnotify UPDATE in this database.")));
	xid = GetTopFullTransactionId();
	rows = palloc(sizeof(OutboxRow) * count);
	foreach(cell, pending_messages)
	{
		PendingMessage *message = lfirst(cell);

		rows[i] = message->row;
		rows[i].xid = xid;
		rows[i].seq = i;
		i++;
	}

	/* Pre-commit runs after the last portal closed: bring a snapshot. */
	PushActiveSnapshot(GetTransactionSnapshot());
	outbox = table_open(outbox_id, RowExclusiveLock);
	writer = OutboxWriterBegin(outbox, count);
	if (writer)
	{
		OutboxWriterWrite(writer, rows, count, sent_at);
		OutboxWriterEnd(writer);
	}
	else
		SendInsertRows(namespace, rows, count, sent_at);
	table_close(outbox, NoLock);
	PopActiveSnapshot();

	OrderAppend(xid);
	pending_messages = NIL;
}

/*
 * Insert the rows with an INSERT statement, for an outbox that someone has
 * changed in a way the executor has to handle (outbox.c).
 */
static void
SendInsertRows(Oid namespace, const OutboxRow *rows, int count,
			   TimestampTz sent_at)
{
	Oid			types[7] = {XID8ARRAYOID, INT4ARRAYOID, CHARARRAYOID,
	TEXTARRAYOID, JSONBARRAYOID, TIMESTAMPTZOID, BYTEAARRAYOID};
	Datum	   *xids = palloc(sizeof(Datum) * count);
	Datum	   *seqs = palloc(sizeof(Datum) * count);
	Datum	   *kinds = palloc(sizeof(Datum) * count);
	Datum	   *targets = palloc(sizeof(Datum) * count);
	bool	   *target_nulls = palloc(sizeof(bool) * count);
	Datum	   *bodies = palloc(sizeof(Datum) * count);
	bool	   *body_nulls = palloc(sizeof(bool) * count);
	Datum	   *binaries = palloc(sizeof(Datum) * count);
	bool	   *binary_nulls = palloc(sizeof(bool) * count);
	Datum		args[7];
	UtilStatement stmt = {NULL, 7, types, args, "websocket_message", false,
	&plan_insert};
	int			dims[1] = {count};
	int			lbs[1] = {1};
	int			i;

	for (i = 0; i < count; i++)
	{
		xids[i] = FullTransactionIdGetDatum(rows[i].xid);
		seqs[i] = Int32GetDatum(rows[i].seq);
		kinds[i] = CharGetDatum(rows[i].kind);
		targets[i] = PointerGetDatum(rows[i].target);
		target_nulls[i] = (rows[i].target == NULL);
		bodies[i] = PointerGetDatum(rows[i].body);
		body_nulls[i] = (rows[i].body == NULL);
		binaries[i] = PointerGetDatum(rows[i].body_binary);
		binary_nulls[i] = (rows[i].body_binary == NULL);
	}
	args[0] = PointerGetDatum(construct_md_array(xids, NULL, 1, dims, lbs,
												 XID8OID, 8, FLOAT8PASSBYVAL,
												 TYPALIGN_DOUBLE));
	args[1] = PointerGetDatum(construct_md_array(seqs, NULL, 1, dims, lbs,
												 INT4OID, 4, true,
												 TYPALIGN_INT));
	args[2] = PointerGetDatum(construct_md_array(kinds, NULL, 1, dims, lbs,
												 CHAROID, 1, true,
												 TYPALIGN_CHAR));
	args[3] = PointerGetDatum(construct_md_array(targets, target_nulls, 1,
												 dims, lbs, TEXTOID, -1,
												 false, TYPALIGN_INT));
	args[4] = PointerGetDatum(construct_md_array(bodies, body_nulls, 1, dims,
												 lbs, JSONBOID, -1, false,
												 TYPALIGN_INT));
	args[5] = TimestampTzGetDatum(sent_at);
	args[6] = PointerGetDatum(construct_md_array(binaries, binary_nulls, 1,
												 dims, lbs, BYTEAOID, -1,
												 false, TYPALIGN_INT));
	stmt.sql = psprintf("INSERT INTO %s (xid, seq, sent_at, kind, target, body, body_binary) "
						"SELECT u.xid, u.seq, $6, u.kind, u.target, u.body, u.body_binary "
						"FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), "
						"pg_catalog.unnest($3), pg_catalog.unnest($4), "
						"pg_catalog.unnest($5), pg_catalog.unnest($7)) "
						"AS u(xid, seq, kind, target, body, body_binary)",
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
