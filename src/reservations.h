/*-------------------------------------------------------------------------
 *
 * reservations.h
 *	  Stock reservations as other modules see them: the error codes and
 *	  the sweep entry points the background sweeper calls.
 *
 * Copyright (c) 2026, harbor_orm developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef HARBOR_RESERVATIONS_H
#define HARBOR_RESERVATIONS_H

/* insufficient stock; the detail names item, requested and available */
#define ERRCODE_HARBOR_INSUFFICIENT_STOCK	MAKE_SQLSTATE('H','B','0','0','1')
/* the item does not exist (or row-level security hides it) */
#define ERRCODE_HARBOR_UNKNOWN_ITEM			MAKE_SQLSTATE('H','B','0','0','2')
/* confirming stock the order no longer holds */
#define ERRCODE_HARBOR_NOT_HELD				MAKE_SQLSTATE('H','B','0','0','3')

extern void harbor_reservations_init(void);

/*
 * One transaction's worth of sweeping (sweep.c).  Both connect to SPI
 * themselves and read and write the holds as the current user, who must
 * be allowed to update the stock columns; each stock table is touched as
 * its owner, under SECURITY_RESTRICTED_OPERATION.  They never wait for a
 * lock: busy holds, items and tables are left to the next batch.  Call
 * them inside a transaction with an active snapshot.
 *
 * harbor_sweep_expired_batch releases at most batch_size expired active
 * holds (status 'expired', stock restored), skipping holds and items that
 * others have locked; harbor_purge_closed_batch deletes at most batch_size
 * holds closed longer ago than harbor_orm.reservation_retention.  Both
 * return how many rows they handled.
 */
extern int64 harbor_sweep_expired_batch(int batch_size);
extern int64 harbor_purge_closed_batch(int batch_size);

#endif							/* HARBOR_RESERVATIONS_H */
