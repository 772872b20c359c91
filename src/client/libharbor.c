/*-------------------------------------------------------------------------
 *
 * libharbor.c
 *	  The harbor_orm client library: typed calls over libpq, SQLSTATEs
 *	  mapped to result codes, bounded retries of serialization failures
 *	  and deadlocks, change notifications delivered to a callback.
 *
 * Every statement is sent with PQexecParams (or, when the caller opts in,
 * PQprepare/PQexecPrepared) so that no value is ever spliced into SQL
 * text.  Nothing is SET on the session, so a transaction-pooling
 * PgBouncer may hand each call to a different server connection.
 *
 * Copyright (c) 2026, harbor_orm developers
 *
 *-------------------------------------------------------------------------
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "harbor.h"
#include "json_text.h"

#define ERRBUF 1024

/* Statements the library sends; the index names the prepared statement. */
enum
{
	ST_RESERVE,
	ST_RESERVE_TTL,
	ST_RESERVE_MANY,
	ST_RESERVE_MANY_TTL,
	ST_CONFIRM,
	ST_RELEASE,
	ST_EXTEND,
	ST_SWEEP,
	ST_SWEEP_DEFAULT,
	ST_PK_TYPE,
	ST_FIND,
	ST_MODELS,
	ST_STOCK_STATUS,
	ST_RES_SUMMARY,
	ST_SWEEPER,
	N_STATEMENTS
};

#define RESERVATION_COLS \
	"r.id, r.item_id, r.qty, r.model, r.order_id, r.status, r.expires_at"

static const char *const statement_sql[N_STATEMENTS] = {
	[ST_RESERVE] =
	"SELECT " RESERVATION_COLS " FROM harbor.reserve_stock($1::bigint, $2::integer, $3::text,"
	" model => $4::text) r",
	[ST_RESERVE_TTL] =
	"SELECT " RESERVATION_COLS " FROM harbor.reserve_stock($1::bigint, $2::integer, $3::text,"
	" $5::interval, $4::text) r",
	[ST_RESERVE_MANY] =
	"SELECT " RESERVATION_COLS " FROM harbor.reserve_many($1::text, $2::jsonb, model => $3::text) r",
	[ST_RESERVE_MANY_TTL] =
	"SELECT " RESERVATION_COLS " FROM harbor.reserve_many($1::text, $2::jsonb, $4::interval, $3::text) r",
	[ST_CONFIRM] = "SELECT harbor.confirm_reservation($1::text)",
	[ST_RELEASE] = "SELECT harbor.release_reservation($1::text, $2::bigint)",
	[ST_EXTEND] = "SELECT harbor.extend_reservation($1::text, $2::interval)",
	[ST_SWEEP] = "SELECT harbor.sweep_expired($1::integer)",
	[ST_SWEEP_DEFAULT] = "SELECT harbor.sweep_expired()",
	[ST_PK_TYPE] =
	"SELECT cardinality(m.primary_key),"
	"       m.column_types[array_position(m.columns, m.primary_key[1])]::text"
	"  FROM harbor.models m WHERE m.name = $1::text",
	[ST_FIND] =
	"SELECT harbor.find($1::text, coalesce($2::jsonb, '{}'), coalesce($3::text[], '{}'),"
	" $4::text[], $5::integer, coalesce($6::integer, 0))::text",
	[ST_MODELS] =
	"SELECT coalesce(json_agg(json_build_object("
	"  'name', m.name, 'relation', m.relation::text, 'primary_key', m.primary_key,"
	"  'columns', m.columns,"
	"  'relationships', (SELECT coalesce(json_agg(json_build_object("
	"        'name', r.name, 'kind', r.kind, 'target', r.target) ORDER BY r.name), '[]')"
	"      FROM harbor.relationships r WHERE r.model = m.name AND NOT r.ambiguous),"
	"  'notify', EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t"
	"      WHERE t.tgrelid = m.relation AND t.tgname = 'harbor_notify_insert'))"
	"  ORDER BY m.name), '[]')::text FROM harbor.models m",
	[ST_STOCK_STATUS] =
	"SELECT coalesce(json_agg(to_jsonb(s)), '[]')::text"
	"  FROM harbor.stock_status($1::bigint, $2::text) s",
	[ST_RES_SUMMARY] =
	"SELECT coalesce(json_agg(json_build_object('model', model, 'status', status,"
	"  'reservations', n, 'qty', q) ORDER BY model, status), '[]')::text"
	"  FROM (SELECT model, status, count(*) AS n, sum(qty) AS q"
	"          FROM harbor.stock_reservations GROUP BY model, status) s",
	[ST_SWEEPER] =
	"SELECT coalesce(json_agg(to_jsonb(s)), '[]')::text FROM harbor.sweeper_status() s",
};

typedef struct pk_type_entry
{
	char	   *model;
	char	   *type;
	struct pk_type_entry *next;
} pk_type_entry;

struct harbor_conn
{
	PGconn	   *pg;
	harbor_options opts;
	harbor_status status;
	char		sqlstate[6];
	char		message[ERRBUF];
	char		detail[ERRBUF];
	char		hint[ERRBUF];
	int			retries;
	bool		listening;
	char		channel[64];	/* what LISTEN named, when listening */
	bool		prepared[N_STATEMENTS];
	uint64_t	rng;			/* xorshift state for the backoff jitter */
	pk_type_entry *pk_types;	/* model -> key type, for load/get */
};

/* ---------------------------------------------------------------------
 * Errors
 * ---------------------------------------------------------------------
 */

