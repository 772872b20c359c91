/*-------------------------------------------------------------------------
 *
 * cache.c
 *	  The one lifecycle of every per-backend cache: invalidation, rebuild
 *	  and retirement of the registry snapshot and of the per-table entries
 *	  that the reservation and loading code keep their plans in.
 *
 * Invalidations arrive through one relcache callback and the transaction
 * callbacks; they only ever mark things stale.  Stale state is replaced
 * on next use, and the replaced memory and kept plans are freed at the end
 * of the top-level transaction, when no harbor call can still be running.
 * See cache.h for the rules.
 *
 * Copyright (c) 2026, harbor_orm developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/memutils.h"

#include "cache.h"
#include "registry.h"

/* Registry snapshot state. */
static bool registry_valid = false;
static uint64 registry_generation = 0;
static uint64 registry_invalidations = 0;	/* bumped by every invalidation */
static Oid	registry_tables[8];
static int	nregistry_tables = 0;

/* Table entries, keyed by relid. */
static HTAB *entries = NULL;
static bool any_depends = false;

/*
 * The deepest (sub)transaction nesting level at which anything was built
 * since the top-level transaction began: an abort at or above it drops
 * everything, since a build there may have seen the writes rolled back.
 * An abort of a (sub)transaction that built nothing keeps the caches, so
 * a checkout refused with an error does not cost the next one its plans.
 */
static int	built_at_level = 0;

static void
note_build(void)
{
	built_at_level = Max(built_at_level, GetCurrentTransactionNestLevel());
}

/* Retired memory contexts and kept plans, freed at transaction end. */
static List *retired_contexts = NIL;
static List *retired_plans = NIL;

static void
invalidate_all_entries(void)
{
	HASH_SEQ_STATUS seq;
	HarborCacheEntry *e;

	if (entries == NULL)
		return;
	hash_seq_init(&seq, entries);
	while ((e = hash_seq_search(&seq)) != NULL)
		e->valid = false;
}

void
harbor_cache_registry_invalidate(void)
{
	registry_valid = false;
	registry_invalidations++;
	invalidate_all_entries();
}

static void
cache_relcache_callback(Datum arg, Oid relid)
{
	HarborCacheEntry *e;

	if (!OidIsValid(relid))
	{
		harbor_cache_registry_invalidate();
		return;
	}
	for (int i = 0; i < nregistry_tables; i++)
		if (registry_tables[i] == relid)
		{
			harbor_cache_registry_invalidate();
			return;
		}
	if (entries == NULL)
		return;
	e = hash_search(entries, &relid, HASH_FIND, NULL);
	if (e != NULL)
		e->valid = false;
	if (any_depends)
	{
		HASH_SEQ_STATUS seq;

		hash_seq_init(&seq, entries);
		while ((e = hash_seq_search(&seq)) != NULL)
			if (e->valid && list_member_oid(e->depends, relid))
				e->valid = false;
	}
}

static void
free_retired(void)
{
	ListCell   *lc;

	/* retired_* live in TopMemoryContext; copy the heads before freeing */
	foreach(lc, retired_plans)
		SPI_freeplan((SPIPlanPtr) lfirst(lc));
	list_free(retired_plans);
	retired_plans = NIL;
	foreach(lc, retired_contexts)
		MemoryContextDelete((MemoryContext) lfirst(lc));
	list_free(retired_contexts);
	retired_contexts = NIL;
}

static void
cache_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			/* anything built in the aborted transaction may have seen its writes */
			if (built_at_level > 0)
				harbor_cache_registry_invalidate();
			built_at_level = 0;
			free_retired();
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PREPARE:
			built_at_level = 0;
			free_retired();
			break;
		default:
			break;
	}
}

static void
cache_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{
	/* a build inside the subtransaction may have seen what it rolled back */
	if (event == SUBXACT_EVENT_ABORT_SUB &&
		built_at_level >= GetCurrentTransactionNestLevel())
	{
		harbor_cache_registry_invalidate();
		built_at_level = GetCurrentTransactionNestLevel() - 1;
	}
}

void
harbor_cache_init(void)
{
	CacheRegisterRelcacheCallback(cache_relcache_callback, (Datum) 0);
	RegisterXactCallback(cache_xact_callback, NULL);
	RegisterSubXactCallback(cache_subxact_callback, NULL);
}

