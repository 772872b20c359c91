/*-------------------------------------------------------------------------
 *
 * buckets.c
 *	  Stock buckets: harbor.split_stock() spreads one item's available stock
 *	  over several rows of harbor.stock_bucket, harbor.merge_stock() folds
 *	  it back, and the reservation functions take from and give back to
 *	  those rows, so that checkouts of a hot item do not all queue on the
 *	  item's row lock (held by each checkout until its commit is flushed).
 *
 * What the stock column holds.  While an item is split its available stock
 * is the stock column plus the sum of its buckets.  split_stock() moves the
 * column into the buckets (the column becomes 0); stock added to the column
 * afterwards (a restocking UPDATE) is taken last, after the buckets, and
 * split_stock() again spreads it.  So for every item
 *	 stock column + its buckets + active holds + confirmed holds
 * stays constant, as without buckets.  A hold records the bucket it took
 * from (stock_reservations.bucket; NULL: the stock column); release, resize
 * and expiry give back there, or to the stock column when that bucket is
 * gone (merged or rebalanced away).
 *
 * Taking.  A checkout on a split item never updates one shared row: it
 * starts at a random bucket and takes the first bucket with enough stock
 * that it can lock without waiting (harbor_lock_row, the table access
 * method lock sweep.c uses: SQL's SKIP LOCKED can still wait on the newer
 * version of an updated row); failing that it waits for one bucket with
 * enough stock; only when no single bucket can serve does it lock every
 * bucket in ascending order, then the stock column, and take across them.
 * HB001 comes only from that last step, when all of them together are
 * short, so a sell-out never refuses while stock sits in a busy bucket.
 *
 * Lock order (extends the one in sweep.c): holds; then per item, items
 * ascending, the item's buckets in ascending bucket number, then the item
 * row.  Each probe and each single-bucket wait runs in a subtransaction
 * that is rolled back when the bucket turns out short, so a checkout never
 * keeps a bucket it did not take from (an UPDATE that waited and then found
 * the row short would keep it locked): a single-bucket wait happens while
 * holding no bucket of the item, and the across step waits in ascending
 * order only.  split_stock() and merge_stock() serialise on a transaction
 * advisory lock of their own, then lock the buckets ascending and the item
 * row, the across step's order.  The sweeps never wait: they give back to a
 * bucket they can lock at once, else to the item row they hold.
 *
 * Privileges.  harbor.stock_bucket belongs to the extension's owner and
 * nothing on it is granted (the stock_buckets view is readable by every
 * role); its rows are written here as that owner,
 * under SECURITY_RESTRICTED_OPERATION, after checking explicitly that the
 * caller could have moved the stock itself: UPDATE on the stock column (or
 * the table), SELECT of the item, and, when row-level security applies to
 * the caller, the item locked as an update would lock it (FOR KEY SHARE,
 * which applies the UPDATE policies).  Every statement is schema-qualified
 * with qualified operators, so no search_path can change what runs.
 *
 * Copyright (c) 2026, harbor_orm developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "access/genam.h"
#include "access/hash.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/tuptable.h"
#include "common/hashfn.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/bufmgr.h"
#include "storage/ipc.h"
#include "storage/lmgr.h"
#include "storage/lwlock.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/resowner.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/rls.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "buckets.h"
#include "compat.h"
#include "harbor_orm.h"
#include "registry.h"
#include "reservations.h"
#include "stock.h"

PG_FUNCTION_INFO_V1(harbor_split_stock);
PG_FUNCTION_INFO_V1(harbor_merge_stock);
PG_FUNCTION_INFO_V1(harbor_stock_bucket_counters);

/* more buckets than this is a mistake, not a tuning */
#define HARBOR_MAX_BUCKETS	1024

/* ---------------------------------------------------------------------
 * Path counters, cluster-wide in shared memory when preloaded
 * ---------------------------------------------------------------------
 */
typedef enum BucketPath
{
	PATH_FIRST,					/* the random first bucket served */
	PATH_SKIPPED,				/* a later bucket, found without waiting */
	PATH_WAITED,				/* waited for one bucket */
	PATH_ACROSS,				/* took across buckets */
	NPATHS
} BucketPath;

static const char *const path_names[NPATHS] = {
	"first_bucket", "skip_locked_other", "waited", "across_buckets"
};

typedef struct BucketCounters
{
	pg_atomic_uint64 calls[NPATHS];
} BucketCounters;

static BucketCounters *counters = NULL;
static bool counters_requested = false;

#ifdef HARBOR_HAS_SHMEM_REQUEST_HOOK
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static BucketCounters *
attach_counters(void)
{
	bool		found;

	if (counters != NULL || !counters_requested)
		return counters;
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	counters = ShmemInitStruct("harbor_orm bucket counters", sizeof(BucketCounters), &found);
	if (!found)
		for (int i = 0; i < NPATHS; i++)
			pg_atomic_init_u64(&counters->calls[i], 0);
	LWLockRelease(AddinShmemInitLock);
	return counters;
}

#ifdef HARBOR_HAS_SHMEM_REQUEST_HOOK
static void
buckets_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(BucketCounters)));
}
#endif

static void
buckets_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	counters = NULL;			/* a new segment after a crash */
	(void) attach_counters();
}

void
harbor_buckets_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	counters_requested = true;
#ifdef HARBOR_HAS_SHMEM_REQUEST_HOOK
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = buckets_shmem_request;
#else
	RequestAddinShmemSpace(MAXALIGN(sizeof(BucketCounters)));
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = buckets_shmem_startup;
}

static void
count_path(BucketPath path)
{
	BucketCounters *bc = attach_counters();

	if (bc != NULL)
		pg_atomic_fetch_add_u64(&bc->calls[path], 1);
}