static void
copy_line(char *dst, const char *src, bool first_line_only)
{
	size_t		n = 0;

	if (src == NULL)
		src = "";
	while (src[n] != '\0' && n < ERRBUF - 1 && !(first_line_only && src[n] == '\n'))
		n++;
	memcpy(dst, src, n);
	/* libpq messages end in a newline; one clean line is what callers print */
	while (n > 0 && (dst[n - 1] == '\n' || dst[n - 1] == ' ' || dst[n - 1] == '\t'))
		n--;
	dst[n] = '\0';
}

static harbor_status
set_error(harbor_conn *conn, harbor_status st, const char *sqlstate,
		  const char *message, const char *detail, const char *hint)
{
	conn->status = st;
	snprintf(conn->sqlstate, sizeof(conn->sqlstate), "%s", sqlstate ? sqlstate : "");
	copy_line(conn->message, message, true);
	copy_line(conn->detail, detail, false);
	copy_line(conn->hint, hint, false);
	return st;
}

static harbor_status
invalid_argument(harbor_conn *conn, const char *message)
{
	return set_error(conn, HARBOR_INVALID_ARGUMENT, "22023", message, NULL, NULL);
}

static harbor_status
clear_error(harbor_conn *conn)
{
	conn->status = HARBOR_OK;
	conn->sqlstate[0] = conn->message[0] = conn->detail[0] = conn->hint[0] = '\0';
	return HARBOR_OK;
}

static harbor_status
status_for_sqlstate(const char *s)
{
	if (s == NULL || s[0] == '\0')
		return HARBOR_ERROR;
	if (strcmp(s, "HB001") == 0)
		return HARBOR_INSUFFICIENT_STOCK;
	if (strcmp(s, "HB002") == 0)
		return HARBOR_UNKNOWN_ITEM;
	if (strcmp(s, "HB003") == 0)
		return HARBOR_NOT_HELD;
	if (strcmp(s, "40001") == 0 || strcmp(s, "40P01") == 0)
		return HARBOR_RETRYABLE;
	if (strncmp(s, "08", 2) == 0 || strcmp(s, "57P01") == 0 ||
		strcmp(s, "57P02") == 0 || strcmp(s, "57P03") == 0)
		return HARBOR_CONNECTION_LOST;
	if (strncmp(s, "22", 2) == 0 || strcmp(s, "42704") == 0 ||
		strcmp(s, "42703") == 0 || strcmp(s, "42804") == 0 ||
		strcmp(s, "42P09") == 0)
		return HARBOR_INVALID_ARGUMENT;
	return HARBOR_ERROR;
}

/* Record the failure a result (or its absence) stands for. */
static harbor_status
error_from_result(harbor_conn *conn, const PGresult *res)
{
	const char *sqlstate = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	harbor_status st = status_for_sqlstate(sqlstate);

	if (PQstatus(conn->pg) == CONNECTION_BAD)
		st = HARBOR_CONNECTION_LOST;
	if (res != NULL && PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) != NULL)
		return set_error(conn, st, sqlstate,
						 PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY),
						 PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL),
						 PQresultErrorField(res, PG_DIAG_MESSAGE_HINT));
	return set_error(conn, st, sqlstate,
					 PQerrorMessage(conn->pg)[0] ? PQerrorMessage(conn->pg)
					 : "server closed the connection unexpectedly",
					 NULL, NULL);
}

const char *
harbor_status_name(harbor_status st)
{
	switch (st)
	{
		case HARBOR_OK:
			return "ok";
		case HARBOR_INSUFFICIENT_STOCK:
			return "insufficient_stock";
		case HARBOR_UNKNOWN_ITEM:
			return "unknown_item";
		case HARBOR_NOT_HELD:
			return "not_held";
		case HARBOR_INVALID_ARGUMENT:
			return "invalid_argument";
		case HARBOR_RETRYABLE:
			return "retryable_conflict";
		case HARBOR_CONNECTION_LOST:
			return "connection_lost";
		case HARBOR_ERROR:
			return "error";
	}
	return "error";
}

harbor_status
harbor_last_status(const harbor_conn *conn)
{
	return conn ? conn->status : HARBOR_ERROR;
}

const char *
harbor_sqlstate(const harbor_conn *conn)
{
	return conn ? conn->sqlstate : "";
}

const char *
harbor_errmsg(const harbor_conn *conn)
{
	return conn ? conn->message : "out of memory";
}

const char *
harbor_errdetail(const harbor_conn *conn)
{
	return conn ? conn->detail : "";
}

const char *
harbor_errhint(const harbor_conn *conn)
{
	return conn ? conn->hint : "";
}

int
harbor_last_retries(const harbor_conn *conn)
{
	return conn ? conn->retries : 0;
}

int
harbor_backend_pid(const harbor_conn *conn)
{
	return conn && conn->pg ? PQbackendPID(conn->pg) : 0;
}

void
harbor_free(void *p)
{
	free(p);
}

/* ---------------------------------------------------------------------
 * Connections
 * ---------------------------------------------------------------------
 */

void
harbor_options_init(harbor_options *opts)
{
	opts->max_retries = 5;
	opts->retry_base_ms = 10;
	opts->retry_max_ms = 1000;
	opts->use_prepared = 0;
}

/* Server NOTICEs are not the caller's business; libpq would print them. */
static void
quiet_notices(void *arg, const char *message)
{
	(void) arg;
	(void) message;
}

