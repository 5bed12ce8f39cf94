/*-------------------------------------------------------------------------
 *
 * signal.c
 *	  Signals: signal_ws() and the bridges' client signals, sent to a
 *	  topic's subscribers at once, outside any commit.
 *
 * A signal is a typing indicator or a cursor position: worth nothing a
 * second later, so it is never stored, replayed or given a position, and
 * it must not cost what a message costs.  A NOTIFY from the caller's own
 * transaction would wait for its commit (and a rollback would drop it), so
 * the caller instead copies the signal into its database's queue in shared
 * memory and sets the ordering worker's latch; the worker, already the
 * only process that NOTIFYs the bridges, relays what the queue holds in a
 * short transaction of its own (order.c).  The queue is a ring of bytes
 * per database under an LWLock held only for the copy; when it is full the
 * signal is dropped and counted (best effort, docs/design.md).
 *
 * Bridges read the payload "s<n> <sealed plain>", where plain is
 * "<sender bytes> <topic bytes> <data bytes>\n<sender><topic><data>" (the
 * sender is the connection that must not get its signal back, or empty),
 * sealed as inline messages are (seal.c) with "s<n>" as the authenticated
 * data; n numbers the worker's payloads, so that two equal signals in one
 * relay are not folded into one NOTIFY.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "commands/async.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"

#include "wsnotify.h"

/* Databases with a signal queue (as many as have an ordering ring). */
#define SIGNAL_DATABASES 32

/* Bytes of queued signals per database: 16 of the largest at least. */
#define SIGNAL_QUEUE_BYTES (80 * 1024)

/* Header of a queued signal: the three lengths, then the bytes. */
typedef struct SignalHeader
{
	uint16		sender_len;
	uint16		topic_len;
	uint32		data_len;
} SignalHeader;

/* One database's queue: used bytes from 0 to used, in arrival order. */
typedef struct SignalQueue
{
	Oid			dbid;			/* InvalidOid: free (SignalShared->mutex) */
	uint32		used;			/* (lock) */
	pg_atomic_uint64 dropped;	/* signals refused by a full queue */
	char		bytes[SIGNAL_QUEUE_BYTES];	/* (lock) */
} SignalQueue;

typedef struct SignalShared
{
	slock_t		mutex;
	SignalQueue queues[SIGNAL_DATABASES];
} SignalShared;

static SignalShared *signal_shared = NULL;
static LWLockPadded *signal_locks = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

PG_FUNCTION_INFO_V1(signal_ws);
PG_FUNCTION_INFO_V1(wsnotify_signal);
PG_FUNCTION_INFO_V1(wsnotify_signals_dropped);

static void SignalShmemRequest(void);
static void SignalShmemStartup(void);
static int	SignalQueueFor(Oid dbid, bool claim);
static int32 SignalSend(FunctionCallInfo fcinfo, const char *sender);

/* Ask for the queues' shared memory when preloaded; called from _PG_init. */
void
SignalInit(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = SignalShmemRequest;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = SignalShmemStartup;
}

static void
SignalShmemRequest(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(sizeof(SignalShared));
	RequestNamedLWLockTranche("wsnotify signals", SIGNAL_DATABASES);
}

static void
SignalShmemStartup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	signal_shared = ShmemInitStruct("wsnotify signals", sizeof(SignalShared), &found);
	signal_locks = GetNamedLWLockTranche("wsnotify signals");
	if (!found)
	{
		SpinLockInit(&signal_shared->mutex);
		for (int q = 0; q < SIGNAL_DATABASES; q++)
		{
			signal_shared->queues[q].dbid = InvalidOid;
			signal_shared->queues[q].used = 0;
			pg_atomic_init_u64(&signal_shared->queues[q].dropped, 0);
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * The index of a database's queue, claimed when claim and none is; -1 when
 * none is (or all are taken).  A queue stays with its database until the
 * server restarts: a queue's few bytes are not worth a free list.
 */
static int
SignalQueueFor(Oid dbid, bool claim)
{
	int			found = -1;

	for (int q = 0; q < SIGNAL_DATABASES; q++)
		if (((volatile SignalQueue *) &signal_shared->queues[q])->dbid == dbid)
			return q;
	if (!claim)
		return -1;
	SpinLockAcquire(&signal_shared->mutex);
	for (int q = 0; q < SIGNAL_DATABASES && found < 0; q++)
		if (signal_shared->queues[q].dbid == dbid)
			found = q;
	for (int q = 0; q < SIGNAL_DATABASES && found < 0; q++)
		if (signal_shared->queues[q].dbid == InvalidOid)
		{
			signal_shared->queues[q].dbid = dbid;
			found = q;
		}
	SpinLockRelease(&signal_shared->mutex);
	return found;
}

/*
 * signal_ws(topic text, message jsonb) returns integer
 *
 * Send a signal to every connection subscribed to the topic, at once and
 * whether or not the calling transaction commits; return how many are
 * subscribed now.
 */
Datum
signal_ws(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(SignalSend(fcinfo, NULL));
}

/*
 * wsnotify_signal(topic text, message jsonb, sender text) returns integer
 *
 * signal_ws for a client's signal (the bridges' wsnotify_client_signal):
 * the sender connection does not get it back.
 */
Datum
wsnotify_signal(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(SignalSend(fcinfo,
							   PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2))));
}

/*
 * wsnotify_signals_dropped() returns bigint
 *
 * Signals of this database refused by a full queue since the server
 * started (the bridges' wsnotify_signals_dropped_total).
 */
