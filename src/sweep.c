/*-------------------------------------------------------------------------
 *
 * sweep.c
 *	  Releasing expired holds and purging closed ones: harbor.sweep_expired(),
 *	  harbor._sweep_batch(), harbor._purge_closed() and the C entry points
 *	  the background sweeper (sweeper.c) runs them through.
 *
 * Lock order.  Every path of harbor_orm takes row locks in one order:
 *
 *	 1. holds (rows of harbor.stock_reservations),
 *	 2. items (rows of the stock tables), in ascending item id,
 *	 3. whatever the table's own triggers and external writers lock
 *	    (a restocking UPDATE, a foreign-key insert taking KEY SHARE).
 *
 * reserve, reserve_many and release take the hold and then the item for
 * one item before the next, items ascending; confirm and extend take holds
 * only.  The sweeps take a whole batch of holds and then their items, so
 * once a batch holds anything they must never wait: the lock on
 * harbor.stock_reservations is taken first, before any row (an ordinary
 * wait, bounded by the caller's lock_timeout; sweep_expired()'s later
 * batches hold it already), and after it they only lock with
 * ConditionalLockRelationOid and table_tuple_lock(LockWaitSkip), skipping
 * whatever is busy until the next batch.  SQL's FOR UPDATE SKIP LOCKED is not enough for that: when the
 * version of a row it finds was updated by a transaction that ends just
 * as it looks, heap_lock_tuple follows the update chain and waits for
 * whoever holds the newer version (heap_lock_updated_tuple ignores the
 * wait policy).  harbor.sweep_expired() keeps the items of its earlier
 * batches locked until it commits, so such a wait on a checkout that
 * waits for one of those items was a deadlock (seen in the 32-client
 * suite, with a restocking UPDATE as the updater).  Locking here without
 * TUPLE_LOCK_FLAG_LOCK_UPDATE_IN_PROGRESS follows the chain with
 * TUPLE_LOCK_FLAG_FIND_LAST_VERSION, which honours SKIP.  After that,
 * every statement of a batch touches only rows the batch has locked.
 *
 * Privileges.  Each model's item table is touched as the table's owner
 * under SECURITY_RESTRICTED_OPERATION, with a new GUC nest level, as
 * VACUUM, ANALYZE and REFRESH MATERIALIZED VIEW do: a trigger, CHECK,
 * index expression or policy of the table runs with its owner's rights,
 * never the sweeper's (which may be the bootstrap superuser).  The holds
 * are read and written as the calling role.  An error inside restores the
 * user and the GUC level through (sub)transaction abort, as in those
 * commands.  Each model's work runs in a subtransaction, so an error that
 * one table's code raises holds up that table only (it is raised again
 * when nothing else was released, else reported as a warning).  The
 * calling role must itself be allowed to update the stock
 * column, and a hold's stock is only given back when the role that last
 * wrote the hold could have moved that stock itself
 * (harbor_hold_creditable), so neither the caller nor a role that writes
 * holds directly into the table can have the owner move stock for it.
 *
 * Copyright (c) 2026, harbor_orm developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/itemptr.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "buckets.h"
#include "harbor_orm.h"
#include "reservations.h"
#include "stock.h"

PG_FUNCTION_INFO_V1(harbor_sweep_expired);
PG_FUNCTION_INFO_V1(harbor_sweep_batch);
PG_FUNCTION_INFO_V1(harbor_purge_closed);
PG_FUNCTION_INFO_V1(harbor_hold_creditable_sql);

/* ---------------------------------------------------------------------
 * Who may be credited
 * ---------------------------------------------------------------------
 */

/* UPDATE on the table, or on its stock column */
bool
harbor_may_update_stock(Oid relid, AttrNumber stock_attnum, Oid role, bool *missing)
{
	if (pg_class_aclcheck_ext(relid, role, ACL_UPDATE, missing) == ACLCHECK_OK)
		return true;
	if (*missing)
		return false;
	return pg_attribute_aclcheck_ext(relid, stock_attnum, role, ACL_UPDATE,
									 missing) == ACLCHECK_OK;
}

static bool
hold_creditable(Oid role, Oid relid, AttrNumber stock_attnum)
{
	bool		missing = false;

	if (!OidIsValid(role))
		return true;			/* written before holds recorded their writer */
	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(role)))
		return false;
	if (stock_attnum <= 0 || !harbor_may_update_stock(relid, stock_attnum, role, &missing) || missing)
		return false;
	/* which rows the policies let it update is not known here: not these */
	if (check_enable_rls(relid, role, true) == RLS_ENABLED)
		return false;
	return true;
}

