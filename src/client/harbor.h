/*-------------------------------------------------------------------------
 *
 * harbor.h
 *	  libharbor: a small C11 client for the harbor_orm extension, on libpq.
 *
 * One harbor_conn wraps one libpq connection.  The library keeps no global
 * state: separate connections may be used from separate threads at the
 * same time; one connection must not be shared by threads without a lock.
 * Every value travels as a bound parameter; no call leaves session state
 * on the server, and server-side prepared statements are used only when
 * the caller opts in, so connections through a transaction-pooling
 * PgBouncer work.
 *
 * Every call returns a harbor_status.  On anything but HARBOR_OK the
 * connection holds the SQLSTATE, message, detail and hint of the failure
 * until the next call (harbor_sqlstate() and friends).
 *
 * Copyright (c) 2026, harbor_orm developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef HARBOR_H
#define HARBOR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HARBOR_VERSION "0.1.0"

typedef enum harbor_status
{
	HARBOR_OK = 0,
	HARBOR_INSUFFICIENT_STOCK,	/* SQLSTATE HB001 */
	HARBOR_UNKNOWN_ITEM,		/* HB002 */
	HARBOR_NOT_HELD,			/* HB003: the order no longer holds it */
	HARBOR_INVALID_ARGUMENT,	/* class 22, unknown model/column (42704,
								 * 42703), wrong id type (42804), or
								 * rejected by the library itself */
	HARBOR_RETRYABLE,			/* 40001/40P01 left after the retries, or
								 * inside the caller's own transaction */
	HARBOR_CONNECTION_LOST,		/* cannot connect, or the connection broke */
	HARBOR_ERROR				/* anything else */
} harbor_status;

typedef struct harbor_conn harbor_conn;

/* Retry and statement settings; harbor_options_init() fills the defaults. */
typedef struct harbor_options
{
	int			max_retries;	/* retries of 40001/40P01; default 5, 0 = none */
	int			retry_base_ms;	/* first backoff; default 10 */
	int			retry_max_ms;	/* backoff ceiling; default 1000 */
	int			use_prepared;	/* 1: named prepared statements (not through
								 * a transaction-pooling PgBouncer); default 0 */
} harbor_options;

void		harbor_options_init(harbor_options *opts);

/*
 * Connect with a libpq connection string or URI (NULL or "" uses the PG*
 * environment variables).  *connp is set in every case except out of
 * memory; on failure it holds the error and must still be closed.
 */
harbor_status harbor_connect(harbor_conn **connp, const char *conninfo,
							 const harbor_options *opts);
void		harbor_close(harbor_conn *conn);

/* The last failure on this connection. */
harbor_status harbor_last_status(const harbor_conn *conn);
const char *harbor_sqlstate(const harbor_conn *conn);	/* "" if none */
const char *harbor_errmsg(const harbor_conn *conn);	/* one line */
const char *harbor_errdetail(const harbor_conn *conn);	/* "" if none */
const char *harbor_errhint(const harbor_conn *conn);	/* "" if none */
/* Retries the last call needed (0 when it succeeded at once). */
int			harbor_last_retries(const harbor_conn *conn);
const char *harbor_status_name(harbor_status status);

/* The server process serving the connection now (for diagnostics). */
int			harbor_backend_pid(const harbor_conn *conn);

/*
 * The caller's own transaction.  Calls made between begin and
 * commit/rollback are never retried (a retry would replay only part of
 * the transaction): a conflict comes back as HARBOR_RETRYABLE and the
 * caller rolls back and starts again.  isolation is NULL (the server's
 * default), "read committed", "repeatable read" or "serializable".
 */
harbor_status harbor_begin(harbor_conn *conn, const char *isolation);
harbor_status harbor_commit(harbor_conn *conn);
harbor_status harbor_rollback(harbor_conn *conn);

/* A row of harbor.stock_reservations.  Strings are owned by the struct. */
typedef struct harbor_reservation
{
	int64_t		id;
	int64_t		item_id;
	int32_t		qty;
	char	   *model;
	char	   *order_id;
	char	   *status;			/* active, confirmed, released, expired */
	char	   *expires_at;		/* timestamptz as text */
} harbor_reservation;

typedef struct harbor_item
{
	int64_t		item_id;
	int32_t		qty;
} harbor_item;

/*
 * ttl is an interval in PostgreSQL syntax ("15 minutes", "90 s"); NULL
 * means the server default.  model is NULL when exactly one stock model
 * exists.  out may be NULL; otherwise release it with
 * harbor_reservation_clear().
 */