Datum
wsnotify_signals_dropped(PG_FUNCTION_ARGS)
{
	int			q = signal_shared ? SignalQueueFor(MyDatabaseId, false) : -1;

	PG_RETURN_INT64(q < 0 ? 0 :
					(int64) pg_atomic_read_u64(&signal_shared->queues[q].dropped));
}

/* Check, queue and announce one signal; the subscriber count. */
static int32
SignalSend(FunctionCallInfo fcinfo, const char *sender)
{
	Oid			namespace = get_func_namespace(fcinfo->flinfo->fn_oid);
	char	   *topic;
	Jsonb	   *message;
	char	   *data;
	SignalHeader header;
	uint32		need;
	int			q;
	SignalQueue *queue;
	LWLock	   *lock;
	bool		queued = false;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("topic must not be null")));
	topic = text_to_cstring(PG_GETARG_TEXT_PP(0));
	TopicCheckName(topic, ERRCODE_INVALID_PARAMETER_VALUE);
	message = SendRequiredMessage(fcinfo, 1);
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot send a signal during recovery"),
				 errhint("Send signals on the primary server.")));
	if (!OrderAvailable())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("wsnotify is not in shared_preload_libraries"),
				 errhint("Add wsnotify to shared_preload_libraries and restart the server.")));
	data = JsonbToCString(NULL, &message->root, VARSIZE(message));
	if (strlen(data) > SIGNAL_MAX_SIZE)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("signal too large"),
				 errdetail("A signal's JSON text is at most %d bytes; this one is %zu.",
						   SIGNAL_MAX_SIZE, strlen(data)),
				 errhint("Send larger data with publish_ws(), which stores it.")));
	header.sender_len = sender ? strlen(sender) : 0;
	header.topic_len = strlen(topic);
	header.data_len = strlen(data);
	if (header.sender_len > SIGNAL_SENDER_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("sender connection id too long")));
	need = sizeof(header) + header.sender_len + header.topic_len + header.data_len;

	q = SignalQueueFor(MyDatabaseId, true);
	if (q < 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("too many databases send WebSocket signals"),
				 errdetail("wsnotify queues the signals of at most %d databases per server.",
						   SIGNAL_DATABASES)));
	queue = &signal_shared->queues[q];
	lock = &signal_locks[q].lock;
	LWLockAcquire(lock, LW_EXCLUSIVE);
	if (queue->used + need <= SIGNAL_QUEUE_BYTES)
	{
		char	   *at = queue->bytes + queue->used;

		memcpy(at, &header, sizeof(header));
		at += sizeof(header);
		if (sender)
			memcpy(at, sender, header.sender_len);
		at += header.sender_len;
		memcpy(at, topic, header.topic_len);
		at += header.topic_len;
		memcpy(at, data, header.data_len);
		queue->used += need;
		queued = true;
	}
	LWLockRelease(lock);
	if (queued)
		OrderKick();
	else
		pg_atomic_fetch_add_u64(&queue->dropped, 1);
	return TopicSubscribers(namespace, topic);
}

/*
 * The ordering worker's relay (in a transaction of its own, with the
 * extension's schema): take what this database's queue holds and queue
 * one NOTIFY per signal.  Returns the number of signals relayed.
 */
int
SignalRelay(Oid namespace)
{
	static uint64 relayed = 0;
	int			q;
	char	   *copy;
	uint32		used;
	uint32		at = 0;
	int			count = 0;
	StringInfoData plain;
	StringInfoData payload;

	if (signal_shared == NULL || (q = SignalQueueFor(MyDatabaseId, false)) < 0)
		return 0;
	if (((volatile SignalQueue *) &signal_shared->queues[q])->used == 0)
		return 0;
	copy = palloc(SIGNAL_QUEUE_BYTES);
	LWLockAcquire(&signal_locks[q].lock, LW_EXCLUSIVE);
	used = signal_shared->queues[q].used;
	memcpy(copy, signal_shared->queues[q].bytes, used);
	signal_shared->queues[q].used = 0;
	LWLockRelease(&signal_locks[q].lock);

	SealPrepare(namespace);
	initStringInfo(&plain);
	initStringInfo(&payload);
	while (at < used)
	{
		SignalHeader header;
		const char *bytes;

		memcpy(&header, copy + at, sizeof(header));
		bytes = copy + at + sizeof(header);
		at += sizeof(header) + header.sender_len + header.topic_len + header.data_len;
		resetStringInfo(&plain);
		appendStringInfo(&plain, "%u %u %u\n",
						 header.sender_len, header.topic_len, header.data_len);
		appendBinaryStringInfo(&plain, bytes,
							   header.sender_len + header.topic_len + header.data_len);
		resetStringInfo(&payload);
		appendStringInfo(&payload, "s" UINT64_FORMAT, ++relayed);
		/* without the key nobody can read it: as good as dropped */
		if (!SealAppend(&payload, plain.data, plain.len))
		{
			pg_atomic_fetch_add_u64(&signal_shared->queues[q].dropped, 1);
			continue;
		}
		Async_Notify(WSNOTIFY_CHANNEL, payload.data);
		count++;
	}
	pfree(copy);
	pfree(plain.data);
	pfree(payload.data);
	return count;
}

/* Whether this database's queue holds signals (read without the lock). */
bool
SignalPending(void)
{
	int			q;

	if (signal_shared == NULL || (q = SignalQueueFor(MyDatabaseId, false)) < 0)
		return false;
	return ((volatile SignalQueue *) &signal_shared->queues[q])->used > 0;
}
