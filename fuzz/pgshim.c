/*
 * pgshim.c: just enough of the PostgreSQL backend for extension/token.c to
 * run outside a server, so that libFuzzer can drive it (fuzz_token.c).
 *
 * token.c, jwks.c and base64url.c are linked unchanged; TokenInit defines
 * its settings here and shim_set changes them through their hooks.  ereport(ERROR) ends in errfinish, which
 * jumps to the innermost PG_TRY (or the harness's), as in a backend.
 * palloc memory is released after every input, as a backend's statement
 * context would be; what goes into TopMemoryContext or a context made under
 * it (the key caches, kept for the backend's life) stays.  The messages are formatted, so
 * a bad format or argument is caught by the sanitizers.
 */
#include "postgres.h"

#include <stdarg.h>
#include <stdio.h>
#include <strings.h>

#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "wsnotify.h"
#include "pgshim.h"

/* port.h maps vsnprintf to pg_vsnprintf (libpgport); the C library's will do. */
#undef vsnprintf

int
pg_vsnprintf(char *str, size_t count, const char *fmt, va_list args)
{
	return vsnprintf(str, count, fmt, args);
}

static int	shim_elevel;
static char shim_message[1024];

bool		wsnotify_preloaded = true;

/*
 * The settings token.c defines (TokenInit), kept as guc.c keeps custom
 * variables: a pointer to the module's own variable and its hooks, so that
 * shim_set runs the same check and assign hooks a SET would.
 */
typedef struct ShimGuc
{
	const char *name;
	char	  **string;			/* a string setting, or NULL */
	int		   *integer;		/* an integer setting, or NULL */
	GucStringCheckHook check;
	GucStringAssignHook assign;
	void	   *extra;			/* what the check hook gave the assign hook */
} ShimGuc;

static ShimGuc shim_gucs[16];
static int	shim_guc_count;

char	   *GUC_check_errmsg_string;
char	   *GUC_check_errdetail_string;
char	   *GUC_check_errhint_string;

void GUC_check_errcode(int sqlerrcode) { (void) sqlerrcode; }
void pre_format_elog_string(int errnumber, const char *domain) { (void) errnumber; (void) domain; }

char *
format_elog_string(const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(shim_message, sizeof(shim_message), fmt, ap);
	va_end(ap);
	return shim_message;
}

bool superuser(void) { return true; }

/* Record one setting (at most the table's size: a bug otherwise). */
static ShimGuc *
shim_define(const char *name)
{
	if (shim_guc_count == (int) (sizeof(shim_gucs) / sizeof(shim_gucs[0])))
		abort();
	shim_gucs[shim_guc_count].name = name;
	return &shim_gucs[shim_guc_count++];
}

void
DefineCustomStringVariable(const char *name, const char *short_desc, const char *long_desc,
						   char **valueAddr, const char *bootValue, GucContext context,
						   int flags, GucStringCheckHook check_hook,
						   GucStringAssignHook assign_hook, GucShowHook show_hook)
{
	ShimGuc    *g = shim_define(name);

	(void) short_desc;
	(void) long_desc;
	(void) context;
	(void) flags;
	(void) show_hook;
	g->string = valueAddr;
	g->check = check_hook;
	g->assign = assign_hook;
	if (!shim_set(name, bootValue))
		abort();
}

void
DefineCustomIntVariable(const char *name, const char *short_desc, const char *long_desc,
						int *valueAddr, int bootValue, int minValue, int maxValue,
						GucContext context, int flags, GucIntCheckHook check_hook,
						GucIntAssignHook assign_hook, GucShowHook show_hook)
{
	ShimGuc    *g = shim_define(name);

	(void) short_desc;
	(void) long_desc;
	(void) minValue;
	(void) maxValue;
	(void) context;
	(void) flags;
	(void) check_hook;
	(void) assign_hook;
	(void) show_hook;
	g->integer = valueAddr;
	*valueAddr = bootValue;
}

/* Set a string setting as postgresql.conf would; false when its check hook refuses. */
bool
shim_set(const char *name, const char *value)
{
	for (int i = 0; i < shim_guc_count; i++)
	{
		ShimGuc    *g = &shim_gucs[i];
		char	   *copy;
		void	   *extra = NULL;

		if (strcmp(g->name, name) != 0 || g->string == NULL)
			continue;
		copy = strdup(value);
		if (copy == NULL)
			abort();
		if (g->check && !g->check(&copy, &extra, PGC_S_FILE))
		{
			free(copy);
			return false;
		}
		if (g->assign)
			g->assign(copy, extra);
		free(g->extra);
		g->extra = extra;
		free(*g->string);
		*g->string = copy;
		return true;
	}
	abort();					/* a setting token.c does not define */
}

