/*-------------------------------------------------------------------------
 *
 * reservations.c
 *	  Stock reservation with row locking: reserve, confirm, release, extend
 *	  and expire holds on the stock of registered models, never overselling.
 *
 * A stock model is a registered table with a one-column integer primary
 * key (the item id) and an integer stock column (harbor.enable_stock).
 * A hold takes stock out of the stock column and records a row in
 * harbor.stock_reservations; releasing or expiring it puts the stock back,
 * confirming it keeps the stock taken.  So for every item
 *	 stock + active holds + confirmed holds
 * stays constant (until confirmed holds are purged).
 *
 * Locking.  An item row is only ever locked the way a guarded UPDATE locks
 * it (FOR NO KEY UPDATE strength), which does not block inserts of rows
 * that reference the item by foreign key.  Every path takes row locks in
 * one order: holds, then items in ascending id order, then whatever the
 * table's triggers and external writers lock (see sweep.c for the whole
 * argument).  reserve and release take an order's hold on an item (a new
 * row, or the existing one locked FOR UPDATE) and then the item, one item
 * after the other; confirm and extend take holds only.  Reserve inserts
 * its new hold before it touches the item, so that the item lock, the one
 * every checkout of that item queues on, is held only for the decrement
 * and the commit.  The reclaim inside reserve (expiring other orders'
 * expired holds of the item it has locked) takes holds after the item,
 * so it skips busy ones; the sweeps (sweep.c) never wait at all.
 *
 * Every statement is prepared once per backend and kept (SPI_keepplan) on
 * the shared cache (cache.h, stock.h): the statements of one item table
 * are rebuilt from its current name after any ALTER, RENAME or SET SCHEMA
 * of it.  Identifiers are quoted when the statement text is built and
 * every value is a parameter.  Everything here runs with the caller's
 * privileges, so table privileges and row-level security apply.  Every
 * hold version records the role that wrote it (harbor_stamp_hold), which
 * decides whether the sweeps may give its stock back.
 *
 * Copyright (c) 2026, harbor_orm developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
#include "utils/typcache.h"

#include "buckets.h"
#include "harbor_orm.h"
#include "registry.h"
#include "reservations.h"
#include "stock.h"
#include "util.h"

PG_FUNCTION_INFO_V1(harbor_stock_model_changed);
PG_FUNCTION_INFO_V1(harbor_enable_stock);
PG_FUNCTION_INFO_V1(harbor_reserve_stock);
PG_FUNCTION_INFO_V1(harbor_reserve_many);
PG_FUNCTION_INFO_V1(harbor_confirm_reservation);
PG_FUNCTION_INFO_V1(harbor_release_reservation);
PG_FUNCTION_INFO_V1(harbor_extend_reservation);
PG_FUNCTION_INFO_V1(harbor_stamp_hold);
PG_FUNCTION_INFO_V1(harbor_stock_status);
PG_FUNCTION_INFO_V1(harbor_check_stock);

/* ---------------------------------------------------------------------
 * Statements.
 *
 * Per-model statements name the item table {rel}, its primary key {pk}
 * and its stock column {stock}; these are replaced by quoted identifiers
 * ({relid} and {stock_attnum} by numbers).
 * ---------------------------------------------------------------------
 */
/* A statement kept per backend: its text, and the types of its parameters. */
typedef struct PlanDef
{
	const char *sql;
	int			nargs;
	Oid			argtypes[6];
} PlanDef;

static const PlanDef model_plan_defs[MP_NPLANS] =
{
	[MP_FAST] = {
		/*
		 * The hold is inserted first and the item locked last, so the lock
		 * is held only for the decrement and the commit.  The EXISTS makes
		 * the decrement depend on the insert, which orders them; ON
		 * CONFLICT leaves an existing active hold of the order to the
		 * slow path (no row).  Returns what the row got from its defaults;
		 * the caller builds the row it returns (hold_columns_of).
		 */
		"WITH ins AS (\n"
		"    INSERT INTO harbor.stock_reservations AS r (model, item_id, order_id, qty, expires_at)\n"
		"    VALUES ($3, $1, $4, $2, pg_catalog.now() OPERATOR(pg_catalog.+) $5)\n"
		"    ON CONFLICT (model, item_id, order_id) WHERE status OPERATOR(pg_catalog.=) 'active' DO NOTHING\n"
		"    RETURNING r.id, r.created_at, r.expires_at\n"
		"), upd AS (\n"
		"    UPDATE {rel} AS t SET {stock} = t.{stock} OPERATOR(pg_catalog.-) $2\n"
		"     WHERE t.{pk} OPERATOR(pg_catalog.=) $1 AND t.{stock} OPERATOR(pg_catalog.>=) $2\n"
		"       AND EXISTS (SELECT FROM ins)\n"
		"    RETURNING 1\n"
		")\n"
		"SELECT ins.id, ins.created_at, ins.expires_at, EXISTS (SELECT FROM upd) FROM ins",
		5, {INT8OID, INT4OID, TEXTOID, TEXTOID, INTERVALOID}
	},
	[MP_LOCK] = {
		"SELECT t.{stock}::pg_catalog.int8 FROM {rel} AS t WHERE t.{pk} OPERATOR(pg_catalog.=) $1\n"
		"   FOR NO KEY UPDATE OF t",
		1, {INT8OID}
	},
	[MP_GIVE] = {
		"UPDATE {rel} AS t SET {stock} = t.{stock} OPERATOR(pg_catalog.+) $2\n"
		" WHERE t.{pk} OPERATOR(pg_catalog.=) $1",
		2, {INT8OID, INT4OID}
	},
	[MP_RESIZE] = {
		/*
		 * reserve, the order's existing hold: with the hold and the item
		 * locked, move the item's stock by $2 (when not 0) and renew the
		 * hold with its new qty.
		 */
		"WITH s AS (\n"
		"    UPDATE {rel} AS t SET {stock} = t.{stock} OPERATOR(pg_catalog.+) $2\n"
		"     WHERE t.{pk} OPERATOR(pg_catalog.=) $1 AND $2 OPERATOR(pg_catalog.<>) 0\n"
		")\n"
		"UPDATE harbor.stock_reservations AS r\n"
		"   SET qty = $3, expires_at = pg_catalog.now() OPERATOR(pg_catalog.+) $5\n"
		" WHERE r.id OPERATOR(pg_catalog.=) $4 RETURNING r.id, r.created_at, r.expires_at, {bucket}",
		5, {INT8OID, INT4OID, INT4OID, INT8OID, INTERVALOID}
	},
	[MP_SWEEP_ITEMS] = {
		/*
		 * Where the items of a sweep batch are, in ascending order; sweep.c
		 * locks them one by one without waiting.  Run as the table owner.
		 */
		"SELECT t.tableoid, t.ctid, t.{pk}::pg_catalog.int8 FROM {rel} AS t\n"
		" WHERE t.{pk} OPERATOR(pg_catalog.=) ANY ($1) ORDER BY 3",
		1, {INT8ARRAYOID}
	},
	[MP_SWEEP_STOCK] = {
		/* the stock of items the sweep has locked.  Run as the table owner. */
		"SELECT t.{pk}::pg_catalog.int8, t.{stock}::pg_catalog.int8 FROM {rel} AS t\n"
		" WHERE t.{pk} OPERATOR(pg_catalog.=) ANY ($1)",
		1, {INT8ARRAYOID}
	},
	[MP_SWEEP_RESTORE] = {
		/*
		 * The stock of a batch back, summed per item, on items the sweep
		 * has locked.  Run as the table owner.
		 */
		"UPDATE {rel} AS t SET {stock} = t.{stock} OPERATOR(pg_catalog.+) v.q\n"
		"  FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.int8[]),\n"
		"                  pg_catalog.unnest($2::pg_catalog.int8[])) AS v(id, q)\n"
		" WHERE t.{pk} OPERATOR(pg_catalog.=) v.id",
		2, {INT8ARRAYOID, INT8ARRAYOID}
	},
	[MP_STOCK] = {
		"SELECT t.{stock}::pg_catalog.int8 FROM {rel} AS t WHERE t.{pk} OPERATOR(pg_catalog.=) $1",
		1, {INT8OID}
	},
	[MP_BAD_STOCK] = {
		"SELECT t.{pk}::pg_catalog.int8,\n"
		"       CASE WHEN t.{stock} IS NULL THEN 'stock is null'\n"
		"            ELSE 'negative stock ' OPERATOR(pg_catalog.||) t.{stock} END\n"
		"  FROM {rel} AS t WHERE t.{stock} OPERATOR(pg_catalog.<) 0 OR t.{stock} IS NULL ORDER BY 1",
		0, {0}
	},
	[MP_ORPHANS] = {
		"SELECT x.item_id, pg_catalog.count(*) FROM harbor.stock_reservations x\n"
		" WHERE x.model OPERATOR(pg_catalog.=) $1\n"
		"   AND x.status OPERATOR(pg_catalog.=) ANY ('{active,confirmed}'::pg_catalog.text[])\n"
		"   AND NOT EXISTS (SELECT FROM {rel} AS t WHERE t.{pk} OPERATOR(pg_catalog.=) x.item_id)\n"
		" GROUP BY x.item_id ORDER BY 1",
		1, {TEXTOID}
	},
	[MP_UNCREDITED] = {
		"SELECT x.item_id, pg_catalog.format('reservation %s: expired, but its writer %s cannot update the stock,'\n"
		"                                     ' so the sweeps leave it active', x.id, x.created_by)\n"
		"  FROM harbor.stock_reservations x\n"
		" WHERE x.model OPERATOR(pg_catalog.=) $1 AND x.status OPERATOR(pg_catalog.=) 'active'\n"
		"   AND x.expires_at OPERATOR(pg_catalog.<=) pg_catalog.now()\n"
		"   AND NOT harbor._hold_creditable(x.created_by, {relid}::pg_catalog.oid, {stock_attnum}::pg_catalog.int2)\n"
		" ORDER BY x.item_id, x.id",
		1, {TEXTOID}
	},
	[MP_EXISTS] = {
		"SELECT FROM {rel} AS t WHERE t.{pk} OPERATOR(pg_catalog.=) $1",
		1, {INT8OID}
	},
	[MP_EXISTS_RLS] = {
		"SELECT FROM {rel} AS t WHERE t.{pk} OPERATOR(pg_catalog.=) $1 FOR KEY SHARE OF t",
		1, {INT8OID}
	},
};