/*
 * The decisions taken during one sweep batch or reclaim.  Their candidate
 * queries ask for every expired hold (harbor._hold_creditable in the WHERE
 * clause), the locking loop asks again for the version it locked, and the
 * holds of one batch have few writers: each writer's decision is taken
 * once per batch (four syscache lookups or more) instead of once per row.
 * A batch starts the cache and ends it; it counts only within the
 * transaction that started it, so an error that skips the end leaves
 * nothing behind for later transactions.
 */
#define CREDIT_CACHE_SIZE 16

typedef struct CreditDecision
{
	Oid			role;
	Oid			relid;
	AttrNumber	stock_attnum;
	bool		creditable;
} CreditDecision;

static CreditDecision credit_cache[CREDIT_CACHE_SIZE];
static int	credit_ncached = 0;
static bool credit_caching = false;
static LocalTransactionId credit_lxid = InvalidLocalTransactionId;

static void
credit_cache_start(void)
{
	credit_ncached = 0;
	credit_caching = true;
	credit_lxid = MyProc->lxid;
}

static void
credit_cache_end(void)
{
	credit_ncached = 0;
	credit_caching = false;
}

bool
harbor_hold_creditable(Oid role, Oid relid, AttrNumber stock_attnum)
{
	bool		creditable;

	if (!credit_caching || credit_lxid != MyProc->lxid)
		return hold_creditable(role, relid, stock_attnum);
	for (int i = 0; i < credit_ncached; i++)
		if (credit_cache[i].role == role && credit_cache[i].relid == relid &&
			credit_cache[i].stock_attnum == stock_attnum)
			return credit_cache[i].creditable;
	creditable = hold_creditable(role, relid, stock_attnum);
	if (credit_ncached < CREDIT_CACHE_SIZE)
	{
		credit_cache[credit_ncached].role = role;
		credit_cache[credit_ncached].relid = relid;
		credit_cache[credit_ncached].stock_attnum = stock_attnum;
		credit_cache[credit_ncached].creditable = creditable;
		credit_ncached++;
	}
	return creditable;
}

/* harbor._hold_creditable(created_by regrole, rel oid, stock_attnum smallint) */
Datum
harbor_hold_creditable_sql(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(1) || PG_ARGISNULL(2))
		PG_RETURN_BOOL(false);
	PG_RETURN_BOOL(harbor_hold_creditable(PG_ARGISNULL(0) ? InvalidOid : PG_GETARG_OID(0),
										  PG_GETARG_OID(1), PG_GETARG_INT16(2)));
}

/* ---------------------------------------------------------------------
 * Locking without waiting, acting as the owner
 * ---------------------------------------------------------------------
 */
void
harbor_locker_close(RowLocker *l)
{
	if (l->rel != NULL)
	{
		ExecDropSingleTupleTableSlot(l->slot);
		table_close(l->rel, NoLock);
	}
	l->rel = NULL;
	l->slot = NULL;
	l->relid = InvalidOid;
}

/*
 * Lock the newest version of the row at tid, never waiting (see the file
 * header): false when another transaction holds or waits for it, when it
 * is gone, when its table is locked against us, or, under a transaction
 * snapshot, when it changed since.  On success the locked version is in
 * l->slot.
 */
bool
harbor_lock_row(RowLocker *l, Oid relid, ItemPointer tid, LockTupleMode mode)
{
	TM_FailureData tmfd;
	TM_Result	res;

	if (l->rel == NULL || l->relid != relid)
	{
		harbor_locker_close(l);
		if (!ConditionalLockRelationOid(relid, RowShareLock))
			return false;
		l->rel = table_open(relid, NoLock);
		l->relid = relid;
		l->slot = table_slot_create(l->rel, NULL);
	}
	res = table_tuple_lock(l->rel, tid, GetActiveSnapshot(), l->slot,
						   GetCurrentCommandId(true), mode, LockWaitSkip,
						   IsolationUsesXactSnapshot() ? 0 : TUPLE_LOCK_FLAG_FIND_LAST_VERSION,
						   &tmfd);
	return res == TM_Ok;
}

