/*-------------------------------------------------------------------------
 *
 * wsnotify.c
 *	  Entry point of the wsnotify extension: the module magic and _PG_init,
 *	  which calls each module's init (each defines its own wsnotify.*
 *	  settings and hooks) and then reserves the prefix.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "wsnotify.h"

PG_MODULE_MAGIC;

bool		wsnotify_preloaded = false;

void		_PG_init(void);

/*
 * Module load: every module defines its settings, then the prefix is
 * reserved so that a misspelt wsnotify.* setting is an error.
 */
void
_PG_init(void)
{
	wsnotify_preloaded = process_shared_preload_libraries_in_progress;

	TokenInit();
	SendInit();
	OrderInit();
	SignalInit();
	TopicsInit();
	RoutesInit();
	MarkGUCPrefixReserved("wsnotify");
}