/* harbor.stock_bucket_counters() RETURNS TABLE (path text, calls bigint) */
Datum
harbor_stock_bucket_counters(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	BucketCounters *bc;

	InitMaterializedSRF(fcinfo, 0);
	bc = attach_counters();
	if (bc == NULL)
		return (Datum) 0;		/* not preloaded: nothing was counted */
	for (int i = 0; i < NPATHS; i++)
	{
		Datum		values[2];
		bool		nulls[2] = {false, false};

		values[0] = CStringGetTextDatum(path_names[i]);
		values[1] = Int64GetDatum((int64) pg_atomic_read_u64(&bc->calls[i]));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* ---------------------------------------------------------------------
 * Statements
 * ---------------------------------------------------------------------
 */
typedef enum BucketPlan
{
	BP_LIST,					/* an item's buckets (owner) */
	BP_TAKE_TID,				/* take from a bucket this transaction locked (owner) */
	BP_TAKE,					/* guarded take from one bucket, waiting (owner) */
	BP_GIVE,					/* give back to one bucket, waiting (owner) */
	BP_LOCK_ALL,				/* lock an item's buckets ascending (owner) */
	BP_GIVE_TID,				/* give back to a bucket this transaction locked (owner) */
	BP_SUM,						/* an item's bucket stock (owner) */
	BP_WRITE,					/* split: the new layout (owner) */
	BP_TRIM,					/* split, merge: drop buckets from a number on (owner) */
	BP_MODELS,					/* models with split items (owner) */
	BP_ITEMS,					/* check: every split item (owner) */
	BP_INSERT_HOLD,				/* a new hold recording its bucket (caller) */
	BP_OWN,						/* the order's active hold on an item (caller) */
	BP_HOLD_SET,				/* a hold's bucket, qty and expiry (caller) */
	BP_NPLANS
} BucketPlan;

StaticAssertDecl(BP_NPLANS <= HARBOR_BUCKET_NPLANS, "too many bucket statements");

typedef struct BucketPlanDef
{
	const char *sql;
	int			nargs;
	Oid			argtypes[6];
} BucketPlanDef;

#define ITEM_BUCKETS \
	" WHERE b.model OPERATOR(pg_catalog.=) $1 AND b.item_id OPERATOR(pg_catalog.=) $2"

static const BucketPlanDef bucket_plan_defs[BP_NPLANS] =
{
	[BP_LIST] = {
		"SELECT b.ctid, b.bucket, b.stock FROM harbor.stock_bucket b" ITEM_BUCKETS
		" ORDER BY b.bucket",
		2, {TEXTOID, INT8OID}
	},
	[BP_TAKE_TID] = {
		"UPDATE harbor.stock_bucket AS b SET stock = b.stock OPERATOR(pg_catalog.-) $2\n"
		" WHERE b.ctid OPERATOR(pg_catalog.=) $1 AND b.stock OPERATOR(pg_catalog.>=) $2",
		2, {TIDOID, INT8OID}
	},
	[BP_TAKE] = {
		"UPDATE harbor.stock_bucket AS b SET stock = b.stock OPERATOR(pg_catalog.-) $4" ITEM_BUCKETS
		"   AND b.bucket OPERATOR(pg_catalog.=) $3 AND b.stock OPERATOR(pg_catalog.>=) $4",
		4, {TEXTOID, INT8OID, INT4OID, INT8OID}
	},
	[BP_GIVE] = {
		"UPDATE harbor.stock_bucket AS b SET stock = b.stock OPERATOR(pg_catalog.+) $4" ITEM_BUCKETS
		"   AND b.bucket OPERATOR(pg_catalog.=) $3",
		4, {TEXTOID, INT8OID, INT4OID, INT8OID}
	},
	[BP_LOCK_ALL] = {
		"SELECT b.bucket, b.stock FROM harbor.stock_bucket b" ITEM_BUCKETS
		" ORDER BY b.bucket FOR NO KEY UPDATE OF b",
		2, {TEXTOID, INT8OID}
	},
	[BP_GIVE_TID] = {
		"UPDATE harbor.stock_bucket AS b SET stock = b.stock OPERATOR(pg_catalog.+) $2\n"
		" WHERE b.ctid OPERATOR(pg_catalog.=) $1",
		2, {TIDOID, INT8OID}
	},
	[BP_SUM] = {
		"SELECT COALESCE(pg_catalog.sum(b.stock), 0)::pg_catalog.int8, pg_catalog.count(*)\n"
		"  FROM harbor.stock_bucket b" ITEM_BUCKETS,
		2, {TEXTOID, INT8OID}
	},
	[BP_WRITE] = {
		/* $3 units over $4 buckets: the first ($3 % $4) get one more */
		"INSERT INTO harbor.stock_bucket AS b (model, item_id, bucket, stock)\n"
		"SELECT $1, $2, g, ($3 OPERATOR(pg_catalog./) $4)\n"
		"          OPERATOR(pg_catalog.+) (CASE WHEN g OPERATOR(pg_catalog.<) ($3 OPERATOR(pg_catalog.%) $4)\n"
		"                                       THEN 1 ELSE 0 END)\n"
		"  FROM pg_catalog.generate_series(0, $4::pg_catalog.int4 OPERATOR(pg_catalog.-) 1) AS g\n"
		"ON CONFLICT (model, item_id, bucket) DO UPDATE SET stock = EXCLUDED.stock",
		4, {TEXTOID, INT8OID, INT8OID, INT8OID}
	},
	[BP_TRIM] = {
		"DELETE FROM harbor.stock_bucket AS b" ITEM_BUCKETS
		"   AND b.bucket OPERATOR(pg_catalog.>=) $3",
		3, {TEXTOID, INT8OID, INT4OID}
	},
	[BP_MODELS] = {
		"SELECT DISTINCT b.model FROM harbor.stock_bucket b",
		0, {0}
	},
	[BP_ITEMS] = {
		"SELECT b.model, b.item_id, pg_catalog.count(*), pg_catalog.sum(b.stock)::pg_catalog.int8\n"
		"  FROM harbor.stock_bucket b GROUP BY 1, 2 ORDER BY 1, 2",
		0, {0}
	},
	[BP_INSERT_HOLD] = {
		"INSERT INTO harbor.stock_reservations AS r (model, item_id, order_id, qty, expires_at, bucket)\n"
		"VALUES ($3, $1, $4, $2, pg_catalog.now() OPERATOR(pg_catalog.+) $5, $6)\n"
		"ON CONFLICT (model, item_id, order_id) WHERE status OPERATOR(pg_catalog.=) 'active' DO NOTHING\n"
		"RETURNING r.id, r.created_at, r.expires_at",
		6, {INT8OID, INT4OID, TEXTOID, TEXTOID, INTERVALOID, INT4OID}
	},
	[BP_OWN] = {
		"SELECT r.id, r.qty, r.bucket FROM harbor.stock_reservations r\n"
		" WHERE r.model OPERATOR(pg_catalog.=) $1 AND r.item_id OPERATOR(pg_catalog.=) $2\n"
		"   AND r.order_id OPERATOR(pg_catalog.=) $3 AND r.status OPERATOR(pg_catalog.=) 'active'\n"
		"   FOR UPDATE OF r",
		3, {TEXTOID, INT8OID, TEXTOID}
	},
	[BP_HOLD_SET] = {
		"UPDATE harbor.stock_reservations AS r\n"
		"   SET bucket = $2, qty = $3,\n"
		"       expires_at = CASE WHEN $4 THEN pg_catalog.now() OPERATOR(pg_catalog.+) $5\n"
		"                         ELSE r.expires_at END\n"
		" WHERE r.id OPERATOR(pg_catalog.=) $1 RETURNING r.id, r.created_at, r.expires_at",
		5, {INT8OID, INT4OID, INT4OID, BOOLOID, INTERVALOID}
	},
};

static SPIPlanPtr
bucket_plan(StockCache *c, BucketPlan which)
{
	if (c->bucket_plans[which] == NULL)
		c->bucket_plans[which] = harbor_cache_prepare(c->entry, bucket_plan_defs[which].sql,
													  bucket_plan_defs[which].nargs,
													  (Oid *) bucket_plan_defs[which].argtypes,
													  CURSOR_OPT_GENERIC_PLAN);
	return c->bucket_plans[which];
}

/* Acting as the owner of harbor.stock_bucket; no user code runs on it. */
typedef struct AsOwner
{
	Oid			save_userid;
	int			save_sec_context;
} AsOwner;

static void
as_owner(StockCache *c, AsOwner *s)
{
	GetUserIdAndSecContext(&s->save_userid, &s->save_sec_context);
	SetUserIdAndSecContext(c->bucket_owner, s->save_sec_context | SECURITY_RESTRICTED_OPERATION);
}

static void
end_owner(AsOwner *s)
{
	SetUserIdAndSecContext(s->save_userid, s->save_sec_context);
}

static uint64
run_owner(StockCache *c, BucketPlan which, Datum *values, const char *nulls, bool read_only)
{
	AsOwner		s;
	uint64		n;

	as_owner(c, &s);
	n = harbor_stock_run(bucket_plan(c, which), values, nulls, read_only);
	end_owner(&s);
	return n;
}

/* A subtransaction whose row locks go away when it is rolled back. */
typedef struct SubXact
{
	MemoryContext cxt;
	ResourceOwner owner;
} SubXact;

static void
sub_begin(SubXact *s)
{
	s->cxt = CurrentMemoryContext;
	s->owner = CurrentResourceOwner;
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(s->cxt);
}

static void
sub_end(SubXact *s, bool commit)
{
	if (commit)
		ReleaseCurrentSubTransaction();
	else
		RollbackAndReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(s->cxt);
	CurrentResourceOwner = s->owner;
}

/*
 * In PG_CATCH: roll the subtransaction back and raise the error again, as
 * a caller that runs subtransactions of its own (an exception block)
 * expects to find only its own open.
 */
pg_attribute_noreturn() static void
sub_fail(SubXact *s)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(s->cxt);
	edata = CopyErrorData();
	FlushErrorState();
	sub_end(s, false);
	ReThrowError(edata);
}

/* ---------------------------------------------------------------------
 * The stock cache
 * ---------------------------------------------------------------------
 */
void
harbor_buckets_cache_build(StockCache *c)
{
	Oid			nspid = get_namespace_oid(HARBOR_SCHEMA, false);
	HeapTuple	tup;
	uint64		n;

	c->bucket_relid = get_relname_relid("stock_bucket", nspid);
	if (!OidIsValid(c->bucket_relid))
		return;					/* the 0.1.0 schema: nothing is split */
	harbor_cache_depend(c->entry, c->bucket_relid);
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(c->bucket_relid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", c->bucket_relid);
	c->bucket_owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);

	n = run_owner(c, BP_MODELS, NULL, NULL, true);
	for (uint64 i = 0; i < n; i++)
	{
		char	   *name = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);

		for (int j = 0; j < c->nmodels; j++)
			if (strcmp(c->models[j].name, name) == 0)
				c->models[j].has_buckets = true;
	}
}

