/*-------------------------------------------------------------------------
 *
 * order.c
 *	  Positions for committed messages, given after the commit by one
 *	  background worker per database, which is also the only process that
 *	  NOTIFYs the bridges.
 *
 * A sending transaction writes its rows without a position (send.c) and,
 * at pre-commit, appends its xid to its database's ring in shared memory
 * (a bounded lock-free queue: a claim by compare-and-swap on head, then a
 * per-slot sequence number publishes the entry) and sets the worker's
 * latch.  Nothing there waits for anyone.  A full ring sets an overflow
 * count instead; the worker then rescans the table for rows without a
 * position (through websocket_message_unpositioned_idx), as it does at
 * every start, so a crash between a commit and its positioning loses
 * nothing.
 *
 * The worker takes entries in ring order.  An entry is appended before its
 * transaction's commit becomes visible, so a transaction that began after
 * another's commit was visible is appended after it: ring order respects
 * causality.  For an entry whose transaction is still committing, the
 * worker waits on its xid lock (XactLockTableWait), which lasts until the
 * commit is visible; an entry whose transaction then aborted has no
 * visible rows and positions nothing.  A transaction that is open (idle in
 * transaction, a long write) is not in the ring at all: it holds back no
 * one.  In one transaction of its own the worker gives the messages of a
 * batch of transactions the next contiguous positions (an UPDATE of their
 * rows), and queues the NOTIFYs, which bridges see once that commit is
 * visible: positions are therefore in the worker's commit order, and a
 * reader that sees position N sees every smaller one.
 *
 * Locking: OrderShared->mutex (a spinlock) guards only a ring's claim and
 * its worker's attach and launch; entries take no lock.  The worker's
 * progress (done_head, done_overflow, ready) is published under the mutex
 * and announced on a condition variable, which wsnotify_order_barrier()
 * (ws_cursor) waits on.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlogrecovery.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port/atomics.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "wsnotify.h"

/* Entries per database ring (a power of two). */
#define ORDER_RING_SIZE 8192

/* Databases that can send at once (one ring and one worker each). */
#define ORDER_DATABASES 32

/* Most sending transactions positioned in one worker transaction. */
#define ORDER_BATCH 4096

/* Transactions a rescan picks up per worker transaction. */
#define ORDER_RESCAN_BATCH 1024

/*
 * Largest NOTIFY payload that carries messages themselves ("inline"),
 * letting a bridge deliver them without a fetch; a batch of more than
 * ORDER_INLINE_ROWS messages gets one bare NOTIFY (bridges fetch in batches
 * at such rates anyway).  Small on purpose: a bridge that stops reading
 * holds the cluster's 8 GB NOTIFY queue.
 */
#define ORDER_INLINE_MAX 1024
#define ORDER_INLINE_ROWS 64

/*
 * The worker purges expired messages (senders no longer do), in a
 * transaction of its own between batches: once ORDER_PURGE_EVERY messages
 * were positioned since the last purge, or ORDER_PURGE_MS after it, up to
 * ORDER_PURGE_PER_MESSAGE rows per message positioned (at least
 * ORDER_PURGE_MIN), so the outbox stays bounded at any send rate.  Not
 * after every batch: at low rates a purge per message was the worker's
 * main cost and put a purge in front of most deliveries (barrier round
 * trip 3.6 ms instead of a fraction).
 */
#define ORDER_PURGE_MS 1000
#define ORDER_PURGE_EVERY 10000
#define ORDER_PURGE_PER_MESSAGE 10
#define ORDER_PURGE_MIN 10000

/* How long a send waits before it may launch a worker that did not attach. */
#define ORDER_LAUNCH_RETRY_MS 10000

/* One ring entry: seq == index + 1 once published (Vyukov's bounded queue). */
typedef struct OrderSlot
{
	pg_atomic_uint64 seq;
	uint64		xid;			/* a FullTransactionId */
} OrderSlot;

