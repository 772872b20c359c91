/*-------------------------------------------------------------------------
 *
 * test_client.c
 *	  Tests of libharbor against a live server: every call and result
 *	  code, retries of provoked serialization failures and deadlocks,
 *	  connection loss, hostile bound parameters and change notifications.
 *
 *	  test_client DSN ADMIN_DSN direct|pooled
 *
 * DSN is what the library connects to (the server, or a PgBouncer in
 * transaction mode for "pooled", which skips what needs a session: LISTEN,
 * per-connection settings, terminating one's own backend).  ADMIN_DSN is
 * a direct connection the test uses to hold locks and inspect the server.
 * The database must hold test/client/fixture.sql.  Output is TAP.
 *
 * Copyright (c) 2026, harbor_orm developers
 *
 *-------------------------------------------------------------------------
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "harbor.h"

static int	ntests = 0;
static int	nfailed = 0;
static const char *dsn;
static const char *admin_dsn;
static PGconn *admin;

#define CHECK(cond, ...) check((cond), __LINE__, __VA_ARGS__)

static void
check(bool ok, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#include <stdarg.h>

static void
check(bool ok, int line, const char *fmt, ...)
{
	va_list		ap;

	ntests++;
	if (!ok)
		nfailed++;
	printf("%sok %d - ", ok ? "" : "not ", ntests);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	if (!ok)
		printf(" (line %d)", line);
	printf("\n");
	fflush(stdout);
}

static void
diag_conn(harbor_conn *c)
{
	printf("#   status=%s sqlstate=%s message=%s detail=%s\n",
		   harbor_status_name(harbor_last_status(c)), harbor_sqlstate(c),
		   harbor_errmsg(c), harbor_errdetail(c));
}

static harbor_status
expect(harbor_conn *c, harbor_status got, harbor_status want, const char *what)
{
	CHECK(got == want, "%s: %s (sqlstate %s)", what, harbor_status_name(want),
		  harbor_sqlstate(c));
	if (got != want)
		diag_conn(c);
	return got;
}

/* Run SQL on the admin connection; returns the first value (static buffer). */
static const char *
admin_value(const char *sql)
{
	static char buf[256];
	PGresult   *res = PQexec(admin, sql);

	buf[0] = '\0';
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0)
		snprintf(buf, sizeof(buf), "%s", PQgetvalue(res, 0, 0));
	else if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
		printf("# admin: %s: %s", sql, PQerrorMessage(admin));
	PQclear(res);
	return buf;
}

static int64_t
stock_of(int item)
{
	char		sql[128];

	snprintf(sql, sizeof(sql), "SELECT stock_qty FROM client_t.items WHERE id = %d", item);
	return strtoll(admin_value(sql), NULL, 10);
}

static void
sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/* Wait (up to 20 s) until the backend pid waits for a lock. */
static bool
wait_for_lock_wait(PGconn *c, int pid)
{
	char		sql[200];

	snprintf(sql, sizeof(sql),
			 "SELECT count(*) FROM pg_stat_activity WHERE pid = %d AND wait_event_type = 'Lock'",
			 pid);
	for (int i = 0; i < 2000; i++)
	{
		PGresult   *res = PQexec(c, sql);
		bool		waiting = PQresultStatus(res) == PGRES_TUPLES_OK &&
			strcmp(PQgetvalue(res, 0, 0), "1") == 0;

		PQclear(res);
		if (waiting)
			return true;
		sleep_ms(10);
	}
	return false;
}

static harbor_conn *
connect_ok(const char *conninfo, const harbor_options *opts)
{
	harbor_conn *c;
	harbor_status st = harbor_connect(&c, conninfo, opts);

	if (st != HARBOR_OK)
	{
		printf("Bail out! cannot connect: %s\n", harbor_errmsg(c));
		exit(1);
	}
	return c;
}

/* ---------------------------------------------------------------------
 * The calls and their result codes
 * ---------------------------------------------------------------------
 */