char *
harbor_bucket_sql(const char *sql)
{
	const char *at = strstr(sql, "{bucket}");
	Oid			holds;
	const char *col;

	if (at == NULL)
		return pstrdup(sql);
	holds = get_relname_relid("stock_reservations", get_namespace_oid(HARBOR_SCHEMA, false));
	col = OidIsValid(holds) && get_attnum(holds, "bucket") != InvalidAttrNumber ?
		"r.bucket" : "NULL::pg_catalog.int4";
	return psprintf("%.*s%s%s", (int) (at - sql), sql, col, at + strlen("{bucket}"));
}

/* split/merge changed which items are split: every backend reads it again */
static void
buckets_changed(StockCache *c)
{
	CacheInvalidateRelcacheByRelid(c->bucket_relid);
}

/* ---------------------------------------------------------------------
 * The caller's rights
 * ---------------------------------------------------------------------
 */
static void
unknown_item(StockModel *m, StockTable *t, int64 item)
{
	ereport(ERROR,
			(errcode(ERRCODE_HARBOR_UNKNOWN_ITEM),
			 errmsg("item %lld of model \"%s\" does not exist", (long long) item, m->name),
			 errdetail("No row of %s has %s = %lld, or row-level security hides it.",
					   t->qrel, t->qpk, (long long) item)));
}