/* The ring and the worker of one database. */
typedef struct OrderRing
{
	Oid			dbid;			/* InvalidOid: free (mutex) */
	int			worker_procno;	/* -1: no worker attached (mutex) */
	TimestampTz launched_at;	/* last launch by a sender (mutex) */
	uint64		done_head;		/* entries below it are positioned (mutex) */
	uint64		done_overflow;	/* overflows rescanned (mutex) */
	bool		ready;			/* the start-up rescan is done (mutex) */
	pg_atomic_uint64 head;		/* next entry a sender claims */
	pg_atomic_uint64 overflow;	/* appends refused by a full ring */
	uint64		tail;			/* next entry the worker reads (worker) */
	ConditionVariable progress; /* broadcast when done_* move */
	OrderSlot	slots[ORDER_RING_SIZE];
} OrderRing;

typedef struct OrderShared
{
	slock_t		mutex;
	OrderRing	rings[ORDER_DATABASES];
} OrderShared;

/*---- GUC variables ----*/
static bool order_deliver_durable = false;
static int	order_retention = 300;

static OrderShared *order_shared = NULL;
static OrderRing *my_ring = NULL;	/* this backend's database's ring */
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* Worker state: the last position given, and when it last purged. */
static int64 order_last = 0;
static int64 order_unpurged = 0;
static TimestampTz order_purged_at = 0;
static UtilPlan position_plan = {InvalidOid, NULL};

PG_FUNCTION_INFO_V1(wsnotify_worker_start);
PG_FUNCTION_INFO_V1(wsnotify_order_barrier);
PG_FUNCTION_INFO_V1(wsnotify_timeline);

PGDLLEXPORT void OrderWorkerMain(Datum arg);

static void OrderShmemRequest(void);
static void OrderShmemStartup(void);
static OrderRing *OrderRingFor(Oid dbid, bool claim);
static bool OrderRingPush(OrderRing *ring, uint64 xid);
static bool OrderRingPop(OrderRing *ring, uint64 *xid);
static void OrderWake(OrderRing *ring);
static bool OrderLaunch(OrderRing *ring, bool force);
static void OrderAttach(OrderRing *ring);
static void OrderDetach(int code, Datum arg);
static int	OrderRunBatch(bool *rescan);
static Oid	OrderNamespace(void);
static int	OrderCollect(Oid namespace, uint64 *xids, int n, bool *rescan);
static int	OrderPosition(Oid namespace, uint64 *xids, int n);
static void OrderNotify(Oid namespace, SPITupleTable *rows, uint64 count);
static bool OrderInlineAppend(StringInfo plain, HeapTuple row, TupleDesc desc);
static void OrderStartPosition(Oid namespace);
static void OrderMaybePurge(void);
static void OrderRelaySignals(void);
static void OrderPublish(uint64 head, uint64 overflow, bool ready);
static void OrderApplySettings(void);

/*
 * Define the settings of ordering and delivery; when preloaded, ask for the
 * rings' shared memory.  Called once from _PG_init.
 */