static void
test_bad_dsn(void)
{
	harbor_conn *c;
	harbor_status st;

	st = harbor_connect(&c, "host=127.0.0.1 port=1 connect_timeout=2", NULL);
	CHECK(st == HARBOR_CONNECTION_LOST, "server down: connection_lost");
	CHECK(strchr(harbor_errmsg(c), '\n') == NULL && harbor_errmsg(c)[0] != '\0',
		  "server down: one-line message: %s", harbor_errmsg(c));
	harbor_close(c);

	st = harbor_connect(&c, "this is not a dsn", NULL);
	CHECK(st == HARBOR_CONNECTION_LOST, "malformed DSN: connection_lost");
	CHECK(strchr(harbor_errmsg(c), '\n') == NULL, "malformed DSN: one line: %s",
		  harbor_errmsg(c));
	harbor_close(c);

	st = harbor_connect(&c, "postgresql://nobody@127.0.0.1:1/x?connect_timeout=2", NULL);
	CHECK(st == HARBOR_CONNECTION_LOST, "URI to nowhere: connection_lost");
	harbor_close(c);
}

static void
test_reservations(harbor_conn *c)
{
	harbor_reservation r;
	harbor_reservation *many;
	size_t		n;
	int			count;
	int64_t		released;
	int64_t		item;
	harbor_item lines[2] = {{3, 2}, {2, 1}};
	harbor_item short_lines[2] = {{4, 1}, {1, 99}};
	harbor_item bad_lines[1] = {{5, 0}};

	expect(c, harbor_reserve_stock(c, 1, 2, "order-1", NULL, NULL, &r), HARBOR_OK,
		   "reserve_stock");
	CHECK(r.item_id == 1 && r.qty == 2 && strcmp(r.order_id, "order-1") == 0 &&
		  strcmp(r.status, "active") == 0 && r.id > 0 && r.expires_at[0] != '\0',
		  "reserve_stock returns the reservation (id %" PRId64 ")", r.id);
	harbor_reservation_clear(&r);
	CHECK(stock_of(1) == 1, "stock of item 1 went from 3 to 1");

	expect(c, harbor_reserve_stock(c, 1, 5, "order-2", NULL, NULL, &r),
		   HARBOR_INSUFFICIENT_STOCK, "reserve beyond stock");
	CHECK(strcmp(harbor_sqlstate(c), "HB001") == 0 && harbor_errmsg(c)[0] != '\0',
		  "insufficient stock carries HB001 and a message: %s / %s", harbor_errmsg(c),
		  harbor_errdetail(c));
	CHECK(r.model == NULL && r.order_id == NULL, "failed reserve leaves out empty");
	CHECK(stock_of(1) == 1, "refused reserve changed nothing");

	expect(c, harbor_reserve_stock(c, 999999, 1, "order-2", NULL, NULL, NULL),
		   HARBOR_UNKNOWN_ITEM, "reserve unknown item");
	expect(c, harbor_reserve_stock(c, 2, 0, "order-2", NULL, NULL, NULL),
		   HARBOR_INVALID_ARGUMENT, "reserve qty 0");
	expect(c, harbor_reserve_stock(c, 2, 1, "", NULL, NULL, NULL),
		   HARBOR_INVALID_ARGUMENT, "reserve empty order id");
	expect(c, harbor_reserve_stock(c, 2, 1, NULL, NULL, NULL, NULL),
		   HARBOR_INVALID_ARGUMENT, "reserve null order id");
	expect(c, harbor_reserve_stock(c, 2, 1, "order-2", "-5 minutes", NULL, NULL),
		   HARBOR_INVALID_ARGUMENT, "reserve negative ttl");
	expect(c, harbor_reserve_stock(c, 2, 1, "order-2", "soon", NULL, NULL),
		   HARBOR_INVALID_ARGUMENT, "reserve unparsable ttl");
	expect(c, harbor_reserve_stock(c, 2, 1, "order-2", "1 hour", NULL, &r), HARBOR_OK,
		   "reserve with ttl");
	harbor_reservation_clear(&r);

	expect(c, harbor_reserve_many(c, "order-3", lines, 2, NULL, NULL, &many, &n),
		   HARBOR_OK, "reserve_many");
	CHECK(n == 2 && many[0].item_id == 2 && many[1].item_id == 3 && many[1].qty == 2,
		  "reserve_many returns one row per item, in item order");
	harbor_reservations_free(many, n);
	expect(c, harbor_reserve_many(c, "order-4", short_lines, 2, "10 minutes", NULL, &many, &n),
		   HARBOR_INSUFFICIENT_STOCK, "reserve_many with a short line");
	CHECK(many == NULL && n == 0, "failed reserve_many returns nothing");
	CHECK(stock_of(4) == 100, "all or nothing: item 4 untouched");
	expect(c, harbor_reserve_many(c, "order-4", bad_lines, 1, NULL, NULL, &many, &n),
		   HARBOR_INVALID_ARGUMENT, "reserve_many qty 0");

	expect(c, harbor_confirm(c, "order-3", &count), HARBOR_OK, "confirm");
	CHECK(count == 2, "confirm counts 2 reservations (%d)", count);
	expect(c, harbor_confirm(c, "order-never", &count), HARBOR_NOT_HELD,
		   "confirm an order holding nothing");

	expect(c, harbor_extend(c, "order-1", "30 minutes", &count), HARBOR_OK, "extend");
	CHECK(count == 1, "extend counts 1 (%d)", count);
	expect(c, harbor_extend(c, "order-1", "-1 minute", &count), HARBOR_INVALID_ARGUMENT,
		   "extend with a negative ttl");

	item = 1;
	expect(c, harbor_release(c, "order-1", &item, &count), HARBOR_OK, "release one item");
	CHECK(count == 1 && stock_of(1) == 3, "release returned the stock");
	expect(c, harbor_release(c, "order-1", NULL, &count), HARBOR_OK, "release again");
	CHECK(count == 0, "releasing again releases nothing");

	expect(c, harbor_reserve_stock(c, 5, 1, "order-expiring", "1 second", NULL, NULL),
		   HARBOR_OK, "reserve with a 1 s ttl");
	admin_value("SELECT pg_sleep(1.2)");
	expect(c, harbor_sweep(c, 0, &released), HARBOR_OK, "sweep");
	CHECK(released >= 1, "sweep released the expired hold (%" PRId64 ")", released);
	expect(c, harbor_sweep(c, 10, &released), HARBOR_OK, "sweep with a batch size");
	CHECK(released == 0, "nothing left to sweep");
	CHECK(stock_of(5) == 100, "expired hold is back in stock");
}

