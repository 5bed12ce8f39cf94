/*-------------------------------------------------------------------------
 *
 * topics.c
 *	  Topics: publish_ws() to every connection subscribed to a topic, and
 *	  the server-side ws_subscribe() / ws_unsubscribe().
 *
 * Subscriptions are rows of websocket_subscription, which cascade away
 * with their connection's websocket_client row (disconnect, reaping).  Any
 * role may subscribe a live connection: that is the application's server
 * side speaking (a $connect handler, a trigger).  Clients subscribe through
 * the bridge, which asks the $subscribe route first.
 *
 * A topic name is 1 to TOPIC_NAME_MAX bytes of ASCII letters, digits and
 * "_ - . : / @", so that it can be logged, put in a URL or a metric label
 * without escaping.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"

#include "wsnotify.h"

/* Longest topic name, in bytes. */
#define TOPIC_NAME_MAX 128

PG_FUNCTION_INFO_V1(publish_ws);
PG_FUNCTION_INFO_V1(publish_ws_binary);
PG_FUNCTION_INFO_V1(ws_subscribe);
PG_FUNCTION_INFO_V1(ws_unsubscribe);

/*---- GUC variables ----*/
static int	topics_presence_debounce = 5;
static int	topics_presence_state_max_size = 4096;

static char *TopicArgument(FunctionCallInfo fcinfo, int argno);
static int64 TopicExec(Oid namespace, const char *sql, int nargs,
					   Datum *values, bool as_owner);

/*
 * Define the settings of topics; called once from _PG_init.  They are read
 * by SQL, not here: the debounce by the bridges' heartbeat
 * (wsnotify_heartbeat), the state size by wsnotify_client_track.
 */
void
TopicsInit(void)
{
	DefineCustomIntVariable("wsnotify.presence_debounce",
							"How long a user must stay gone from a presence topic before the leave frame.",
							"A user back within it (a reconnect blip) gets neither a leave nor a join frame.",
							&topics_presence_debounce, 5, 0, 3600,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("wsnotify.presence_state_max_size",
							"Largest presence state a connection may track, in bytes of JSON text.",
							"A larger state in a track action gets an error frame.",
							&topics_presence_state_max_size, 4096, 0, 1024 * 1024,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
}

/*
 * publish_ws(topic text, message jsonb) returns integer
 *
 * Queue a message for every connection subscribed to the topic when the
 * transaction commits; return how many are subscribed now.
 */
Datum
publish_ws(PG_FUNCTION_ARGS)
{
	Oid			namespace = get_func_namespace(fcinfo->flinfo->fn_oid);
	char	   *topic = TopicArgument(fcinfo, 0);
	Jsonb	   *message = SendRequiredMessage(fcinfo, 1);

	SendCheckWritable("publish_ws()");
	SendQueue(fcinfo, 't', cstring_to_text(topic), message);
	PG_RETURN_INT32(TopicSubscribers(namespace, topic));
}

/*
 * publish_ws_binary(topic text, message bytea) returns integer
 *
 * publish_ws for a binary message: delivered as a binary frame.
 */
Datum
publish_ws_binary(PG_FUNCTION_ARGS)
{
	Oid			namespace = get_func_namespace(fcinfo->flinfo->fn_oid);
	char	   *topic = TopicArgument(fcinfo, 0);
	bytea	   *message = SendRequiredBinary(fcinfo, 1);

	SendCheckWritable("publish_ws_binary()");
	SendQueueBinary(fcinfo, 't', cstring_to_text(topic), message);
	PG_RETURN_INT32(TopicSubscribers(namespace, topic));
}

/*
 * How many connections are subscribed to topic now: what publish_ws,
 * publish_ws_binary and signal_ws return.
 */
int32
TopicSubscribers(Oid namespace, const char *topic)
{
	static UtilPlan count_plan = {InvalidOid, NULL};
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	UtilStatement stmt = {NULL, 1, types, values, NULL, true, &count_plan};

	values[0] = CStringGetTextDatum(topic);
	stmt.sql = psprintf("SELECT count(*) FROM %s WHERE topic = $1",
						UtilQualifiedName(namespace, "websocket_subscription"));
	return (int32) UtilExecInt8(namespace, &stmt);
}

/*
 * ws_subscribe(connection_id text, topic text) returns boolean
 *
 * Subscribe a live connection to a topic (again is fine); false when the
 * connection is not live.
 */
Datum
ws_subscribe(PG_FUNCTION_ARGS)
{
	Oid			namespace = get_func_namespace(fcinfo->flinfo->fn_oid);
	char	   *topic;
	Datum		values[2];

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("connection_id must not be null")));
	topic = TopicArgument(fcinfo, 1);
	values[0] = PG_GETARG_DATUM(0);
	values[1] = CStringGetTextDatum(topic);
	TopicExec(namespace,
			  psprintf("INSERT INTO %s (connection_id, user_id, topic) "
					   "SELECT c.connection_id, c.user_id, $2 FROM %s c "
					   "WHERE c.connection_id = $1 "
					   "ON CONFLICT (connection_id, topic) DO NOTHING",
					   UtilQualifiedName(namespace, "websocket_subscription"),
					   UtilQualifiedName(namespace, "websocket_client")),
			  2, values, true);
	PG_RETURN_BOOL(TopicExec(namespace,
							 psprintf("SELECT 1 FROM %s WHERE connection_id = $1 AND topic = $2",
									  UtilQualifiedName(namespace, "websocket_subscription")),
							 2, values, false) > 0);
}