static void
require_stock_update(StockModel *m, StockTable *t)
{
	bool		missing = false;

	if (t->stock_attnum == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("stock column %s of model \"%s\" does not exist", t->qstock, m->name)));
	if (!harbor_may_update_stock(m->relid, t->stock_attnum, GetUserId(), &missing))
		aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_TABLE, get_rel_name(m->relid));
}

/*
 * Whether the item row is there, read through the table's primary key
 * index under the active snapshot without locking the row: a cheap probe
 * for callers to whom no row-level security applies.  -1 when the key's
 * index cannot be probed with a bigint (no single-column primary key, or
 * its operator family has no equality with bigint): the caller then asks
 * with a statement.
 */
static int
item_row_present(Oid relid, AttrNumber pk_attnum, int64 item)
{
	Relation	rel = table_open(relid, AccessShareLock);
	Oid			indexoid = RelationGetPrimaryKeyIndex(rel);
	Relation	idx;
	Oid			eqop;
	ScanKeyData key;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	int			found;

	if (!OidIsValid(indexoid))
	{
		table_close(rel, AccessShareLock);
		return -1;
	}
	idx = index_open(indexoid, AccessShareLock);
	eqop = InvalidOid;
	if (idx->rd_index->indnkeyatts == 1 && idx->rd_index->indkey.values[0] == pk_attnum &&
		idx->rd_rel->relam == BTREE_AM_OID)
		eqop = get_opfamily_member(idx->rd_opfamily[0], idx->rd_opcintype[0], INT8OID,
								   BTEqualStrategyNumber);
	if (!OidIsValid(eqop))
	{
		index_close(idx, AccessShareLock);
		table_close(rel, AccessShareLock);
		return -1;
	}
	ScanKeyEntryInitialize(&key, 0, 1, BTEqualStrategyNumber, INT8OID,
						   idx->rd_indcollation[0], get_opcode(eqop), Int64GetDatum(item));
	slot = table_slot_create(rel, NULL);
	scan = index_beginscan(rel, idx, GetActiveSnapshot(), 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, slot) ? 1 : 0;
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(idx, AccessShareLock);
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * What the guarded UPDATE of an unsplit item checks, checked explicitly:
 * the caller may update the stock column and sees the item; under
 * row-level security, sees it as an UPDATE would (the item is locked FOR
 * KEY SHARE, which applies the UPDATE policies and conflicts with nothing
 * a checkout takes).  False when the item is missing or hidden.
 */
static bool
caller_sees_item(StockModel *m, StockTable *t, int64 item)
{
	Datum		arg = Int64GetDatum(item);
	bool		rls;

	require_stock_update(m, t);
	rls = check_enable_rls(m->relid, InvalidOid, true) == RLS_ENABLED;

	/*
	 * Without row-level security for this caller (the table has none, or
	 * the caller bypasses it) the rights are catalog checks and the row is
	 * looked up through the key's index, without a statement or a row lock:
	 * an item row deleted while split serves no more checkouts.
	 * check_enable_rls reads the relcache, so an ALTER TABLE ... ENABLE ROW
	 * LEVEL SECURITY counts from the next call on.
	 */
	if (!rls)
	{
		int			present;

		/* the SELECT the guarded UPDATE needs: the key and the stock column */
		Oid			role = GetUserId();

		if (pg_class_aclcheck(m->relid, role, ACL_SELECT) != ACLCHECK_OK &&
			(pg_attribute_aclcheck(m->relid, t->pk_attnum, role, ACL_SELECT) != ACLCHECK_OK ||
			 pg_attribute_aclcheck(m->relid, t->stock_attnum, role, ACL_SELECT) != ACLCHECK_OK))
			aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_TABLE, get_rel_name(m->relid));
		present = item_row_present(m->relid, t->pk_attnum, item);
		if (present >= 0)
			return present == 1;
	}
	return harbor_stock_run(harbor_stock_model_plan(t, MP_EXISTS_RLS), &arg, NULL, false) > 0;
}

/* ---------------------------------------------------------------------
 * Reserving
 * ---------------------------------------------------------------------
 */
typedef struct BucketList
{
	int			n;
	ItemPointerData *tids;
	int32	   *nums;
	int64	   *stock;
} BucketList;

static void
list_buckets(StockCache *c, StockModel *m, int64 item, BucketList *bl)
{
	Datum		args[2];
	uint64		n;

	args[0] = CStringGetTextDatum(m->name);
	args[1] = Int64GetDatum(item);
	n = run_owner(c, BP_LIST, args, NULL, false);
	bl->n = (int) n;
	bl->tids = palloc(sizeof(ItemPointerData) * Max(n, 1));
	bl->nums = palloc(sizeof(int32) * Max(n, 1));
	bl->stock = palloc(sizeof(int64) * Max(n, 1));
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;

		bl->tids[i] = *(ItemPointer) DatumGetPointer(harbor_stock_result(i, 1, &isnull));
		bl->nums[i] = DatumGetInt32(harbor_stock_result(i, 2, &isnull));
		bl->stock[i] = DatumGetInt64(harbor_stock_result(i, 3, &isnull));
	}
}

static AttrNumber
bucket_stock_attnum(StockCache *c)
{
	AttrNumber	a = get_attnum(c->bucket_relid, "stock");

	if (a == InvalidAttrNumber)
		elog(ERROR, "harbor.stock_bucket has no column \"stock\"");
	return a;
}

/*
 * In a subtransaction: lock the bucket at tid without waiting and, if it
 * has need units, take them.  A bucket found short is let go (the
 * subtransaction rolled back), so no bucket is kept that was not taken
 * from.  An error (a cancel) rolls the subtransaction back and goes on up,
 * as any caller that runs its own subtransactions expects.
 */
