/*-------------------------------------------------------------------------
 *
 * routes.c
 *	  Route handlers: SQL functions that answer client messages, chosen by
 *	  the message's "action" (API Gateway's route selection), plus the
 *	  $connect, $disconnect and $default routes.
 *
 * ws_route() and ws_unroute() maintain websocket_route, which only the
 * extension's owner can write: they check the caller's rights themselves
 * (the route's owner, or a superuser, may change it; the caller must be
 * allowed to act as the route's run_as role) and write as the table owner.
 *
 * wsnotify_invoke() runs a handler for the bridge.  It sets
 * wsnotify.connection_id, wsnotify.user_id and wsnotify.claims for the
 * current transaction only (they are superuser-only settings, so a handler
 * or an application role cannot forge them for row-level security), then
 * calls the handler as the route's run_as role, the way a SECURITY DEFINER
 * function switches user: the handler cannot SET ROLE its way back.
 *
 * The $binary route takes a client's binary frames: its handler is
 * (connection jsonb, message bytea) RETURNS jsonb, run by
 * wsnotify_invoke_binary().  Which route a binary frame goes to is decided
 * without looking into it: there is only the one.
 *
 * Handlers are stored by their signature text, not as regprocedure, so that
 * pg_upgrade and pg_dump keep them; the text is resolved at every call,
 * which is also what lets running bridges see route changes at once.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "access/xact.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/syscache.h"

#include "wsnotify.h"

/* Longest action name a route may have. */
#define ROUTE_NAME_MAX 64

/* A route as stored in websocket_route. */
typedef struct Route
{
	Oid			handler;
	Oid			run_as;
} Route;

/*---- GUC variables ----*/
static char *routes_connection_id = NULL;
static char *routes_user_id = NULL;
static char *routes_claims = NULL;

PG_FUNCTION_INFO_V1(ws_route);
PG_FUNCTION_INFO_V1(ws_unroute);
PG_FUNCTION_INFO_V1(wsnotify_invoke);
PG_FUNCTION_INFO_V1(wsnotify_invoke_route);
PG_FUNCTION_INFO_V1(wsnotify_invoke_binary);

/* The route of client binary frames. */
#define ROUTE_BINARY "$binary"

static void RoutesCheckName(const char *route);
static void RoutesCheckHandler(Oid handler, bool binary);
static void RoutesCheckChangeAllowed(Oid namespace, const char *route);
static bool RoutesLookup(Oid namespace, const char *route, Route *found,
						 Oid *owner);
static Oid	RoutesResolveHandler(const char *signature);
static Jsonb *RoutesCall(const Route *route, const char *route_name,
						 Jsonb *connection, Datum message, bool message_null);
static Jsonb *RoutesConnectionById(Oid namespace, const char *connection_id);
static void RoutesSetContext(Jsonb *connection);

/*
 * The route lookup and the connection's row run for every upgrade
 * ($connect) and every client message: their plans are kept rather than
 * parsed and planned each time (the lookup was a quarter of
 * wsnotify_connect's cost, perf in a connect storm).  ws_route and
 * ws_unroute are rare and are planned when they run.
 */
static UtilPlan lookup_plan = {InvalidOid, NULL};
static UtilPlan connection_plan = {InvalidOid, NULL};

/*
 * Define the context a route handler runs in, set by wsnotify_invoke for
 * one transaction; called once from _PG_init.  Superuser-only to set, so
 * that neither a handler nor an application role can forge them for
 * row-level security policies; anyone may read them.
 */
