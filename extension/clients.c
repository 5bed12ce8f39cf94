/*-------------------------------------------------------------------------
 *
 * clients.c
 *	  Count the live connections of a user, or check one connection, the way
 *	  send_ws and send_ws_connection report them, through websocket_client's
 *	  btree index without the executor.
 *
 * send_ws runs once per row in the triggers that call it, and starting the
 * executor for "SELECT count(*) ... WHERE user_id = $1" was a quarter of its
 * cost (perf, docs/benchmarks.md).  The answer is the same as the query's:
 * the rows the caller's active snapshot sees.  Where the query could answer
 * differently (row security on the table, the caller lacking SELECT on it,
 * no plain btree index on the column), ClientCount says so and send.c runs
 * the query.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_am.h"
#include "catalog/pg_opfamily.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "wsnotify.h"

static Relation ClientIndexOn(Relation clients, AttrNumber column);

/*
 * How many rows of websocket_client have column = value in the caller's
 * snapshot; -1 when only the query can tell.
 */
int64
ClientCount(Oid namespace, const char *column, text *value)
{
	Oid			clients_id = get_relname_relid("websocket_client", namespace);
	Relation	clients;
	Relation	index;
	AttrNumber	attnum;
	ScanKeyData key;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	int64		count = 0;

	if (!OidIsValid(clients_id) ||
		pg_class_aclcheck(clients_id, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		return -1;
	clients = table_open(clients_id, AccessShareLock);
	attnum = get_attnum(clients_id, column);
	index = clients->rd_rel->relrowsecurity || attnum == InvalidAttrNumber ?
		NULL : ClientIndexOn(clients, attnum);
	if (index == NULL)
	{
		table_close(clients, AccessShareLock);
		return -1;
	}
	/* compare the way the index is sorted: ScanKeyInit would use C */
	ScanKeyEntryInitialize(&key, 0, 1, BTEqualStrategyNumber, InvalidOid,
						   index->rd_indcollation[0], F_TEXTEQ,
						   PointerGetDatum(value));
	scan = index_beginscan(clients, index, GetActiveSnapshot(), 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	slot = table_slot_create(clients, NULL);
	while (index_getnext_slot(scan, ForwardScanDirection, slot))
		count++;
	ExecDropSingleTupleTableSlot(slot);
	index_endscan(scan);
	index_close(index, AccessShareLock);
	table_close(clients, AccessShareLock);
	return count;
}

/*
 * A valid btree index whose only key is the column, with no predicate, in
 * text's default operator class and the column's collation (an index in a
 * case-insensitive collation would count what "=" does not), opened with
 * AccessShareLock; or NULL.
 */
static Relation
ClientIndexOn(Relation clients, AttrNumber column)
{
	List	   *indexes = RelationGetIndexList(clients);
	ListCell   *cell;
	Relation	found = NULL;
	Oid			collation = TupleDescAttr(RelationGetDescr(clients),
										  column - 1)->attcollation;

	foreach(cell, indexes)
	{
		Relation	index = index_open(lfirst_oid(cell), AccessShareLock);
		Form_pg_index form = index->rd_index;
		bool		usable = index->rd_rel->relam == BTREE_AM_OID &&
			index->rd_opfamily[0] == TEXT_BTREE_FAM_OID &&
			index->rd_indcollation[0] == collation &&
			form->indisvalid && form->indnkeyatts == 1 &&
			form->indkey.values[0] == column &&
			RelationGetIndexPredicate(index) == NIL;

		if (usable)
		{
			found = index;
			break;
		}
		index_close(index, AccessShareLock);
	}
	list_free(indexes);
	return found;
}