static bool
probe(StockCache *c, ItemPointer tid, AttrNumber stock_att, int64 need)
{
	SubXact		sx;
	volatile bool taken = false;
	volatile bool locked = false;

	sub_begin(&sx);
	PG_TRY();
	{
		RowLocker	locker = {0};
		int64		have = 0;
		ItemPointerData cur;
		bool		isnull;

		CommandCounterIncrement();
		locked = harbor_lock_row(&locker, c->bucket_relid, tid, LockTupleNoKeyExclusive);
		if (locked)
		{
			have = DatumGetInt64(slot_getattr(locker.slot, stock_att, &isnull));
			cur = locker.slot->tts_tid;
		}
		harbor_locker_close(&locker);
		if (locked && have >= need)
		{
			Datum		args[2];

			args[0] = PointerGetDatum(&cur);
			args[1] = Int64GetDatum(need);
			if (run_owner(c, BP_TAKE_TID, args, NULL, false) != 1)
				elog(ERROR, "could not take from a locked stock bucket");
			taken = true;
		}
	}
	PG_CATCH();
	{
		sub_fail(&sx);
	}
	PG_END_TRY();
	/* commit when taken or when nothing was locked; let a short one go */
	sub_end(&sx, taken || !locked);
	return taken;
}

/*
 * Whether the bucket version at tid is locked or updated by another
 * transaction still running, read from its header without locking it.  A
 * hint only (a multixact, or a version since replaced, reads as not busy):
 * it spares the subtransaction of a probe that would fail; a bucket passed
 * over by mistake is still found by the wait or the across step.
 */
static bool
looks_busy(Relation rel, ItemPointer tid)
{
	Buffer		buf = ReadBuffer(rel, ItemPointerGetBlockNumber(tid));
	OffsetNumber off = ItemPointerGetOffsetNumber(tid);
	TransactionId xmax = InvalidTransactionId;
	Page		page;

	LockBuffer(buf, BUFFER_LOCK_SHARE);
	page = BufferGetPage(buf);
	if (off >= FirstOffsetNumber && off <= PageGetMaxOffsetNumber(page))
	{
		ItemId		lp = PageGetItemId(page, off);

		if (ItemIdIsNormal(lp))
		{
			HeapTupleHeader h = (HeapTupleHeader) PageGetItem(page, lp);

			if (!(h->t_infomask & (HEAP_XMAX_INVALID | HEAP_XMAX_IS_MULTI)))
				xmax = HeapTupleHeaderGetRawXmax(h);
		}
	}
	UnlockReleaseBuffer(buf);
	return TransactionIdIsNormal(xmax) &&
		!TransactionIdIsCurrentTransactionId(xmax) &&
		TransactionIdIsInProgress(xmax);
}

/*
 * In a subtransaction: the guarded take from one bucket, waiting for it
 * (BP_TAKE with args).  An UPDATE that waited and then found the row short
 * keeps it locked: rolling back lets it go.
 */
static uint64
wait_take(StockCache *c, Datum *args)
{
	SubXact		sx;
	volatile uint64 n = 0;

	sub_begin(&sx);
	PG_TRY();
	{
		n = run_owner(c, BP_TAKE, args, NULL, false);
	}
	PG_CATCH();
	{
		sub_fail(&sx);
	}
	PG_END_TRY();
	sub_end(&sx, n == 1);
	return n;
}

/*
 * Take need units of item, by the paths in the file header, step 1 over
 * listed (the caller's list of this call: its row versions cannot be
 * pruned while the calling statement's snapshot holds back the horizon, and
 * each is locked at its newest version anyway).  True and the bucket taken
 * from (HARBOR_NO_BUCKET: the stock column) on success; false and what the
 * item has when the whole item is short.
 */