harbor_status
harbor_connect(harbor_conn **connp, const char *conninfo, const harbor_options *opts)
{
	harbor_conn *conn = calloc(1, sizeof(harbor_conn));
	struct timespec now;

	*connp = conn;
	if (conn == NULL)
		return HARBOR_ERROR;
	if (opts)
		conn->opts = *opts;
	else
		harbor_options_init(&conn->opts);
	if (conn->opts.max_retries < 0)
		conn->opts.max_retries = 0;
	if (conn->opts.retry_base_ms < 1)
		conn->opts.retry_base_ms = 1;
	if (conn->opts.retry_max_ms < conn->opts.retry_base_ms)
		conn->opts.retry_max_ms = conn->opts.retry_base_ms;
	clock_gettime(CLOCK_REALTIME, &now);
	conn->rng = ((uint64_t) now.tv_nsec << 20) ^ (uint64_t) now.tv_sec ^
		(uint64_t) (uintptr_t) conn;
	if (conn->rng == 0)
		conn->rng = 0x9E3779B97F4A7C15ULL;

	conn->pg = PQconnectdb(conninfo ? conninfo : "");
	if (conn->pg == NULL)
		return set_error(conn, HARBOR_ERROR, "", "out of memory", NULL, NULL);
	if (PQstatus(conn->pg) != CONNECTION_OK)
		return set_error(conn, HARBOR_CONNECTION_LOST, "08001",
						 PQerrorMessage(conn->pg), NULL, NULL);
	PQsetNoticeProcessor(conn->pg, quiet_notices, NULL);
	return clear_error(conn);
}

void
harbor_close(harbor_conn *conn)
{
	pk_type_entry *e;

	if (conn == NULL)
		return;
	if (conn->pg)
		PQfinish(conn->pg);
	e = conn->pk_types;
	while (e)
	{
		pk_type_entry *next = e->next;

		free(e->model);
		free(e->type);
		free(e);
		e = next;
	}
	free(conn);
}

/*
 * A broken connection is re-established before the next call, never in
 * the middle of one: the failed call's outcome is unknown to the caller,
 * who decides whether to repeat it.
 */
static harbor_status
ensure_connected(harbor_conn *conn)
{
	if (PQstatus(conn->pg) == CONNECTION_OK)
		return HARBOR_OK;
	PQreset(conn->pg);
	memset(conn->prepared, 0, sizeof(conn->prepared));
	conn->listening = false;
	if (PQstatus(conn->pg) != CONNECTION_OK)
		return set_error(conn, HARBOR_CONNECTION_LOST, "08001",
						 PQerrorMessage(conn->pg), NULL, NULL);
	return HARBOR_OK;
}

/* ---------------------------------------------------------------------
 * Running statements, with retries
 * ---------------------------------------------------------------------
 */

static bool
in_caller_transaction(harbor_conn *conn)
{
	PGTransactionStatusType ts = PQtransactionStatus(conn->pg);

	return ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR;
}