void
RoutesInit(void)
{
	DefineCustomStringVariable("wsnotify.connection_id",
							   "Connection whose message the running handler answers.",
							   "Set by wsnotify for the handler's transaction.",
							   &routes_connection_id, "",
							   PGC_SUSET, GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("wsnotify.user_id",
							   "User of the connection the running handler answers.",
							   "Set by wsnotify for the handler's transaction.",
							   &routes_user_id, "",
							   PGC_SUSET, GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("wsnotify.claims",
							   "Token claims (JSON) of the connection the running handler answers.",
							   "Set by wsnotify for the handler's transaction.",
							   &routes_claims, "",
							   PGC_SUSET, GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);
}

/*
 * ws_route(route text, handler regprocedure, run_as regrole) returns void
 *
 * Register (or replace) the handler of a route.
 */
Datum
ws_route(PG_FUNCTION_ARGS)
{
	Oid			namespace = get_func_namespace(fcinfo->flinfo->fn_oid);
	char	   *route;
	Oid			handler;
	Oid			run_as;
	Oid			types[4] = {TEXTOID, TEXTOID, OIDOID, OIDOID};
	Datum		values[4];
	UtilStatement stmt = {NULL, 4, types, values, "websocket_route", false, NULL};

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("route and handler must not be null")));
	route = text_to_cstring(PG_GETARG_TEXT_PP(0));
	handler = PG_GETARG_OID(1);
	run_as = PG_ARGISNULL(2) ? GetUserId() : PG_GETARG_OID(2);

	RoutesCheckName(route);
	RoutesCheckHandler(handler, strcmp(route, ROUTE_BINARY) == 0);
	if (!is_member_of_role(GetUserId(), run_as))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to run handlers as role \"%s\"",
						GetUserNameFromId(run_as, false)),
				 errhint("Only members of a role may name it as run_as.")));
	if (pg_proc_aclcheck(handler, run_as, ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" may not execute %s",
						GetUserNameFromId(run_as, false),
						format_procedure(handler)),
				 errhint("GRANT EXECUTE on the handler to the role it runs as.")));
	RoutesCheckChangeAllowed(namespace, route);

	values[0] = CStringGetTextDatum(route);
	values[1] = CStringGetTextDatum(format_procedure_qualified(handler));
	values[2] = ObjectIdGetDatum(run_as);
	values[3] = ObjectIdGetDatum(GetUserId());
	stmt.sql = psprintf("INSERT INTO %s AS r (route, handler, run_as, owner) "
						"VALUES ($1, $2, $3, $4) ON CONFLICT (route) DO UPDATE "
						"SET handler = $2, run_as = $3, owner = $4, "
						"created_at = pg_catalog.now()",
						UtilQualifiedName(namespace, "websocket_route"));
	UtilExec(namespace, &stmt, NULL, NULL, 0);
	PG_RETURN_VOID();
}

/*
 * ws_unroute(route text) returns boolean
 *
 * Remove a route; false when there was none.
 */
Datum
ws_unroute(PG_FUNCTION_ARGS)
{
	Oid			namespace = get_func_namespace(fcinfo->flinfo->fn_oid);
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	UtilStatement stmt = {NULL, 1, types, values, "websocket_route", false, NULL};
	char	   *route;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("route must not be null")));
	route = text_to_cstring(PG_GETARG_TEXT_PP(0));
	RoutesCheckChangeAllowed(namespace, route);
	values[0] = CStringGetTextDatum(route);
	stmt.sql = psprintf("DELETE FROM %s WHERE route = $1",
						UtilQualifiedName(namespace, "websocket_route"));
	PG_RETURN_BOOL(UtilExec(namespace, &stmt, NULL, NULL, 0) > 0);
}

/*
 * wsnotify_invoke(connection_id text, message jsonb) returns jsonb
 *
 * Run the handler for a client's message: the route named by its "action",
 * else $default.  Actions starting with '$' never name a route, so a client
 * cannot trigger $connect or $disconnect.  Raises SQLSTATE 42883 when
 * neither exists.  The built-in actions (subscribe, unsubscribe, signal,
 * track, refresh) are answered by topics.c.
 */
