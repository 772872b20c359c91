/*-------------------------------------------------------------------------
 *
 * stock.h
 *	  What reservations.c and sweep.c share and nobody else needs: the kept
 *	  statements of the stock models and their per-backend cache.
 *
 * The cache follows cache.h.  The list of stock models and the statements
 * on the harbor tables hang on the capability-wide entry (relid
 * InvalidOid), which harbor.stock_model and harbor.stock_reservations
 * invalidate.  The statements on one item table hang on that table's
 * entry and are built from its current name, so a RENAME or SET SCHEMA
 * (which invalidates the table's relcache entry) gets them rebuilt.
 *
 * Copyright (c) 2026, harbor_orm developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef HARBOR_STOCK_H
#define HARBOR_STOCK_H

#include "access/attnum.h"
#include "access/tupdesc.h"
#include "datatype/timestamp.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "nodes/lockoptions.h"
#include "storage/itemptr.h"
#include "utils/relcache.h"
#include "fmgr.h"

#include "cache.h"

/*
 * Per-model statements name the item table {rel}, its primary key {pk}
 * and its stock column {stock}; these are replaced by quoted identifiers.
 */
typedef enum ModelPlan
{
	MP_FAST,					/* insert the hold, then take the stock */
	MP_LOCK,					/* lock an item, read its stock */
	MP_GIVE,					/* add to the stock (a resize may take) */
	MP_SWEEP_ITEMS,				/* sweep: where the items of a batch are */
	MP_SWEEP_STOCK,				/* sweep: the stock of the locked items */
	MP_SWEEP_RESTORE,			/* sweep: give the stock of a batch back */
	MP_STOCK,					/* read an item's stock, no lock */
	MP_BAD_STOCK,				/* check: negative or null stock */
	MP_ORPHANS,					/* check: holds on missing items */
	MP_UNCREDITED,				/* check: expired holds the sweeps leave */
	MP_EXISTS,					/* buckets.c: the item, as the caller sees it */
	MP_EXISTS_RLS,				/* ... under row-level security, as an update would */
	MP_RESIZE,					/* reserve: move the stock, renew the hold */
	MP_NPLANS
} ModelPlan;

typedef enum GlobalPlan
{
	GP_OWN,						/* the order's active hold on an item */
	GP_CONFIRM,
	GP_ORDER_STATE,
	GP_EXTEND,
	GP_ORDER_ITEMS,
	GP_RELEASE,
	GP_RECLAIM_HOLDS,			/* reserve: candidate expired holds of an item */
	GP_SWEEP_HOLDS,				/* sweep: candidate holds of a model */
	GP_SWEEP_CLOSE,				/* sweep: mark the locked holds expired */
	GP_PURGE_HOLDS,				/* purge: candidate closed holds */
	GP_PURGE_DELETE,			/* purge: delete the locked ones */
	GP_HOLDS,
	GP_CHECK_ROWS,
	GP_NPLANS
} GlobalPlan;

/* the statements buckets.c keeps on the capability-wide entry */
#define HARBOR_BUCKET_NPLANS 16

/* A stock model as the model list knows it. */
typedef struct StockModel
{
	char	   *name;
	Oid			relid;
	char	   *stock_column;
	char	   *pk_column;
	bool		has_buckets;	/* some item of it is split (buckets.c) */
} StockModel;

/* The columns of harbor.stock_reservations that reserve returns. */
typedef enum HoldColumn
{
	HOLD_ID,
	HOLD_MODEL,
	HOLD_ITEM,
	HOLD_ORDER,
	HOLD_QTY,
	HOLD_STATUS,
	HOLD_CREATED,
	HOLD_EXPIRES,
	HOLD_CLOSED,
	HOLD_WRITER,				/* created_by: absent before 0.2.0 */
	HOLD_BUCKET,				/* bucket: absent before 0.2.0 */
	HOLD_NCOLUMNS
} HoldColumn;

/* What one hold got from its statement (reservations.c, buckets.c). */
typedef struct ReservedHold
{
	int64		id;
	TimestampTz created;
	TimestampTz expires;
	int32		bucket;			/* HARBOR_NO_BUCKET (-1): the stock column */
} ReservedHold;