static bool
take(StockCache *c, StockModel *m, StockTable *t, int64 item, int64 need, int start,
	 const BucketList *listed, int64 own_id, int32 *bucket_out, int64 *available)
{
	BucketList	bl = *listed;
	Datum		args[4];
	AttrNumber	stock_att = bucket_stock_attnum(c);
	int64		column;
	int64		total;
	int64		rem;
	bool		isnull;
	int			first = HARBOR_NO_BUCKET;

	/*
	 * 1. A bucket with enough stock that nobody holds, from start on;
	 * buckets that look busy are passed over without a probe.
	 */
	{
		Relation	rel = table_open(c->bucket_relid, AccessShareLock);

		for (int i = 0; i < bl.n; i++)
		{
			int			j = (start + i) % bl.n;

			if (bl.stock[j] < need)
				continue;
			CHECK_FOR_INTERRUPTS();
			if (looks_busy(rel, &bl.tids[j]))
				continue;
			if (probe(c, &bl.tids[j], stock_att, need))
			{
				table_close(rel, AccessShareLock);
				count_path(i == 0 ? PATH_FIRST : PATH_SKIPPED);
				*bucket_out = bl.nums[j];
				return true;
			}
		}
		table_close(rel, AccessShareLock);
	}

	/* 2. Wait for one bucket that has enough now. */
	list_buckets(c, m, item, &bl);
	args[0] = CStringGetTextDatum(m->name);
	args[1] = Int64GetDatum(item);
	args[3] = Int64GetDatum(need);
	for (int i = 0; i < bl.n; i++)
	{
		int			j = (start + i) % bl.n;
		uint64		n;

		if (bl.stock[j] < need)
			continue;
		CHECK_FOR_INTERRUPTS();
		args[2] = Int32GetDatum(bl.nums[j]);
		n = wait_take(c, args);
		if (n == 1)
		{
			count_path(PATH_WAITED);
			*bucket_out = bl.nums[j];
			return true;
		}
	}

	/*
	 * 3. Across: every bucket ascending, then the stock column.  A split
	 * that committed while we waited may have added buckets our statement
	 * did not see: lock again until no new one turns up.  (A split in
	 * progress cannot commit while we hold any bucket of the item.)
	 */
	{
		int			nlocked = -1;

		for (int round = 0; round < 10; round++)
		{
			uint64		n = run_owner(c, BP_LOCK_ALL, args, NULL, false);

			if ((int) n == nlocked)
				break;
			nlocked = (int) n;
			bl.n = nlocked;
			bl.nums = palloc(sizeof(int32) * Max(n, 1));
			bl.stock = palloc(sizeof(int64) * Max(n, 1));
			for (uint64 i = 0; i < n; i++)
			{
				bl.nums[i] = DatumGetInt32(harbor_stock_result(i, 1, &isnull));
				bl.stock[i] = DatumGetInt64(harbor_stock_result(i, 2, &isnull));
			}
		}
	}
	args[0] = Int64GetDatum(item);
	if (harbor_stock_run(harbor_stock_model_plan(t, MP_LOCK), args, NULL, false) == 0)
		unknown_item(m, t, item);
	column = DatumGetInt64(harbor_stock_result(0, 1, &isnull));
	if (isnull || column < 0)
		column = 0;
	total = column;
	for (int i = 0; i < bl.n; i++)
		total += bl.stock[i];
	if (total < need)
	{
		/* expired holds of the item, as reserve_stock reclaims them */
		int64		reclaimed = harbor_reclaim_expired(c, m, t, item, own_id);

		if (reclaimed > 0)
		{
			if (reclaimed > PG_INT32_MAX)
				ereport(ERROR,
						(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
						 errmsg("expired holds of item %lld of model \"%s\" hold more than %d units",
								(long long) item, m->name, PG_INT32_MAX)));
			args[0] = Int64GetDatum(item);
			args[1] = Int32GetDatum((int32) reclaimed);
			harbor_stock_run(harbor_stock_model_plan(t, MP_GIVE), args, NULL, false);
			column += reclaimed;
			total += reclaimed;
		}
	}
	if (total < need)
	{
		*available = total;
		return false;
	}
	rem = need;
	args[0] = CStringGetTextDatum(m->name);
	args[1] = Int64GetDatum(item);
	for (int i = 0; i < bl.n && rem > 0; i++)
	{
		int64		x = Min(bl.stock[i], rem);

		if (x <= 0)
			continue;
		args[2] = Int32GetDatum(bl.nums[i]);
		args[3] = Int64GetDatum(x);
		if (run_owner(c, BP_TAKE, args, NULL, false) != 1)
			elog(ERROR, "could not take from a locked stock bucket");
		if (first == HARBOR_NO_BUCKET)
			first = bl.nums[i];
		rem -= x;
	}
	if (rem > 0)
	{
		/* the item row is locked and has rem: no guard needed */
		args[0] = Int64GetDatum(item);
		args[1] = Int32GetDatum((int32) -rem);
		if (harbor_stock_run(harbor_stock_model_plan(t, MP_GIVE), args, NULL, false) != 1)
			elog(ERROR, "could not take from a locked item");
	}
	count_path(PATH_ACROSS);
	*bucket_out = first;
	return true;
}

/* give qty back to bucket, or to the stock column; as the caller */
static void
give_back(StockCache *c, StockModel *m, StockTable *t, int64 item, int32 bucket, int64 qty)
{
	Datum		args[2];

	if (bucket != HARBOR_NO_BUCKET && harbor_bucket_give(c, m, t, item, bucket, qty))
		return;
	args[0] = Int64GetDatum(item);
	args[1] = Int32GetDatum((int32) qty);
	harbor_stock_run(harbor_stock_model_plan(t, MP_GIVE), args, NULL, false);
}

BucketReserve
harbor_bucket_reserve(StockCache *c, StockModel *m, StockTable *t, int64 item, int32 qty,
					  Datum order, Datum ttl, ReservedHold *hold, int64 *available)
{
	Datum		model_name = CStringGetTextDatum(m->name);
	BucketList	bl;
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	bool		isnull;
	int			start;
	int32		tentative = HARBOR_NO_BUCKET;
	int64		hold_id = 0;
	int32		own_qty = 0;
	int32		own_bucket = HARBOR_NO_BUCKET;
	bool		is_new = false;
	int32		taken = HARBOR_NO_BUCKET;
	int64		need;

	if (!OidIsValid(c->bucket_relid))
		return BUCKET_NOT_SPLIT;
	list_buckets(c, m, item, &bl);
	if (bl.n == 0)
		return BUCKET_NOT_SPLIT;
	if (!caller_sees_item(m, t, item))
		unknown_item(m, t, item);

	/* the first bucket to try, recorded in a new hold */
	start = (int) (pg_prng_uint64(&pg_global_prng_state) % (uint64) bl.n);
	tentative = bl.nums[start];
	for (int i = 0; i < bl.n; i++)
		if (bl.stock[(start + i) % bl.n] >= qty)
		{
			start = (start + i) % bl.n;
			tentative = bl.nums[start];
			break;
		}

	/* The hold first (the lock order), as reserve_stock does. */
	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		values[0] = Int64GetDatum(item);
		values[1] = Int32GetDatum(qty);
		values[2] = model_name;
		values[3] = order;
		values[4] = ttl;
		values[5] = Int32GetDatum(tentative);
		if (harbor_stock_run(bucket_plan(c, BP_INSERT_HOLD), values, nulls, false) > 0)
		{
			hold_id = DatumGetInt64(harbor_stock_result(0, 1, &isnull));
			hold->id = hold_id;
			hold->created = DatumGetTimestampTz(harbor_stock_result(0, 2, &isnull));
			hold->expires = DatumGetTimestampTz(harbor_stock_result(0, 3, &isnull));
			own_bucket = tentative;
			is_new = true;
			break;
		}
		values[0] = model_name;
		values[1] = Int64GetDatum(item);
		values[2] = order;
		if (harbor_stock_run(bucket_plan(c, BP_OWN), values, NULL, false) > 0)
		{
			hold_id = DatumGetInt64(harbor_stock_result(0, 1, &isnull));
			own_qty = DatumGetInt32(harbor_stock_result(0, 2, &isnull));
			own_bucket = DatumGetInt32(harbor_stock_result(0, 3, &isnull));
			if (isnull)
				own_bucket = HARBOR_NO_BUCKET;
			break;
		}
		/* closed meanwhile: try again */
	}

	need = (int64) qty - (is_new ? 0 : own_qty);
	taken = own_bucket;
	if (need > 0)
	{
		if (!take(c, m, t, item, need, start, &bl, hold_id, &taken, available))
		{
			*available += is_new ? 0 : own_qty;
			return BUCKET_SHORT;
		}
	}
	else if (need < 0)
		give_back(c, m, t, item, own_bucket, -need);

	if (is_new && taken == tentative)
	{
		hold->bucket = taken;
		return BUCKET_RESERVED;
	}
	values[0] = Int64GetDatum(hold_id);
	values[1] = Int32GetDatum(taken);
	nulls[1] = taken == HARBOR_NO_BUCKET ? 'n' : ' ';
	values[2] = Int32GetDatum(qty);
	values[3] = BoolGetDatum(!is_new);
	values[4] = ttl;
	if (harbor_stock_run(bucket_plan(c, BP_HOLD_SET), values, nulls, false) != 1)
		elog(ERROR, "could not update hold %lld", (long long) hold_id);
	hold->id = DatumGetInt64(harbor_stock_result(0, 1, &isnull));
	hold->created = DatumGetTimestampTz(harbor_stock_result(0, 2, &isnull));
	hold->expires = DatumGetTimestampTz(harbor_stock_result(0, 3, &isnull));
	hold->bucket = taken;
	return BUCKET_RESERVED;
}

