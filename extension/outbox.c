/*-------------------------------------------------------------------------
 *
 * outbox.c
 *	  Write a committing transaction's messages into websocket_message
 *	  without the executor.
 *
 * The outbox rows are written at pre-commit by every sending transaction
 * (send.c), without a position: the ordering worker (order.c) gives them
 * one after the commit.  An INSERT through SPI spent most of a small
 * sending transaction's time starting the executor (reading the CHECK
 * constraints, initialising a plan over unnest()), not writing.  The
 * extension is the table's only writer and its rows always satisfy the
 * table's constraints, so the rows go straight to the table AM and its
 * indexes, the way COPY FROM writes them (docs/benchmarks.md has the
 * numbers).
 *
 * That shortcut is only right for the table as the extension created it.
 * When someone has given websocket_message a trigger, a rule, row security,
 * another column, another CHECK constraint, or an index the executor would
 * have to evaluate (expressions, a predicate other than "id IS [NOT] NULL",
 * an exclusion or deferred constraint), OutboxWriterBegin says no and
 * send.c uses the INSERT.  The two partial indexes the extension makes
 * (websocket_message_unpositioned_idx on rows without a position, the
 * position index on rows with one) are decided here: a sender's rows have
 * no position yet.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "nodes/execnodes.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/xid8.h"

#include "wsnotify.h"

/* Rows handed to the table AM at once: bounds the slots a batch holds. */
#define OUTBOX_BATCH 1000

/* The columns of websocket_message, in order, as the extension creates it. */
static const struct
{
	const char *name;
	Oid			type;
}			outbox_columns[OUTBOX_NATTS] = {
	{"id", INT8OID},
	{"sent_at", TIMESTAMPTZOID},
	{"kind", CHAROID},
	{"target", TEXTOID},
	{"body", JSONBOID},
	{"body_binary", BYTEAOID},
	{"xid", XID8OID},
	{"seq", INT4OID},
};

/* Its CHECK constraints, which OutboxRow values satisfy by construction. */
static const char *const outbox_checks[] = {
	"websocket_message_kind_check",
	"websocket_message_one_body",
};

static bool OutboxTablePlain(Relation outbox);
static bool OutboxIndexPlain(Relation index, bool *takes_rows);
static void OutboxFillSlot(TupleTableSlot *slot, const OutboxRow *row,
						   TimestampTz sent_at);
static void OutboxIndexSlot(OutboxWriter *writer, TupleTableSlot *slot);

/*
 * Whether the table is websocket_message as the extension's script made it:
 * no trigger, rule or row security, its columns and its CHECKs only.
 */
static bool
OutboxTablePlain(Relation outbox)
{
	TupleDesc	desc = RelationGetDescr(outbox);
	TupleConstr *constr = desc->constr;
	int			i;

	if (outbox->rd_rel->relkind != RELKIND_RELATION ||
		outbox->trigdesc != NULL ||
		outbox->rd_rules != NULL ||
		outbox->rd_rel->relrowsecurity ||
		desc->natts != OUTBOX_NATTS)
		return false;
	for (i = 0; i < OUTBOX_NATTS; i++)
	{
		Form_pg_attribute attr = TupleDescAttr(desc, i);

		if (attr->attisdropped || attr->attgenerated ||
			attr->atttypid != outbox_columns[i].type ||
			strcmp(NameStr(attr->attname), outbox_columns[i].name) != 0)
			return false;
	}
	if (constr == NULL || constr->num_check != lengthof(outbox_checks))
		return false;
	for (i = 0; i < constr->num_check; i++)
	{
		int			j;
		bool		ours = false;

		for (j = 0; j < lengthof(outbox_checks); j++)
			ours |= strcmp(constr->check[i].ccname, outbox_checks[j]) == 0;
		if (!ours)
			return false;
	}
	return true;
}

/*
 * Whether an index takes its keys straight from columns and checks nothing
 * the executor would have to (a deferred unique check, an exclusion
 * constraint, a partial index's predicate other than a null test of id);
 * *takes_rows says whether a row without a position belongs in it.
 */
static bool
OutboxIndexPlain(Relation index, bool *takes_rows)
{
	List	   *predicate;
	NullTest   *test;

	*takes_rows = true;
	if (!index->rd_index->indimmediate || index->rd_index->indisexclusion ||
		RelationGetIndexExpressions(index) != NIL)
		return false;
	predicate = RelationGetIndexPredicate(index);
	if (predicate == NIL)
		return true;
	test = linitial(predicate);
	if (list_length(predicate) != 1 || !IsA(test, NullTest) ||
		!IsA(test->arg, Var) || ((Var *) test->arg)->varattno != 1)
		return false;
	*takes_rows = (test->nulltesttype == IS_NULL);
	return true;
}

/*
 * Open the outbox's indexes that take rows without a position and make the
 * slots for up to count rows.  NULL when
 * the rows cannot skip the executor: the table or one of its indexes is not
 * as the extension made it.  The caller holds RowExclusiveLock on the outbox.
 */