Datum
wsnotify_invoke(PG_FUNCTION_ARGS)
{
	Oid			namespace = get_func_namespace(fcinfo->flinfo->fn_oid);
	char	   *connection_id;
	Jsonb	   *message = PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1);
	Jsonb	   *connection;
	Jsonb	   *result;
	char	   *action = NULL;
	Route		route;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("connection_id must not be null")));
	connection_id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	connection = RoutesConnectionById(namespace, connection_id);

	if (message != NULL && JB_ROOT_IS_OBJECT(message))
		action = RoutesJsonbField(message, "action", false);
	if (action != NULL && action[0] == '$')
		action = NULL;
	if (action != NULL && TopicIsClientAction(action))
	{
		result = TopicClientAction(namespace, connection_id, action, message);
		if (result == NULL)
			PG_RETURN_NULL();
		PG_RETURN_JSONB_P(result);
	}
	if (!(action && RoutesLookup(namespace, action, &route, NULL)) &&
		!RoutesLookup(namespace, "$default", &route, NULL))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("no route for action \"%s\"", action ? action : ""),
				 errhint("Register one with ws_route(), or a $default route.")));

	result = RoutesCall(&route, action ? action : "$default", connection,
						PointerGetDatum(message), message == NULL);
	if (result == NULL)
		PG_RETURN_NULL();
	PG_RETURN_JSONB_P(result);
}

/*
 * wsnotify_invoke_route(route text, connection jsonb, message jsonb)
 * returns jsonb
 *
 * Run the handler of one named route ($connect, $disconnect) if there is
 * one; NULL when there is none or it returned NULL.
 */
Datum
wsnotify_invoke_route(PG_FUNCTION_ARGS)
{
	Oid			namespace = get_func_namespace(fcinfo->flinfo->fn_oid);
	char	   *route_name;
	Route		route;
	Jsonb	   *result;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("route and connection must not be null")));
	route_name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (!RoutesLookup(namespace, route_name, &route, NULL))
		PG_RETURN_NULL();
	if (strcmp(route_name, ROUTE_BINARY) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("route \"%s\" takes bytea", ROUTE_BINARY),
				 errhint("Call wsnotify_invoke_binary().")));
	result = RoutesCall(&route, route_name, PG_GETARG_JSONB_P(1),
						PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2),
						PG_ARGISNULL(2));
	if (result == NULL)
		PG_RETURN_NULL();
	PG_RETURN_JSONB_P(result);
}

/*
 * wsnotify_invoke_binary(connection_id text, message bytea) returns jsonb
 *
 * Run the $binary route's handler for a client's binary frame.  Raises
 * SQLSTATE 42883 when there is no $binary route; the bridge then closes
 * the connection with 1003, as it would without this function.
 */
Datum
wsnotify_invoke_binary(PG_FUNCTION_ARGS)
{
	Oid			namespace = get_func_namespace(fcinfo->flinfo->fn_oid);
	Jsonb	   *connection;
	Jsonb	   *result;
	Route		route;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("connection_id must not be null")));
	connection = RoutesConnectionById(namespace,
									  text_to_cstring(PG_GETARG_TEXT_PP(0)));
	if (!RoutesLookup(namespace, ROUTE_BINARY, &route, NULL))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("no route for binary messages"),
				 errhint("Register one with ws_route('$binary', handler), a function (connection jsonb, message bytea) returning jsonb.")));
	result = RoutesCall(&route, ROUTE_BINARY, connection,
						PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1),
						PG_ARGISNULL(1));
	if (result == NULL)
		PG_RETURN_NULL();
	PG_RETURN_JSONB_P(result);
}

/*
 * A route is $connect, $disconnect, $default, $subscribe, $signal, $binary,
 * or an action name
 * of letters, digits and _ . : - (at most ROUTE_NAME_MAX bytes).
 */
static void
RoutesCheckName(const char *route)
{
	const char *p;
	size_t		len = strlen(route);

	if (strcmp(route, "$connect") == 0 || strcmp(route, "$disconnect") == 0 ||
		strcmp(route, "$default") == 0 || strcmp(route, "$subscribe") == 0 ||
		strcmp(route, "$signal") == 0 || strcmp(route, ROUTE_BINARY) == 0)
		return;
	if (TopicIsClientAction(route))
		ereport(ERROR,
				(errcode(ERRCODE_RESERVED_NAME),
				 errmsg("action \"%s\" is built in", route),
				 errhint("Authorize subscriptions with a $subscribe route and signals with a $signal route.")));
	for (p = route; *p; p++)
		if (!(isalnum((unsigned char) *p) || strchr("_.:-", *p)))
			break;
	if (len == 0 || len > ROUTE_NAME_MAX || *p != '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("invalid route name"),
				 errdetail("A route is $connect, $disconnect, $default, $subscribe, $signal, $binary, or 1 to %d letters, digits, \"_\", \".\", \":\" or \"-\".",
						   ROUTE_NAME_MAX)));
}