const char *const shim_rsa_public_key =
	"-----BEGIN PUBLIC KEY-----\n"
	"MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA2gDX9kzCbml+woB9opR2\n"
	"nI0XOFCRzN3qF/k7cfhZ51Pg+CmEIXPVfYKbSDaX/By25GFqEiS6DvFIKZenA30m\n"
	"qAXUVwq6iglPnS3WTut5kuIN1K6NYbXTf9pHZwi+R8nCx16Wr1+XWcyrAdkGYcVX\n"
	"4FADQmJyfwtcxPfrh8qOgMMX6IRUXDGKRBFKEGr0q6exyP9UHizGs1W+riW38H5T\n"
	"1qXYB4lQH9PGYXypqfaf/6mzy8sbCYE7AV8P2SrGnfPwdKop5Skh9RDz751q0+A+\n"
	"+3W4Tpdw2m1CaRlmgo76igXvsKiYQrLjGHHbQibjBuncZzYsmLh08uhX/RyKC8ud\n"
	"4QIDAQAB\n"
	"-----END PUBLIC KEY-----\n";

const char *const shim_jwt_secret = "fuzz-secret-0123456789abcdef";

/* The EC key of the configured form (ES256). */
static const char shim_ec_public_key[] =
	"-----BEGIN PUBLIC KEY-----\n"
	"MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAExZ4L805cetElFIwx9nnTZWAKS5L6\n"
	"Qu2oAArk0x+/Jh92kNPObVd935ocjjc4uVJzCYF8lhNwq/E+GKmEviuD6Q==\n"
	"-----END PUBLIC KEY-----\n";

void
shim_configure(void)
{
	TokenInit();
	if (!shim_set("wsnotify.jwt_secret", shim_jwt_secret) ||
		!shim_set("wsnotify.jwt_public_key", shim_ec_public_key) ||
		!shim_set("wsnotify.jwt_algorithms", "HS256,RS256,ES256") ||
		!shim_set("wsnotify.jwt_audience", "fuzz-aud") ||
		!shim_set("wsnotify.jwt_issuer", "fuzz-iss"))
		abort();
	shim_reset();
}

sigjmp_buf *PG_exception_stack = NULL;
ErrorContextCallback *error_context_stack = NULL;
MemoryContext CurrentMemoryContext = NULL;

/*
 * A memory context: a list of chunks.  The statement context is reset after
 * every input; TopMemoryContext and the contexts made under it (caches)
 * live until deleted.  MemoryContext points at a ShimContext here.
 */
typedef struct ShimChunk
{
	struct ShimChunk *prev, *next;
	struct ShimContext *owner;
	size_t		size;
	max_align_t	data[];
} ShimChunk;

typedef struct ShimContext
{
	ShimChunk  *chunks;
} ShimContext;

static ShimContext statement_context, top_context;
MemoryContext TopMemoryContext = (MemoryContext) &top_context;

/* Allocate size zeroed bytes in context cx (the statement one when NULL). */
static void *
shim_alloc(ShimContext *cx, size_t size)
{
	ShimChunk  *c = calloc(1, sizeof(ShimChunk) + size);

	if (c == NULL)
		abort();
	if (cx == NULL)
		cx = &statement_context;
	c->size = size;
	c->owner = cx;
	c->next = cx->chunks;
	if (cx->chunks)
		cx->chunks->prev = c;
	cx->chunks = c;
	return c->data;
}

/* Free every chunk of a context. */
static void
shim_context_reset(ShimContext *cx)
{
	while (cx->chunks)
	{
		ShimChunk  *c = cx->chunks;

		cx->chunks = c->next;
		free(c);
	}
}

void *palloc(Size size) { return shim_alloc((ShimContext *) CurrentMemoryContext, size); }
void *palloc0(Size size) { return palloc(size); }

/* Free one chunk. */
void
pfree(void *p)
{
	ShimChunk  *c = (ShimChunk *) ((char *) p - offsetof(ShimChunk, data));

	if (c->prev)
		c->prev->next = c->next;
	else
		c->owner->chunks = c->next;
	if (c->next)
		c->next->prev = c->prev;
	free(c);
}