harbor_status harbor_reserve_stock(harbor_conn *conn, int64_t item_id, int32_t qty,
								   const char *order_id, const char *ttl,
								   const char *model, harbor_reservation *out);
/* All lines or none; *out (array of *nout) is freed with harbor_reservations_free(). */
harbor_status harbor_reserve_many(harbor_conn *conn, const char *order_id,
								  const harbor_item *items, size_t nitems,
								  const char *ttl, const char *model,
								  harbor_reservation **out, size_t *nout);
void		harbor_reservation_clear(harbor_reservation *r);
void		harbor_reservations_free(harbor_reservation *r, size_t n);

/* count may be NULL. */
harbor_status harbor_confirm(harbor_conn *conn, const char *order_id, int *count);
/* item_id NULL releases every item of the order. */
harbor_status harbor_release(harbor_conn *conn, const char *order_id,
							 const int64_t *item_id, int *count);
harbor_status harbor_extend(harbor_conn *conn, const char *order_id,
							const char *ttl, int *count);
/* batch_size <= 0 uses the server default. */
harbor_status harbor_sweep(harbor_conn *conn, int batch_size, int64_t *released);

/*
 * Object graphs as JSON text (harbor.load/get/find).  ids are the primary
 * keys as text, converted on the server to the key's type; include holds
 * relationship paths ("variants", "variants.product").  *json is
 * malloc'd: free it with harbor_free().  get gives "null" when not found.
 */
harbor_status harbor_load(harbor_conn *conn, const char *model,
						  const char *const *ids, size_t nids,
						  const char *const *include, size_t ninclude,
						  char **json);
harbor_status harbor_get(harbor_conn *conn, const char *model, const char *id,
						 const char *const *include, size_t ninclude,
						 char **json);
/*
 * filter is a JSON object ({"size": "L", "stock_qty": {"gt": 0}}) or
 * NULL; order_by items are column names with an optional " desc";
 * limit < 0 means no limit.
 */
harbor_status harbor_find(harbor_conn *conn, const char *model, const char *filter,
						  const char *const *include, size_t ninclude,
						  const char *const *order_by, size_t norder_by,
						  int limit, int offset, char **json);

/* The registry and the reservation/sweeper state, as JSON text. */
harbor_status harbor_models(harbor_conn *conn, char **json);
harbor_status harbor_stock_status(harbor_conn *conn, int64_t item_id,
								  const char *model, char **json);
harbor_status harbor_overview(harbor_conn *conn, char **json);

void		harbor_free(void *p);

/*
 * Change notifications (harbor.enable_change_notify).  The payload is
 * {"model": ..., "op": "insert"|"update"|"delete"|"truncate"} followed, as
 * the one who enabled them chose, by nothing ("none"), "count": N
 * ("count", the default) or "ids": [...] ("keys").  ids is "null" when the
 * payload has no ids or the ids are unknown (truncate, oversized keys):
 * treat the whole model as changed.
 */
typedef struct harbor_change
{
	const char *model;			/* decoded model name */
	const char *op;
	const char *ids;			/* the JSON text of "ids", or "null" */
	const char *payload;		/* the whole JSON payload */
	int			sender_pid;
	const char *channel;		/* the channel it came on */
	long long	count;			/* "count", or -1 when absent or null */
} harbor_change;

/* Return non-zero to stop harbor_listen. */
typedef int (*harbor_change_cb) (const harbor_change *change, void *arg);

/* The channel enable_change_notify uses unless told otherwise. */
#define HARBOR_DEFAULT_CHANNEL "harbor_changes"

/*
 * LISTEN on channel (NULL: HARBOR_DEFAULT_CHANNEL; once per connection, and
 * one channel per connection: naming another leaves the previous one) and
 * deliver notifications to cb until it returns non-zero or timeout_ms
 * passes (-1: no timeout, 0: only what has already arrived).  LISTEN is
 * session state: use a direct connection, not a transaction-pooling
 * PgBouncer.  *delivered (may be NULL) counts the notifications passed to
 * cb.  PostgreSQL has no privilege on LISTEN: any role that can connect
 * receives what is sent on a channel it names.
 */
harbor_status harbor_listen_channel(harbor_conn *conn, const char *channel,
									harbor_change_cb cb, void *arg,
									int timeout_ms, int *delivered);
/* harbor_listen_channel on HARBOR_DEFAULT_CHANNEL */
harbor_status harbor_listen(harbor_conn *conn, harbor_change_cb cb, void *arg,
							int timeout_ms, int *delivered);
harbor_status harbor_unlisten(harbor_conn *conn);

#ifdef __cplusplus
}
#endif

#endif							/* HARBOR_H */