static const PlanDef global_plan_defs[GP_NPLANS] =
{
	[GP_OWN] = {
		"SELECT r.id, r.qty FROM harbor.stock_reservations r\n"
		" WHERE r.model OPERATOR(pg_catalog.=) $1 AND r.item_id OPERATOR(pg_catalog.=) $2\n"
		"   AND r.order_id OPERATOR(pg_catalog.=) $3 AND r.status OPERATOR(pg_catalog.=) 'active'\n"
		"   FOR UPDATE OF r",
		3, {TEXTOID, INT8OID, TEXTOID}
	},
	[GP_CONFIRM] = {
		/* rows locked in (model, item) order, as release and reserve do */
		"WITH c AS MATERIALIZED (\n"
		"    SELECT x.id FROM harbor.stock_reservations x\n"
		"     WHERE x.order_id OPERATOR(pg_catalog.=) $1 AND x.status OPERATOR(pg_catalog.=) 'active'\n"
		"       AND x.expires_at OPERATOR(pg_catalog.>) pg_catalog.now()\n"
		"     ORDER BY x.model, x.item_id FOR UPDATE\n"
		")\n"
		"UPDATE harbor.stock_reservations AS r\n"
		"   SET status = 'confirmed', closed_at = pg_catalog.now()\n"
		"  FROM c WHERE r.id OPERATOR(pg_catalog.=) c.id",
		1, {TEXTOID}
	},
	[GP_ORDER_STATE] = {
		/* the latest hold of the order on each item */
		"SELECT DISTINCT ON (r.model, r.item_id) r.model, r.item_id, r.status,\n"
		"       r.status OPERATOR(pg_catalog.=) 'expired'\n"
		"       OR (r.status OPERATOR(pg_catalog.=) 'active'\n"
		"           AND r.expires_at OPERATOR(pg_catalog.<=) pg_catalog.now())\n"
		"  FROM harbor.stock_reservations r WHERE r.order_id OPERATOR(pg_catalog.=) $1\n"
		" ORDER BY r.model, r.item_id, r.id DESC",
		1, {TEXTOID}
	},
	[GP_EXTEND] = {
		"WITH c AS MATERIALIZED (\n"
		"    SELECT x.id FROM harbor.stock_reservations x\n"
		"     WHERE x.order_id OPERATOR(pg_catalog.=) $1 AND x.status OPERATOR(pg_catalog.=) 'active'\n"
		"       AND x.expires_at OPERATOR(pg_catalog.>) pg_catalog.now()\n"
		"     ORDER BY x.model, x.item_id FOR UPDATE\n"
		")\n"
		"UPDATE harbor.stock_reservations AS r SET expires_at = pg_catalog.now() OPERATOR(pg_catalog.+) $2\n"
		"  FROM c WHERE r.id OPERATOR(pg_catalog.=) c.id",
		2, {TEXTOID, INTERVALOID}
	},
	[GP_ORDER_ITEMS] = {
		"SELECT DISTINCT r.model, r.item_id FROM harbor.stock_reservations r\n"
		" WHERE r.order_id OPERATOR(pg_catalog.=) $1 AND r.status OPERATOR(pg_catalog.=) 'active'\n"
		"   AND ($2::pg_catalog.int8 IS NULL OR r.item_id OPERATOR(pg_catalog.=) $2)\n"
		" ORDER BY 1, 2",
		2, {TEXTOID, INT8OID}
	},
	[GP_RELEASE] = {
		"UPDATE harbor.stock_reservations AS r\n"
		"   SET status = 'released', closed_at = pg_catalog.now()\n"
		" WHERE r.id OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT x.id FROM harbor.stock_reservations x\n"
		"                 WHERE x.order_id OPERATOR(pg_catalog.=) $1 AND x.model OPERATOR(pg_catalog.=) $2\n"
		"                   AND x.item_id OPERATOR(pg_catalog.=) $3\n"
		"                   AND x.status OPERATOR(pg_catalog.=) 'active' FOR UPDATE))\n"
		"RETURNING r.qty, {bucket}",
		3, {TEXTOID, TEXTOID, INT8OID}
	},
	[GP_RECLAIM_HOLDS] = {
		/* candidates only: sweep.c locks them without waiting */
		"SELECT x.ctid FROM harbor.stock_reservations x\n"
		" WHERE x.model OPERATOR(pg_catalog.=) $1 AND x.item_id OPERATOR(pg_catalog.=) $2\n"
		"   AND x.status OPERATOR(pg_catalog.=) 'active'\n"
		"   AND x.expires_at OPERATOR(pg_catalog.<=) pg_catalog.now()\n"
		"   AND x.id OPERATOR(pg_catalog.<>) $3\n"
		"   AND harbor._hold_creditable(x.created_by, $4, $5)",
		5, {TEXTOID, INT8OID, INT8OID, OIDOID, INT2OID}
	},
	[GP_SWEEP_HOLDS] = {
		/*
		 * Candidates only, oldest expiry first: sweep.c locks them without
		 * waiting and checks them again.  Holds whose creator could not
		 * have moved the stock are never taken (see harbor_hold_creditable).
		 */
		"SELECT x.ctid, x.expires_at, x.id FROM harbor.stock_reservations x\n"
		" WHERE x.status OPERATOR(pg_catalog.=) 'active'\n"
		"   AND x.expires_at OPERATOR(pg_catalog.<=) pg_catalog.now()\n"
		"   AND x.model OPERATOR(pg_catalog.=) $2\n"
		"   AND ROW(x.expires_at, x.id) OPERATOR(pg_catalog.>) ROW($3, $6)\n"
		"   AND harbor._hold_creditable(x.created_by, $4, $5)\n"
		" ORDER BY x.expires_at, x.id LIMIT $1",
		6, {INT4OID, TEXTOID, TIMESTAMPTZOID, OIDOID, INT2OID, INT8OID}
	},
	[GP_SWEEP_CLOSE] = {
		/* holds the sweep has locked, by their locked version's ctid */
		"UPDATE harbor.stock_reservations AS r\n"
		"   SET status = 'expired', closed_at = pg_catalog.now()\n"
		" WHERE r.ctid OPERATOR(pg_catalog.=) ANY ($1)\n"
		"   AND r.status OPERATOR(pg_catalog.=) 'active'\n"
		"RETURNING r.item_id, r.qty, {bucket}",
		1, {TIDARRAYOID}
	},
	[GP_PURGE_HOLDS] = {
		"SELECT x.ctid FROM harbor.stock_reservations x\n"
		" WHERE x.status OPERATOR(pg_catalog.<>) 'active'\n"
		"   AND x.closed_at OPERATOR(pg_catalog.<) $2\n"
		" ORDER BY x.closed_at LIMIT $1",
		2, {INT4OID, TIMESTAMPTZOID}
	},
	[GP_PURGE_DELETE] = {
		"DELETE FROM harbor.stock_reservations AS r\n"
		" WHERE r.ctid OPERATOR(pg_catalog.=) ANY ($1)\n"
		"   AND r.status OPERATOR(pg_catalog.<>) 'active'",
		1, {TIDARRAYOID}
	},
	[GP_HOLDS] = {
		"SELECT (SELECT COALESCE(pg_catalog.sum(x.qty), 0)::pg_catalog.int8\n"
		"          FROM harbor.stock_reservations x\n"
		"         WHERE x.model OPERATOR(pg_catalog.=) $1 AND x.item_id OPERATOR(pg_catalog.=) $2\n"
		"           AND x.status OPERATOR(pg_catalog.=) 'active'),\n"
		"       (SELECT COALESCE(pg_catalog.sum(x.qty), 0)::pg_catalog.int8\n"
		"          FROM harbor.stock_reservations x\n"
		"         WHERE x.model OPERATOR(pg_catalog.=) $1 AND x.item_id OPERATOR(pg_catalog.=) $2\n"
		"           AND x.status OPERATOR(pg_catalog.=) 'confirmed')",
		2, {TEXTOID, INT8OID}
	},
	[GP_CHECK_ROWS] = {
		"SELECT r.model, r.item_id, pg_catalog.format('reservation %s: %s', r.id, p.problem)\n"
		"  FROM harbor.stock_reservations r,\n"
		"       LATERAL (SELECT CASE\n"
		"           WHEN r.status OPERATOR(pg_catalog.<>)\n"
		"                ALL ('{active,confirmed,released,expired}'::pg_catalog.text[])\n"
		"               THEN pg_catalog.format('unknown status %L', r.status)\n"
		"           WHEN r.qty OPERATOR(pg_catalog.<=) 0 THEN 'quantity is not positive'\n"
		"           WHEN r.status OPERATOR(pg_catalog.=) 'active' AND r.closed_at IS NOT NULL\n"
		"               THEN 'active but closed'\n"
		"           WHEN r.status OPERATOR(pg_catalog.<>) 'active' AND r.closed_at IS NULL\n"
		"               THEN r.status OPERATOR(pg_catalog.||) ' but not closed'\n"
		"           WHEN r.status OPERATOR(pg_catalog.=) ANY ('{active,confirmed}'::pg_catalog.text[])\n"
		"                AND NOT EXISTS (SELECT FROM harbor.stock_model s\n"
		"                                 WHERE s.model OPERATOR(pg_catalog.=) r.model)\n"
		"               THEN 'hold on a model that does not keep stock'\n"
		"           END AS problem) p\n"
		" WHERE p.problem IS NOT NULL\n"
		" ORDER BY r.model, r.item_id, r.id",
		0, {0}
	},
};