/* Quotes, backslashes, non-ASCII, 10 KB: all round-trip unchanged. */
static void
test_hostile(harbor_conn *c)
{
	const char *hostile[] = {
		"'; DROP TABLE client_t.items; --",
		"\"}{\\\",\\\\ $1 $$ E'\\x00'",
		"caf\xc3\xa9 \xe6\xb8\xaf \xf0\x9f\x9a\xa2 \xe2\x80\xae",
	};
	char	   *big = malloc(10 * 1024 + 1);
	harbor_reservation r;
	char	   *json;

	memset(big, 'x', 10 * 1024);
	big[0] = '\'';
	big[5000] = '"';
	big[10 * 1024] = '\0';
	for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]) + 1; i++)
	{
		const char *s = i < 3 ? hostile[i] : big;
		int			count = -1;

		expect(c, harbor_reserve_stock(c, 6, 1, s, NULL, NULL, &r), HARBOR_OK,
			   "hostile order id reserves");
		CHECK(r.order_id && strcmp(r.order_id, s) == 0, "hostile order id %zu round-trips (%zu bytes)",
			  i, strlen(s));
		harbor_reservation_clear(&r);
		expect(c, harbor_release(c, s, NULL, &count), HARBOR_OK, "hostile order id releases");
		CHECK(count == 1, "released exactly its own hold");
	}
	CHECK(strcmp(admin_value("SELECT count(*) FROM client_t.items"), "20") == 0,
		  "items table intact");

	/* hostile strings where identifiers and ids are expected */
	{
		const char *ids[] = {"1", "2"};
		const char *inc[] = {"x\"}, {y"};

		expect(c, harbor_load(c, "ct_items'; --", ids, 2, NULL, 0, &json),
			   HARBOR_INVALID_ARGUMENT, "load of an injected model name");
		expect(c, harbor_get(c, "ct_items", "1; DROP TABLE client_t.items", NULL, 0, &json),
			   HARBOR_INVALID_ARGUMENT, "get with a non-integer id");
		expect(c, harbor_find(c, "ct_items", "{\"label\": \"' OR 1=1 --\"}", NULL, 0, NULL, 0,
							  -1, 0, &json), HARBOR_OK, "find with a hostile value");
		CHECK(json && strcmp(json, "[]") == 0, "hostile value matches nothing: %s", json);
		harbor_free(json);
		expect(c, harbor_find(c, "ct_items", "{\"no such col\": 1}", NULL, 0, NULL, 0,
							  -1, 0, &json), HARBOR_INVALID_ARGUMENT, "find on an unknown column");
		if (harbor_load(c, "ct_items", ids, 2, inc, 1, &json) == HARBOR_OK)
			harbor_free(json);
		CHECK(harbor_last_status(c) == HARBOR_OK || harbor_last_status(c) == HARBOR_INVALID_ARGUMENT,
			  "hostile include path is data, not SQL (%s)", harbor_status_name(harbor_last_status(c)));
	}
	CHECK(strcmp(admin_value("SELECT count(*) FROM client_t.items"), "20") == 0,
		  "items table still intact");
	free(big);
}

