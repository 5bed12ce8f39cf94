/* placeholder until the token module lands; replaced by extension/token.c proper */
#include "postgres.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "wsnotify.h"
PG_FUNCTION_INFO_V1(verify_token);
PG_FUNCTION_INFO_V1(verify_token_with_key);
Datum verify_token(PG_FUNCTION_ARGS) { ereport(ERROR, (errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION), errmsg("not yet"))); PG_RETURN_NULL(); }
Datum verify_token_with_key(PG_FUNCTION_ARGS) { ereport(ERROR, (errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION), errmsg("not yet"))); PG_RETURN_NULL(); }
bool TokenAlgorithmListIsValid(const char *list, char **bad_name) { return true; }