typedef struct OwnerSwitch
{
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
} OwnerSwitch;

static void
become_owner(Oid relid, OwnerSwitch *s)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	GetUserIdAndSecContext(&s->save_userid, &s->save_sec_context);
	SetUserIdAndSecContext(owner, s->save_sec_context | SECURITY_RESTRICTED_OPERATION);
	s->save_nestlevel = NewGUCNestLevel();
}

static void
end_owner(OwnerSwitch *s)
{
	AtEOXact_GUC(false, s->save_nestlevel);
	SetUserIdAndSecContext(s->save_userid, s->save_sec_context);
}

static AttrNumber
column_of(Relation rel, const char *name)
{
	TupleDesc	desc = RelationGetDescr(rel);

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
			return att->attnum;
	}
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_COLUMN),
			 errmsg("column \"%s\" of harbor.stock_reservations does not exist", name),
			 errhint("Update the extension: ALTER EXTENSION harbor_orm UPDATE.")));
	return InvalidAttrNumber;	/* keep compiler quiet */
}

/* Where the sweeps read a locked hold's columns. */
typedef struct HoldColumns
{
	AttrNumber	model;
	AttrNumber	item;
	AttrNumber	qty;
	AttrNumber	status;
	AttrNumber	expires;
	AttrNumber	writer;
} HoldColumns;

static void
hold_columns(StockCache *c, HoldColumns *hc)
{
	Relation	holds_rel = table_open(c->holds_relid, NoLock);	/* locked by the caller */

	hc->model = column_of(holds_rel, "model");
	hc->item = column_of(holds_rel, "item_id");
	hc->qty = column_of(holds_rel, "qty");
	hc->status = column_of(holds_rel, "status");
	hc->expires = column_of(holds_rel, "expires_at");
	hc->writer = column_of(holds_rel, "created_by");
	table_close(holds_rel, NoLock);
}

/*
 * Whether the hold version just locked (which may be newer than the one the
 * candidate query saw) is still an active hold of model m, of item (any item
 * when item < 0), expired at now, and written by a role that could have
 * moved its stock.
 */
static bool
locked_hold_sweepable(TupleTableSlot *slot, const HoldColumns *hc, StockModel *m,
					  StockTable *t, int64 item, TimestampTz now)
{
	bool		isnull;
	Datum		writer;

	if (strcmp(TextDatumGetCString(slot_getattr(slot, hc->status, &isnull)), "active") != 0 ||
		strcmp(TextDatumGetCString(slot_getattr(slot, hc->model, &isnull)), m->name) != 0 ||
		(item >= 0 && DatumGetInt64(slot_getattr(slot, hc->item, &isnull)) != item) ||
		DatumGetTimestampTz(slot_getattr(slot, hc->expires, &isnull)) > now)
		return false;
	writer = slot_getattr(slot, hc->writer, &isnull);
	return harbor_hold_creditable(isnull ? InvalidOid : DatumGetObjectId(writer),
								  m->relid, t->stock_attnum);
}

/* Column col of the n rows of the current SPI result, a tid. */
static ItemPointerData *
result_tids(uint64 n, int col)
{
	ItemPointerData *tids = palloc(sizeof(ItemPointerData) * Max(n, 1));

	if (TupleDescAttr(SPI_tuptable->tupdesc, col - 1)->atttypid != TIDOID)
		elog(ERROR, "unexpected result of a sweep statement");
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;

		tids[i] = *(ItemPointer) DatumGetPointer(harbor_stock_result(i, col, &isnull));
	}
	return tids;
}

