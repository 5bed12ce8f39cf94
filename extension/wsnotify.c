/*-------------------------------------------------------------------------
 *
 * wsnotify.c
 *	  Entry point of the wsnotify extension: the module magic, every
 *	  wsnotify.* setting, and _PG_init, which defines them and installs the
 *	  transaction callbacks that deliver messages at commit.
 *
 * Secrets (wsnotify.jwt_secret, wsnotify.jwt_jwks) are GUC_SUPERUSER_ONLY
 * and also masked by a show hook, so neither SHOW, current_setting() nor
 * pg_settings reveal them to anyone but a superuser, including members of
 * pg_read_all_settings.  A setting is only protected once this library has
 * defined it: before that it is a placeholder any role can read.  Hence the
 * documented setup is shared_preload_libraries, and token verification from
 * configured keys refuses to run when the library was loaded late (see
 * token.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_class.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "wsnotify.h"

PG_MODULE_MAGIC;

/*---- GUC variables ----*/
char	   *wsnotify_jwt_secret = NULL;
char	   *wsnotify_jwt_public_key = NULL;
char	   *wsnotify_jwt_jwks = NULL;
char	   *wsnotify_jwt_algorithms = NULL;
char	   *wsnotify_jwt_audience = NULL;
char	   *wsnotify_jwt_issuer = NULL;
int			wsnotify_jwt_leeway = 30;
int			wsnotify_jwt_max_length = 8192;
char	   *wsnotify_user_claim = NULL;
int			wsnotify_max_message_size = 8 * 1024 * 1024;
int			wsnotify_retention = 300;
int			wsnotify_presence_debounce = 5;
char	   *wsnotify_connection_id = NULL;
char	   *wsnotify_user_id = NULL;
char	   *wsnotify_claims = NULL;

bool		wsnotify_preloaded = false;

/*---- forward declarations ----*/
void		_PG_init(void);
static const char *ShowSecret(void);
static const char *ShowJwks(void);
static bool CheckAlgorithms(char **newval, void **extra, GucSource source);
static bool CheckSecretSource(char **newval, void **extra, GucSource source);
static void DefineTokenSettings(void);
static void DefineDeliverySettings(void);
static void DefineHandlerSettings(void);

/*
 * Module load: define the settings, then hook into transaction end.
 */
void
_PG_init(void)
{
	wsnotify_preloaded = process_shared_preload_libraries_in_progress;

	DefineTokenSettings();
	DefineDeliverySettings();
	DefineHandlerSettings();
	MarkGUCPrefixReserved("wsnotify");

	SendRegisterCallbacks();
}

/*
 * The settings that decide which tokens verify_token() accepts.
 */