static void
test_loading(harbor_conn *c)
{
	const char *ids[] = {"3", "1", "999"};
	char	   *json = NULL;

	expect(c, harbor_load(c, "ct_items", ids, 3, NULL, 0, &json), HARBOR_OK, "load");
	CHECK(json && json[0] == '[' && strstr(json, "\"id\": 3") != NULL &&
		  strstr(json, "\"id\": 1") != NULL && strstr(json, "999") == NULL,
		  "load returns the rows that exist");
	harbor_free(json);
	expect(c, harbor_load(c, "ct_items", NULL, 0, NULL, 0, &json), HARBOR_OK, "load of no ids");
	CHECK(json && strcmp(json, "[]") == 0, "no ids, empty array");
	harbor_free(json);
	expect(c, harbor_load(c, "nope", ids, 1, NULL, 0, &json), HARBOR_INVALID_ARGUMENT,
		   "load of an unknown model");
	expect(c, harbor_get(c, "ct_items", "2", NULL, 0, &json), HARBOR_OK, "get");
	CHECK(json && json[0] == '{' && strstr(json, "\"label\": \"item 2\""), "get returns the object");
	harbor_free(json);
	expect(c, harbor_get(c, "ct_items", "424242", NULL, 0, &json), HARBOR_OK, "get of a missing id");
	CHECK(json && strcmp(json, "null") == 0, "missing id gives null");
	harbor_free(json);
	expect(c, harbor_get(c, "ct_products", "1", NULL, 0, &json), HARBOR_OK, "get (integer key)");
	harbor_free(json);
	{
		const char *ord[] = {"id desc"};

		expect(c, harbor_find(c, "ct_items", "{\"product_id\": 1}", NULL, 0, ord, 1, 3, 0, &json),
			   HARBOR_OK, "find");
		CHECK(json && json[0] == '[' && strstr(json, "\"product_id\": 1") &&
			  !strstr(json, "\"product_id\": 2"), "find filters: %.60s", json ? json : "");
		harbor_free(json);
	}
	expect(c, harbor_find(c, "ct_items", NULL, NULL, 0, NULL, 0, -1, 0, &json), HARBOR_OK,
		   "find without filter");
	harbor_free(json);
	expect(c, harbor_models(c, &json), HARBOR_OK, "models");
	CHECK(json && strstr(json, "\"ct_items\"") && strstr(json, "\"ct_products\""),
		  "models lists the registry");
	harbor_free(json);
	expect(c, harbor_overview(c, &json), HARBOR_OK, "overview");
	CHECK(json && strstr(json, "\"reservations\"") && strstr(json, "\"sweeper\""),
		  "overview has both parts");
	harbor_free(json);
	expect(c, harbor_stock_status(c, 1, NULL, &json), HARBOR_OK, "stock_status");
	CHECK(json && strstr(json, "available"), "stock_status shows availability: %s", json);
	harbor_free(json);
}