void
OrderInit(void)
{
	DefineCustomBoolVariable("wsnotify.deliver_durable",
							 "Deliver a message only once its transaction's commit is flushed.",
							 "The ordering worker's commit then waits for the WAL flush (and synchronous standbys) before the bridges hear of it, whatever the sender's synchronous_commit.",
							 &order_deliver_durable, false,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("wsnotify.retention",
							"How long sent messages are kept for clients that resume.",
							NULL,
							&order_retention, 300, 0, 7 * 24 * 3600,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = OrderShmemRequest;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = OrderShmemStartup;
}

/* Ask for the rings' shared memory. */
static void
OrderShmemRequest(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(sizeof(OrderShared));
}

/* Create (or, in a backend, find) the rings. */
static void
OrderShmemStartup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	order_shared = ShmemInitStruct("wsnotify ordering", sizeof(OrderShared), &found);
	if (!found)
	{
		SpinLockInit(&order_shared->mutex);
		for (int r = 0; r < ORDER_DATABASES; r++)
		{
			OrderRing  *ring = &order_shared->rings[r];

			ring->dbid = InvalidOid;
			ring->worker_procno = -1;
			ring->launched_at = 0;
			ring->done_head = 0;
			ring->done_overflow = 0;
			ring->ready = false;
			pg_atomic_init_u64(&ring->head, 0);
			pg_atomic_init_u64(&ring->overflow, 0);
			ring->tail = 0;
			ConditionVariableInit(&ring->progress);
			for (int i = 0; i < ORDER_RING_SIZE; i++)
				pg_atomic_init_u64(&ring->slots[i].seq, i);
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Whether this backend's database can send: the library is preloaded and
 * the database has (or now gets) a ring.
 */
bool
OrderAvailable(void)
{
	if (order_shared == NULL)
		return false;
	my_ring = OrderRingFor(MyDatabaseId, true);
	if (my_ring == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("too many databases send WebSocket messages"),
				 errdetail("wsnotify orders the messages of at most %d databases per server.",
						   ORDER_DATABASES)));
	return true;
}

/*
 * Hand a committing transaction to its database's worker: append its xid
 * (overflow when the ring is full), wake the worker, launch it if none runs.
 * Called at pre-commit, after its rows are written; takes no lock.
 */
void
OrderAppend(FullTransactionId xid)
{
	OrderRing  *ring;

	(void) OrderAvailable();
	ring = my_ring;
	if (!OrderRingPush(ring, U64FromFullTransactionId(xid)))
		pg_atomic_fetch_add_u64(&ring->overflow, 1);
	OrderKick();
}

/*
 * Wake this database's worker, launching it if none runs: it has entries
 * or signals (signal.c) to handle.
 */
void
OrderKick(void)
{
	(void) OrderAvailable();
	if (my_ring->worker_procno < 0)
		OrderLaunch(my_ring, false);
	OrderWake(my_ring);
}

/*
 * The ring of a database, claimed for it when claim and none is; or NULL.
 * Found without the lock (a ring's dbid changes only under it); a ring is
 * freed when its worker exits with nothing pending, so callers look it up
 * for each use rather than keep it.
 */
static OrderRing *
OrderRingFor(Oid dbid, bool claim)
{
	OrderRing  *found = NULL;

	for (int r = 0; r < ORDER_DATABASES; r++)
		if (((volatile OrderRing *) &order_shared->rings[r])->dbid == dbid)
			return &order_shared->rings[r];
	if (!claim)
		return NULL;
	SpinLockAcquire(&order_shared->mutex);
	for (int r = 0; r < ORDER_DATABASES && found == NULL; r++)
		if (order_shared->rings[r].dbid == dbid)
			found = &order_shared->rings[r];
	for (int r = 0; r < ORDER_DATABASES && found == NULL; r++)
		if (order_shared->rings[r].dbid == InvalidOid)
		{
			found = &order_shared->rings[r];
			found->dbid = dbid;
		}
	SpinLockRelease(&order_shared->mutex);
	return found;
}

/* Append one xid; false when the ring is full. */
static bool
OrderRingPush(OrderRing *ring, uint64 xid)
{
	uint64		pos = pg_atomic_read_u64(&ring->head);

	for (;;)
	{
		OrderSlot  *slot = &ring->slots[pos % ORDER_RING_SIZE];
		int64		dif = (int64) (pg_atomic_read_u64(&slot->seq) - pos);

		if (dif < 0)
			return false;
		if (dif > 0)
			pos = pg_atomic_read_u64(&ring->head);
		else if (pg_atomic_compare_exchange_u64(&ring->head, &pos, pos + 1))
		{
			slot->xid = xid;
			pg_write_barrier();
			pg_atomic_write_u64(&slot->seq, pos + 1);
			return true;
		}
	}
}

/* Take the next published xid; false when there is none (yet). */
static bool
OrderRingPop(OrderRing *ring, uint64 *xid)
{
	OrderSlot  *slot = &ring->slots[ring->tail % ORDER_RING_SIZE];

	if (pg_atomic_read_u64(&slot->seq) != ring->tail + 1)
		return false;
	pg_read_barrier();
	*xid = slot->xid;
	pg_memory_barrier();
	pg_atomic_write_u64(&slot->seq, ring->tail + ORDER_RING_SIZE);
	ring->tail++;
	return true;
}

/* Set the worker's latch, if one is attached (a stale one is harmless). */
static void
OrderWake(OrderRing *ring)
{
	int			procno = ring->worker_procno;

	if (procno >= 0)
		SetLatch(&GetPGProcByNumber(procno)->procLatch);
}

/*
 * Register the database's worker, unless one is attached or (without
 * force) a launch is recent.
 */
static bool
OrderLaunch(OrderRing *ring, bool force)
{
	BackgroundWorker worker;
	TimestampTz now = GetCurrentTimestamp();
	bool		go;

	SpinLockAcquire(&order_shared->mutex);
	go = ring->worker_procno < 0 &&
		(force || TimestampDifferenceExceeds(ring->launched_at, now,
											 ORDER_LAUNCH_RETRY_MS));
	if (go)
		ring->launched_at = now;
	SpinLockRelease(&order_shared->mutex);
	if (!go)
		return false;
	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	/*
	 * Not restarted by the postmaster: a worker whose database was dropped
	 * would be restarted forever.  The next send, barrier or bridge
	 * heartbeat starts a new one at once (OrderDetach clears launched_at),
	 * and its start-up rescan finds what the dead one had not positioned.
	 */
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "wsnotify");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "OrderWorkerMain");
	snprintf(worker.bgw_name, BGW_MAXLEN, "wsnotify ordering worker for database %u",
			 ring->dbid);
	snprintf(worker.bgw_type, BGW_MAXLEN, "wsnotify ordering worker");
	worker.bgw_main_arg = ObjectIdGetDatum(ring->dbid);
	worker.bgw_notify_pid = 0;
	return RegisterDynamicBackgroundWorker(&worker, NULL);
}

/*
 * wsnotify_worker_start() returns boolean
 *
 * Make sure this database's ordering worker runs (bridges call it at start
 * and on every heartbeat, so that rows committed before a restart are
 * positioned even when nobody sends); true when it runs or was launched.
 */
Datum
wsnotify_worker_start(PG_FUNCTION_ARGS)
{
	if (!OrderAvailable())
		PG_RETURN_BOOL(false);
	if (my_ring->worker_procno >= 0)
		PG_RETURN_BOOL(true);
	PG_RETURN_BOOL(OrderLaunch(my_ring, false) || my_ring->worker_procno >= 0);
}

/*
 * wsnotify_order_barrier(timeout_ms integer) returns boolean
 *
 * Wait until every transaction that appended before the call, and every
 * overflow, is positioned and that position committed; false on timeout.
 * ws_cursor() calls it so that no transaction its snapshot sees can get a
 * position above a later connection's start cursor.
 */
Datum
wsnotify_order_barrier(PG_FUNCTION_ARGS)
{
	int			timeout_ms = PG_GETARG_INT32(0);
	TimestampTz deadline;
	uint64		head;
	uint64		overflow;
	bool		reached = false;

	if (!OrderAvailable())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("wsnotify is not in shared_preload_libraries"),
				 errhint("Add wsnotify to shared_preload_libraries and restart the server.")));
	head = pg_atomic_read_u64(&my_ring->head);
	overflow = pg_atomic_read_u64(&my_ring->overflow);
	if (my_ring->worker_procno < 0)
		OrderLaunch(my_ring, false);
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	for (;;)
	{
		SpinLockAcquire(&order_shared->mutex);
		reached = my_ring->ready && my_ring->done_head >= head &&
			my_ring->done_overflow >= overflow;
		SpinLockRelease(&order_shared->mutex);
		if (reached || GetCurrentTimestamp() >= deadline)
			break;
		OrderWake(my_ring);
		ConditionVariableTimedSleep(&my_ring->progress, 10, PG_WAIT_EXTENSION);
	}
	ConditionVariableCancelSleep();
	PG_RETURN_BOOL(reached);
}