/* ---------------------------------------------------------------------
 * The per-backend cache of stock models and kept plans (see stock.h)
 * ---------------------------------------------------------------------
 */

/* Nothing to register: cache.c invalidates and retires the cache. */
void
harbor_reservations_init(void)
{
	harbor_buckets_init();
}

static int
stock_model_cmp(const void *a, const void *b)
{
	return strcmp(((const StockModel *) a)->name, ((const StockModel *) b)->name);
}

/*
 * The stock models and the statements on the harbor tables, rebuilt when
 * the registry, harbor.stock_model or harbor.stock_reservations changed.
 */
StockCache *
harbor_stock_cache(void)
{
	HarborCacheEntry *e = harbor_cache_entry(InvalidOid);
	StockCache *c;
	MemoryContext oldcxt;
	Oid			nspid;
	uint64		nrows;

	if (e->data[HARBOR_CACHE_STOCK] != NULL)
		return (StockCache *) e->data[HARBOR_CACHE_STOCK];

	nspid = get_namespace_oid(HARBOR_SCHEMA, false);
	harbor_cache_depend(e, get_relname_relid("stock_model", nspid));
	harbor_cache_depend(e, get_relname_relid("stock_reservations", nspid));

	c = MemoryContextAllocZero(e->cxt, sizeof(StockCache));
	c->entry = e;
	c->holds_relid = get_relname_relid("stock_reservations", nspid);
	c->holds_type = get_rel_type_id(c->holds_relid);

	/* read-write mode: a fresh snapshot, which sees this statement's writes */
	harbor_spi_exec("SELECT s.model, s.stock_column::pg_catalog.text FROM harbor.stock_model s ORDER BY s.model",
					0, NULL, NULL, NULL, false, 0);
	nrows = SPI_processed;
	c->models = MemoryContextAllocZero(e->cxt, sizeof(StockModel) * Max(nrows, 1));
	for (uint64 i = 0; i < nrows; i++)
	{
		char	   *name = harbor_spi_getcstring(i, 1);
		char	   *column = harbor_spi_getcstring(i, 2);
		HarborModel *m = harbor_model_lookup(name, true);
		StockModel *sm;

		if (m == NULL || m->npk != 1)
			continue;			/* check_stock() reports it */
		sm = &c->models[c->nmodels++];
		oldcxt = MemoryContextSwitchTo(e->cxt);
		sm->name = pstrdup(name);
		sm->relid = m->relid;
		sm->stock_column = pstrdup(column);
		sm->pk_column = pstrdup(m->pk_columns[0]);
		MemoryContextSwitchTo(oldcxt);
	}
	qsort(c->models, c->nmodels, sizeof(StockModel), stock_model_cmp);
	harbor_buckets_cache_build(c);
	e->data[HARBOR_CACHE_STOCK] = c;
	return c;
}

/*
 * The statements of one item table, built from the names the table has
 * now: a RENAME or SET SCHEMA invalidates the table's entry, and the next
 * call builds them again from the new names.
 */