static void
DefineTokenSettings(void)
{
	DefineCustomStringVariable("wsnotify.jwt_secret",
							   "Shared secret for HS256/HS384/HS512 tokens.",
							   "Only superusers can read or set it.",
							   &wsnotify_jwt_secret, "",
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL,
							   CheckSecretSource, NULL, ShowSecret);

	DefineCustomStringVariable("wsnotify.jwt_public_key",
							   "PEM public key (RSA or EC) for RS*/ES* tokens.",
							   NULL,
							   &wsnotify_jwt_public_key, "",
							   PGC_SUSET, 0,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("wsnotify.jwt_jwks",
							   "JWKS document whose keys are picked by the token's kid.",
							   "Only superusers can read or set it: it may hold oct secrets.",
							   &wsnotify_jwt_jwks, "",
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL,
							   CheckSecretSource, NULL, ShowJwks);

	DefineCustomStringVariable("wsnotify.jwt_algorithms",
							   "Comma-separated list of accepted JWT algorithms.",
							   "Any of HS256, HS384, HS512, RS256, RS384, RS512, ES256, ES384, ES512; never none.",
							   &wsnotify_jwt_algorithms, "HS256",
							   PGC_SUSET, GUC_LIST_INPUT,
							   CheckAlgorithms, NULL, NULL);

	DefineCustomStringVariable("wsnotify.jwt_audience",
							   "Required aud claim; empty accepts any audience.",
							   NULL,
							   &wsnotify_jwt_audience, "",
							   PGC_SUSET, 0,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("wsnotify.jwt_issuer",
							   "Required iss claim; empty accepts any issuer.",
							   NULL,
							   &wsnotify_jwt_issuer, "",
							   PGC_SUSET, 0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("wsnotify.jwt_leeway",
							"Clock skew tolerated when checking exp and nbf.",
							NULL,
							&wsnotify_jwt_leeway, 30, 0, 3600,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("wsnotify.jwt_max_length",
							"Longest token accepted, in bytes.",
							NULL,
							&wsnotify_jwt_max_length, 8192, 256, 1024 * 1024,
							PGC_SUSET, GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomStringVariable("wsnotify.user_claim",
							   "Claim that holds the user id (a string or an integer).",
							   NULL,
							   &wsnotify_user_claim, "sub",
							   PGC_SUSET, 0,
							   NULL, NULL, NULL);
}

/*
 * The settings of message delivery.
 */
static void
DefineDeliverySettings(void)
{
	DefineCustomIntVariable("wsnotify.max_message_size",
							"Largest message send_ws and its kin accept.",
							"Measured as the stored jsonb size.",
							&wsnotify_max_message_size,
							8 * 1024 * 1024, 1024, 256 * 1024 * 1024,
							PGC_SUSET, GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("wsnotify.retention",
							"How long sent messages are kept for clients that resume.",
							NULL,
							&wsnotify_retention, 300, 0, 7 * 24 * 3600,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("wsnotify.presence_debounce",
							"How long a user must stay gone from a presence topic before the leave frame.",
							"A user back within it (a reconnect blip) gets neither a leave nor a join frame.",
							&wsnotify_presence_debounce, 5, 0, 3600,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);
}

/*
 * The context a route handler runs in, set by wsnotify_invoke for one
 * transaction.  Superuser-only to set, so that neither a handler nor an
 * application role can forge them for row-level security policies; anyone
 * may read them.
 */
static void
DefineHandlerSettings(void)
{
	DefineCustomStringVariable("wsnotify.connection_id",
							   "Connection whose message the running handler answers.",
							   "Set by wsnotify for the handler's transaction.",
							   &wsnotify_connection_id, "",
							   PGC_SUSET, GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("wsnotify.user_id",
							   "User of the connection the running handler answers.",
							   "Set by wsnotify for the handler's transaction.",
							   &wsnotify_user_id, "",
							   PGC_SUSET, GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("wsnotify.claims",
							   "Token claims (JSON) of the connection the running handler answers.",
							   "Set by wsnotify for the handler's transaction.",
							   &wsnotify_claims, "",
							   PGC_SUSET, GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);
}

/*
 * "schema"."relname" for one of the extension's objects, quoted as needed,
 * so that statements the extension runs do not depend on search_path.
 */
char *
WsnotifyQualifiedName(Oid namespace, const char *relname)
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
WsnotifyTableOwner(Oid namespace, const char *relname)
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
 * SHOW hook for a secret: the value for superusers, a mask for everyone
 * else, so that pg_read_all_settings does not reveal it either.
 */
static const char *
ShowSecret(void)
{
	if (!superuser())
		return "********";
	return wsnotify_jwt_secret ? wsnotify_jwt_secret : "";
}

/* SHOW hook for the JWKS document, masked like the secret. */
static const char *
ShowJwks(void)
{
	if (!superuser())
		return "********";
	return wsnotify_jwt_jwks ? wsnotify_jwt_jwks : "";
}

/*
 * Reject an unknown algorithm name, and "none", when the list is set rather
 * than at the first token.
 */
static bool
CheckAlgorithms(char **newval, void **extra, GucSource source)
{
	char	   *bad_name = NULL;

	if (TokenAlgorithmListIsValid(*newval, &bad_name))
		return true;
	GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
	GUC_check_errmsg("\"%s\" is not an accepted JWT algorithm", bad_name);
	GUC_check_errhint("Use a comma-separated list of HS256, HS384, HS512, RS256, RS384, RS512, ES256, ES384, ES512.");
	return false;
}

/*
 * Refuse a secret from ALTER ROLE/DATABASE ... SET or a function's SET
 * clause: those are stored in pg_db_role_setting and pg_proc, which every
 * role can read.
 */
static bool
CheckSecretSource(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	if (source != PGC_S_TEST && source != PGC_S_DATABASE &&
		source != PGC_S_USER && source != PGC_S_DATABASE_USER)
		return true;
	GUC_check_errcode(ERRCODE_INSUFFICIENT_PRIVILEGE);
	GUC_check_errmsg("wsnotify secrets cannot be set per role, per database or per function");
	GUC_check_errdetail("Such settings are stored in catalogs that every role can read.");
	GUC_check_errhint("Set it in postgresql.conf or with ALTER SYSTEM.");
	return false;
}