/* Capability-wide: the stock models and the statements on harbor tables. */
typedef struct StockCache
{
	HarborCacheEntry *entry;
	Oid			holds_relid;	/* harbor.stock_reservations */
	Oid			holds_type;		/* ... and its row type */
	int			nmodels;
	StockModel *models;			/* sorted by name */
	SPIPlanPtr	plans[GP_NPLANS];
	/* stock buckets (buckets.c): harbor.stock_bucket, its owner, statements */
	Oid			bucket_relid;	/* InvalidOid before ALTER EXTENSION UPDATE */
	Oid			bucket_owner;
	SPIPlanPtr	bucket_plans[HARBOR_BUCKET_NPLANS];

	/*
	 * The row type of the holds as reserve builds its result rows, set up
	 * on first use; hold_desc_id is the type cache's identifier of the
	 * descriptor it was copied from, compared on every use.
	 */
	TupleDesc	hold_desc;
	uint64		hold_desc_id;
	AttrNumber	hold_attnum[HOLD_NCOLUMNS];	/* InvalidAttrNumber: absent */
} StockCache;

/* One item table: its names as they are now, and its statements. */
typedef struct StockTable
{
	HarborCacheEntry *entry;
	Oid			relid;
	char	   *qrel;			/* quoted, schema-qualified */
	char	   *qpk;
	char	   *qstock;
	AttrNumber	pk_attnum;
	Oid			pk_type;
	AttrNumber	stock_attnum;	/* InvalidAttrNumber if the column is gone */
	Oid			stock_type;
	SPIPlanPtr	plans[MP_NPLANS];
} StockTable;

/* All of these need SPI connected. */
extern StockCache *harbor_stock_cache(void);
extern StockTable *harbor_stock_table(StockModel *m);
extern SPIPlanPtr harbor_stock_model_plan(StockTable *t, ModelPlan which);
extern SPIPlanPtr harbor_stock_global_plan(StockCache *c, GlobalPlan which);
extern uint64 harbor_stock_run(SPIPlanPtr plan, Datum *values, const char *nulls,
							   bool read_only);
extern Datum harbor_stock_result(int row, int col, bool *isnull);
extern int64 harbor_stock_result_int64(int row, int col);
extern int32 harbor_stock_batch_arg(FunctionCallInfo fcinfo, int argno);

/*
 * Whether the stock of a hold that role created (InvalidOid: a hold made
 * before holds recorded their creator) may be given back to relid's stock
 * column by the sweeps: the role can update that column and row-level
 * security does not restrict it there.  See docs/reservations.md.
 */
extern bool harbor_hold_creditable(Oid role, Oid relid, AttrNumber stock_attnum);

/*
 * reserve's reclaim (sweep.c): with the item locked by the caller, close
 * its expired active holds other than own_id that may be credited and
 * that nobody else holds, never waiting.  Returns their total qty, which
 * the caller gives back to the item.
 */
extern int64 harbor_reclaim_expired(StockCache *c, StockModel *m, StockTable *t,
									int64 item, int64 own_id);

/*
 * Locking a row without ever waiting (sweep.c; see its header for why SQL's
 * SKIP LOCKED is not enough).  harbor_lock_row locks the newest version of
 * the row at tid: false when another transaction holds or waits for it,
 * when it is gone, when its table is locked against us, or, under a
 * transaction snapshot, when it changed since.  On success the locked
 * version is in l->slot.  harbor_locker_close closes what it opened.
 */
typedef struct RowLocker
{
	Oid			relid;
	Relation	rel;
	TupleTableSlot *slot;
} RowLocker;

extern bool harbor_lock_row(RowLocker *l, Oid relid, ItemPointer tid, LockTupleMode mode);
extern void harbor_locker_close(RowLocker *l);

/* UPDATE on relid or on its stock column (sweep.c) */
extern bool harbor_may_update_stock(Oid relid, AttrNumber stock_attnum, Oid role, bool *missing);

#endif							/* HARBOR_STOCK_H */