StockTable *
harbor_stock_table(StockModel *m)
{
	HarborCacheEntry *e = harbor_cache_entry(m->relid);
	StockTable *t;
	char	   *qrel;
	Oid			nspid;

	if (e->data[HARBOR_CACHE_STOCK] != NULL)
		return (StockTable *) e->data[HARBOR_CACHE_STOCK];

	/* errors (table dropped) before anything is linked in */
	qrel = harbor_quoted_relname(m->relid);
	nspid = get_namespace_oid(HARBOR_SCHEMA, false);
	harbor_cache_depend(e, get_relname_relid("stock_model", nspid));
	/* its statements name the holds' bucket column when there is one */
	harbor_cache_depend(e, get_relname_relid("stock_reservations", nspid));

	t = MemoryContextAllocZero(e->cxt, sizeof(StockTable));
	t->entry = e;
	t->relid = m->relid;
	t->qrel = MemoryContextStrdup(e->cxt, qrel);
	t->qpk = MemoryContextStrdup(e->cxt, quote_identifier(m->pk_column));
	t->qstock = MemoryContextStrdup(e->cxt, quote_identifier(m->stock_column));
	t->pk_attnum = get_attnum(m->relid, m->pk_column);
	t->pk_type = t->pk_attnum != InvalidAttrNumber ? get_atttype(m->relid, t->pk_attnum) : InvalidOid;
	t->stock_attnum = get_attnum(m->relid, m->stock_column);
	t->stock_type = t->stock_attnum != InvalidAttrNumber ?
		get_atttype(m->relid, t->stock_attnum) : InvalidOid;
	e->data[HARBOR_CACHE_STOCK] = t;
	return t;
}

/*
 * {rel}, {pk}, {stock}, {relid} and {stock_attnum} replaced by the table's;
 * {bucket} by the holds' bucket column (harbor_bucket_sql)
 */
static char *
model_sql(StockTable *t, const char *tmpl)
{
	StringInfoData buf;
	const char *p = tmpl;

	initStringInfo(&buf);
	while (*p)
	{
		if (strncmp(p, "{rel}", 5) == 0)
		{
			appendStringInfoString(&buf, t->qrel);
			p += 5;
		}
		else if (strncmp(p, "{pk}", 4) == 0)
		{
			appendStringInfoString(&buf, t->qpk);
			p += 4;
		}
		else if (strncmp(p, "{stock}", 7) == 0)
		{
			appendStringInfoString(&buf, t->qstock);
			p += 7;
		}
		else if (strncmp(p, "{relid}", 7) == 0)
		{
			appendStringInfo(&buf, "%u", t->relid);
			p += 7;
		}
		else if (strncmp(p, "{stock_attnum}", 14) == 0)
		{
			appendStringInfo(&buf, "%d", (int) t->stock_attnum);
			p += 14;
		}
		else
			appendStringInfoChar(&buf, *p++);
	}
	return harbor_bucket_sql(buf.data);
}

/*
 * Generic plans: every statement probes by key, so a custom plan would
 * only cost planning time on each call.  Plans are prepared on first use
 * and owned by the cache entry.
 */
SPIPlanPtr
harbor_stock_model_plan(StockTable *t, ModelPlan which)
{
	if (t->plans[which] == NULL)
		t->plans[which] = harbor_cache_prepare(t->entry, model_sql(t, model_plan_defs[which].sql),
											   model_plan_defs[which].nargs,
											   (Oid *) model_plan_defs[which].argtypes,
											   CURSOR_OPT_GENERIC_PLAN);
	return t->plans[which];
}

SPIPlanPtr
harbor_stock_global_plan(StockCache *c, GlobalPlan which)
{
	if (c->plans[which] == NULL)
		c->plans[which] = harbor_cache_prepare(c->entry, harbor_bucket_sql(global_plan_defs[which].sql),
											   global_plan_defs[which].nargs,
											   (Oid *) global_plan_defs[which].argtypes,
											   CURSOR_OPT_GENERIC_PLAN);
	return c->plans[which];
}

uint64
harbor_stock_run(SPIPlanPtr plan, Datum *values, const char *nulls, bool read_only)
{
	int			rc = SPI_execute_plan(plan, values, nulls, read_only, 0);

	if (rc < 0)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(rc));
	return SPI_processed;
}

Datum
harbor_stock_result(int row, int col, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, isnull);
}

int64
harbor_stock_result_int64(int row, int col)
{
	bool		isnull;
	Datum		d = harbor_stock_result(row, col, &isnull);

	return isnull ? 0 : DatumGetInt64(d);
}

/*
 * The stock cache, for the reservation functions.  They run with the
 * caller's search_path: every statement they keep names its tables,
 * operators, functions and types schema-qualified, and a registry rebuild
 * runs its own statements under a fixed search_path (registry.c).
 */
static StockCache *
get_stock_cache(void)
{
	int			nmodels;

	(void) harbor_model_list(&nmodels);
	return harbor_stock_cache();
}

#define model_plan(t, which)	harbor_stock_model_plan((t), (which))
#define global_plan(c, which)	harbor_stock_global_plan((c), (which))
#define run_plan			harbor_stock_run
#define result_datum		harbor_stock_result
#define result_int64		harbor_stock_result_int64

/* ---------------------------------------------------------------------
 * Arguments
 * ---------------------------------------------------------------------
 */
static void
require_arg(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", name)));
}

static Datum
order_arg(FunctionCallInfo fcinfo, int argno)
{
	text	   *order;

	require_arg(fcinfo, argno, "order_id");
	order = PG_GETARG_TEXT_PP(argno);
	if (VARSIZE_ANY_EXHDR(order) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("order_id must not be empty")));
	return PointerGetDatum(order);
}

static int32
qty_arg(FunctionCallInfo fcinfo, int argno)
{
	int32		qty;

	require_arg(fcinfo, argno, "qty");
	qty = PG_GETARG_INT32(argno);
	if (qty <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("qty must be greater than zero"),
				 errdetail("The requested quantity was %d.", qty)));
	return qty;
}

static Datum
ttl_arg(FunctionCallInfo fcinfo, int argno)
{
	Interval	zero;
	Datum		ttl;

	require_arg(fcinfo, argno, "ttl");
	ttl = PG_GETARG_DATUM(argno);
	memset(&zero, 0, sizeof(zero));
	if (!DatumGetBool(DirectFunctionCall2(interval_gt, ttl, IntervalPGetDatum(&zero))))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("ttl must be a positive interval"),
				 errdetail("The ttl given was %s.",
						   DatumGetCString(DirectFunctionCall1(interval_out, ttl)))));
	return ttl;
}

int32
harbor_stock_batch_arg(FunctionCallInfo fcinfo, int argno)
{
	int32		n;

	require_arg(fcinfo, argno, "batch_size");
	n = PG_GETARG_INT32(argno);
	if (n <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch_size must be greater than zero")));
	return n;
}

static char *
stock_model_names(StockCache *c)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < c->nmodels; i++)
		appendStringInfo(&buf, "%s%s", i > 0 ? ", " : "", c->models[i].name);
	return buf.data;
}

static StockModel *
find_stock_model(StockCache *c, const char *name)
{
	StockModel	key;

	if (c->nmodels == 0)
		return NULL;
	key.name = (char *) name;
	return bsearch(&key, c->models, c->nmodels, sizeof(StockModel), stock_model_cmp);
}

/* The model argument, or the only stock model when it is NULL. */
static StockModel *
model_arg(FunctionCallInfo fcinfo, int argno, StockCache *c)
{
	char	   *name;
	StockModel *m;

	if (PG_ARGISNULL(argno))
	{
		if (c->nmodels == 1)
			return &c->models[0];
		if (c->nmodels == 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("no model keeps stock"),
					 errhint("Mark a model as stock-keeping with harbor.enable_stock().")));
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("model must be given when several models keep stock"),
				 errhint("Stock-keeping models: %s.", stock_model_names(c))));
	}
	name = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	m = find_stock_model(c, name);
	if (m == NULL)
	{
		/* unknown models get the registry's error and hint */
		harbor_model_lookup(name, false);
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("model \"%s\" does not keep stock", name),
				 errhint("Mark it as stock-keeping with harbor.enable_stock('%s').", name)));
	}
	return m;
}

static void
unknown_item(StockModel *m, StockTable *t, int64 item)
{
	ereport(ERROR,
			(errcode(ERRCODE_HARBOR_UNKNOWN_ITEM),
			 errmsg("item %lld of model \"%s\" does not exist", (long long) item, m->name),
			 errdetail("No row of %s has %s = %lld, or row-level security hides it.",
					   t->qrel, t->qpk, (long long) item)));
}

