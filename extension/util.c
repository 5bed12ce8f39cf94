/*-------------------------------------------------------------------------
 *
 * util.c
 *	  Helpers every module of the extension uses: qualified names of the
 *	  extension's objects, running one statement as the owner of its tables
 *	  (with its plan kept for the backend's life when asked).
 *
 * The extension's tables belong to the role that created the extension;
 * its functions write them as that role, so callers need no grant on them.
 * UtilExec switches user the way a SECURITY DEFINER function would
 * (SECURITY_LOCAL_USERID_CHANGE), and back however the statement ends: an
 * error unwinds through the transaction's abort, which restores the user.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_class.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "util.h"

/*
 * "schema"."relname" for one of the extension's objects, quoted as needed,
 * so that statements the extension runs do not depend on search_path.
 */
char *
UtilQualifiedName(Oid namespace, const char *relname)
{
	char	   *schema = get_namespace_name(namespace);

	if (schema == NULL)
		elog(ERROR, "cache lookup failed for namespace %u", namespace);
	return quote_qualified_identifier(schema, relname);
}

/*
 * The role that owns one of the extension's tables: the extension writes
 * its tables as that role, so callers need no grant on them.
 */
Oid
UtilTableOwner(Oid namespace, const char *relname)
{
	Oid			relid = get_relname_relid(relname, namespace);
	HeapTuple	tuple;
	Oid			owner;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("wsnotify table %s is missing", relname),
				 errhint("Was the wsnotify extension dropped in this transaction?")));
	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);
	return owner;
}

/*
 * The kept plan of a statement for the schema in namespace: prepared on
 * first use, and again when the extension moved.  SPI must be connected.
 */
static SPIPlanPtr
UtilKeptPlan(Oid namespace, const UtilStatement *stmt)
{
	UtilPlan   *keep = stmt->keep;

	if (keep->plan != NULL && keep->namespace != namespace)
	{
		SPI_freeplan(keep->plan);
		keep->plan = NULL;
	}
	if (keep->plan == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(stmt->sql, stmt->nargs, stmt->types);

		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "could not prepare \"%s\": %s", stmt->sql,
				 SPI_result_code_string(SPI_result));
		keep->plan = plan;
		keep->namespace = namespace;
	}
	return keep->plan;
}

/*
 * Run one statement with SPI (as the owner of the table stmt->owner_of
 * names, or as the caller when that is NULL); copy the first ncols columns
 * of its first row, if any, into row/row_nulls in the caller's memory;
 * return the number of rows it processed.
 */
uint64
UtilExec(Oid namespace, const UtilStatement *stmt, Datum *row,
		 bool *row_nulls, int ncols)
{
	Oid			saved_user;
	int			saved_context;
	int			rc;
	uint64		processed;

	GetUserIdAndSecContext(&saved_user, &saved_context);
	if (stmt->owner_of != NULL)
		SetUserIdAndSecContext(UtilTableOwner(namespace, stmt->owner_of),
							   saved_context | SECURITY_LOCAL_USERID_CHANGE);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (stmt->keep != NULL)
		rc = SPI_execute_plan(UtilKeptPlan(namespace, stmt), stmt->values,
							  NULL, stmt->read_only, 0);
	else
		rc = SPI_execute_with_args(stmt->sql, stmt->nargs, stmt->types,
								   stmt->values, NULL, stmt->read_only, 0);
	if (rc < 0)
		elog(ERROR, "could not run \"%s\": %s", stmt->sql,
			 SPI_result_code_string(rc));
	processed = SPI_processed;
	for (int i = 0; row != NULL && processed > 0 && i < ncols; i++)
	{
		Form_pg_attribute attr = TupleDescAttr(SPI_tuptable->tupdesc, i);

		row[i] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
							   i + 1, &row_nulls[i]);
		if (!row_nulls[i])
			row[i] = SPI_datumTransfer(row[i], attr->attbyval, attr->attlen);
	}
	SPI_finish();
	SetUserIdAndSecContext(saved_user, saved_context);
	return processed;
}

/*
 * The one int8 a statement such as "SELECT count(*) ..." returns.
 */
int64
UtilExecInt8(Oid namespace, const UtilStatement *stmt)
{
	Datum		value;
	bool		isnull;

	if (UtilExec(namespace, stmt, &value, &isnull, 1) != 1 || isnull)
		elog(ERROR, "\"%s\" returned no value", stmt->sql);
	return DatumGetInt64(value);
}