static void
test_transactions(harbor_conn *c)
{
	expect(c, harbor_begin(c, "bogus; DROP TABLE x"), HARBOR_INVALID_ARGUMENT,
		   "begin with an unknown isolation level");
	expect(c, harbor_begin(c, NULL), HARBOR_OK, "begin");
	expect(c, harbor_reserve_stock(c, 7, 10, "txn-order", NULL, NULL, NULL), HARBOR_OK,
		   "reserve inside a transaction");
	expect(c, harbor_rollback(c), HARBOR_OK, "rollback");
	CHECK(stock_of(7) == 100, "rolled back reservation left the stock");
	expect(c, harbor_begin(c, "serializable"), HARBOR_OK, "begin serializable");
	expect(c, harbor_reserve_stock(c, 7, 10, "txn-order", NULL, NULL, NULL), HARBOR_OK,
		   "reserve inside a serializable transaction");
	expect(c, harbor_reserve_stock(c, 7, 1000, "txn-order2", NULL, NULL, NULL),
		   HARBOR_INSUFFICIENT_STOCK, "failing call inside the transaction");
	expect(c, harbor_commit(c), HARBOR_ERROR, "commit of a failed transaction is an error");
	CHECK(stock_of(7) == 100, "failed transaction changed nothing");
	expect(c, harbor_begin(c, "read committed"), HARBOR_OK, "begin read committed");
	expect(c, harbor_reserve_stock(c, 7, 10, "txn-order", NULL, NULL, NULL), HARBOR_OK,
		   "reserve in transaction");
	expect(c, harbor_commit(c), HARBOR_OK, "commit");
	CHECK(stock_of(7) == 90, "committed reservation took the stock");
}

/* ---------------------------------------------------------------------
 * Retries: a serialization failure and a deadlock, provoked
 * ---------------------------------------------------------------------
 */
typedef struct call_args
{
	harbor_conn *conn;
	int			kind;			/* 0 reserve_stock, 1 reserve_many */
	harbor_status st;
} call_args;

static void *
call_thread(void *p)
{
	call_args  *a = p;

	if (a->kind == 0)
		a->st = harbor_reserve_stock(a->conn, 8, 1, "retry-order", NULL, NULL, NULL);
	else
	{
		harbor_item lines[2] = {{9, 1}, {10, 1}};
		harbor_reservation *r = NULL;
		size_t		n = 0;

		a->st = harbor_reserve_many(a->conn, "deadlock-order", lines, 2, NULL, NULL, &r, &n);
		harbor_reservations_free(r, n);
	}
	return NULL;
}

static PGconn *
blocker(void)
{
	PGconn	   *b = PQconnectdb(admin_dsn);

	if (PQstatus(b) != CONNECTION_OK)
	{
		printf("Bail out! blocker cannot connect\n");
		exit(1);
	}
	return b;
}

static void
exec_ok(PGconn *c, const char *sql)
{
	PGresult   *res = PQexec(c, sql);

	if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
		printf("# %s: %s", sql, PQerrorMessage(c));
	PQclear(res);
}


/*
 * Runs the call of 'a' in a thread while session b holds item 8's row lock
 * in an open transaction, checks that the call waits for it, then commits
 * b and waits for the call to end.
 */
static void
call_behind_row_lock(PGconn *b, call_args *a, const char *waits)
{
	pthread_t	t;

	exec_ok(b, "BEGIN");
	exec_ok(b, "UPDATE client_t.items SET label = label WHERE id = 8");
	pthread_create(&t, NULL, call_thread, a);
	CHECK(wait_for_lock_wait(admin, harbor_backend_pid(a->conn)), "%s", waits);
	exec_ok(b, "COMMIT");
	pthread_join(t, NULL);
}