MemoryContext
AllocSetContextCreateInternal(MemoryContext parent, const char *name, Size minContextSize,
							  Size initBlockSize, Size maxBlockSize)
{
	(void) parent;
	(void) name;
	(void) minContextSize;
	(void) initBlockSize;
	(void) maxBlockSize;
	return (MemoryContext) calloc(1, sizeof(ShimContext));
}

void
MemoryContextDelete(MemoryContext context)
{
	shim_context_reset((ShimContext *) context);
	free(context);
}

char *
pnstrdup(const char *in, Size len)
{
	size_t		n = strnlen(in, len);
	char	   *out = palloc(n + 1);

	memcpy(out, in, n);
	out[n] = '\0';
	return out;
}

char *pstrdup(const char *in) { return pnstrdup(in, strlen(in)); }

char *
MemoryContextStrdup(MemoryContext context, const char *string)
{
	char	   *out = shim_alloc((ShimContext *) context, strlen(string) + 1);

	strcpy(out, string);
	return out;
}

char *
psprintf(const char *fmt,...)
{
	va_list		ap;
	int			n;
	char	   *out;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	out = palloc(n + 1);
	va_start(ap, fmt);
	vsnprintf(out, n + 1, fmt, ap);
	va_end(ap);
	return out;
}

/* Free the statement's allocations (the end of a backend's statement). */
void
shim_reset(void)
{
	shim_context_reset(&statement_context);
	CurrentMemoryContext = NULL;
	TopMemoryContext = (MemoryContext) &top_context;
	PG_exception_stack = NULL;
}

bool
errstart_cold(int elevel, const char *domain)
{
	(void) domain;
	shim_elevel = elevel;
	shim_message[0] = '\0';
	return true;
}

bool errstart(int elevel, const char *domain) { return errstart_cold(elevel, domain); }

int errcode(int sqlerrcode) { (void) sqlerrcode; return 0; }

/* Format one part of a message, as the backend would. */
static int
shim_format(const char *fmt, va_list ap)
{
	vsnprintf(shim_message, sizeof(shim_message), fmt, ap);
	return 0;
}

#define SHIM_FORMAT_FN(name) \
int name(const char *fmt,...) \
{ \
	va_list ap; \
	va_start(ap, fmt); \
	shim_format(fmt, ap); \
	va_end(ap); \
	return 0; \
}
SHIM_FORMAT_FN(errmsg)
SHIM_FORMAT_FN(errmsg_internal)
SHIM_FORMAT_FN(errdetail)
SHIM_FORMAT_FN(errhint)

/* The end of an ereport: an ERROR jumps to the innermost PG_TRY. */
void
errfinish(const char *filename, int lineno, const char *funcname)
{
	(void) filename;
	(void) lineno;
	(void) funcname;
	if (shim_elevel >= ERROR)
		pg_re_throw();
}

void
pg_re_throw(void)
{
	if (PG_exception_stack == NULL)
		abort();				/* an ERROR outside any PG_TRY: a bug */
	siglongjmp(*PG_exception_stack, 1);
}

void FlushErrorState(void) {}

int pg_strcasecmp(const char *a, const char *b) { return strcasecmp(a, b); }
int pg_strncasecmp(const char *a, const char *b, size_t n) { return strncasecmp(a, b, n); }

char *
pg_any_to_server(const char *s, int len, int encoding)
{
	(void) encoding;
	return pnstrdup(s, (Size) len);
}

struct varlena *pg_detoast_datum(struct varlena *datum) { return datum; }
struct varlena *pg_detoast_datum_packed(struct varlena *datum) { return datum; }

/* jsonb_in stands for the server's: a jsonb header over the text. */
Datum
jsonb_in(PG_FUNCTION_ARGS)
{
	(void) fcinfo;
	return (Datum) 0;
}

Datum
DirectFunctionCall1Coll(PGFunction func, Oid collation, Datum arg1)
{
	const char *text = DatumGetCString(arg1);
	size_t		n = strlen(text);
	struct varlena *v = palloc(VARHDRSZ + n);

	(void) func;
	(void) collation;
	SET_VARSIZE(v, VARHDRSZ + n);
	memcpy(VARDATA(v), text, n);
	return PointerGetDatum(v);
}