static Datum
int8_array(int64 *v, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = Int64GetDatum(v[i]);
	return PointerGetDatum(construct_array(d, n, INT8OID, sizeof(int64),
										   FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

static Datum
tid_array(ItemPointerData *v, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = PointerGetDatum(&v[i]);
	return PointerGetDatum(construct_array(d, n, TIDOID, sizeof(ItemPointerData),
										   false, TYPALIGN_SHORT));
}

static bool
stock_fits(Oid type, int64 stock, int64 add)
{
	int64		sum;

	if (pg_add_s64_overflow(stock, add, &sum))
		return false;
	if (type == INT2OID)
		return sum >= PG_INT16_MIN && sum <= PG_INT16_MAX;
	if (type == INT4OID)
		return sum >= PG_INT32_MIN && sum <= PG_INT32_MAX;
	return true;
}

/* ---------------------------------------------------------------------
 * Sweeping
 * ---------------------------------------------------------------------
 */
typedef struct SweepHold
{
	ItemPointerData tid;		/* of the locked version */
	int64		item;
	int32		qty;
} SweepHold;

typedef struct SweepItem
{
	int64		id;
	bool		found;			/* the row exists */
	bool		locked;			/* ... and this batch holds it */
	bool		have_stock;		/* ... and its stock was read, not null */
	int64		stock;
	int64		sum;			/* qty of the batch's holds on it */
	int			nholds;
	bool		release;		/* close its holds */
	bool		restore;		/* ... and give their stock back */
} SweepItem;

static int
int64_cmp(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return (x > y) - (x < y);
}

static SweepItem *
find_item(SweepItem *items, int nitems, int64 id)
{
	int			lo = 0,
				hi = nitems - 1;

	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;

		if (items[mid].id == id)
			return &items[mid];
		if (items[mid].id < id)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return NULL;
}

/*
 * Where a model's sweep has got to within one transaction: holds are taken
 * in (expires_at, id) order, each batch after the last one the previous
 * batch saw.
 */
typedef struct SweepKey
{
	TimestampTz expires;
	int64		id;
} SweepKey;

/*
 * One model's share of a batch: at most limit holds after *key, which is
 * moved to the last hold seen.  Returns how many holds it released; adds
 * how many it looked at to *seen.
 */
static int64
sweep_model(StockCache *c, StockModel *m, int limit, SweepKey *key, int64 *seen)
{
	StockTable *t = harbor_stock_table(m);
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	HoldColumns hc;
	RowLocker	locker = {0};
	OwnerSwitch owner;
	Datum		values[6];
	uint64		n;
	ItemPointerData *tids;
	SweepHold  *holds;
	int			nholds = 0;
	int64	   *ids;
	SweepItem  *items;
	int			nitems = 0;
	ItemPointerData *close_tids;
	int			nclose = 0;
	int64		closed;
	int64	   *restore_ids;
	int64	   *restore_qty;
	int			nrestore = 0;
	bool		missing = false;

	/* check_stock() reports a stock column that is gone or not an integer */
	if (t->stock_attnum == InvalidAttrNumber ||
		(t->stock_type != INT2OID && t->stock_type != INT4OID && t->stock_type != INT8OID))
		return 0;

	/* The caller could move this stock itself, or it sweeps nothing here. */
	if (!harbor_may_update_stock(m->relid, t->stock_attnum, GetUserId(), &missing))
		aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_TABLE, get_rel_name(m->relid));
	if (check_enable_rls(m->relid, InvalidOid, true) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("row-level security on %s prevents sweeping the holds of model \"%s\"",
						t->qrel, m->name),
				 errhint("Sweep as the table owner or a role with BYPASSRLS.")));

	/* An ALTER TABLE in progress: leave the model to the next batch. */
	if (!ConditionalLockRelationOid(m->relid, RowExclusiveLock))
		return 0;

	/* 1. The holds, as the caller. */
	values[0] = Int32GetDatum(limit);
	values[1] = CStringGetTextDatum(m->name);
	values[2] = TimestampTzGetDatum(key->expires);
	values[3] = ObjectIdGetDatum(m->relid);
	values[4] = Int16GetDatum(t->stock_attnum);
	values[5] = Int64GetDatum(key->id);
	credit_cache_start();
	n = harbor_stock_run(harbor_stock_global_plan(c, GP_SWEEP_HOLDS), values, NULL, false);
	if (n == 0)
	{
		credit_cache_end();
		return 0;
	}
	*seen += n;
	tids = result_tids(n, 1);
	{
		bool		isnull;

		key->expires = DatumGetTimestampTz(harbor_stock_result(n - 1, 2, &isnull));
		key->id = DatumGetInt64(harbor_stock_result(n - 1, 3, &isnull));
	}

	hold_columns(c, &hc);

	CommandCounterIncrement();
	holds = palloc(sizeof(SweepHold) * n);
	ids = palloc(sizeof(int64) * n);
	for (uint64 i = 0; i < n; i++)
	{
		TupleTableSlot *slot;
		bool		isnull;

		CHECK_FOR_INTERRUPTS();
		if (!harbor_lock_row(&locker, c->holds_relid, &tids[i], LockTupleExclusive))
			continue;
		slot = locker.slot;
		if (!locked_hold_sweepable(slot, &hc, m, t, -1, now))
			continue;
		holds[nholds].tid = slot->tts_tid;
		holds[nholds].item = DatumGetInt64(slot_getattr(slot, hc.item, &isnull));
		holds[nholds].qty = DatumGetInt32(slot_getattr(slot, hc.qty, &isnull));
		ids[nholds] = holds[nholds].item;
		nholds++;
	}
	harbor_locker_close(&locker);
	credit_cache_end();
	if (nholds == 0)
		return 0;

	/* Their items, distinct and ascending. */
	qsort(ids, nholds, sizeof(int64), int64_cmp);
	items = palloc0(sizeof(SweepItem) * nholds);
	for (int i = 0; i < nholds; i++)
		if (nitems == 0 || items[nitems - 1].id != ids[i])
			items[nitems++].id = ids[i];
	for (int i = 0; i < nitems; i++)
		ids[i] = items[i].id;

	/* 2. The items, as the owner, in ascending order, never waiting. */
	become_owner(m->relid, &owner);
	if (check_enable_rls(m->relid, InvalidOid, true) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("row-level security on %s prevents sweeping the holds of model \"%s\"",
						t->qrel, m->name),
				 errdetail("The policies apply to the table's owner (FORCE ROW LEVEL SECURITY)."),
				 errhint("Let the owner bypass them, or release these holds with harbor.release_reservation().")));
	values[0] = int8_array(ids, nitems);
	n = harbor_stock_run(harbor_stock_model_plan(t, MP_SWEEP_ITEMS), values, NULL, false);
	{
		Oid		   *rel_of = palloc(sizeof(Oid) * Max(n, 1));
		ItemPointerData *tid_of = palloc(sizeof(ItemPointerData) * Max(n, 1));
		int64	   *id_of = palloc(sizeof(int64) * Max(n, 1));
		int64	   *locked_ids = palloc(sizeof(int64) * Max(n, 1));
		int			nlocked = 0;

		for (uint64 i = 0; i < n; i++)
		{
			bool		isnull;

			rel_of[i] = DatumGetObjectId(harbor_stock_result(i, 1, &isnull));
			tid_of[i] = *(ItemPointer) DatumGetPointer(harbor_stock_result(i, 2, &isnull));
			id_of[i] = DatumGetInt64(harbor_stock_result(i, 3, &isnull));
		}
		CommandCounterIncrement();
		for (uint64 i = 0; i < n; i++)
		{
			SweepItem  *it = find_item(items, nitems, id_of[i]);

			CHECK_FOR_INTERRUPTS();
			if (it == NULL)
				continue;
			it->found = true;
			if (!it->locked && harbor_lock_row(&locker, rel_of[i], &tid_of[i], LockTupleNoKeyExclusive))
			{
				it->locked = true;
				locked_ids[nlocked++] = it->id;
			}
		}
		harbor_locker_close(&locker);

		/* what the locked rows hold now; nobody else can change it */
		if (nlocked > 0)
		{
			values[0] = int8_array(locked_ids, nlocked);
			n = harbor_stock_run(harbor_stock_model_plan(t, MP_SWEEP_STOCK), values, NULL, false);
			for (uint64 i = 0; i < n; i++)
			{
				bool		isnull;
				SweepItem  *it = find_item(items, nitems,
										   DatumGetInt64(harbor_stock_result(i, 1, &isnull)));
				Datum		stock = harbor_stock_result(i, 2, &isnull);

				if (it != NULL && it->locked && !isnull)
				{
					it->have_stock = true;
					it->stock = DatumGetInt64(stock);
				}
			}
		}
	}
	end_owner(&owner);

	/*
	 * Which holds to close: those on items this batch holds, unless their
	 * stock would not fit the column (they stay active, and say so), and
	 * those on items that no longer exist, with nothing to give back.
	 */
	for (int i = 0; i < nholds; i++)
	{
		SweepItem  *it = find_item(items, nitems, holds[i].item);

		it->sum += holds[i].qty;
		it->nholds++;
	}
	for (int i = 0; i < nitems; i++)
	{
		SweepItem  *it = &items[i];

		if (!it->found)
			it->release = true;
		else if (it->locked && it->have_stock && stock_fits(t->stock_type, it->stock, it->sum))
			it->release = it->restore = true;
		else if (it->locked)
			ereport(WARNING,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("cannot give %lld units back to item %lld of model \"%s\"",
							(long long) it->sum, (long long) it->id, m->name),
					 it->have_stock ?
					 errdetail("Its stock %lld plus %lld is out of range for type %s; its %d expired holds stay active.",
							   (long long) it->stock, (long long) it->sum,
							   format_type_be(t->stock_type), it->nholds) :
					 errdetail("Its stock is null; its %d expired holds stay active.", it->nholds),
					 errhint("Correct the stock of the item; the next sweep releases the holds.")));
	}
	close_tids = palloc(sizeof(ItemPointerData) * nholds);
	for (int i = 0; i < nholds; i++)
		if (find_item(items, nitems, holds[i].item)->release)
			close_tids[nclose++] = holds[i].tid;
	if (nclose == 0)
		return 0;

	/* 3. Close the holds, as the caller. */
	values[0] = tid_array(close_tids, nclose);
	closed = (int64) harbor_stock_run(harbor_stock_global_plan(c, GP_SWEEP_CLOSE), values, NULL, false);
	for (int i = 0; i < nitems; i++)
		items[i].sum = 0;
	{
		/* read them all first: giving back to a bucket runs statements */
		int64	   *c_item = palloc(sizeof(int64) * Max(closed, 1));
		int32	   *c_qty = palloc(sizeof(int32) * Max(closed, 1));
		int32	   *c_bucket = palloc(sizeof(int32) * Max(closed, 1));

		for (uint64 i = 0; i < (uint64) closed; i++)
		{
			bool		isnull;

			c_item[i] = harbor_stock_result_int64(i, 1);
			c_qty[i] = DatumGetInt32(harbor_stock_result(i, 2, &isnull));
			c_bucket[i] = DatumGetInt32(harbor_stock_result(i, 3, &isnull));
			if (isnull)
				c_bucket[i] = HARBOR_NO_BUCKET;
		}
		for (uint64 i = 0; i < (uint64) closed; i++)
		{
			SweepItem  *it = find_item(items, nitems, c_item[i]);

			if (it == NULL || !it->restore)
				continue;
			/* a split item's hold goes back to its bucket if that is free */
			if (c_bucket[i] != HARBOR_NO_BUCKET &&
				harbor_bucket_give_nowait(c, m, it->id, c_bucket[i], c_qty[i]))
				continue;
			it->sum += c_qty[i];
		}
	}

	/* 4. Give their stock back, as the owner. */
	restore_ids = palloc(sizeof(int64) * nitems);
	restore_qty = palloc(sizeof(int64) * nitems);
	for (int i = 0; i < nitems; i++)
		if (items[i].restore && items[i].sum > 0)
		{
			restore_ids[nrestore] = items[i].id;
			restore_qty[nrestore++] = items[i].sum;
		}
	if (nrestore > 0)
	{
		become_owner(m->relid, &owner);
		values[0] = int8_array(restore_ids, nrestore);
		values[1] = int8_array(restore_qty, nrestore);
		harbor_stock_run(harbor_stock_model_plan(t, MP_SWEEP_RESTORE), values, NULL, false);
		end_owner(&owner);
	}
	return closed;
}