static void
test_serialization_retry(void)
{
	char		conninfo[1024];
	harbor_options opts;
	harbor_conn *c;
	PGconn	   *b = blocker();
	call_args	a;

	/* every statement of this connection runs under REPEATABLE READ */
	snprintf(conninfo, sizeof(conninfo),
			 "%s options='-c default_transaction_isolation=repeatable\\\\ read'", dsn);
	harbor_options_init(&opts);
	opts.retry_base_ms = 5;
	c = connect_ok(conninfo, &opts);

	a.conn = c;
	a.kind = 0;
	call_behind_row_lock(b, &a, "reserve waits on the locked row");
	expect(c, a.st, HARBOR_OK, "serialization failure retried to success");
	CHECK(harbor_last_retries(c) >= 1, "it took %d retry(ies)", harbor_last_retries(c));

	/* inside the caller's transaction: no retry, the caller decides */
	harbor_release(c, "retry-order", NULL, NULL);
	expect(c, harbor_begin(c, "repeatable read"), HARBOR_OK, "begin repeatable read");
	a.st = HARBOR_OK;
	call_behind_row_lock(b, &a, "reserve waits again");
	expect(c, a.st, HARBOR_RETRYABLE, "inside a transaction the conflict is returned");
	CHECK(harbor_last_retries(c) == 0 && strcmp(harbor_sqlstate(c), "40001") == 0,
		  "not retried, sqlstate 40001");
	harbor_rollback(c);

	/* retries are bounded */
	{
		harbor_options none;

		harbor_options_init(&none);
		none.max_retries = 0;
		harbor_close(c);
		c = connect_ok(conninfo, &none);
		a.conn = c;
		call_behind_row_lock(b, &a, "reserve waits a third time");
		expect(c, a.st, HARBOR_RETRYABLE, "max_retries = 0 gives the conflict back");
	}
	harbor_close(c);
	PQfinish(b);
}

static void
test_deadlock_retry(void)
{
	char		conninfo[1024];
	harbor_conn *c;
	PGconn	   *b = blocker();
	pthread_t	t;
	call_args	a;
	PGresult   *res;

	/* this side detects the deadlock first and is the one rolled back */
	snprintf(conninfo, sizeof(conninfo), "%s options='-c deadlock_timeout=100ms'", dsn);
	c = connect_ok(conninfo, NULL);
	exec_ok(b, "SET deadlock_timeout = '60s'");
	exec_ok(b, "BEGIN");
	exec_ok(b, "UPDATE client_t.items SET label = label WHERE id = 10");
	a.conn = c;
	a.kind = 1;
	pthread_create(&t, NULL, call_thread, &a);
	/* the library locked item 9 and waits for 10 */
	CHECK(wait_for_lock_wait(admin, harbor_backend_pid(c)), "reserve_many waits for item 10");
	PQsendQuery(b, "UPDATE client_t.items SET label = label WHERE id = 9");
	while ((res = PQgetResult(b)) != NULL)
		PQclear(res);
	exec_ok(b, "COMMIT");
	pthread_join(t, NULL);
	expect(c, a.st, HARBOR_OK, "deadlock retried to success");
	CHECK(harbor_last_retries(c) >= 1, "it took %d retry(ies)", harbor_last_retries(c));
	harbor_close(c);
	PQfinish(b);
}

/* ---------------------------------------------------------------------
 * Connection loss
 * ---------------------------------------------------------------------
 */
static void
test_connection_loss(harbor_conn *c)
{
	char		sql[128];
	int			count;
	int			old_pid = harbor_backend_pid(c);

	snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%d, 5000)", old_pid);
	CHECK(strcmp(admin_value(sql), "t") == 0, "terminated the client's backend");
	expect(c, harbor_confirm(c, "nothing", &count), HARBOR_CONNECTION_LOST,
		   "call on a killed connection");
	CHECK(strchr(harbor_errmsg(c), '\n') == NULL, "one-line message: %s", harbor_errmsg(c));
	expect(c, harbor_release(c, "nothing", NULL, &count), HARBOR_OK,
		   "next call reconnects");
	CHECK(harbor_backend_pid(c) != old_pid, "on a new backend");
}

/* ---------------------------------------------------------------------
 * Notifications
 * ---------------------------------------------------------------------
 */
typedef struct seen
{
	int			n;
	char		ops[16][16];
	char		ids[16][64];
	char		models[16][32];
	char		channels[16][64];
	long long	counts[16];
	const char *stop_ids;
} seen;

static int
collect(const harbor_change *ch, void *arg)
{
	seen	   *s = arg;

	if (s->n < 16)
	{
		snprintf(s->ops[s->n], sizeof(s->ops[0]), "%s", ch->op);
		snprintf(s->ids[s->n], sizeof(s->ids[0]), "%s", ch->ids);
		snprintf(s->models[s->n], sizeof(s->models[0]), "%s", ch->model);
		snprintf(s->channels[s->n], sizeof(s->channels[0]), "%s", ch->channel);
		s->counts[s->n] = ch->count;
		s->n++;
	}
	return s->stop_ids && strcmp(ch->ids, s->stop_ids) == 0;
}

