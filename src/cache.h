/*-------------------------------------------------------------------------
 *
 * cache.h
 *	  The one lifecycle of every per-backend cache of harbor_orm.
 *
 * Two kinds of cached state exist, and both follow the same rules:
 *
 * The registry snapshot (registry.c): every model, relationship and stock
 * column, read from the harbor tables.  It is stale after any change to
 * those tables (their row triggers send a relcache invalidation), after a
 * transaction or subtransaction abort, and after a relcache reset.
 *
 * Table entries, keyed by a table's OID: what a capability derives from
 * one model (kept plans, column conversions).  An entry is stale when its
 * table, or a table it depends on, gets a relcache invalidation (ALTER,
 * RENAME, SET SCHEMA, DROP, privilege changes ...), and whenever the
 * registry snapshot it was built under is replaced.  The entry with
 * relid InvalidOid holds capability-wide state (statements on the harbor
 * tables) and is stale when the registry is.
 *
 * Rules:
 *	- a snapshot or entry is marked valid only when its build finished and
 *	  no invalidation arrived meanwhile; a build that errors leaves nothing
 *	  valid behind;
 *	- stale memory and kept plans are retired, never freed, until the end
 *	  of the top-level transaction, so a pointer taken during a call stays
 *	  usable even if a nested call (a policy, a trigger) rebuilds the cache;
 *	- builds read the harbor tables with a fresh snapshot (SPI read-write
 *	  mode), so that two calls in one statement agree with what the first
 *	  one wrote.
 *
 * Whatever reads tuples through a cached plan still checks the tuple
 * descriptor it got: a cache says which statement to run, never which
 * type a datum has.
 *
 * Copyright (c) 2026, harbor_orm developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef HARBOR_CACHE_H
#define HARBOR_CACHE_H

#include "executor/spi.h"
#include "nodes/pg_list.h"

/* The capabilities that hang state on a table entry. */
typedef enum HarborCacheKind
{
	HARBOR_CACHE_STOCK,			/* reservations.c, sweep.c */
	HARBOR_CACHE_LOADER,		/* loader */
	HARBOR_CACHE_NKINDS
} HarborCacheKind;

typedef struct HarborCacheEntry
{
	Oid			relid;			/* hash key; InvalidOid: capability-wide */
	bool		valid;
	uint64		generation;		/* registry generation it was built under */
	MemoryContext cxt;			/* freed (at transaction end) with the entry */
	List	   *plans;			/* kept plans, freed with the entry */
	List	   *depends;		/* further relation OIDs it was built from */
	void	   *data[HARBOR_CACHE_NKINDS];	/* NULL until a capability built it */
} HarborCacheEntry;

extern void harbor_cache_init(void);

/*
 * The current entry of a table (InvalidOid: the capability-wide entry),
 * brought up to date with the registry first.  A stale entry is retired and
 * a new, empty one returned.  The pointer is usable until the end of the
 * transaction.  A capability fills data[kind] in memory of e->cxt, and
 * stores the pointer only once its part is complete.
 */
extern HarborCacheEntry *harbor_cache_entry(Oid relid);

/* The entry was built from relid too: its invalidation makes it stale. */
extern void harbor_cache_depend(HarborCacheEntry *e, Oid relid);

/*
 * SPI_prepare_cursor + SPI_keepplan, owned by the entry (freed with it).
 * Errors with the statement's own error if it does not prepare.
 */
extern SPIPlanPtr harbor_cache_prepare(HarborCacheEntry *e, const char *sql,
									   int nargs, Oid *argtypes,
									   int cursor_options);

/*
 * The registry snapshot's lifecycle, used by registry.c:
 *
 *	if (!harbor_cache_registry_valid()) {
 *		token = harbor_cache_registry_begin();
 *		... build into a new context cxt ...
 *		harbor_cache_registry_end(token, cxt, oldcxt);
 *	}
 *
 * _end retires the previous context and bumps the generation; the new
 * snapshot counts as valid only if nothing invalidated it during the build.
 * watch() names the harbor tables whose changes make it stale.
 */
extern bool harbor_cache_registry_valid(void);
extern uint64 harbor_cache_registry_begin(void);
extern void harbor_cache_registry_end(uint64 token, MemoryContext oldcxt);
extern void harbor_cache_registry_watch(Oid relid);
extern void harbor_cache_registry_invalidate(void);
extern uint64 harbor_cache_generation(void);

/* Keep a context alive until the end of the top-level transaction. */
extern void harbor_cache_retire_context(MemoryContext cxt);

#endif							/* HARBOR_CACHE_H */