/*
 * wsnotify_timeline() returns integer
 *
 * The server's WAL timeline: it changes when a standby is promoted (or a
 * backup restored), which is when positions may restart behind cursors.
 */
Datum
wsnotify_timeline(PG_FUNCTION_ARGS)
{
	TimeLineID	tli;

	if (RecoveryInProgress())
		(void) GetXLogReplayRecPtr(&tli);
	else
		tli = GetWALInsertionTimeLine();
	PG_RETURN_INT32((int32) tli);
}

/*
 * Main of a database's ordering worker: attach to its ring, rescan, then
 * position what senders append until told to stop.  SIGTERM or an error
 * ends it; the next send, barrier or heartbeat starts another.
 */
void
OrderWorkerMain(Datum arg)
{
	Oid			dbid = DatumGetObjectId(arg);
	bool		rescan = true;
	OrderRing  *ring;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);

	/*
	 * A regular backend's SIGTERM handler, which only sets a flag for the
	 * next CHECK_FOR_INTERRUPTS.  The background worker default raises
	 * FATAL from inside the handler: arriving in a critical section (a purge
	 * or positioning UPDATE writing WAL), that is a PANIC and restarts the
	 * whole server -- as pg_terminate_backend and DROP DATABASE WITH (FORCE)
	 * did.
	 */
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(dbid, InvalidOid, 0);
	pgstat_report_appname("wsnotify ordering worker");
	ring = OrderRingFor(dbid, true);
	if (ring == NULL)
		proc_exit(0);
	my_ring = ring;
	OrderAttach(ring);
	OrderApplySettings();
	order_purged_at = GetCurrentTimestamp();
	for (;;)
	{
		int			done;

		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			OrderApplySettings();
		}
		OrderRelaySignals();
		done = OrderRunBatch(&rescan);
		OrderMaybePurge();
		if (done == 0)
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 1000L, PG_WAIT_EXTENSION);
	}
}