/* ---------------------------------------------------------------------
 * The rows reserve returns
 *
 * reserve's statements return only what a new or renewed hold got from
 * its defaults (id, created_at, expires_at); the rest of the row is what
 * the call wrote, and the row is formed here, once, in the caller's
 * memory, instead of being built by the executor as a whole-row value and
 * copied through the CTE, SPI and the function's result.
 * ---------------------------------------------------------------------
 */

static const struct
{
	const char *name;
	Oid			type;
	bool		optional;
}			hold_column_defs[HOLD_NCOLUMNS] =
{
	[HOLD_ID] = {"id", INT8OID, false},
	[HOLD_MODEL] = {"model", TEXTOID, false},
	[HOLD_ITEM] = {"item_id", INT8OID, false},
	[HOLD_ORDER] = {"order_id", TEXTOID, false},
	[HOLD_QTY] = {"qty", INT4OID, false},
	[HOLD_STATUS] = {"status", TEXTOID, false},
	[HOLD_CREATED] = {"created_at", TIMESTAMPTZOID, false},
	[HOLD_EXPIRES] = {"expires_at", TIMESTAMPTZOID, false},
	[HOLD_CLOSED] = {"closed_at", TIMESTAMPTZOID, false},
	[HOLD_WRITER] = {"created_by", REGROLEOID, true},
	[HOLD_BUCKET] = {"bucket", INT4OID, true},
};

static void
hold_type_changed(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("harbor.stock_reservations does not have the columns this version of harbor_orm returns"),
			 errdetail_internal("%s", detail),
			 errhint("Update the extension: ALTER EXTENSION harbor_orm UPDATE.")));
}

/*
 * Where each column of the holds is in desc (a row type of
 * harbor.stock_reservations, or a result descriptor declared as one):
 * every live column must be one this file fills in, of the type it fills
 * in.
 */
static void
hold_layout(TupleDesc desc, AttrNumber *attnum)
{
	for (int k = 0; k < HOLD_NCOLUMNS; k++)
		attnum[k] = InvalidAttrNumber;
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		int			k;

		if (att->attisdropped)
			continue;
		for (k = 0; k < HOLD_NCOLUMNS; k++)
			if (strcmp(NameStr(att->attname), hold_column_defs[k].name) == 0)
				break;
		if (k == HOLD_NCOLUMNS)
			hold_type_changed(psprintf("Column \"%s\" is unknown.", NameStr(att->attname)));
		if (att->atttypid != hold_column_defs[k].type)
			hold_type_changed(psprintf("Column \"%s\" has type %s.", NameStr(att->attname),
									   format_type_be(att->atttypid)));
		attnum[k] = att->attnum;
	}
	for (int k = 0; k < HOLD_NCOLUMNS; k++)
		if (attnum[k] == InvalidAttrNumber && !hold_column_defs[k].optional)
			hold_type_changed(psprintf("Column \"%s\" is missing.", hold_column_defs[k].name));
}

/*
 * The row type of the holds, kept with the stock cache (so set up again
 * after any change to the table) and compared with the type cache's
 * current descriptor on every use all the same.
 */
static TupleDesc
hold_desc(StockCache *c)
{
	TypeCacheEntry *tce = lookup_type_cache(c->holds_type, TYPECACHE_TUPDESC);
	MemoryContext oldcxt;

	if (tce->tupDesc == NULL)
		elog(ERROR, "type %u is not composite", c->holds_type);
	if (c->hold_desc != NULL && c->hold_desc_id == tce->tupDesc_identifier)
		return c->hold_desc;
	c->hold_desc = NULL;
	hold_layout(tce->tupDesc, c->hold_attnum);
	oldcxt = MemoryContextSwitchTo(c->entry->cxt);
	c->hold_desc = BlessTupleDesc(CreateTupleDescCopy(tce->tupDesc));
	MemoryContextSwitchTo(oldcxt);
	c->hold_desc_id = tce->tupDesc_identifier;
	return c->hold_desc;
}

/* The new or renewed hold from the current SPI result, row 0, from column col. */
static void
read_hold(int col, ReservedHold *h)
{
	TupleDesc	desc = SPI_tuptable->tupdesc;
	bool		isnull;

	if (desc->natts < col + 2 ||
		TupleDescAttr(desc, col - 1)->atttypid != INT8OID ||
		TupleDescAttr(desc, col)->atttypid != TIMESTAMPTZOID ||
		TupleDescAttr(desc, col + 1)->atttypid != TIMESTAMPTZOID)
		elog(ERROR, "unexpected result of a reservation statement");
	h->id = DatumGetInt64(result_datum(0, col, &isnull));
	h->created = DatumGetTimestampTz(result_datum(0, col + 1, &isnull));
	h->expires = DatumGetTimestampTz(result_datum(0, col + 2, &isnull));
	h->bucket = HARBOR_NO_BUCKET;
}

/*
 * The columns of the active hold h, laid out by attnum (natts of them);
 * closed_at and dropped columns are null.
 */
static void
hold_values(const AttrNumber *attnum, int natts, const ReservedHold *h, StockModel *m,
			int64 item, int32 qty, Datum order, Datum *values, bool *nulls)
{
	Datum		v[HOLD_NCOLUMNS];

	memset(values, 0, sizeof(Datum) * natts);
	memset(nulls, true, sizeof(bool) * natts);
	v[HOLD_ID] = Int64GetDatum(h->id);
	v[HOLD_MODEL] = CStringGetTextDatum(m->name);
	v[HOLD_ITEM] = Int64GetDatum(item);
	v[HOLD_ORDER] = order;
	v[HOLD_QTY] = Int32GetDatum(qty);
	v[HOLD_STATUS] = CStringGetTextDatum("active");
	v[HOLD_CREATED] = TimestampTzGetDatum(h->created);
	v[HOLD_EXPIRES] = TimestampTzGetDatum(h->expires);
	v[HOLD_CLOSED] = (Datum) 0;
	/* what harbor._stamp_hold wrote: the role running this call */
	v[HOLD_WRITER] = ObjectIdGetDatum(GetUserId());
	v[HOLD_BUCKET] = Int32GetDatum(h->bucket);
	for (int k = 0; k < HOLD_NCOLUMNS; k++)
		if (attnum[k] != InvalidAttrNumber && k != HOLD_CLOSED &&
			!(k == HOLD_BUCKET && h->bucket == HARBOR_NO_BUCKET))
		{
			values[attnum[k] - 1] = v[k];
			nulls[attnum[k] - 1] = false;
		}
}

/* ---------------------------------------------------------------------
 * Reserving
 * ---------------------------------------------------------------------
 */

/*
 * Reserve qty of an item for an order, or renew and resize the order's
 * active hold on it.  Returns true and what the hold got from its
 * statement on success; false and what was available to the order when the
 * stock is short, in which case the caller must raise an error, since a
 * new hold may already be inserted.
 *
 * Lock order: the order's hold on the item (a new row, or the existing
 * one locked FOR UPDATE) first, then the item.  Release takes them in the
 * same order, item by item; confirm and extend take holds only, the
 * sweeps never wait.
 */