/*
 * One sweep batch over every stock model, at most batch_size holds.  With
 * keys (one per model, from new_keys()), each model goes on after the last
 * hold the previous batch looked at: within the one transaction of
 * sweep_expired() the index entries of the holds earlier batches closed
 * cannot be marked dead before it ends, and rereading them made every
 * batch slower than the last.  Without keys every batch starts from the
 * oldest hold.  *seen counts the holds looked at.
 */
static int64
sweep_batch(StockCache *c, int batch_size, SweepKey *keys, int64 *seen)
{
	volatile int64 released = 0;
	ErrorData  *volatile failed = NULL;
	char	   *volatile failed_model = NULL;

	*seen = 0;

	/*
	 * The one lock a batch may wait for, bounded by the caller's
	 * lock_timeout: it comes first, before the batch holds any row.  In
	 * sweep_expired() the later batches hold it already.
	 */
	LockRelationOid(c->holds_relid, RowExclusiveLock);

	/*
	 * Each model in a subtransaction: an error raised by one table (its
	 * owner's trigger or constraint) holds up that table only.  Such an
	 * error is raised again if the batch released nothing else, and
	 * otherwise reported as a warning.  Cancels, timeouts and
	 * resource errors end the batch at once.
	 */
	for (int i = 0; i < c->nmodels && released < batch_size; i++)
	{
		SweepKey	start = {DT_NOBEGIN, 0};
		MemoryContext oldcxt = CurrentMemoryContext;
		ResourceOwner oldowner = CurrentResourceOwner;

		CHECK_FOR_INTERRUPTS();
		BeginInternalSubTransaction(NULL);
		MemoryContextSwitchTo(oldcxt);
		PG_TRY();
		{
			released += sweep_model(c, &c->models[i], (int) (batch_size - released),
									keys != NULL ? &keys[i] : &start, seen);
			ReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(oldcxt);
			CurrentResourceOwner = oldowner;
		}
		PG_CATCH();
		{
			ErrorData  *edata;
			int			class;

			MemoryContextSwitchTo(oldcxt);
			edata = CopyErrorData();
			FlushErrorState();
			credit_cache_end();
			RollbackAndReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(oldcxt);
			CurrentResourceOwner = oldowner;

			class = ERRCODE_TO_CATEGORY(edata->sqlerrcode);
			if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED ||
				edata->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE ||
				class == ERRCODE_TRANSACTION_ROLLBACK ||
				class == ERRCODE_INSUFFICIENT_RESOURCES ||
				class == ERRCODE_OPERATOR_INTERVENTION ||
				class == ERRCODE_SYSTEM_ERROR ||
				class == ERRCODE_INTERNAL_ERROR)
				ReThrowError(edata);
			if (failed == NULL)
			{
				failed = edata;
				failed_model = c->models[i].name;
			}
			else
				FreeErrorData(edata);
		}
		PG_END_TRY();
	}
	if (failed != NULL)
	{
		if (released == 0)
			ReThrowError(failed);
		ereport(WARNING,
				(errcode(failed->sqlerrcode),
				 errmsg("could not release the expired holds of model \"%s\": %s",
						failed_model, failed->message),
				 failed->detail ? errdetail_internal("%s", failed->detail) : 0,
				 errhint("The holds of the other models were released.")));
	}
	return released;
}