/*
 * Become the ring's worker, or leave when another one already is; the
 * ring's entries read by a previous worker that died are found by the
 * start-up rescan.
 */
static void
OrderAttach(OrderRing *ring)
{
	bool		taken;

	SpinLockAcquire(&order_shared->mutex);
	taken = ring->worker_procno >= 0;
	if (!taken)
	{
		ring->worker_procno = MyProc->pgprocno;
		ring->ready = false;
	}
	SpinLockRelease(&order_shared->mutex);
	if (taken)
		proc_exit(0);
	on_shmem_exit(OrderDetach, PointerGetDatum(ring));
}

/* At exit: the ring has no worker until the next one attaches. */
static void
OrderDetach(int code, Datum arg)
{
	OrderRing  *ring = (OrderRing *) DatumGetPointer(arg);

	SpinLockAcquire(&order_shared->mutex);
	if (ring->worker_procno == MyProc->pgprocno)
	{
		ring->worker_procno = -1;
		ring->launched_at = 0;	/* the next send launches one at once */
		/* nothing pending: the ring is free for any database */
		if (pg_atomic_read_u64(&ring->head) == ring->tail &&
			pg_atomic_read_u64(&ring->overflow) == ring->done_overflow)
		{
			ring->dbid = InvalidOid;
			ring->ready = false;
		}
	}
	SpinLockRelease(&order_shared->mutex);
}

/*
 * The worker's own commit waits for the flush only when asked; and in a
 * deadlock with DDL (DROP EXTENSION locks the outbox and its sequence in
 * its own order) the worker is the one that gives up, and restarts.
 */