bool
harbor_bucket_is_split(StockCache *c, StockModel *m, int64 item)
{
	Datum		args[2];

	if (!OidIsValid(c->bucket_relid))
		return false;
	args[0] = CStringGetTextDatum(m->name);
	args[1] = Int64GetDatum(item);
	run_owner(c, BP_SUM, args, NULL, false);
	return harbor_stock_result_int64(0, 2) > 0;
}

/* ---------------------------------------------------------------------
 * Giving back, status, checks
 * ---------------------------------------------------------------------
 */
bool
harbor_bucket_give(StockCache *c, StockModel *m, StockTable *t, int64 item, int32 bucket,
				   int64 qty)
{
	Datum		args[4];

	if (!OidIsValid(c->bucket_relid) || bucket == HARBOR_NO_BUCKET)
		return false;
	/* a hidden or deleted item: as for an unsplit one, the item row's turn */
	if (!caller_sees_item(m, t, item))
		return false;
	args[0] = CStringGetTextDatum(m->name);
	args[1] = Int64GetDatum(item);
	args[2] = Int32GetDatum(bucket);
	args[3] = Int64GetDatum(qty);
	return run_owner(c, BP_GIVE, args, NULL, false) == 1;
}

bool
harbor_bucket_give_nowait(StockCache *c, StockModel *m, int64 item, int32 bucket, int64 qty)
{
	BucketList	bl;
	RowLocker	locker = {0};
	ItemPointerData tid;
	Datum		args[2];
	bool		locked = false;

	if (!OidIsValid(c->bucket_relid))
		return false;
	list_buckets(c, m, item, &bl);
	for (int i = 0; i < bl.n; i++)
	{
		if (bl.nums[i] != bucket)
			continue;
		CommandCounterIncrement();
		locked = harbor_lock_row(&locker, c->bucket_relid, &bl.tids[i], LockTupleNoKeyExclusive);
		if (locked)
			tid = locker.slot->tts_tid;
		harbor_locker_close(&locker);
		break;
	}
	if (!locked)
		return false;
	args[0] = PointerGetDatum(&tid);
	args[1] = Int64GetDatum(qty);
	return run_owner(c, BP_GIVE_TID, args, NULL, false) == 1;
}

int64
harbor_bucket_sum(StockCache *c, StockModel *m, int64 item)
{
	Datum		args[2];

	if (!OidIsValid(c->bucket_relid))
		return 0;
	args[0] = CStringGetTextDatum(m->name);
	args[1] = Int64GetDatum(item);
	run_owner(c, BP_SUM, args, NULL, true);
	return harbor_stock_result_int64(0, 1);
}

static StockModel *
stock_model(StockCache *c, const char *name)
{
	for (int i = 0; i < c->nmodels; i++)
		if (strcmp(c->models[i].name, name) == 0)
			return &c->models[i];
	return NULL;
}

void
harbor_bucket_check(StockCache *c, ReturnSetInfo *rsinfo, BucketProblemFn put)
{
	uint64		n;
	char	  **models;
	int64	   *items;
	int64	   *counts;

	if (!OidIsValid(c->bucket_relid))
		return;
	n = run_owner(c, BP_ITEMS, NULL, NULL, true);
	models = palloc(sizeof(char *) * Max(n, 1));
	items = palloc(sizeof(int64) * Max(n, 1));
	counts = palloc(sizeof(int64) * Max(n, 1));
	for (uint64 i = 0; i < n; i++)
	{
		models[i] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		items[i] = harbor_stock_result_int64(i, 2);
		counts[i] = harbor_stock_result_int64(i, 3);
	}
	for (uint64 i = 0; i < n; i++)
	{
		StockModel *m = stock_model(c, models[i]);
		Datum		arg = Int64GetDatum(items[i]);

		CHECK_FOR_INTERRUPTS();
		if (m == NULL)
			put(rsinfo, models[i], false, items[i],
				psprintf("%lld stock buckets on a model that does not keep stock",
						 (long long) counts[i]));
		else if (harbor_stock_run(harbor_stock_model_plan(harbor_stock_table(m), MP_STOCK),
								  &arg, NULL, true) == 0)
			put(rsinfo, models[i], false, items[i],
				psprintf("%lld stock buckets on an item that does not exist",
						 (long long) counts[i]));
	}
}

/* ---------------------------------------------------------------------
 * split_stock, merge_stock
 * ---------------------------------------------------------------------
 */

