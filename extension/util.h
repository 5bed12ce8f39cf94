/*-------------------------------------------------------------------------
 *
 * util.h
 *	  Helpers shared by every module of the extension (util.c): names of its
 *	  objects, statements run as the owner of its tables.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WSNOTIFY_UTIL_H
#define WSNOTIFY_UTIL_H

#include "postgres.h"

#include "executor/spi.h"

/*
 * A statement's plan kept for the backend's life, for the extension's
 * schema in namespace (prepared again if the extension moved).  Statements
 * that run for every message or connection keep one; rare ones do not.
 */
typedef struct UtilPlan
{
	Oid			namespace;
	SPIPlanPtr	plan;
} UtilPlan;

/* One statement for UtilExec. */
typedef struct UtilStatement
{
	const char *sql;			/* with the extension's schema spelled out */
	int			nargs;
	Oid		   *types;
	Datum	   *values;			/* no NULLs */
	const char *owner_of;		/* run as this table's owner; NULL: caller */
	bool		read_only;
	UtilPlan   *keep;			/* NULL: planned at each call */
} UtilStatement;

extern char *UtilQualifiedName(Oid namespace, const char *relname);
extern Oid	UtilTableOwner(Oid namespace, const char *relname);
extern uint64 UtilExec(Oid namespace, const UtilStatement *stmt, Datum *row,
					   bool *row_nulls, int ncols);
extern int64 UtilExecInt8(Oid namespace, const UtilStatement *stmt);

#endif							/* WSNOTIFY_UTIL_H */