static void
OrderApplySettings(void)
{
	SetConfigOption("deadlock_timeout", "10ms", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("synchronous_commit", order_deliver_durable ? "on" : "off",
					PGC_SUSET, PGC_S_OVERRIDE);
}

/*
 * One worker transaction: take what the ring holds (and, when rescanning,
 * transactions that have rows without a position), position their
 * messages, queue the NOTIFYs, commit, publish the progress.  Returns the
 * number of transactions handled.
 */
static int
OrderRunBatch(bool *rescan)
{
	static uint64 xids[ORDER_BATCH + ORDER_RESCAN_BATCH];
	uint64		overflow = pg_atomic_read_u64(&my_ring->overflow);
	bool		was_rescan;
	Oid			namespace;
	int			n = 0;

	if (overflow > my_ring->done_overflow)
		*rescan = true;
	while (n < ORDER_BATCH && OrderRingPop(my_ring, &xids[n]))
		n++;
	if (n == 0 && !*rescan)
		return 0;
	was_rescan = *rescan;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	pgstat_report_activity(STATE_RUNNING, "wsnotify: positioning messages");
	/* an outer snapshot for SPI; each statement takes a fresh one */
	PushActiveSnapshot(GetTransactionSnapshot());
	namespace = OrderNamespace();
	if (!OidIsValid(namespace))
	{
		/* no extension here (dropped): nothing to position */
		PopActiveSnapshot();
		CommitTransactionCommand();
		proc_exit(0);
	}
	if (order_last == 0)
		OrderStartPosition(namespace);
	n = OrderCollect(namespace, xids, n, rescan);
	OrderPosition(namespace, xids, n);
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	OrderPublish(my_ring->tail, was_rescan && !*rescan ? overflow : my_ring->done_overflow,
				 my_ring->ready || (was_rescan && !*rescan));
	return Max(n, 1);
}

/*
 * The schema of the extension in this database, or InvalidOid; a new
 * extension (dropped and created again) starts again from its sequence.
 */
static Oid
OrderNamespace(void)
{
	static Oid	extension = InvalidOid;
	UtilStatement stmt = {"SELECT e.extnamespace::pg_catalog.int8, e.oid::pg_catalog.int8 "
		"FROM pg_catalog.pg_extension e WHERE e.extname = 'wsnotify'",
	0, NULL, NULL, NULL, false, NULL};
	Datum		values[2];
	bool		nulls[2];

	if (UtilExec(InvalidOid, &stmt, values, nulls, 2) != 1 || nulls[0])
		return InvalidOid;
	if ((Oid) DatumGetInt64(values[1]) != extension)
	{
		extension = (Oid) DatumGetInt64(values[1]);
		order_last = 0;
	}
	return (Oid) DatumGetInt64(values[0]);
}

/*
 * Wait for the ring's transactions that are still committing (their xid
 * lock lasts until their commit or abort is visible), then add, when
 * rescanning, transactions with rows that have no position; *rescan stays
 * set while more may be left.  Returns the number of xids in xids.
 */
static int
OrderCollect(Oid namespace, uint64 *xids, int n, bool *rescan)
{
	Oid			types[1] = {INT4OID};
	Datum		args[1];
	char	   *sql;
	uint64		found;

	for (int i = 0; i < n; i++)
	{
		TransactionId xid = XidFromFullTransactionId(FullTransactionIdFromU64(xids[i]));

		if (TransactionIdIsInProgress(xid))
			XactLockTableWait(xid, NULL, NULL, XLTW_None);
	}
	if (!*rescan)
		return n;
	args[0] = Int32GetDatum(ORDER_RESCAN_BATCH);
	sql = psprintf("SELECT m.xid::text::pg_catalog.int8 FROM %s m WHERE m.id IS NULL "
						"GROUP BY m.xid ORDER BY m.xid LIMIT $1",
						UtilQualifiedName(namespace, "websocket_message"));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args(sql, 1, types, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not rescan the wsnotify outbox");
	found = SPI_processed;
	/* what was committed before the ring's entries goes first */
	memmove(xids + found, xids, sizeof(uint64) * n);
	for (uint64 i = 0; i < found; i++)
	{
		bool		isnull;

		xids[i] = (uint64) DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
													   SPI_tuptable->tupdesc, 1, &isnull));
	}
	n += (int) found;
	SPI_finish();
	*rescan = (found == ORDER_RESCAN_BATCH);
	return n;
}

/*
 * Give the messages of these transactions (in this order, each one's in
 * its own order) the next contiguous positions, and queue the NOTIFYs.
 * Returns the number of messages positioned.
 */