/*
 * A handler is a plain function (connection jsonb, message jsonb) returns
 * jsonb; for the $binary route, (connection jsonb, message bytea).
 */
static void
RoutesCheckHandler(Oid handler, bool binary)
{
	Oid			message_type = binary ? BYTEAOID : JSONBOID;
	HeapTuple	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(handler));
	Form_pg_proc proc;
	bool		fits;

	if (!HeapTupleIsValid(tuple))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("function with OID %u does not exist", handler)));
	proc = (Form_pg_proc) GETSTRUCT(tuple);
	fits = proc->prokind == PROKIND_FUNCTION && !proc->proretset &&
		proc->prorettype == JSONBOID && proc->pronargs == 2 &&
		proc->proargtypes.values[0] == JSONBOID &&
		proc->proargtypes.values[1] == message_type;
	ReleaseSysCache(tuple);
	if (!fits && binary)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("%s cannot be the $binary route handler", format_procedure(handler)),
				 errdetail("The $binary handler is a function (connection jsonb, message bytea) returning jsonb, not a set."),
				 errhint("For example: CREATE FUNCTION on_bytes(connection jsonb, message bytea) RETURNS jsonb ...")));
	if (!fits)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("%s cannot be a route handler", format_procedure(handler)),
				 errdetail("A handler is a function (connection jsonb, message jsonb) returning jsonb, not a set."),
				 errhint("For example: CREATE FUNCTION on_chat(connection jsonb, message jsonb) RETURNS jsonb ...")));
}

/*
 * An existing route may be changed only by its owner or a superuser.
 */
static void
RoutesCheckChangeAllowed(Oid namespace, const char *route)
{
	Route		existing;
	Oid			owner;

	if (!RoutesLookup(namespace, route, &existing, &owner))
		return;
	if (!has_privs_of_role(GetUserId(), owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("route \"%s\" belongs to role \"%s\"", route,
						GetUserNameFromId(owner, false)),
				 errhint("Only the role that registered a route, or a superuser, may change it.")));
}

/*
 * Find a route; false when there is none.  A handler that no longer exists
 * is an error, so that a dropped function is noticed rather than skipped.
 */
static bool
RoutesLookup(Oid namespace, const char *route, Route *found, Oid *owner)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	UtilStatement stmt = {NULL, 1, types, values, NULL, false, &lookup_plan};
	Datum		row[3];
	bool		row_nulls[3];
	char	   *handler_text;
	Oid			handler;

	values[0] = CStringGetTextDatum(route);
	stmt.sql = psprintf("SELECT handler, run_as::oid, owner::oid FROM %s WHERE route = $1",
						UtilQualifiedName(namespace, "websocket_route"));
	if (UtilExec(namespace, &stmt, row, row_nulls, 3) == 0)
		return false;
	handler_text = TextDatumGetCString(row[0]);
	found->run_as = DatumGetObjectId(row[1]);
	if (owner)
		*owner = DatumGetObjectId(row[2]);
	handler = RoutesResolveHandler(handler_text);
	if (!OidIsValid(handler))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("handler %s of route \"%s\" does not exist",
						handler_text, route),
				 errhint("Register the route again, or remove it with ws_unroute().")));
	found->handler = handler;
	return true;
}

/*
 * The function a stored signature names now; InvalidOid when there is none.
 */
static Oid
RoutesResolveHandler(const char *signature)
{
	LOCAL_FCINFO(call, 1);
	Datum		result;

	InitFunctionCallInfoData(*call, NULL, 1, InvalidOid, NULL, NULL);
	call->args[0].value = CStringGetTextDatum(signature);
	call->args[0].isnull = false;
	result = to_regprocedure(call);
	return call->isnull ? InvalidOid : DatumGetObjectId(result);
}

/*
 * Call a route's handler as its run_as role, with the connection's context
 * set for this transaction.  NULL when the handler returned NULL.
 */
