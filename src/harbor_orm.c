/*-------------------------------------------------------------------------
 *
 * harbor_orm.c
 *	  Module initialisation and the harbor_orm.* settings.
 *
 * Every GUC of the extension is defined here, so that the full list of
 * knobs, their defaults and their contexts can be read in one place.
 * The capabilities live in their own files: registry.c (mapped models),
 * reservations.c (stock reservations), sweeper.c (background worker),
 * loader.c (batched relation loading).
 *
 * Copyright (c) 2026, harbor_orm developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "fmgr.h"
#include "utils/guc.h"

#include "cache.h"
#include "harbor_orm.h"
#include "reservations.h"
#include "sweeper.h"

PG_MODULE_MAGIC;

int			harbor_reservation_retention = 7 * 24 * 3600;
int			harbor_sweep_interval = 10;
int			harbor_sweep_batch_size = 1000;
char	   *harbor_sweeper_databases = NULL;
char	   *harbor_sweeper_role = NULL;
bool		harbor_sweeper_enabled = true;
int			harbor_sweep_lock_timeout = 1000;
int			harbor_sweep_statement_timeout = 60000;
int			harbor_load_chunk_size = 500;
int			harbor_max_include_depth = 8;
int			harbor_load_max_rows = 100000;

void		_PG_init(void);

static void
harbor_define_gucs(void)
{
	DefineCustomIntVariable("harbor_orm.reservation_retention",
							"How long closed reservations are kept before the sweep deletes them.",
							"Closed means confirmed, released or expired; the age counts from closed_at.",
							&harbor_reservation_retention,
							7 * 24 * 3600, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("harbor_orm.sweep_interval",
							"Time between two rounds of the expiry sweeper.",
							NULL,
							&harbor_sweep_interval,
							10, 1, 24 * 3600,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("harbor_orm.sweep_batch_size",
							"Expired reservations released per sweeper transaction.",
							NULL,
							&harbor_sweep_batch_size,
							1000, 1, 1000000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomStringVariable("harbor_orm.sweeper_databases",
							   "Comma-separated list of databases the expiry sweeper serves.",
							   NULL,
							   &harbor_sweeper_databases,
							   "postgres",
							   PGC_SIGHUP, GUC_LIST_INPUT,
							   harbor_check_sweeper_databases, NULL, NULL);

	DefineCustomStringVariable("harbor_orm.sweeper_role",
							   "Role the expiry sweeper connects as.",
							   "Empty means the bootstrap superuser, which is logged as a warning.",
							   &harbor_sweeper_role,
							   "",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);

	DefineCustomBoolVariable("harbor_orm.sweeper_enabled",
							 "Whether the expiry sweeper runs.",
							 NULL,
							 &harbor_sweeper_enabled,
							 true,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("harbor_orm.sweep_lock_timeout",
							"Longest wait of a sweeper transaction for a lock.",
							"On a timeout the database's round ends and is retried next round; 0 waits without limit.",
							&harbor_sweep_lock_timeout,
							1000, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("harbor_orm.sweep_statement_timeout",
							"Longest run of one sweeper batch.",
							"A worker that makes no progress for this long plus 10 s is terminated by the launcher.",
							&harbor_sweep_statement_timeout,
							60000, 1000, 24 * 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("harbor_orm.load_chunk_size",
							"Largest number of keys sent in one relation-loading query.",
							NULL,
							&harbor_load_chunk_size,
							500, 1, 100000,
							PGC_USERSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("harbor_orm.max_include_depth",
							"Deepest relationship path harbor.load() follows.",
							NULL,
							&harbor_max_include_depth,
							8, 1, 64,
							PGC_USERSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("harbor_orm.load_max_rows",
							"Most rows one harbor.load(), get() or find() call may build.",
							NULL,
							&harbor_load_max_rows,
							100000, 1, INT_MAX,
							PGC_USERSET, 0,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("harbor_orm");
}

void
_PG_init(void)
{
	harbor_define_gucs();
	harbor_cache_init();
	harbor_registry_init();
	harbor_reservations_init();
	harbor_sweeper_init();
}
