/*-------------------------------------------------------------------------
 *
 * buckets.h
 *	  Stock buckets: one hot item's available stock spread over several rows
 *	  of harbor.stock_bucket, so that concurrent checkouts of that item do
 *	  not all queue on one row lock.  The hooks reservations.c and sweep.c
 *	  call; the SQL functions are in buckets.c.
 *
 * Copyright (c) 2026, harbor_orm developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef HARBOR_BUCKETS_H
#define HARBOR_BUCKETS_H

#include "funcapi.h"

#include "stock.h"

/* a hold that took from the item's stock column, not from a bucket */
#define HARBOR_NO_BUCKET	(-1)

typedef enum BucketReserve
{
	BUCKET_NOT_SPLIT,			/* the item has no buckets: the caller goes on */
	BUCKET_RESERVED,			/* *hold is the hold */
	BUCKET_SHORT				/* the whole item is short; *available says how much */
} BucketReserve;

/*
 * sql with {bucket} replaced by r.bucket, or by a null integer while
 * harbor.stock_reservations has no bucket column (the 0.1.0 schema, between
 * installing this library and ALTER EXTENSION UPDATE).
 */
extern char *harbor_bucket_sql(const char *sql);

/* Shared memory for the path counters; only while preloading. */
extern void harbor_buckets_init(void);

/* Building the stock cache: which models have split items (SPI connected). */
extern void harbor_buckets_cache_build(StockCache *c);

/*
 * reserve_stock and reserve_many on a model with split items: reserve qty of
 * item for order from its buckets.  BUCKET_NOT_SPLIT when the item is not
 * split (nothing was done).  On BUCKET_SHORT the caller raises HB001.
 */
extern BucketReserve harbor_bucket_reserve(StockCache *c, StockModel *m, StockTable *t,
										   int64 item, int32 qty, Datum order, Datum ttl,
										   ReservedHold *hold, int64 *available);

/*
 * Whether the item is split now (an uncached look): reserve's slow path
 * asks before refusing an item whose stock column is short.
 */
extern bool harbor_bucket_is_split(StockCache *c, StockModel *m, int64 item);

/*
 * Give qty back to bucket of item (waiting for its lock).  False when that
 * bucket does not exist (the item was merged or rebalanced): the caller
 * gives the stock to the item's stock column instead.  Checks that the
 * caller may update the stock column.
 */
extern bool harbor_bucket_give(StockCache *c, StockModel *m, StockTable *t,
							   int64 item, int32 bucket, int64 qty);

/*
 * The sweeps: the same without ever waiting; false when the bucket is
 * missing or busy (the caller gives the stock to the locked item row).
 */
extern bool harbor_bucket_give_nowait(StockCache *c, StockModel *m, int64 item,
									  int32 bucket, int64 qty);

/* stock_status: the stock in the item's buckets. */
extern int64 harbor_bucket_sum(StockCache *c, StockModel *m, int64 item);

/* check_stock: what is wrong with the buckets. */
typedef void (*BucketProblemFn) (ReturnSetInfo *rsinfo, const char *model,
								 bool item_null, int64 item, const char *problem);
extern void harbor_bucket_check(StockCache *c, ReturnSetInfo *rsinfo, BucketProblemFn put);

#endif							/* HARBOR_BUCKETS_H */