static Jsonb *
RoutesCall(const Route *route, const char *route_name, Jsonb *connection,
		   Datum message, bool message_null)
{
	FmgrInfo	flinfo;
	Oid			saved_user;
	int			saved_context;
	int			guc_level;
	Datum		result;

	LOCAL_FCINFO(call, 2);

	if (pg_proc_aclcheck(route->handler, route->run_as, ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role of route \"%s\" may not execute its handler", route_name)));

	RoutesSetContext(connection);
	fmgr_info(route->handler, &flinfo);
	InitFunctionCallInfoData(*call, &flinfo, 2, InvalidOid, NULL, NULL);
	call->args[0].value = JsonbPGetDatum(connection);
	call->args[0].isnull = false;
	call->args[1].value = message;
	call->args[1].isnull = message_null;
	if (flinfo.fn_strict && message_null)
		return NULL;

	/*
	 * The handler sees the session's own search_path, not that of the
	 * wsnotify function that may be calling it.  An error unwinds both the
	 * setting and the user switch with the (sub)transaction.
	 */
	guc_level = NewGUCNestLevel();
	(void) set_config_option("search_path",
							 GetConfigOptionResetString("search_path"),
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
	GetUserIdAndSecContext(&saved_user, &saved_context);
	SetUserIdAndSecContext(route->run_as,
						   saved_context | SECURITY_LOCAL_USERID_CHANGE);
	result = FunctionCallInvoke(call);
	SetUserIdAndSecContext(saved_user, saved_context);
	AtEOXact_GUC(true, guc_level);

	if (call->isnull)
		return NULL;
	return DatumGetJsonbP(result);
}

/*
 * The handler's view of a live connection: its websocket_client row as a
 * JSON object.  A connection that is gone is an error.
 */
static Jsonb *
RoutesConnectionById(Oid namespace, const char *connection_id)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	UtilStatement stmt = {NULL, 1, types, values, NULL, false, &connection_plan};
	Datum		row[1];
	bool		row_nulls[1];

	values[0] = CStringGetTextDatum(connection_id);
	stmt.sql = psprintf("SELECT pg_catalog.jsonb_build_object("
						"'connection_id', c.connection_id, 'user_id', c.user_id, "
						"'bridge_id', c.bridge_id, 'connected_at', c.connected_at, "
						"'remote_addr', c.remote_addr, 'user_agent', c.user_agent, "
						"'claims', c.claims) FROM %s c WHERE c.connection_id = $1",
						UtilQualifiedName(namespace, "websocket_client"));
	if (UtilExec(namespace, &stmt, row, row_nulls, 1) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("connection \"%s\" is not live", connection_id)));
	return DatumGetJsonbP(row[0]);
}

/*
 * A top-level field of a JSON object: strings as their text; other values
 * as JSON text when as_text, else NULL.  NULL when absent.
 */
char *
RoutesJsonbField(Jsonb *object, const char *key, bool as_text)
{
	JsonbValue *value = getKeyJsonValueFromContainer(&object->root, key,
													 strlen(key), NULL);

	if (value == NULL || value->type == jbvNull)
		return NULL;
	if (value->type == jbvString)
		return pnstrdup(value->val.string.val, value->val.string.len);
	if (!as_text)
		return NULL;
	return JsonbToCString(NULL, &JsonbValueToJsonb(value)->root, 0);
}

/*
 * Set wsnotify.connection_id, wsnotify.user_id and wsnotify.claims for the
 * rest of the transaction, from the connection object.
 */
static void
RoutesSetContext(Jsonb *connection)
{
	const char *names[3] = {"wsnotify.connection_id", "wsnotify.user_id",
	"wsnotify.claims"};
	const char *keys[3] = {"connection_id", "user_id", "claims"};
	int			i;

	for (i = 0; i < 3; i++)
	{
		char	   *value = RoutesJsonbField(connection, keys[i], true);

		(void) set_config_option(names[i], value ? value : "",
								 PGC_SUSET, PGC_S_SESSION, GUC_ACTION_LOCAL,
								 true, 0, false);
	}
}