static SweepKey *
new_keys(StockCache *c)
{
	SweepKey   *keys = palloc(sizeof(SweepKey) * Max(c->nmodels, 1));

	for (int i = 0; i < c->nmodels; i++)
	{
		keys[i].expires = DT_NOBEGIN;
		keys[i].id = 0;
	}
	return keys;
}

int64
harbor_reclaim_expired(StockCache *c, StockModel *m, StockTable *t, int64 item,
					   int64 own_id)
{
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	Datum		values[5];
	uint64		n;
	ItemPointerData *tids;
	int			nclose = 0;
	RowLocker	locker = {0};
	HoldColumns hc;
	int64		total = 0;

	if (t->stock_attnum == InvalidAttrNumber)
		return 0;
	values[0] = CStringGetTextDatum(m->name);
	values[1] = Int64GetDatum(item);
	values[2] = Int64GetDatum(own_id);
	values[3] = ObjectIdGetDatum(m->relid);
	values[4] = Int16GetDatum(t->stock_attnum);
	credit_cache_start();
	n = harbor_stock_run(harbor_stock_global_plan(c, GP_RECLAIM_HOLDS), values, NULL, false);
	if (n == 0)
	{
		credit_cache_end();
		return 0;
	}
	tids = result_tids(n, 1);
	hold_columns(c, &hc);	/* the caller inserted into the holds table */

	CommandCounterIncrement();
	for (uint64 i = 0; i < n; i++)
	{
		CHECK_FOR_INTERRUPTS();
		if (!harbor_lock_row(&locker, c->holds_relid, &tids[i], LockTupleExclusive))
			continue;
		if (!locked_hold_sweepable(locker.slot, &hc, m, t, item, now))
			continue;
		tids[nclose++] = locker.slot->tts_tid;
	}
	harbor_locker_close(&locker);
	credit_cache_end();
	if (nclose == 0)
		return 0;
	values[0] = tid_array(tids, nclose);
	n = harbor_stock_run(harbor_stock_global_plan(c, GP_SWEEP_CLOSE), values, NULL, false);
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;

		total += DatumGetInt32(harbor_stock_result(i, 2, &isnull));
	}
	return total;
}