OutboxWriter *
OutboxWriterBegin(Relation outbox, int count)
{
	OutboxWriter *writer;
	List	   *index_oids;
	ListCell   *cell;
	int			i;

	if (!OutboxTablePlain(outbox))
		return NULL;
	writer = palloc0(sizeof(OutboxWriter));
	index_oids = RelationGetIndexList(outbox);
	writer->outbox = outbox;
	writer->indexes = palloc(sizeof(Relation) * Max(list_length(index_oids), 1));
	writer->index_infos = palloc(sizeof(IndexInfo *) * Max(list_length(index_oids), 1));
	foreach(cell, index_oids)
	{
		Relation	index = index_open(lfirst_oid(cell), RowExclusiveLock);
		bool		takes_rows;

		if (!OutboxIndexPlain(index, &takes_rows))
		{
			index_close(index, RowExclusiveLock);
			list_free(index_oids);
			OutboxWriterEnd(writer);
			return NULL;
		}
		if (!takes_rows)
		{
			index_close(index, RowExclusiveLock);
			continue;
		}
		writer->indexes[writer->index_count] = index;
		writer->index_infos[writer->index_count] = BuildIndexInfo(index);
		writer->index_count++;
	}
	list_free(index_oids);
	writer->slot_count = Min(count, OUTBOX_BATCH);
	writer->slots = palloc(sizeof(TupleTableSlot *) * writer->slot_count);
	for (i = 0; i < writer->slot_count; i++)
		writer->slots[i] = MakeSingleTupleTableSlot(RelationGetDescr(outbox),
													table_slot_callbacks(outbox));
	return writer;
}

/*
 * Insert the rows into the outbox and each of its indexes.
 */
void
OutboxWriterWrite(OutboxWriter *writer, const OutboxRow *rows, int count,
				  TimestampTz sent_at)
{
	CommandId	command = GetCurrentCommandId(true);
	int			done = 0;

	while (done < count)
	{
		int			n = Min(count - done, writer->slot_count);
		int			s;

		for (s = 0; s < n; s++)
			OutboxFillSlot(writer->slots[s], &rows[done + s], sent_at);
		if (n == 1)
			table_tuple_insert(writer->outbox, writer->slots[0], command, 0, NULL);
		else
			table_multi_insert(writer->outbox, writer->slots, n, command, 0, NULL);
		for (s = 0; s < n; s++)
			OutboxIndexSlot(writer, writer->slots[s]);
		done += n;
	}
}

/*
 * Close what OutboxWriterBegin opened; the outbox itself stays the caller's.
 */
void
OutboxWriterEnd(OutboxWriter *writer)
{
	int			i;

	for (i = 0; i < writer->slot_count; i++)
		ExecDropSingleTupleTableSlot(writer->slots[i]);
	for (i = 0; i < writer->index_count; i++)
		index_close(writer->indexes[i], RowExclusiveLock);
	if (writer->slots)
		pfree(writer->slots);
	pfree(writer->index_infos);
	pfree(writer->indexes);
	pfree(writer);
}

/* Put one row's columns in a slot, as websocket_message lays them out. */
static void
OutboxFillSlot(TupleTableSlot *slot, const OutboxRow *row, TimestampTz sent_at)
{
	ExecClearTuple(slot);
	slot->tts_values[0] = (Datum) 0;
	slot->tts_isnull[0] = true; /* the position comes after the commit */
	slot->tts_values[1] = TimestampTzGetDatum(sent_at);
	slot->tts_isnull[1] = false;
	slot->tts_values[2] = CharGetDatum(row->kind);
	slot->tts_isnull[2] = false;
	slot->tts_values[3] = PointerGetDatum(row->target);
	slot->tts_isnull[3] = (row->target == NULL);
	slot->tts_values[4] = PointerGetDatum(row->body);
	slot->tts_isnull[4] = (row->body == NULL);
	slot->tts_values[5] = PointerGetDatum(row->body_binary);
	slot->tts_isnull[5] = (row->body_binary == NULL);
	slot->tts_values[6] = FullTransactionIdGetDatum(row->xid);
	slot->tts_isnull[6] = false;
	slot->tts_values[7] = Int32GetDatum(row->seq);
	slot->tts_isnull[7] = false;
	ExecStoreVirtualTuple(slot);
}

/* Add an inserted row's entries to every index that takes rows. */
static void
OutboxIndexSlot(OutboxWriter *writer, TupleTableSlot *slot)
{
	int			i;

	for (i = 0; i < writer->index_count; i++)
	{
		Relation	index = writer->indexes[i];
		IndexInfo  *info = writer->index_infos[i];
		Datum		values[INDEX_MAX_KEYS];
		bool		isnull[INDEX_MAX_KEYS];

		/* an index being built concurrently that takes no rows yet */
		if (!info->ii_ReadyForInserts)
			continue;
		FormIndexDatum(info, slot, NULL, values, isnull);
		index_insert(index, values, isnull, &slot->tts_tid, writer->outbox,
					 index->rd_index->indisunique ? UNIQUE_CHECK_YES : UNIQUE_CHECK_NO,
					 false, info);
	}
}