static bool
reserve_one(StockCache *c, StockModel *m, StockTable *t, int64 item, int32 qty,
			Datum order, Datum ttl, ReservedHold *hold, int64 *available)
{
	Datum		model_name = CStringGetTextDatum(m->name);
	Datum		values[5];
	bool		isnull;
	int64		own_id = 0;
	int32		own_qty = 0;
	int64		need;
	int64		reclaimed;
	int64		stock;
	bool		stock_null;
	int64		delta;

	/* split items take from their buckets (buckets.c) */
	if (!m->has_buckets && c->entry->valid)
		AcceptInvalidationMessages();	/* a split that just committed */
	if (m->has_buckets || !c->entry->valid)
	{
		BucketReserve br = harbor_bucket_reserve(c, m, t, item, qty, order, ttl,
												 hold, available);

		if (br != BUCKET_NOT_SPLIT)
			return br == BUCKET_RESERVED;
	}

	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		values[0] = Int64GetDatum(item);
		values[1] = Int32GetDatum(qty);
		values[2] = model_name;
		values[3] = order;
		values[4] = ttl;
		if (run_plan(model_plan(t, MP_FAST), values, NULL, false) == 1)
		{
			read_hold(1, hold);
			if (TupleDescAttr(SPI_tuptable->tupdesc, 3)->atttypid != BOOLOID)
				elog(ERROR, "unexpected result of a reservation statement");
			if (DatumGetBool(result_datum(0, 4, &isnull)))
				return true;
			/* our new hold stays; the stock was short or the item is missing */
			break;
		}

		/* the order holds the item already: lock that hold */
		values[0] = model_name;
		values[1] = Int64GetDatum(item);
		values[2] = order;
		if (run_plan(global_plan(c, GP_OWN), values, NULL, false) > 0)
		{
			own_id = result_int64(0, 1);
			own_qty = DatumGetInt32(result_datum(0, 2, &isnull));
			break;
		}
		/* it was closed meanwhile: try again */
	}

	/*
	 * Slow path: lock the item and reclaim its expired holds.  With the
	 * item locked, its stock cannot change under us, so what is left to do
	 * is decided here and done in at most one statement: the item's stock
	 * moves by what was reclaimed less what the hold needs more (a resize
	 * may give back), together with the renewal of an existing hold.
	 */
	values[0] = Int64GetDatum(item);
	if (run_plan(model_plan(t, MP_LOCK), values, NULL, false) == 0)
		unknown_item(m, t, item);
	if (TupleDescAttr(SPI_tuptable->tupdesc, 0)->atttypid != INT8OID)
		elog(ERROR, "unexpected result of a reservation statement");
	stock = DatumGetInt64(result_datum(0, 1, &stock_null));

	reclaimed = harbor_reclaim_expired(c, m, t, item, own_id);
	if (reclaimed > PG_INT32_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("expired holds of item %lld of model \"%s\" hold more than %d units",
						(long long) item, m->name, PG_INT32_MAX)));

	/* a new hold has taken nothing yet; an existing one holds own_qty */
	need = (int64) qty - own_qty;
	if (need > 0 && (stock_null || stock + reclaimed < need))
	{
		/* an item split since this call began takes another path: retry */
		if (harbor_bucket_is_split(c, m, item))
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("item %lld of model \"%s\" was split while this checkout ran",
							(long long) item, m->name),
					 errhint("Retry the transaction.")));
		/* the caller raises an error, which undoes the reclaim too */
		*available = (stock_null ? 0 : stock + reclaimed) + own_qty;
		return false;
	}
	delta = reclaimed - need;

	if (own_id == 0)
	{
		if (delta != 0)
		{
			values[0] = Int64GetDatum(item);
			values[1] = Int32GetDatum((int32) delta);
			run_plan(model_plan(t, MP_GIVE), values, NULL, false);
		}
		return true;
	}
	values[0] = Int64GetDatum(item);
	values[1] = Int32GetDatum((int32) delta);
	values[2] = Int32GetDatum(qty);
	values[3] = Int64GetDatum(own_id);
	values[4] = ttl;
	run_plan(model_plan(t, MP_RESIZE), values, NULL, false);
	read_hold(1, hold);
	/* the bucket an item since merged took it from, if any */
	if (SPI_tuptable->tupdesc->natts >= 4 &&
		TupleDescAttr(SPI_tuptable->tupdesc, 3)->atttypid == INT4OID)
	{
		Datum		b = result_datum(0, 4, &isnull);

		if (!isnull)
			hold->bucket = DatumGetInt32(b);
	}
	return true;
}

Datum
harbor_reserve_stock(PG_FUNCTION_ARGS)
{
	int64		item;
	int32		qty;
	Datum		order;
	Datum		ttl;
	StockCache *c;
	StockModel *m;
	ReservedHold hold;
	int64		available = 0;
	TupleDesc	desc;
	Datum	   *values;
	bool	   *nulls;

	require_arg(fcinfo, 0, "item_id");
	item = PG_GETARG_INT64(0);
	qty = qty_arg(fcinfo, 1);
	order = order_arg(fcinfo, 2);
	ttl = ttl_arg(fcinfo, 3);

	SPI_connect();
	c = get_stock_cache();
	m = model_arg(fcinfo, 4, c);
	if (!reserve_one(c, m, harbor_stock_table(m), item, qty, order, ttl, &hold, &available))
		ereport(ERROR,
				(errcode(ERRCODE_HARBOR_INSUFFICIENT_STOCK),
				 errmsg("insufficient stock for item %lld of model \"%s\"",
						(long long) item, m->name),
				 errdetail("Item %lld: requested %d, available %lld.",
						   (long long) item, qty, (long long) available)));
	SPI_finish();

	desc = hold_desc(c);
	values = palloc(sizeof(Datum) * desc->natts);
	nulls = palloc(sizeof(bool) * desc->natts);
	hold_values(c->hold_attnum, desc->natts, &hold, m, item, qty, order, values, nulls);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

typedef struct ReserveLine
{
	int64		item;
	int64		qty;
	int64		available;
	bool		short_stock;
} ReserveLine;

static int
line_cmp(const void *a, const void *b)
{
	int64		x = ((const ReserveLine *) a)->item;
	int64		y = ((const ReserveLine *) b)->item;

	return (x > y) - (x < y);
}

/* An integer member of line lineno of items, within [lo, hi]. */
static int64
line_int(JsonbContainer *obj, const char *key, int lineno, int64 lo, int64 hi)
{
	JsonbValue *v = getKeyJsonValueFromContainer(obj, key, strlen(key), NULL);
	char	   *s;
	char	   *end;
	long long	n;

	if (v == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("line %d of items has no \"%s\"", lineno, key),
				 errhint("Each line is an object such as {\"item_id\": 1, \"qty\": 2}.")));
	if (v->type != jbvNumeric)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" of line %d of items must be a number", key, lineno)));
	s = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	errno = 0;
	n = strtoll(s, &end, 10);
	if (*end != '\0' || errno != 0 || n < lo || n > hi)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" of line %d of items must be an integer between %lld and %lld",
						key, lineno, (long long) lo, (long long) hi),
				 errdetail("The value given was %s.", s)));
	return n;
}

/* The lines of items, one per item (quantities summed), in ascending item order. */
static ReserveLine *
parse_items(Jsonb *items, int *nlines)
{
	int			n;
	int			out = 0;
	ReserveLine *lines;

	if (!JB_ROOT_IS_ARRAY(items) || JB_ROOT_IS_SCALAR(items))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("items must be a JSON array"),
				 errhint("Pass lines such as '[{\"item_id\": 1, \"qty\": 2}]'.")));
	n = JsonContainerSize(&items->root);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("items must not be empty")));
	lines = palloc0(sizeof(ReserveLine) * n);
	for (int i = 0; i < n; i++)
	{
		JsonbValue *v = getIthJsonbValueFromContainer(&items->root, i);
		JsonbContainer *obj;

		if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("line %d of items must be a JSON object", i + 1),
					 errhint("Each line is an object such as {\"item_id\": 1, \"qty\": 2}.")));
		obj = v->val.binary.data;
		lines[i].item = line_int(obj, "item_id", i + 1, PG_INT64_MIN, PG_INT64_MAX);
		lines[i].qty = line_int(obj, "qty", i + 1, 1, PG_INT32_MAX);
		if (JsonContainerSize(obj) != 2)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("line %d of items has keys other than \"item_id\" and \"qty\"", i + 1)));
	}
	qsort(lines, n, sizeof(ReserveLine), line_cmp);
	for (int i = 0; i < n; i++)
	{
		if (out > 0 && lines[out - 1].item == lines[i].item)
		{
			lines[out - 1].qty += lines[i].qty;
			if (lines[out - 1].qty > PG_INT32_MAX)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("total qty of item %lld in items exceeds %d",
								(long long) lines[i].item, PG_INT32_MAX)));
		}
		else
			lines[out++] = lines[i];
	}
	*nlines = out;
	return lines;
}