static void
test_notifications(harbor_conn *c)
{
	harbor_conn *l = connect_ok(dsn, NULL);
	seen		s;
	int			delivered;

	/* the tests below look at ids, which are sent only when asked for */
	admin_value("SELECT harbor.enable_change_notify('ct_items', payload => 'keys')");
	memset(&s, 0, sizeof(s));
	expect(l, harbor_listen(l, collect, &s, 0, &delivered), HARBOR_OK, "listen (subscribe)");
	CHECK(delivered == 0, "nothing yet");

	/* a rolled-back change, then a committed one: only the second arrives */
	harbor_begin(c, NULL);
	harbor_reserve_stock(c, 11, 1, "rolled-back", NULL, NULL, NULL);
	harbor_rollback(c);
	expect(c, harbor_reserve_stock(c, 12, 1, "notify-order", NULL, NULL, NULL), HARBOR_OK,
		   "reserve on a notifying model");
	s.stop_ids = "[12]";
	expect(l, harbor_listen(l, collect, &s, 20000, &delivered), HARBOR_OK, "listen");
	CHECK(s.n >= 1 && strcmp(s.ids[s.n - 1], "[12]") == 0 && strcmp(s.ops[s.n - 1], "update") == 0
		  && strcmp(s.models[s.n - 1], "ct_items") == 0,
		  "committed reservation notified: %s %s %s", s.n ? s.models[s.n - 1] : "",
		  s.n ? s.ops[s.n - 1] : "", s.n ? s.ids[s.n - 1] : "");
	{
		bool		rolled_back_seen = false;

		for (int i = 0; i < s.n; i++)
			if (strstr(s.ids[i], "11"))
				rolled_back_seen = true;
		CHECK(!rolled_back_seen, "rolled-back reservation sent nothing");
	}

	/* nothing before commit */
	memset(&s, 0, sizeof(s));
	harbor_begin(c, NULL);
	harbor_reserve_stock(c, 13, 1, "late-commit", NULL, NULL, NULL);
	expect(l, harbor_listen(l, collect, &s, 200, &delivered), HARBOR_OK, "listen before commit");
	CHECK(delivered == 0, "no notification while the transaction is open");
	harbor_commit(c);
	s.stop_ids = "[13]";
	expect(l, harbor_listen(l, collect, &s, 20000, &delivered), HARBOR_OK, "listen after commit");
	CHECK(s.n == 1 && strcmp(s.ids[0], "[13]") == 0, "delivered after commit");

	/* many ids in one statement: several payloads, all ids */
	memset(&s, 0, sizeof(s));
	admin_value("UPDATE client_t.items SET label = label || '' ");
	admin_value("INSERT INTO client_t.items SELECT g, 1, repeat('x', 10), 1 FROM generate_series(1000, 4000) g");
	admin_value("UPDATE client_t.items SET label = 'end' WHERE id = 20");
	s.stop_ids = "[20]";
	expect(l, harbor_listen(l, collect, &s, 20000, &delivered), HARBOR_OK, "listen to a bulk insert");
	CHECK(s.n >= 4 && strcmp(s.ops[1], "insert") == 0 && strcmp(s.ops[s.n - 2], "insert") == 0,
		  "bulk insert split into %d notifications", s.n - 2);
	admin_value("DELETE FROM client_t.items WHERE id >= 1000");

	/*
	 * The default payload: a count and no ids, here on a channel of the
	 * model's own.  Listening there leaves harbor_changes.
	 */
	admin_value("SELECT harbor.enable_change_notify('ct_items', channel => 'ct items')");
	memset(&s, 0, sizeof(s));
	expect(l, harbor_listen_channel(l, "ct items", collect, &s, 0, &delivered), HARBOR_OK,
		   "listen on a channel that needs quoting");
	expect(c, harbor_reserve_stock(c, 14, 1, "count-order", NULL, NULL, NULL), HARBOR_OK,
		   "reserve with the count payload");
	s.stop_ids = "null";
	expect(l, harbor_listen_channel(l, "ct items", collect, &s, 20000, &delivered), HARBOR_OK,
		   "listen for a count");
	CHECK(s.n == 1 && strcmp(s.ids[0], "null") == 0 && s.counts[0] == 1 &&
		  strcmp(s.channels[0], "ct items") == 0 && strcmp(s.ops[0], "update") == 0,
		  "count payload: %s ids=%s count=%lld on \"%s\"", s.n ? s.ops[0] : "",
		  s.n ? s.ids[0] : "", s.n ? s.counts[0] : -2, s.n ? s.channels[0] : "");
	expect(l, harbor_listen_channel(l, "", collect, &s, 0, &delivered), HARBOR_INVALID_ARGUMENT,
		   "empty channel name");

	expect(l, harbor_unlisten(l), HARBOR_OK, "unlisten");
	admin_value("SELECT harbor.disable_change_notify('ct_items')");
	harbor_close(l);
}