static int
OrderPosition(Oid namespace, uint64 *xids, int n)
{
	Oid			types[2] = {INT8ARRAYOID, INT8OID};
	Datum	   *elems;
	Datum		args[2];
	char	   *outbox = UtilQualifiedName(namespace, "websocket_message");
	uint64		count;
	int			rc;

	if (n == 0)
		return 0;
	elems = palloc(sizeof(Datum) * n);
	for (int i = 0; i < n; i++)
		elems[i] = Int64GetDatum((int64) xids[i]);
	args[0] = PointerGetDatum(construct_array(elems, n, INT8OID, 8,
											  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[1] = Int64GetDatum(order_last);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (position_plan.plan == NULL || position_plan.namespace != namespace)
	{
		SPIPlanPtr	plan = SPI_prepare(psprintf(
											   "WITH b AS (SELECT u.x::text::pg_catalog.xid8 AS x, min(u.o) AS o "
											   "FROM pg_catalog.unnest($1) WITH ORDINALITY AS u(x, o) GROUP BY u.x), "
											   "t AS (SELECT m.ctid AS c, pg_catalog.row_number() OVER (ORDER BY b.o, m.seq) AS r "
											   "FROM b JOIN %s m ON m.xid = b.x WHERE m.id IS NULL) "
											   "UPDATE %s m SET id = $2 + t.r, sent_at = pg_catalog.now() "
											   "FROM t WHERE m.ctid = t.c "
											   "RETURNING m.id, m.kind, m.target, "
											   "CASE WHEN m.body IS NOT NULL AND pg_catalog.pg_column_size(m.body) <= %d "
											   "THEN m.body::text END, m.body_binary IS NOT NULL",
											   outbox, outbox, ORDER_INLINE_MAX),
											  2, types);

		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "could not prepare the wsnotify positioning: %s",
				 SPI_result_code_string(SPI_result));
		if (position_plan.plan)
			SPI_freeplan(position_plan.plan);
		position_plan.plan = plan;
		position_plan.namespace = namespace;
	}
	rc = SPI_execute_plan(position_plan.plan, args, NULL, false, 0);
	if (rc != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not position wsnotify messages: %s", SPI_result_code_string(rc));
	count = SPI_processed;
	if (count > 0)
	{
		Datum		seq_args[1] = {Int64GetDatum(order_last + (int64) count)};
		Oid			seq_types[1] = {INT8OID};

		OrderNotify(namespace, SPI_tuptable, count);
		/* the sequence keeps the high-water mark across restarts */
		if (SPI_execute_with_args(psprintf("SELECT pg_catalog.setval('%s', $1)",
										   UtilQualifiedName(namespace, "websocket_message_id_seq")),
								  1, seq_types, seq_args, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not advance the wsnotify position");
		order_last += (int64) count;
		order_unpurged += (int64) count;
	}
	SPI_finish();
	return (int) count;
}

/* Compare rows of the positioning's answer by position. */
static int
OrderCompareRows(const void *a, const void *b, void *arg)
{
	TupleDesc	desc = (TupleDesc) arg;
	bool		isnull;
	int64		x = DatumGetInt64(heap_getattr(*(HeapTuple *) a, 1, desc, &isnull));
	int64		y = DatumGetInt64(heap_getattr(*(HeapTuple *) b, 1, desc, &isnull));

	return (x > y) - (x < y);
}

/*
 * Queue the NOTIFYs for positions first..last (contiguous): in runs of
 * inline payloads "<last> <first> <sealed messages>" of at most
 * ORDER_INLINE_MAX bytes, a bare "<last>" for a run that cannot ride
 * inline (topic, binary or large messages) or when the batch is large.
 * The format is what bridge/deliver.c reads (docs/design.md).
 */
static void
OrderNotify(Oid namespace, SPITupleTable *rows, uint64 count)
{
	HeapTuple  *sorted = palloc(sizeof(HeapTuple) * count);
	TupleDesc	desc = rows->tupdesc;
	bool		inline_ok = count <= ORDER_INLINE_ROWS && GetDatabaseEncoding() == PG_UTF8;
	StringInfoData plain;
	int64		first = 0;
	int64		last = 0;
	uint64		i = 0;

	memcpy(sorted, rows->vals, sizeof(HeapTuple) * count);
	qsort_arg(sorted, count, sizeof(HeapTuple), OrderCompareRows, desc);
	if (inline_ok)
		SealPrepare(namespace);
	initStringInfo(&plain);
	while (i < count)
	{
		bool		isnull;
		bool		is_inline;

		first = DatumGetInt64(heap_getattr(sorted[i], 1, desc, &isnull));
		resetStringInfo(&plain);
		/* the longest run of inline messages, or of others, from here */
		is_inline = inline_ok && OrderInlineAppend(&plain, sorted[i], desc);
		for (i++; i < count; i++)
		{
			int			before = plain.len;

			if (is_inline != (inline_ok && OrderInlineAppend(&plain, sorted[i], desc)))
			{
				plain.len = before;
				plain.data[before] = '\0';
				break;
			}
		}
		last = DatumGetInt64(heap_getattr(sorted[i - 1], 1, desc, &isnull));
		{
			StringInfoData payload;

			initStringInfo(&payload);
			appendStringInfo(&payload, INT64_FORMAT, last);
			if (is_inline)
			{
				int			bare = payload.len;

				appendStringInfo(&payload, " " INT64_FORMAT, first);
				if (!SealAppend(&payload, plain.data, plain.len))
				{
					payload.len = bare;
					payload.data[bare] = '\0';
				}
			}
			Async_Notify(WSNOTIFY_CHANNEL, payload.data);
			pfree(payload.data);
		}
	}
}

/*
 * Append one message in the inline layout, "<kind> <target bytes> <body
 * bytes>\n<target><body>"; false (plain unchanged or past the limit, which
 * the caller undoes) when it cannot ride inline.
 */
static bool
OrderInlineAppend(StringInfo plain, HeapTuple row, TupleDesc desc)
{
	bool		kind_null,
				target_null,
				body_null,
				binary_null;
	char		kind = DatumGetChar(heap_getattr(row, 2, desc, &kind_null));
	Datum		target = heap_getattr(row, 3, desc, &target_null);
	Datum		body = heap_getattr(row, 4, desc, &body_null);
	bool		binary = DatumGetBool(heap_getattr(row, 5, desc, &binary_null));
	char	   *target_str = target_null ? "" : TextDatumGetCString(target);
	char	   *body_str;

	if (kind == 't' || binary || body_null)
		return false;
	body_str = TextDatumGetCString(body);
	appendStringInfo(plain, "%c %zu %zu\n", kind, strlen(target_str), strlen(body_str));
	appendStringInfoString(plain, target_str);
	appendStringInfoString(plain, body_str);
	return plain->len <= ORDER_INLINE_MAX;
}

/* The position to continue from: the sequence's high-water mark. */
static void
OrderStartPosition(Oid namespace)
{
	UtilStatement stmt = {NULL, 0, NULL, NULL, NULL, false, NULL};

	stmt.sql = psprintf("SELECT greatest((SELECT CASE WHEN s.is_called THEN s.last_value "
						"ELSE s.last_value - 1 END FROM %s s), "
						"(SELECT coalesce(max(m.id), 0) FROM %s m))",
						UtilQualifiedName(namespace, "websocket_message_id_seq"),
						UtilQualifiedName(namespace, "websocket_message"));
	order_last = UtilExecInt8(namespace, &stmt);
}

/*
 * Purge expired messages in a transaction of its own when ORDER_PURGE_EVERY
 * messages were positioned since the last purge or ORDER_PURGE_MS passed
 * with any positioned, about ORDER_PURGE_PER_MESSAGE rows per message.
 */
static void
OrderMaybePurge(void)
{
	TimestampTz now = GetCurrentTimestamp();
	Oid			types[1] = {INT4OID};
	Datum		args[1];
	UtilStatement stmt = {NULL, 1, types, args, NULL, false, NULL};
	Oid			namespace;

	if (order_unpurged == 0 ||
		(order_unpurged < ORDER_PURGE_EVERY &&
		 !TimestampDifferenceExceeds(order_purged_at, now, ORDER_PURGE_MS)))
		return;
	args[0] = Int32GetDatum((int32) Min(Max(ORDER_PURGE_MIN,
											order_unpurged * ORDER_PURGE_PER_MESSAGE),
										PG_INT32_MAX));
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	namespace = OrderNamespace();
	if (OidIsValid(namespace))
	{
		stmt.sql = psprintf("SELECT %s($1)", UtilQualifiedName(namespace, "wsnotify_purge"));
		(void) UtilExecInt8(namespace, &stmt);
	}
	PopActiveSnapshot();
	CommitTransactionCommand();
	order_unpurged = 0;
	order_purged_at = now;
}

/*
 * Relay the queued signals (signal.c) in a transaction of their own, ahead
 * of the batch, whose xid waits they must not sit behind.
 */
static void
OrderRelaySignals(void)
{
	Oid			namespace;

	if (!SignalPending())
		return;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	namespace = OrderNamespace();
	if (OidIsValid(namespace))
		(void) SignalRelay(namespace);
	PopActiveSnapshot();
	CommitTransactionCommand();
}

/* Publish the worker's progress to wsnotify_order_barrier(). */
static void
OrderPublish(uint64 head, uint64 overflow, bool ready)
{
	SpinLockAcquire(&order_shared->mutex);
	my_ring->done_head = head;
	my_ring->done_overflow = overflow;
	my_ring->ready = ready;
	SpinLockRelease(&order_shared->mutex);
	ConditionVariableBroadcast(&my_ring->progress);
}