Datum
harbor_reserve_many(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum		order;
	Datum		ttl;
	ReserveLine *lines;
	int			nlines;
	int			nshort = 0;
	StockCache *c;
	StockModel *m;
	StockTable *t;
	StringInfoData detail;
	AttrNumber	attnum[HOLD_NCOLUMNS];
	Datum	   *values;
	bool	   *nulls;

	order = order_arg(fcinfo, 0);
	require_arg(fcinfo, 1, "items");
	lines = parse_items(PG_GETARG_JSONB_P(1), &nlines);
	ttl = ttl_arg(fcinfo, 2);

	InitMaterializedSRF(fcinfo, 0);
	hold_layout(rsinfo->setDesc, attnum);
	values = palloc(sizeof(Datum) * rsinfo->setDesc->natts);
	nulls = palloc(sizeof(bool) * rsinfo->setDesc->natts);
	SPI_connect();
	c = get_stock_cache();
	m = model_arg(fcinfo, 3, c);
	t = harbor_stock_table(m);

	/* ascending item order, so that concurrent checkouts cannot deadlock */
	for (int i = 0; i < nlines; i++)
	{
		ReservedHold hold;

		if (reserve_one(c, m, t, lines[i].item, (int32) lines[i].qty, order, ttl,
						&hold, &lines[i].available))
		{
			hold_values(attnum, rsinfo->setDesc->natts, &hold, m, lines[i].item,
						(int32) lines[i].qty, order, values, nulls);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
		else
		{
			lines[i].short_stock = true;
			nshort++;
		}
	}

	if (nshort > 0)
	{
		initStringInfo(&detail);
		for (int i = 0; i < nlines; i++)
			if (lines[i].short_stock)
				appendStringInfo(&detail, "%sItem %lld: requested %lld, available %lld.",
								 detail.len > 0 ? " " : "",
								 (long long) lines[i].item, (long long) lines[i].qty,
								 (long long) lines[i].available);
		ereport(ERROR,
				(errcode(ERRCODE_HARBOR_INSUFFICIENT_STOCK),
				 errmsg("insufficient stock for %d of %d items of order \"%s\"",
						nshort, nlines, TextDatumGetCString(order)),
				 errdetail_internal("%s", detail.data),
				 errhint("Nothing was reserved.")));
	}
	SPI_finish();
	return (Datum) 0;
}

/* ---------------------------------------------------------------------
 * Confirm, release, extend
 * ---------------------------------------------------------------------
 */
Datum
harbor_confirm_reservation(PG_FUNCTION_ARGS)
{
	Datum		order = order_arg(fcinfo, 0);
	char	   *order_str = TextDatumGetCString(order);
	StockCache *c;
	uint64		confirmed;
	uint64		nitems;
	int			nconfirmed_before = 0;
	int			nlost = 0;
	StringInfoData lost;

	SPI_connect();
	c = get_stock_cache();
	confirmed = run_plan(global_plan(c, GP_CONFIRM), &order, NULL, false);

	/*
	 * Look at the order's latest hold on each item after confirming, so
	 * that holds a sweep expired meanwhile are seen.
	 */
	nitems = run_plan(global_plan(c, GP_ORDER_STATE), &order, NULL, false);
	initStringInfo(&lost);
	for (uint64 i = 0; i < nitems; i++)
	{
		bool		isnull;

		if (DatumGetBool(result_datum(i, 4, &isnull)))
		{
			if (nlost < 10)
				appendStringInfo(&lost, "%sitem %s of model \"%s\"", nlost > 0 ? ", " : "",
								 harbor_spi_getcstring(i, 2), harbor_spi_getcstring(i, 1));
			nlost++;
		}
		else if (strcmp(harbor_spi_getcstring(i, 3), "confirmed") == 0)
			nconfirmed_before++;
	}
	if (nlost > 0)
		ereport(ERROR,
				(errcode(ERRCODE_HARBOR_NOT_HELD),
				 errmsg("order \"%s\" no longer holds stock it reserved", order_str),
				 errdetail("Expired holds: %s%s.", lost.data, nlost > 10 ? ", ..." : ""),
				 errhint("Reserve the items again, then confirm.")));
	if (confirmed == 0 && nconfirmed_before == 0)
		ereport(ERROR,
				(errcode(ERRCODE_HARBOR_NOT_HELD),
				 errmsg("order \"%s\" holds no stock to confirm", order_str),
				 nitems > 0 ? errdetail("Its holds were released.") :
				 errdetail("It has no reservations.")));
	SPI_finish();
	PG_RETURN_INT32((int32) confirmed);
}

Datum
harbor_release_reservation(PG_FUNCTION_ARGS)
{
	Datum		order = order_arg(fcinfo, 0);
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	StockCache *c;
	uint64		nitems;
	char	  **models;
	int64	   *items;
	int32		released = 0;

	SPI_connect();
	c = get_stock_cache();

	values[0] = order;
	values[1] = PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1);
	nulls[1] = PG_ARGISNULL(1) ? 'n' : ' ';
	nitems = run_plan(global_plan(c, GP_ORDER_ITEMS), values, nulls, false);
	models = palloc(sizeof(char *) * Max(nitems, 1));
	items = palloc(sizeof(int64) * Max(nitems, 1));
	for (uint64 i = 0; i < nitems; i++)
	{
		models[i] = harbor_spi_getcstring(i, 1);
		items[i] = result_int64(i, 2);
	}

	/*
	 * One item at a time, in (model, item) order: the hold, then the item,
	 * as reserve takes them.  Taking every hold first and then the items
	 * would hold a hold on a later item while waiting for an earlier item.
	 */
	nulls[1] = ' ';
	for (uint64 i = 0; i < nitems; i++)
	{
		StockModel *m = find_stock_model(c, models[i]);
		int32		qty = 0;

		CHECK_FOR_INTERRUPTS();
		values[0] = order;
		values[1] = CStringGetTextDatum(models[i]);
		values[2] = Int64GetDatum(items[i]);
		if (run_plan(global_plan(c, GP_RELEASE), values, NULL, false) == 0)
			continue;			/* closed meanwhile */
		qty = (int32) result_int64(0, 1);
		released++;
		/* a model that no longer keeps stock has nothing to restore */
		if (m != NULL)
		{
			bool		isnull;
			Datum		bucket = result_datum(0, 2, &isnull);

			/* to the bucket it came from, if that is still there */
			if (!isnull && harbor_bucket_give(c, m, harbor_stock_table(m), items[i],
											  DatumGetInt32(bucket), qty))
				continue;
			values[0] = Int64GetDatum(items[i]);
			values[1] = Int32GetDatum(qty);
			run_plan(model_plan(harbor_stock_table(m), MP_GIVE), values, NULL, false);
		}
	}
	SPI_finish();
	PG_RETURN_INT32(released);
}

Datum
harbor_extend_reservation(PG_FUNCTION_ARGS)
{
	Datum		values[2];
	StockCache *c;
	uint64		n;

	values[0] = order_arg(fcinfo, 0);
	values[1] = ttl_arg(fcinfo, 1);
	SPI_connect();
	c = get_stock_cache();
	n = run_plan(global_plan(c, GP_EXTEND), values, NULL, false);
	SPI_finish();
	PG_RETURN_INT32((int32) n);
}

/* ---------------------------------------------------------------------
 * Status and checks
 * ---------------------------------------------------------------------
 */