/* Several threads, one connection each. */
static void *
worker(void *p)
{
	int			k = *(int *) p;
	harbor_conn *c;
	harbor_status st = harbor_connect(&c, dsn, NULL);
	char		order[32];
	int			ok = 1;

	for (int i = 0; st == HARBOR_OK && i < 20; i++)
	{
		snprintf(order, sizeof(order), "thread-%d-%d", k, i);
		if (harbor_reserve_stock(c, 14 + k % 3, 1, order, NULL, NULL, NULL) != HARBOR_OK ||
			harbor_release(c, order, NULL, NULL) != HARBOR_OK)
			ok = 0;
	}
	if (st != HARBOR_OK)
		ok = 0;
	harbor_close(c);
	*(int *) p = ok;
	return NULL;
}

static void
test_threads(void)
{
	pthread_t	t[4];
	int			arg[4];
	bool		all = true;

	for (int i = 0; i < 4; i++)
	{
		arg[i] = i;
		pthread_create(&t[i], NULL, worker, &arg[i]);
	}
	for (int i = 0; i < 4; i++)
	{
		pthread_join(t[i], NULL);
		all = all && arg[i] == 1;
	}
	CHECK(all, "4 threads, one connection each, 80 reserve/release pairs");
	CHECK(stock_of(14) == 100 && stock_of(15) == 100 && stock_of(16) == 100,
		  "stock restored after the threads");
}

int
main(int argc, char **argv)
{
	harbor_conn *c;
	harbor_options opts;
	bool		pooled;

	if (argc != 4)
	{
		fprintf(stderr, "usage: test_client DSN ADMIN_DSN direct|pooled\n");
		return 2;
	}
	dsn = argv[1];
	admin_dsn = argv[2];
	pooled = strcmp(argv[3], "pooled") == 0;
	admin = PQconnectdb(admin_dsn);
	if (PQstatus(admin) != CONNECTION_OK)
	{
		printf("Bail out! admin connection: %s", PQerrorMessage(admin));
		return 1;
	}
	printf("# libharbor tests, %s\n", pooled ? "through PgBouncer (transaction pooling)" : "direct");

	test_bad_dsn();
	c = connect_ok(dsn, NULL);
	test_reservations(c);
	test_hostile(c);
	test_loading(c);
	test_transactions(c);
	test_threads();
	if (!pooled)
	{
		harbor_options_init(&opts);
		opts.use_prepared = 1;
		{
			harbor_conn *p = connect_ok(dsn, &opts);
			harbor_reservation r;

			expect(p, harbor_reserve_stock(p, 17, 1, "prepared", NULL, NULL, &r), HARBOR_OK,
				   "opt-in prepared statement, first use");
			harbor_reservation_clear(&r);
			expect(p, harbor_release(p, "prepared", NULL, NULL), HARBOR_OK, "prepared release");
			expect(p, harbor_reserve_stock(p, 17, 1000, "prepared", NULL, NULL, &r),
				   HARBOR_INSUFFICIENT_STOCK, "prepared statement reused, error mapped");
			harbor_close(p);
		}
		test_serialization_retry();
		test_deadlock_retry();
		test_notifications(c);
		test_connection_loss(c);
	}
	harbor_close(c);
	PQfinish(admin);
	printf("1..%d\n", ntests);
	if (nfailed)
		printf("# %d of %d failed\n", nfailed, ntests);
	return nfailed ? 1 : 0;
}