/*
 * ws_unsubscribe(connection_id text, topic text) returns boolean
 *
 * Remove a subscription; false when there was none.
 */
Datum
ws_unsubscribe(PG_FUNCTION_ARGS)
{
	Oid			namespace = get_func_namespace(fcinfo->flinfo->fn_oid);
	char	   *topic;
	Datum		values[2];

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("connection_id must not be null")));
	topic = TopicArgument(fcinfo, 1);
	values[0] = PG_GETARG_DATUM(0);
	values[1] = CStringGetTextDatum(topic);
	PG_RETURN_BOOL(TopicExec(namespace,
							 psprintf("DELETE FROM %s WHERE connection_id = $1 AND topic = $2",
									  UtilQualifiedName(namespace, "websocket_subscription")),
							 2, values, true) > 0);
}

/*
 * Fetch a topic argument: not NULL, and a valid topic name.
 */
static char *
TopicArgument(FunctionCallInfo fcinfo, int argno)
{
	char	   *topic;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("topic must not be null")));
	topic = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	TopicCheckName(topic, ERRCODE_INVALID_PARAMETER_VALUE);
	return topic;
}

/*
 * Raise sqlstate unless topic is a valid topic name.
 */
void
TopicCheckName(const char *topic, int sqlstate)
{
	const char *p;

	for (p = topic; *p; p++)
		if (!(isascii((unsigned char) *p) && (isalnum((unsigned char) *p) ||
											  strchr("_-.:/@", *p))))
			break;
	if (*p != '\0' || p == topic || p - topic > TOPIC_NAME_MAX)
		ereport(ERROR,
				(errcode(sqlstate),
				 errmsg("invalid topic name"),
				 errdetail("A topic is 1 to %d ASCII letters, digits, \"_\", \"-\", \".\", \":\", \"/\" or \"@\".",
						   TOPIC_NAME_MAX)));
}

/* Whether a client action is built in (answered here, never a route). */
bool
TopicIsClientAction(const char *action)
{
	static const char *const built_in[] = {"subscribe", "unsubscribe", "signal",
	"track", "refresh"};

	for (int i = 0; i < lengthof(built_in); i++)
		if (strcmp(action, built_in[i]) == 0)
			return true;
	return false;
}

/*
 * Answer a built-in client action (TopicIsClientAction) of a connection:
 * subscribe and unsubscribe (with a reply that names the topic), signal,
 * track and refresh, each by its wsnotify_client_* function.  NULL: no
 * reply.
 */
Jsonb *
TopicClientAction(Oid namespace, const char *connection_id,
				  const char *action, Jsonb *message)
{
	bool		subscribe = strcmp(action, "subscribe") == 0;
	Datum		values[2];
	char	   *reply;

	values[0] = CStringGetTextDatum(connection_id);
	if (subscribe || strcmp(action, "unsubscribe") == 0)
	{
		char	   *topic = RoutesJsonbField(message, "topic", false);

		if (topic == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_RAISE_EXCEPTION),
					 errmsg("%s needs a \"topic\" string", action)));
		TopicCheckName(topic, ERRCODE_RAISE_EXCEPTION);
		values[1] = CStringGetTextDatum(topic);
		TopicExec(namespace,
				  psprintf("SELECT %s($1, $2)",
						   UtilQualifiedName(namespace, subscribe ?
											 "wsnotify_client_subscribe" :
											 "wsnotify_client_unsubscribe")),
				  2, values, false);
		/* A valid topic name needs no escaping inside a JSON string. */
		reply = psprintf("{\"%s\": \"%s\"}",
						 subscribe ? "subscribed" : "unsubscribed", topic);
		return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(reply)));
	}
	else
	{
		Oid			types[2] = {TEXTOID, JSONBOID};
		Datum		result;
		bool		isnull;
		UtilStatement stmt = {NULL, 2, types, values, NULL, false, NULL};

		values[1] = JsonbPGetDatum(message);
		stmt.sql = psprintf("SELECT %s($1, $2)",
							UtilQualifiedName(namespace,
											  psprintf("wsnotify_client_%s", action)));
		if (UtilExec(namespace, &stmt, &result, &isnull, 1) != 1 || isnull)
			return NULL;
		return DatumGetJsonbP(result);
	}
}

/*
 * Run one statement on the extension's tables (as their owner when
 * as_owner, so callers need no grant); return the number of rows it
 * selected or changed.
 */
static int64
TopicExec(Oid namespace, const char *sql, int nargs, Datum *values,
		  bool as_owner)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	UtilStatement stmt = {sql, nargs, types, values,
	as_owner ? "websocket_subscription" : NULL, false, NULL};

	return (int64) UtilExec(namespace, &stmt, NULL, NULL, 0);
}