static void
backoff_sleep(harbor_conn *conn, int attempt)
{
	long		ceiling = conn->opts.retry_base_ms;
	long		ms;
	uint64_t	x;
	struct timespec ts;

	for (int i = 0; i < attempt && ceiling < conn->opts.retry_max_ms; i++)
		ceiling *= 2;
	if (ceiling > conn->opts.retry_max_ms)
		ceiling = conn->opts.retry_max_ms;
	/* xorshift64; "equal jitter": between half the ceiling and all of it */
	x = conn->rng;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	conn->rng = x;
	ms = ceiling / 2 + (long) (x % (uint64_t) (ceiling / 2 + 1));
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static PGresult *
exec_once(harbor_conn *conn, int stmt, int nparams, const char *const *values)
{
	if (conn->opts.use_prepared)
	{
		char		name[32];

		snprintf(name, sizeof(name), "harbor_%d", stmt);
		if (!conn->prepared[stmt])
		{
			PGresult   *res = PQprepare(conn->pg, name, statement_sql[stmt], 0, NULL);

			if (PQresultStatus(res) != PGRES_COMMAND_OK)
				return res;
			PQclear(res);
			conn->prepared[stmt] = true;
		}
		return PQexecPrepared(conn->pg, name, nparams, values, NULL, NULL, 0);
	}
	return PQexecParams(conn->pg, statement_sql[stmt], nparams, NULL, values,
						NULL, NULL, 0);
}

/*
 * Run a statement; on success returns its result (caller clears it),
 * otherwise NULL with the error recorded.  Serialization failures and
 * deadlocks are retried unless the caller has a transaction open.
 */
static PGresult *
run(harbor_conn *conn, int stmt, int nparams, const char *const *values)
{
	bool		own_txn;

	clear_error(conn);
	conn->retries = 0;
	if (conn->pg == NULL)
	{
		set_error(conn, HARBOR_CONNECTION_LOST, "08003", "not connected", NULL, NULL);
		return NULL;
	}
	if (in_caller_transaction(conn))
		own_txn = false;
	else
	{
		if (ensure_connected(conn) != HARBOR_OK)
			return NULL;
		own_txn = true;
	}

	for (int attempt = 0;; attempt++)
	{
		PGresult   *res = exec_once(conn, stmt, nparams, values);
		ExecStatusType rs = PQresultStatus(res);
		harbor_status st;

		if (rs == PGRES_TUPLES_OK || rs == PGRES_COMMAND_OK)
			return res;
		st = error_from_result(conn, res);
		PQclear(res);
		if (st != HARBOR_RETRYABLE || !own_txn || attempt >= conn->opts.max_retries)
			return NULL;
		conn->retries++;
		backoff_sleep(conn, attempt);
		clear_error(conn);
	}
}

/* Run a statement expected to return one row, one column; value copied. */
static harbor_status
run_scalar(harbor_conn *conn, int stmt, int nparams, const char *const *values,
		   char **out)
{
	PGresult   *res = run(conn, stmt, nparams, values);

	*out = NULL;
	if (res == NULL)
		return conn->status;
	if (PQntuples(res) != 1 || PQnfields(res) != 1)
	{
		PQclear(res);
		return set_error(conn, HARBOR_ERROR, "", "unexpected result shape from server",
						 NULL, NULL);
	}
	*out = strdup(PQgetisnull(res, 0, 0) ? "null" : PQgetvalue(res, 0, 0));
	PQclear(res);
	if (*out == NULL)
		return set_error(conn, HARBOR_ERROR, "", "out of memory", NULL, NULL);
	return HARBOR_OK;
}

static harbor_status
run_count(harbor_conn *conn, int stmt, int nparams, const char *const *values,
		  int64_t *count)
{
	char	   *s;
	harbor_status st = run_scalar(conn, stmt, nparams, values, &s);

	if (st != HARBOR_OK)
		return st;
	if (count)
		*count = strcmp(s, "null") == 0 ? 0 : strtoll(s, NULL, 10);
	free(s);
	return HARBOR_OK;
}

/* ---------------------------------------------------------------------
 * Transactions
 * ---------------------------------------------------------------------
 */

static harbor_status
simple_command(harbor_conn *conn, const char *sql)
{
	PGresult   *res;

	clear_error(conn);
	conn->retries = 0;
	if (!in_caller_transaction(conn) && ensure_connected(conn) != HARBOR_OK)
		return conn->status;
	res = PQexecParams(conn->pg, sql, 0, NULL, NULL, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		error_from_result(conn, res);
		PQclear(res);
		return conn->status;
	}
	PQclear(res);
	return HARBOR_OK;
}

harbor_status
harbor_begin(harbor_conn *conn, const char *isolation)
{
	if (isolation == NULL)
		return simple_command(conn, "BEGIN");
	/* a fixed list, never the caller's text, goes into the SQL */
	if (strcmp(isolation, "read committed") == 0)
		return simple_command(conn, "BEGIN ISOLATION LEVEL READ COMMITTED");
	if (strcmp(isolation, "repeatable read") == 0)
		return simple_command(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ");
	if (strcmp(isolation, "serializable") == 0)
		return simple_command(conn, "BEGIN ISOLATION LEVEL SERIALIZABLE");
	clear_error(conn);
	return invalid_argument(conn, "isolation must be \"read committed\", \"repeatable read\" or \"serializable\"");
}

harbor_status
harbor_commit(harbor_conn *conn)
{
	PGresult   *res;

	clear_error(conn);
	conn->retries = 0;
	res = PQexecParams(conn->pg, "COMMIT", 0, NULL, NULL, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		error_from_result(conn, res);
		PQclear(res);
		return conn->status;
	}
	/* COMMIT of a failed transaction succeeds as a command but rolls back */
	if (strcmp(PQcmdStatus(res), "ROLLBACK") == 0)
	{
		PQclear(res);
		return set_error(conn, HARBOR_ERROR, "25P02",
						 "the transaction had failed and was rolled back", NULL, NULL);
	}
	PQclear(res);
	return HARBOR_OK;
}

harbor_status
harbor_rollback(harbor_conn *conn)
{
	return simple_command(conn, "ROLLBACK");
}

/* ---------------------------------------------------------------------
 * Reservations
 * ---------------------------------------------------------------------
 */

static bool
valid_text(const char *s)
{
	return s != NULL;
}

static char *
dup_or_empty(const char *s)
{
	return strdup(s ? s : "");
}

static harbor_status
fill_reservation(harbor_conn *conn, PGresult *res, int row, harbor_reservation *r)
{
	memset(r, 0, sizeof(*r));
	r->id = strtoll(PQgetvalue(res, row, 0), NULL, 10);
	r->item_id = strtoll(PQgetvalue(res, row, 1), NULL, 10);
	r->qty = (int32_t) strtol(PQgetvalue(res, row, 2), NULL, 10);
	r->model = dup_or_empty(PQgetvalue(res, row, 3));
	r->order_id = dup_or_empty(PQgetvalue(res, row, 4));
	r->status = dup_or_empty(PQgetvalue(res, row, 5));
	r->expires_at = dup_or_empty(PQgetvalue(res, row, 6));
	if (!r->model || !r->order_id || !r->status || !r->expires_at)
	{
		harbor_reservation_clear(r);
		return set_error(conn, HARBOR_ERROR, "", "out of memory", NULL, NULL);
	}
	return HARBOR_OK;
}

void
harbor_reservation_clear(harbor_reservation *r)
{
	if (r == NULL)
		return;
	free(r->model);
	free(r->order_id);
	free(r->status);
	free(r->expires_at);
	memset(r, 0, sizeof(*r));
}

void
harbor_reservations_free(harbor_reservation *r, size_t n)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		harbor_reservation_clear(&r[i]);
	free(r);
}

harbor_status
harbor_reserve_stock(harbor_conn *conn, int64_t item_id, int32_t qty,
					 const char *order_id, const char *ttl, const char *model,
					 harbor_reservation *out)
{
	char		item_s[24],
				qty_s[16];
	const char *values[5];
	PGresult   *res;
	harbor_status st;

	if (out)
		memset(out, 0, sizeof(*out));
	if (!valid_text(order_id))
	{
		clear_error(conn);
		return set_error(conn, HARBOR_INVALID_ARGUMENT, "22004", "order_id must not be null",
						 NULL, NULL);
	}
	snprintf(item_s, sizeof(item_s), "%" PRId64, item_id);
	snprintf(qty_s, sizeof(qty_s), "%" PRId32, qty);
	values[0] = item_s;
	values[1] = qty_s;
	values[2] = order_id;
	values[3] = model;
	values[4] = ttl;
	res = run(conn, ttl ? ST_RESERVE_TTL : ST_RESERVE, ttl ? 5 : 4, values);
	if (res == NULL)
		return conn->status;
	if (PQntuples(res) != 1)
	{
		PQclear(res);
		return set_error(conn, HARBOR_ERROR, "", "reserve_stock returned no reservation",
						 NULL, NULL);
	}
	st = out ? fill_reservation(conn, res, 0, out) : HARBOR_OK;
	PQclear(res);
	return st;
}

harbor_status
harbor_reserve_many(harbor_conn *conn, const char *order_id,
					const harbor_item *items, size_t nitems, const char *ttl,
					const char *model, harbor_reservation **out, size_t *nout)
{
	char	   *json;
	size_t		len = 0;
	const char *values[4];
	PGresult   *res;
	harbor_status st = HARBOR_OK;

	if (out)
		*out = NULL;
	if (nout)
		*nout = 0;
	clear_error(conn);
	if (!valid_text(order_id))
		return set_error(conn, HARBOR_INVALID_ARGUMENT, "22004", "order_id must not be null",
						 NULL, NULL);
	if (items == NULL && nitems > 0)
		return invalid_argument(conn, "items must not be null");
	/* numbers only: the JSON cannot carry anything but what the struct holds */
	json = malloc(2 + nitems * 64 + 1);
	if (json == NULL)
		return set_error(conn, HARBOR_ERROR, "", "out of memory", NULL, NULL);
	json[len++] = '[';
	for (size_t i = 0; i < nitems; i++)
		len += (size_t) sprintf(json + len, "%s{\"item_id\": %" PRId64 ", \"qty\": %" PRId32 "}",
								i ? ", " : "", items[i].item_id, items[i].qty);
	json[len++] = ']';
	json[len] = '\0';

	values[0] = order_id;
	values[1] = json;
	values[2] = model;
	values[3] = ttl;
	res = run(conn, ttl ? ST_RESERVE_MANY_TTL : ST_RESERVE_MANY, ttl ? 4 : 3, values);
	free(json);
	if (res == NULL)
		return conn->status;
	if (out && PQntuples(res) > 0)
	{
		int			n = PQntuples(res);

		*out = calloc((size_t) n, sizeof(harbor_reservation));
		if (*out == NULL)
			st = set_error(conn, HARBOR_ERROR, "", "out of memory", NULL, NULL);
		for (int i = 0; st == HARBOR_OK && i < n; i++)
		{
			st = fill_reservation(conn, res, i, &(*out)[i]);
			if (st == HARBOR_OK && nout)
				*nout = (size_t) i + 1;
		}
		if (st != HARBOR_OK)
		{
			harbor_reservations_free(*out, nout ? *nout : 0);
			*out = NULL;
			if (nout)
				*nout = 0;
		}
	}
	else if (nout)
		*nout = (size_t) PQntuples(res);
	PQclear(res);
	return st;
}

static harbor_status
order_call(harbor_conn *conn, int stmt, const char *order_id, const char *second,
		   int nparams, int *count)
{
	const char *values[2] = {order_id, second};
	int64_t		n = 0;
	harbor_status st;

	if (count)
		*count = 0;
	if (!valid_text(order_id))
	{
		clear_error(conn);
		return set_error(conn, HARBOR_INVALID_ARGUMENT, "22004", "order_id must not be null",
						 NULL, NULL);
	}
	st = run_count(conn, stmt, nparams, values, &n);
	if (st == HARBOR_OK && count)
		*count = (int) n;
	return st;
}

harbor_status
harbor_confirm(harbor_conn *conn, const char *order_id, int *count)
{
	return order_call(conn, ST_CONFIRM, order_id, NULL, 1, count);
}

harbor_status
harbor_release(harbor_conn *conn, const char *order_id, const int64_t *item_id,
			   int *count)
{
	char		item_s[24];

	if (item_id)
		snprintf(item_s, sizeof(item_s), "%" PRId64, *item_id);
	return order_call(conn, ST_RELEASE, order_id, item_id ? item_s : NULL, 2, count);
}

harbor_status
harbor_extend(harbor_conn *conn, const char *order_id, const char *ttl, int *count)
{
	if (ttl == NULL)
	{
		if (count)
			*count = 0;
		clear_error(conn);
		return set_error(conn, HARBOR_INVALID_ARGUMENT, "22004", "ttl must not be null",
						 NULL, NULL);
	}
	return order_call(conn, ST_EXTEND, order_id, ttl, 2, count);
}

harbor_status
harbor_sweep(harbor_conn *conn, int batch_size, int64_t *released)
{
	char		batch_s[16];
	const char *values[1] = {batch_s};
	int64_t		n = 0;
	harbor_status st;

	snprintf(batch_s, sizeof(batch_s), "%d", batch_size);
	if (batch_size <= 0)
		st = run_count(conn, ST_SWEEP_DEFAULT, 0, NULL, &n);
	else
		st = run_count(conn, ST_SWEEP, 1, values, &n);
	if (released)
		*released = st == HARBOR_OK ? n : 0;
	return st;
}

/* ---------------------------------------------------------------------
 * Loading
 * ---------------------------------------------------------------------
 */

/*
 * A text[] literal of the given strings, each double-quoted with
 * backslash escapes: the server parses it as data, never as SQL.
 */
static char *
text_array_literal(const char *const *items, size_t n)
{
	size_t		len = 3;
	char	   *out,
			   *p;

	for (size_t i = 0; i < n; i++)
	{
		if (items[i] == NULL)
			return NULL;
		len += 3 + 2 * strlen(items[i]);
	}
	out = malloc(len);
	if (out == NULL)
		return NULL;
	p = out;
	*p++ = '{';
	for (size_t i = 0; i < n; i++)
	{
		if (i > 0)
			*p++ = ',';
		*p++ = '"';
		for (const char *s = items[i]; *s; s++)
		{
			if (*s == '"' || *s == '\\')
				*p++ = '\\';
			*p++ = *s;
		}
		*p++ = '"';
	}
	*p++ = '}';
	*p = '\0';
	return out;
}

/* True if a type name from format_type() can be written into a cast. */
static bool
safe_type_name(const char *t)
{
	if (*t == '\0')
		return false;
	for (; *t; t++)
		if (!((*t >= 'a' && *t <= 'z') || (*t >= 'A' && *t <= 'Z') ||
			  (*t >= '0' && *t <= '9') || *t == '_' || *t == ' ' || *t == '.' ||
			  *t == '"' || *t == '(' || *t == ')' || *t == ','))
			return false;
	return true;
}

/*
 * The primary key type of a model, cached per connection.  harbor.load()
 * takes anyarray, so the ids must arrive as an array of the key's type;
 * the cast is written from the server's own type name.
 */
static const char *
model_pk_type(harbor_conn *conn, const char *model)
{
	const char *values[1] = {model};
	PGresult   *res;
	pk_type_entry *e;

	for (e = conn->pk_types; e; e = e->next)
		if (strcmp(e->model, model) == 0)
			return e->type;
	res = run(conn, ST_PK_TYPE, 1, values);
	if (res == NULL)
		return NULL;
	if (PQntuples(res) == 0)
	{
		PQclear(res);
		set_error(conn, HARBOR_INVALID_ARGUMENT, "42704", "model does not exist",
				  NULL, "harbor models lists the registered models.");
		return NULL;
	}
	if (strcmp(PQgetvalue(res, 0, 0), "1") != 0 || !safe_type_name(PQgetvalue(res, 0, 1)))
	{
		PQclear(res);
		set_error(conn, HARBOR_INVALID_ARGUMENT, "0A000",
				  "load and get by id need a model with a one-column primary key",
				  NULL, "Use find with a filter on the key columns.");
		return NULL;
	}
	e = calloc(1, sizeof(pk_type_entry));
	if (e)
	{
		e->model = strdup(model);
		e->type = strdup(PQgetvalue(res, 0, 1));
	}
	PQclear(res);
	if (e == NULL || e->model == NULL || e->type == NULL)
	{
		if (e)
		{
			free(e->model);
			free(e->type);
			free(e);
		}
		set_error(conn, HARBOR_ERROR, "", "out of memory", NULL, NULL);
		return NULL;
	}
	e->next = conn->pk_types;
	conn->pk_types = e;
	return e->type;
}

/* load/get: the SQL names the key type, so it is built per call. */
static harbor_status
run_keyed(harbor_conn *conn, const char *fn, const char *model, const char *ids,
		  bool array, const char *include, char **json)
{
	const char *type = model_pk_type(conn, model);
	const char *values[3] = {model, ids, include};
	char	   *sql;
	size_t		len;
	PGresult   *res;

	if (type == NULL)
		return conn->status;
	len = strlen(type) + 128;
	sql = malloc(len);
	if (sql == NULL)
		return set_error(conn, HARBOR_ERROR, "", "out of memory", NULL, NULL);
	snprintf(sql, len, "SELECT harbor.%s($1::text, $2::%s%s, coalesce($3::text[], '{}'))::text",
			 fn, type, array ? "[]" : "");
	clear_error(conn);
	if (!in_caller_transaction(conn) && ensure_connected(conn) != HARBOR_OK)
	{
		free(sql);
		return conn->status;
	}
	/* reads only: a conflict cannot happen, so no retry loop */
	res = PQexecParams(conn->pg, sql, 3, NULL, values, NULL, NULL, 0);
	free(sql);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
	{
		error_from_result(conn, res);
		PQclear(res);
		return conn->status;
	}
	*json = strdup(PQgetisnull(res, 0, 0) ? "null" : PQgetvalue(res, 0, 0));
	PQclear(res);
	if (*json == NULL)
		return set_error(conn, HARBOR_ERROR, "", "out of memory", NULL, NULL);
	return HARBOR_OK;
}

static harbor_status
check_model_and_lists(harbor_conn *conn, const char *model,
					  const char *const *a, size_t na, const char *const *b, size_t nb)
{
	clear_error(conn);
	conn->retries = 0;
	if (model == NULL)
		return invalid_argument(conn, "model must not be null");
	if ((a == NULL && na > 0) || (b == NULL && nb > 0))
		return invalid_argument(conn, "list pointer is null but its count is not zero");
	for (size_t i = 0; i < na; i++)
		if (a[i] == NULL)
			return invalid_argument(conn, "list element must not be null");
	for (size_t i = 0; i < nb; i++)
		if (b[i] == NULL)
			return invalid_argument(conn, "list element must not be null");
	return HARBOR_OK;
}

harbor_status
harbor_load(harbor_conn *conn, const char *model, const char *const *ids, size_t nids,
			const char *const *include, size_t ninclude, char **json)
{
	char	   *ids_lit,
			   *inc_lit;
	harbor_status st;

	*json = NULL;
	if (check_model_and_lists(conn, model, ids, nids, include, ninclude) != HARBOR_OK)
		return conn->status;
	ids_lit = text_array_literal(ids, nids);
	inc_lit = text_array_literal(include, ninclude);
	if (ids_lit == NULL || inc_lit == NULL)
		st = set_error(conn, HARBOR_ERROR, "", "out of memory", NULL, NULL);
	else
		st = run_keyed(conn, "load", model, ids_lit, true, inc_lit, json);
	free(ids_lit);
	free(inc_lit);
	return st;
}

harbor_status
harbor_get(harbor_conn *conn, const char *model, const char *id,
		   const char *const *include, size_t ninclude, char **json)
{
	char	   *inc_lit;
	harbor_status st;

	*json = NULL;
	if (check_model_and_lists(conn, model, include, ninclude, NULL, 0) != HARBOR_OK)
		return conn->status;
	if (id == NULL)
		return invalid_argument(conn, "id must not be null");
	inc_lit = text_array_literal(include, ninclude);
	if (inc_lit == NULL)
		return set_error(conn, HARBOR_ERROR, "", "out of memory", NULL, NULL);
	st = run_keyed(conn, "get", model, id, false, inc_lit, json);
	free(inc_lit);
	return st;
}

harbor_status
harbor_find(harbor_conn *conn, const char *model, const char *filter,
			const char *const *include, size_t ninclude,
			const char *const *order_by, size_t norder_by,
			int limit, int offset, char **json)
{
	char	   *inc_lit,
			   *ord_lit = NULL;
	char		lim_s[16],
				off_s[16];
	const char *values[6];
	harbor_status st;

	*json = NULL;
	if (check_model_and_lists(conn, model, include, ninclude, order_by, norder_by) != HARBOR_OK)
		return conn->status;
	inc_lit = text_array_literal(include, ninclude);
	if (norder_by > 0)
		ord_lit = text_array_literal(order_by, norder_by);
	if (inc_lit == NULL || (norder_by > 0 && ord_lit == NULL))
	{
		free(inc_lit);
		free(ord_lit);
		return set_error(conn, HARBOR_ERROR, "", "out of memory", NULL, NULL);
	}
	snprintf(lim_s, sizeof(lim_s), "%d", limit);
	snprintf(off_s, sizeof(off_s), "%d", offset);
	values[0] = model;
	values[1] = filter;
	values[2] = inc_lit;
	values[3] = ord_lit;
	values[4] = limit < 0 ? NULL : lim_s;
	values[5] = off_s;
	st = run_scalar(conn, ST_FIND, 6, values, json);
	free(inc_lit);
	free(ord_lit);
	return st;
}

harbor_status
harbor_models(harbor_conn *conn, char **json)
{
	return run_scalar(conn, ST_MODELS, 0, NULL, json);
}

harbor_status
harbor_stock_status(harbor_conn *conn, int64_t item_id, const char *model, char **json)
{
	char		item_s[24];
	const char *values[2] = {item_s, model};

	snprintf(item_s, sizeof(item_s), "%" PRId64, item_id);
	return run_scalar(conn, ST_STOCK_STATUS, 2, values, json);
}

/*
 * {"reservations": [...], "sweeper": [...]}; a part whose server side is
 * missing (older extension) is null rather than an error.
 */
harbor_status
harbor_overview(harbor_conn *conn, char **json)
{
	char	   *parts[2] = {NULL, NULL};
	const int	stmts[2] = {ST_RES_SUMMARY, ST_SWEEPER};
	size_t		len;

	*json = NULL;
	for (int i = 0; i < 2; i++)
	{
		harbor_status st = run_scalar(conn, stmts[i], 0, NULL, &parts[i]);

		if (st != HARBOR_OK)
		{
			if (strcmp(conn->sqlstate, "42P01") != 0 && strcmp(conn->sqlstate, "42883") != 0)
			{
				free(parts[0]);
				return st;
			}
			clear_error(conn);
		}
	}
	len = 48 + (parts[0] ? strlen(parts[0]) : 4) + (parts[1] ? strlen(parts[1]) : 4);
	*json = malloc(len);
	if (*json)
		snprintf(*json, len, "{\"reservations\": %s, \"sweeper\": %s}",
				 parts[0] ? parts[0] : "null", parts[1] ? parts[1] : "null");
	free(parts[0]);
	free(parts[1]);
	if (*json == NULL)
		return set_error(conn, HARBOR_ERROR, "", "out of memory", NULL, NULL);
	return clear_error(conn);
}

/* ---------------------------------------------------------------------
 * Change notifications
 * ---------------------------------------------------------------------
 */

/*
 * Find "key": in the payload (which notify.c writes in a fixed shape) and
 * return a pointer to its value.
 */
static const char *
payload_value(const char *payload, const char *key)
{
	size_t		klen = strlen(key);

	for (const char *p = payload; (p = strchr(p, '"')) != NULL; p++)
	{
		if (strncmp(p + 1, key, klen) == 0 && p[klen + 1] == '"')
		{
			p += klen + 2;
			while (*p == ' ' || *p == ':')
				p++;
			return p;
		}
		/* skip a whole string so that keys inside values do not match */
		for (p++; *p && *p != '"'; p++)
			if (*p == '\\' && p[1])
				p++;
		if (*p == '\0')
			break;
	}
	return NULL;
}

/* Decode the JSON string starting at p (at its quote) into malloc'd UTF-8. */
static char *
json_string_decode(const char *p)
{
	if (p == NULL || *p != '"')
		return strdup("");
	return harbor_json_decode_string(&p);
}

static int
deliver(PGnotify *n, harbor_change_cb cb, void *arg)
{
	harbor_change ch;
	const char *opv = payload_value(n->extra, "op");
	const char *idsv = payload_value(n->extra, "ids");
	const char *countv = payload_value(n->extra, "count");
	char	   *model = json_string_decode(payload_value(n->extra, "model"));
	char	   *op = json_string_decode(opv);
	char	   *ids = NULL;
	int			stop;

	if (idsv)
	{
		size_t		len = strlen(idsv);

		/* the payload ends with the ids value and the closing brace */
		ids = malloc(len + 1);
		if (ids)
		{
			memcpy(ids, idsv, len + 1);
			while (len > 0 && (ids[len - 1] == '}' || ids[len - 1] == ' '))
				ids[--len] = '\0';
		}
	}
	ch.model = model ? model : "";
	ch.op = op ? op : "";
	/* no ids (payload "count" or "none"): the whole model counts as changed */
	ch.ids = ids ? ids : "null";
	ch.payload = n->extra;
	ch.sender_pid = n->be_pid;
	ch.channel = n->relname;
	ch.count = countv && *countv >= '0' && *countv <= '9' ? strtoll(countv, NULL, 10) : -1;
	stop = cb(&ch, arg);
	free(model);
	free(op);
	free(ids);
	return stop;
}

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* LISTEN or UNLISTEN channel, quoted as an identifier. */
static harbor_status
channel_command(harbor_conn *conn, const char *verb, const char *channel)
{
	char	   *ident = PQescapeIdentifier(conn->pg, channel, strlen(channel));
	char		sql[160];
	harbor_status st;

	if (ident == NULL)
		return invalid_argument(conn, "invalid channel name");
	snprintf(sql, sizeof(sql), "%s %s", verb, ident);
	PQfreemem(ident);
	st = simple_command(conn, sql);
	return st;
}

harbor_status
harbor_listen(harbor_conn *conn, harbor_change_cb cb, void *arg, int timeout_ms,
			  int *delivered)
{
	return harbor_listen_channel(conn, NULL, cb, arg, timeout_ms, delivered);
}

harbor_status
harbor_listen_channel(harbor_conn *conn, const char *channel,
					  harbor_change_cb cb, void *arg, int timeout_ms,
					  int *delivered)
{
	int64_t		deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
	int			count = 0;

	if (delivered)
		*delivered = 0;
	clear_error(conn);
	conn->retries = 0;
	if (cb == NULL)
		return invalid_argument(conn, "callback must not be null");
	if (channel == NULL)
		channel = HARBOR_DEFAULT_CHANNEL;
	if (channel[0] == '\0' || strlen(channel) >= sizeof(conn->channel))
		return invalid_argument(conn, "a channel name has 1 to 63 bytes");
	if (conn->listening && strcmp(conn->channel, channel) != 0)
	{
		/* one channel per connection: leave the previous one */
		if (channel_command(conn, "UNLISTEN", conn->channel) != HARBOR_OK)
			return conn->status;
		conn->listening = false;
	}
	if (!conn->listening)
	{
		if (channel_command(conn, "LISTEN", channel) != HARBOR_OK)
			return conn->status;
		snprintf(conn->channel, sizeof(conn->channel), "%s", channel);
		conn->listening = true;
	}

	for (;;)
	{
		PGnotify   *n;
		struct pollfd pfd;
		int			wait_ms;
		int			rc;

		if (!PQconsumeInput(conn->pg))
		{
			conn->listening = false;
			return set_error(conn, HARBOR_CONNECTION_LOST, "08006",
							 PQerrorMessage(conn->pg), NULL, NULL);
		}
		while ((n = PQnotifies(conn->pg)) != NULL)
		{
			int			stop = 0;

			if (strcmp(n->relname, conn->channel) == 0)
			{
				count++;
				if (delivered)
					*delivered = count;
				stop = deliver(n, cb, arg);
			}
			PQfreemem(n);
			if (stop)
				return HARBOR_OK;
		}
		if (deadline >= 0)
		{
			int64_t		left = deadline - now_ms();

			if (left <= 0)
				return HARBOR_OK;
			wait_ms = left > 60000 ? 60000 : (int) left;
		}
		else
			wait_ms = 60000;
		pfd.fd = PQsocket(conn->pg);
		pfd.events = POLLIN;
		pfd.revents = 0;
		if (pfd.fd < 0)
		{
			conn->listening = false;
			return set_error(conn, HARBOR_CONNECTION_LOST, "08006", "connection lost",
							 NULL, NULL);
		}
		rc = poll(&pfd, 1, wait_ms);
		if (rc < 0 && errno != EINTR)
			return set_error(conn, HARBOR_ERROR, "", "waiting for notifications failed", NULL, NULL);
	}
}

harbor_status
harbor_unlisten(harbor_conn *conn)
{
	harbor_status st = channel_command(conn, "UNLISTEN",
									   conn->listening ? conn->channel : HARBOR_DEFAULT_CHANNEL);

	if (st == HARBOR_OK)
		conn->listening = false;
	return st;
}