/*
 * The item's model, its table and the caller's rights: UPDATE on the stock
 * column (or the table), as reserving needs; row-level security is applied
 * by locking the item row as the caller.
 */
static StockModel *
split_target(FunctionCallInfo fcinfo, StockCache **cp, StockTable **tp, int64 *item)
{
	StockCache *c = harbor_stock_cache();
	char	   *name;
	StockModel *m;

	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	*item = PG_GETARG_INT64(1);
	m = stock_model(c, name);
	if (m == NULL)
	{
		harbor_model_lookup(name, false);	/* 42704 for an unknown model */
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("model \"%s\" does not keep stock", name),
				 errhint("Mark it as stock-keeping with harbor.enable_stock('%s').", name)));
	}
	if (!OidIsValid(c->bucket_relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("stock buckets need harbor_orm 0.2.0"),
				 errhint("Update the extension: ALTER EXTENSION harbor_orm UPDATE.")));
	*tp = harbor_stock_table(m);
	require_stock_update(m, *tp);
	*cp = c;
	return m;
}

/*
 * split and merge of one item serialise on a transaction advisory lock of
 * their own (field 4 is neither of the pg_advisory_* functions'), taken
 * before any row.
 */
static void
lock_item_layout(StockModel *m, int64 item)
{
	LOCKTAG		tag;
	uint32		h = DatumGetUInt32(hash_any((const unsigned char *) m->name, strlen(m->name)));

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, h ^ (uint32) ((uint64) item >> 32), (uint32) item, 0x4842);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
}

/* Lock the buckets ascending, then the item row; the stock column and the buckets' sum. */
static void
lock_layout(StockCache *c, StockModel *m, StockTable *t, int64 item, int64 *column,
			int64 *bucket_sum, int *nbuckets)
{
	Datum		args[2];
	uint64		n;
	bool		isnull;

	lock_item_layout(m, item);
	args[0] = CStringGetTextDatum(m->name);
	args[1] = Int64GetDatum(item);
	n = run_owner(c, BP_LOCK_ALL, args, NULL, false);
	*bucket_sum = 0;
	for (uint64 i = 0; i < n; i++)
		*bucket_sum += harbor_stock_result_int64(i, 2);
	*nbuckets = (int) n;
	args[0] = Int64GetDatum(item);
	if (harbor_stock_run(harbor_stock_model_plan(t, MP_LOCK), args, NULL, false) == 0)
		unknown_item(m, t, item);
	*column = DatumGetInt64(harbor_stock_result(0, 1, &isnull));
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("stock of item %lld of model \"%s\" is null", (long long) item, m->name)));
	if (*column < 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("stock of item %lld of model \"%s\" is negative", (long long) item, m->name),
				 errhint("Correct it first; harbor.check_stock() lists such items.")));
}

/* move delta (positive: into the column) through the int4 statements */
static void
move_column(StockTable *t, int64 item, int64 delta)
{
	Datum		args[2];

	args[0] = Int64GetDatum(item);
	while (delta != 0)
	{
		int64		step = delta > 0 ? Min(delta, PG_INT32_MAX) : Min(-delta, PG_INT32_MAX);

		/* the item row is locked: its stock cannot change under us */
		args[1] = Int32GetDatum((int32) (delta > 0 ? step : -step));
		harbor_stock_run(harbor_stock_model_plan(t, MP_GIVE), args, NULL, false);
		delta += delta > 0 ? -step : step;
	}
}

/* harbor.split_stock(model text, item_id bigint, buckets integer DEFAULT 16) RETURNS integer */
Datum
harbor_split_stock(PG_FUNCTION_ARGS)
{
	StockCache *c;
	StockModel *m;
	StockTable *t;
	int64		item;
	int32		nb;
	int64		column;
	int64		bucket_sum;
	int			had;
	Datum		args[4];

	for (int i = 0; i < 3; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not be null", i == 0 ? "model" : i == 1 ? "item_id" : "buckets")));
	nb = PG_GETARG_INT32(2);
	if (nb < 1 || nb > HARBOR_MAX_BUCKETS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("buckets must be between 1 and %d", HARBOR_MAX_BUCKETS),
				 errdetail("The value given was %d.", nb)));
	PreventCommandIfReadOnly("harbor.split_stock()");
	SPI_connect();
	m = split_target(fcinfo, &c, &t, &item);
	lock_layout(c, m, t, item, &column, &bucket_sum, &had);

	/* the column into the buckets, spread evenly */
	move_column(t, item, -column);
	args[0] = CStringGetTextDatum(m->name);
	args[1] = Int64GetDatum(item);
	args[2] = Int64GetDatum(column + bucket_sum);
	args[3] = Int64GetDatum(nb);
	run_owner(c, BP_WRITE, args, NULL, false);
	args[2] = Int32GetDatum(nb);
	run_owner(c, BP_TRIM, args, NULL, false);
	buckets_changed(c);
	SPI_finish();
	PG_RETURN_INT32(nb);
}

/* harbor.merge_stock(model text, item_id bigint) RETURNS bigint */
Datum
harbor_merge_stock(PG_FUNCTION_ARGS)
{
	StockCache *c;
	StockModel *m;
	StockTable *t;
	int64		item;
	int64		column;
	int64		bucket_sum;
	int			had;
	Datum		args[3];

	for (int i = 0; i < 2; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not be null", i == 0 ? "model" : "item_id")));
	PreventCommandIfReadOnly("harbor.merge_stock()");
	SPI_connect();
	m = split_target(fcinfo, &c, &t, &item);
	lock_layout(c, m, t, item, &column, &bucket_sum, &had);
	if (had > 0)
	{
		move_column(t, item, bucket_sum);
		args[0] = CStringGetTextDatum(m->name);
		args[1] = Int64GetDatum(item);
		args[2] = Int32GetDatum(0);
		run_owner(c, BP_TRIM, args, NULL, false);
		buckets_changed(c);
	}
	SPI_finish();
	PG_RETURN_INT64(had > 0 ? bucket_sum : 0);
}