void
harbor_cache_retire_context(MemoryContext cxt)
{
	MemoryContext old;

	if (cxt == NULL)
		return;
	if (!IsTransactionState())
	{
		MemoryContextDelete(cxt);
		return;
	}
	/* not reachable from CacheMemoryContext resets any more */
	MemoryContextSetParent(cxt, TopMemoryContext);
	old = MemoryContextSwitchTo(TopMemoryContext);
	retired_contexts = lappend(retired_contexts, cxt);
	MemoryContextSwitchTo(old);
}

static void
retire_entry(HarborCacheEntry *e)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

	retired_plans = list_concat(retired_plans, e->plans);
	MemoryContextSwitchTo(old);
	list_free(e->plans);
	e->plans = NIL;
	list_free(e->depends);
	e->depends = NIL;
	harbor_cache_retire_context(e->cxt);
	e->cxt = NULL;
	memset(e->data, 0, sizeof(e->data));
}

/* ---------------------------------------------------------------------
 * Registry snapshot
 * ---------------------------------------------------------------------
 */
bool
harbor_cache_registry_valid(void)
{
	return registry_valid;
}

uint64
harbor_cache_generation(void)
{
	return registry_generation;
}

uint64
harbor_cache_registry_begin(void)
{
	return registry_invalidations;
}

void
harbor_cache_registry_watch(Oid relid)
{
	if (!OidIsValid(relid))
		return;
	for (int i = 0; i < nregistry_tables; i++)
		if (registry_tables[i] == relid)
			return;
	/* only a re-created extension brings new OIDs; forget the oldest */
	if (nregistry_tables == lengthof(registry_tables))
	{
		memmove(registry_tables, registry_tables + 1,
				sizeof(Oid) * (lengthof(registry_tables) - 1));
		nregistry_tables--;
	}
	registry_tables[nregistry_tables++] = relid;
}

void
harbor_cache_registry_end(uint64 token, MemoryContext oldcxt)
{
	harbor_cache_retire_context(oldcxt);
	note_build();
	registry_generation++;
	registry_valid = (token == registry_invalidations);
}

/* ---------------------------------------------------------------------
 * Table entries
 * ---------------------------------------------------------------------
 */
HarborCacheEntry *
harbor_cache_entry(Oid relid)
{
	HarborCacheEntry *e;
	bool		found;
	int			nmodels;

	/* the registry first: rebuilding it changes the generation */
	(void) harbor_model_list(&nmodels);

	if (entries == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(HarborCacheEntry);
		ctl.hcxt = CacheMemoryContext;
		entries = hash_create("harbor_orm table cache", 64, &ctl,
							  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}

	e = hash_search(entries, &relid, HASH_ENTER, &found);
	if (!found)
	{
		e->valid = false;
		e->cxt = NULL;
		e->plans = NIL;
		e->depends = NIL;
		memset(e->data, 0, sizeof(e->data));
	}
	if (e->valid && e->generation == registry_generation && registry_valid)
		return e;

	retire_entry(e);
	e->cxt = AllocSetContextCreate(CacheMemoryContext, "harbor_orm table cache",
								   ALLOCSET_SMALL_SIZES);
	e->generation = registry_generation;
	note_build();

	/*
	 * An empty entry is complete; what capabilities add is only linked in
	 * once built.  An invalidation from here on marks it stale again.
	 */
	e->valid = true;
	return e;
}

void
harbor_cache_depend(HarborCacheEntry *e, Oid relid)
{
	MemoryContext old;

	if (!OidIsValid(relid) || relid == e->relid || list_member_oid(e->depends, relid))
		return;
	old = MemoryContextSwitchTo(CacheMemoryContext);
	e->depends = lappend_oid(e->depends, relid);
	MemoryContextSwitchTo(old);
	any_depends = true;
}

SPIPlanPtr
harbor_cache_prepare(HarborCacheEntry *e, const char *sql, int nargs,
					 Oid *argtypes, int cursor_options)
{
	SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, argtypes, cursor_options);
	MemoryContext old;

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed");
	old = MemoryContextSwitchTo(CacheMemoryContext);
	e->plans = lappend(e->plans, plan);
	MemoryContextSwitchTo(old);
	return plan;
}