Datum
harbor_stock_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int64		item;
	StockCache *c;
	StockModel *m;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};
	Datum		args[2];
	bool		stock_null;
	int64		stock;

	require_arg(fcinfo, 0, "item_id");
	item = PG_GETARG_INT64(0);
	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	c = get_stock_cache();
	m = model_arg(fcinfo, 1, c);

	args[0] = Int64GetDatum(item);
	if (run_plan(model_plan(harbor_stock_table(m), MP_STOCK), args, NULL, true) == 0)
		unknown_item(m, harbor_stock_table(m), item);
	stock = DatumGetInt64(result_datum(0, 1, &stock_null));
	/* a split item's available stock is its column and its buckets */
	if (m->has_buckets || !c->entry->valid)
		stock += harbor_bucket_sum(c, m, item);

	args[0] = CStringGetTextDatum(m->name);
	args[1] = Int64GetDatum(item);
	run_plan(global_plan(c, GP_HOLDS), args, NULL, true);
	values[1] = Int64GetDatum(result_int64(0, 1));
	values[2] = Int64GetDatum(result_int64(0, 2));
	if (stock_null)
		nulls[0] = nulls[3] = true;
	else
	{
		values[0] = Int64GetDatum(stock + DatumGetInt64(values[1]));
		values[3] = Int64GetDatum(stock);
	}
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	SPI_finish();
	return (Datum) 0;
}

static void
put_problem(ReturnSetInfo *rsinfo, const char *model, bool item_null, int64 item,
			const char *problem)
{
	Datum		values[3];
	bool		nulls[3] = {false, item_null, false};

	values[0] = CStringGetTextDatum(model);
	values[1] = Int64GetDatum(item);
	values[2] = CStringGetTextDatum(problem);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

static bool
is_integer_type(Oid typid)
{
	return typid == INT2OID || typid == INT4OID || typid == INT8OID;
}

Datum
harbor_check_stock(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	StockCache *c;
	uint64		n;

	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	c = get_stock_cache();

	/* stock models the registry no longer backs */
	n = harbor_spi_exec("SELECT s.model FROM harbor.stock_model s ORDER BY 1",
						0, NULL, NULL, NULL, true, 0);
	n = SPI_processed;
	for (uint64 i = 0; i < n; i++)
	{
		char	   *name = harbor_spi_getcstring(i, 1);

		if (find_stock_model(c, name) == NULL)
			put_problem(rsinfo, name, true, 0,
						"the model's primary key is no longer one integer column");
	}

	for (int i = 0; i < c->nmodels; i++)
	{
		StockModel *m = &c->models[i];
		StockTable *t;
		Datum		arg;

		CHECK_FOR_INTERRUPTS();
		t = harbor_stock_table(m);
		if (t->stock_attnum == InvalidAttrNumber)
		{
			put_problem(rsinfo, m->name, true, 0,
						psprintf("stock column %s does not exist", t->qstock));
			continue;
		}
		if (!is_integer_type(t->stock_type))
		{
			put_problem(rsinfo, m->name, true, 0,
						psprintf("stock column %s is not an integer column", t->qstock));
			continue;
		}
		n = run_plan(model_plan(t, MP_BAD_STOCK), NULL, NULL, true);
		for (uint64 r = 0; r < n; r++)
			put_problem(rsinfo, m->name, false, result_int64(r, 1), harbor_spi_getcstring(r, 2));

		arg = CStringGetTextDatum(m->name);
		n = run_plan(model_plan(t, MP_ORPHANS), &arg, NULL, true);
		for (uint64 r = 0; r < n; r++)
			put_problem(rsinfo, m->name, false, result_int64(r, 1),
						psprintf("%lld active or confirmed holds on an item that does not exist",
								 (long long) result_int64(r, 2)));

		n = run_plan(model_plan(t, MP_UNCREDITED), &arg, NULL, true);
		for (uint64 r = 0; r < n; r++)
			put_problem(rsinfo, m->name, false, result_int64(r, 1), harbor_spi_getcstring(r, 2));
	}

	harbor_bucket_check(c, rsinfo, put_problem);

	n = run_plan(global_plan(c, GP_CHECK_ROWS), NULL, NULL, true);
	for (uint64 r = 0; r < n; r++)
		put_problem(rsinfo, harbor_spi_getcstring(r, 1), false, result_int64(r, 2),
					harbor_spi_getcstring(r, 3));
	SPI_finish();
	return (Datum) 0;
}

/* ---------------------------------------------------------------------
 * Configuration
 * ---------------------------------------------------------------------
 */
Datum
harbor_enable_stock(PG_FUNCTION_ARGS)
{
	char	   *model_name;
	char	   *column;
	HarborModel *m;
	AttrNumber	attnum;
	Oid			typid;
	Datum		values[2];
	Oid			argtypes[2] = {TEXTOID, TEXTOID};

	require_arg(fcinfo, 0, "model");
	require_arg(fcinfo, 1, "stock_column");
	model_name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	column = NameStr(*PG_GETARG_NAME(1));

	/* after a concurrent unregister_model commits, the model is unknown */
	harbor_registry_write_lock();
	m = harbor_model_lookup(model_name, false);
	if (m->npk != 1 || !is_integer_type(m->pk_types[0]))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("model \"%s\" cannot keep stock", model_name),
				 errdetail("Its primary key is (%s); a stock model needs a primary key of one smallint, integer or bigint column.",
						   harbor_join_quoted(m->pk_columns, m->npk))));
	attnum = get_attnum(m->relid, column);
	if (attnum == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of model \"%s\" does not exist", column, model_name)));
	typid = get_atttype(m->relid, attnum);
	if (!is_integer_type(typid))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("stock column \"%s\" of model \"%s\" must be an integer column",
						column, model_name),
				 errdetail("Its type is %s.", format_type_be(typid))));
	if (strcmp(column, m->pk_columns[0]) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the stock column of model \"%s\" cannot be its primary key", model_name)));

	SPI_connect();
	values[0] = CStringGetTextDatum(model_name);
	values[1] = CStringGetTextDatum(column);
	harbor_spi_exec("INSERT INTO harbor.stock_model (model, stock_column) VALUES ($1, $2)"
					" ON CONFLICT (model) DO UPDATE SET stock_column = EXCLUDED.stock_column",
					2, argtypes, values, NULL, false, 0);
	SPI_finish();
	PG_RETURN_VOID();
}

Datum
harbor_stock_model_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("harbor._stock_model_changed() must be called as a trigger")));
	/* other backends through the relcache; this one at once */
	CacheInvalidateRelcacheByRelid(RelationGetRelid(trigdata->tg_relation));
	harbor_cache_registry_invalidate();
	return PointerGetDatum(NULL);
}

/*
 * BEFORE INSERT OR UPDATE on harbor.stock_reservations: every row version
 * records the role that wrote it, whatever the writer put there.  The
 * sweeps give back the stock of an expired hold only if that role could
 * have moved it itself (harbor_hold_creditable), so a hold written
 * directly into the table by a role that cannot update the item table
 * moves no stock.
 */
Datum
harbor_stamp_hold(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	HeapTuple	tuple;
	int			attnum;
	Datum		value;
	bool		isnull = false;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("harbor._stamp_hold() must be called as a BEFORE ROW trigger")));
	desc = RelationGetDescr(trigdata->tg_relation);
	tuple = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ?
		trigdata->tg_newtuple : trigdata->tg_trigtuple;
	attnum = SPI_fnumber(desc, "created_by");
	if (attnum <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("harbor.stock_reservations has no column \"created_by\""),
				 errhint("Update the extension: ALTER EXTENSION harbor_orm UPDATE.")));
	value = ObjectIdGetDatum(GetUserId());
	tuple = heap_modify_tuple_by_cols(tuple, desc, 1, &attnum, &value, &isnull);
	return PointerGetDatum(tuple);
}