/* Closed holds past the retention, oldest first, skipping busy ones. */
static int64
purge_batch(StockCache *c, int batch_size)
{
	Datum		values[2];
	TimestampTz cutoff;
	uint64		n;
	ItemPointerData *tids;
	int			ndelete = 0;
	RowLocker	locker = {0};
	AttrNumber	a_status;
	Relation	holds_rel;

	/* as in sweep_batch: the one lock a batch may wait for, first */
	LockRelationOid(c->holds_relid, RowExclusiveLock);
	cutoff = GetCurrentTransactionStartTimestamp() -
		(int64) harbor_reservation_retention * USECS_PER_SEC;
	values[0] = Int32GetDatum(batch_size);
	values[1] = TimestampTzGetDatum(cutoff);
	n = harbor_stock_run(harbor_stock_global_plan(c, GP_PURGE_HOLDS), values, NULL, false);
	if (n == 0)
		return 0;
	tids = result_tids(n, 1);
	holds_rel = table_open(c->holds_relid, NoLock);
	a_status = column_of(holds_rel, "status");
	table_close(holds_rel, NoLock);

	CommandCounterIncrement();
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;

		CHECK_FOR_INTERRUPTS();
		if (!harbor_lock_row(&locker, c->holds_relid, &tids[i], LockTupleExclusive))
			continue;
		if (strcmp(TextDatumGetCString(slot_getattr(locker.slot, a_status, &isnull)), "active") == 0)
			continue;
		tids[ndelete++] = locker.slot->tts_tid;
	}
	harbor_locker_close(&locker);
	if (ndelete == 0)
		return 0;
	values[0] = tid_array(tids, ndelete);
	return (int64) harbor_stock_run(harbor_stock_global_plan(c, GP_PURGE_DELETE), values, NULL, false);
}

int64
harbor_sweep_expired_batch(int batch_size)
{
	int64		n;
	int64		seen;

	SPI_connect();
	n = sweep_batch(harbor_stock_cache(), batch_size, NULL, &seen);
	SPI_finish();
	return n;
}

int64
harbor_purge_closed_batch(int batch_size)
{
	int64		n;

	SPI_connect();
	n = purge_batch(harbor_stock_cache(), batch_size);
	SPI_finish();
	return n;
}

/*
 * The sweeps lock rows themselves, which takes a transaction id: each entry
 * point refuses a read-only transaction (a standby's included) with 25006,
 * as a write statement would be refused, before anything is looked at.
 */
Datum
harbor_sweep_batch(PG_FUNCTION_ARGS)
{
	PreventCommandIfReadOnly("harbor._sweep_batch()");
	PG_RETURN_INT64(harbor_sweep_expired_batch(harbor_stock_batch_arg(fcinfo, 0)));
}

Datum
harbor_purge_closed(PG_FUNCTION_ARGS)
{
	PreventCommandIfReadOnly("harbor._purge_closed()");
	PG_RETURN_INT64(harbor_purge_closed_batch(harbor_stock_batch_arg(fcinfo, 0)));
}

Datum
harbor_sweep_expired(PG_FUNCTION_ARGS)
{
	int32		batch_size = harbor_stock_batch_arg(fcinfo, 0);
	StockCache *c;
	int64		total = 0;
	int64		n;
	int64		seen;

	PreventCommandIfReadOnly("harbor.sweep_expired()");
	SPI_connect();
	c = harbor_stock_cache();

	/*
	 * Batches until one finds no hold to look at.  Each model's holds are
	 * taken in (expires_at, id) order, each batch after the last hold the
	 * one before looked at, so this ends: now() is fixed in the
	 * transaction, so only holds that had expired when it began are
	 * candidates.  Holds skipped on the way (their item or the hold was
	 * busy) get one more pass from the start.  The items of earlier
	 * batches stay locked until the caller commits; the later batches
	 * never wait, so that cannot deadlock (see the file header).
	 */
	for (int pass = 0; pass < 2; pass++)
	{
		SweepKey   *keys = new_keys(c);

		do
		{
			CHECK_FOR_INTERRUPTS();
			n = sweep_batch(c, batch_size, keys, &seen);
			total += n;
		} while (seen > 0);
		pfree(keys);
	}
	do
	{
		CHECK_FOR_INTERRUPTS();
		n = purge_batch(c, batch_size);
	} while (n >= batch_size);
	SPI_finish();
	PG_RETURN_INT64(total);
}
