/*-------------------------------------------------------------------------
 *
 * registry.c
 *	  The mapped-model registry: tables registered as models, relationships
 *	  discovered from foreign keys or declared, and the per-backend cache
 *	  that the reservation and loading code read it through.
 *
 * Registrations are rows of harbor.model and harbor.relationship, so they
 * are transactional and survive pg_dump.  Discovered relationships are
 * recomputed from pg_constraint whenever a model is added, refreshed or
 * removed; declared ones are kept.  Event triggers keep the registry in
 * step with ALTER TABLE and DROP TABLE.  Each backend caches the registry
 * and rebuilds it after a relcache invalidation of either table, which a
 * row trigger on them sends.
 *
 * Copyright (c) 2026, harbor_orm developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "commands/event_trigger.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/syscache.h"

#include "cache.h"
#include "harbor_orm.h"
#include "registry.h"
#include "util.h"

PG_FUNCTION_INFO_V1(harbor_register_model);
PG_FUNCTION_INFO_V1(harbor_unregister_model);
PG_FUNCTION_INFO_V1(harbor_reflect);
PG_FUNCTION_INFO_V1(harbor_register_relationship);
PG_FUNCTION_INFO_V1(harbor_unregister_relationship);
PG_FUNCTION_INFO_V1(harbor_describe);
PG_FUNCTION_INFO_V1(harbor_check_models);
PG_FUNCTION_INFO_V1(harbor_registry_changed);
PG_FUNCTION_INFO_V1(harbor_on_ddl_end);
PG_FUNCTION_INFO_V1(harbor_on_sql_drop);

/* ---------------------------------------------------------------------
 * Relationship discovery.
 *
 * One query computes every relationship that the foreign keys between
 * registered models imply, names them, and marks a name that two
 * candidates of one model share as ambiguous.  Names taken by a declared
 * relationship of the same model are left to it.
 * ---------------------------------------------------------------------
 */
#define DISCOVERY_CTE \
"WITH m AS (\n" \
"    SELECT name, relation::oid AS relid FROM harbor.model\n" \
"), fk AS (\n" \
"    SELECT c.conname::text AS conname, c.conrelid, c.confrelid, c.conkey,\n" \
"           src.name AS src_model, dst.name AS dst_model,\n" \
"           ARRAY(SELECT a.attname::text\n" \
"                   FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)\n" \
"                   JOIN pg_catalog.pg_attribute a\n" \
"                     ON a.attrelid = c.conrelid AND a.attnum = k.attnum\n" \
"                  ORDER BY k.ord) AS fk_cols,\n" \
"           ARRAY(SELECT a.attname::text\n" \
"                   FROM unnest(c.confkey) WITH ORDINALITY AS k(attnum, ord)\n" \
"                   JOIN pg_catalog.pg_attribute a\n" \
"                     ON a.attrelid = c.confrelid AND a.attnum = k.attnum\n" \
"                  ORDER BY k.ord) AS ref_cols,\n" \
"           EXISTS (SELECT 1 FROM pg_catalog.pg_index i\n" \
"                    WHERE i.indrelid = c.conrelid AND i.indisunique\n" \
"                      AND i.indpred IS NULL AND i.indexprs IS NULL\n" \
"                      AND i.indnkeyatts = cardinality(c.conkey)\n" \
"                      AND ARRAY(SELECT u.k FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS u(k, o)\n" \
"                                 WHERE u.o <= i.indnkeyatts) @> c.conkey) AS fk_unique\n" \
"      FROM pg_catalog.pg_constraint c\n" \
"      JOIN m src ON src.relid = c.conrelid\n" \
"      JOIN m dst ON dst.relid = c.confrelid\n" \
"     WHERE c.contype = 'f' AND c.conparentid = 0\n" \
"), assoc AS (\n" \
"    SELECT f1.conrelid AS assoc_relid, f1.conname AS c1, f2.conname AS c2,\n" \
"           f1.dst_model AS m1, f1.fk_cols AS fk1, f1.ref_cols AS ref1,\n" \
"           f2.dst_model AS m2, f2.fk_cols AS fk2, f2.ref_cols AS ref2,\n" \
"           f2.confrelid AS far_relid\n" \
"      FROM fk f1\n" \
"      JOIN fk f2 ON f2.conrelid = f1.conrelid AND f2.conname <> f1.conname\n" \
"      JOIN pg_catalog.pg_index p ON p.indrelid = f1.conrelid AND p.indisprimary\n" \
"     WHERE f1.confrelid <> f1.conrelid AND f2.confrelid <> f2.conrelid\n" \
"       AND (SELECT count(*) FROM fk f3 WHERE f3.conrelid = f1.conrelid) = 2\n" \
"       AND NOT (f1.conkey && f2.conkey)\n" \
"       AND p.indnkeyatts = cardinality(f1.conkey) + cardinality(f2.conkey)\n" \
"       AND ARRAY(SELECT u.k FROM unnest(p.indkey::int2[]) WITH ORDINALITY AS u(k, o)\n" \
"                  WHERE u.o <= p.indnkeyatts) @> (f1.conkey || f2.conkey)\n" \
"), cand AS (\n" \
"    SELECT src_model AS model,\n" \
"           CASE WHEN cardinality(fk_cols) = 1 AND fk_cols[1] ~ '^.+_id$'\n" \
"                THEN left(fk_cols[1], -3) ELSE dst_model END AS name,\n" \
"           'many_to_one'::text AS kind, dst_model AS target,\n" \
"           fk_cols AS local_columns, ref_cols AS remote_columns,\n" \
"           NULL::regclass AS secondary, NULL::text[] AS secondary_local_columns,\n" \
"           NULL::text[] AS secondary_remote_columns, conname AS constraint_name\n" \
"      FROM fk\n" \
"    UNION ALL\n" \
"    SELECT dst_model, src_model,\n" \
"           CASE WHEN fk_unique THEN 'one_to_one' ELSE 'one_to_many' END,\n" \
"           src_model, ref_cols, fk_cols, NULL, NULL, NULL, conname\n" \
"      FROM fk\n" \
"    UNION ALL\n" \
"    SELECT a.m1, (SELECT c.relname::text FROM pg_catalog.pg_class c WHERE c.oid = a.far_relid),\n" \
"           'many_to_many', a.m2, a.ref1, a.ref2, a.assoc_relid::regclass, a.fk1, a.fk2,\n" \
"           a.c1 || ',' || a.c2\n" \
"      FROM assoc a\n" \
"), cand_named AS (\n" \
"    SELECT c.model, regexp_replace(c.name, '[.[:space:]]', '_', 'g') AS name, c.kind, c.target,\n" \
"           c.local_columns, c.remote_columns, c.secondary, c.secondary_local_columns,\n" \
"           c.secondary_remote_columns, c.constraint_name\n" \
"      FROM cand c\n" \
"), named AS (\n" \
"    SELECT c.*, count(*) OVER (PARTITION BY c.model, c.name) > 1 AS ambiguous\n" \
"      FROM cand_named c\n" \
"     WHERE NOT EXISTS (SELECT 1 FROM harbor.relationship r\n" \
"                        WHERE r.explicit AND r.model = c.model AND r.name = c.name)\n" \
")\n"

#define REL_COLS(p) \
p "model, " p "name, " p "kind, " p "target, " p "local_columns, " \
p "remote_columns, " p "secondary, " p "secondary_local_columns, " \
p "secondary_remote_columns, " p "constraint_name, " p "ambiguous"
#define REL_ROW(p) "(" REL_COLS(p) ")"

static const char *rediscover_delete_sql =
DISCOVERY_CTE
"DELETE FROM harbor.relationship r\n"
" WHERE NOT r.explicit\n"
"   AND NOT EXISTS (SELECT 1 FROM named n WHERE " REL_ROW("n.") " IS NOT DISTINCT FROM " REL_ROW("r.") ")";

static const char *rediscover_insert_sql =
DISCOVERY_CTE
"INSERT INTO harbor.relationship " REL_ROW("") "\n"
"SELECT " REL_COLS("n.") " FROM named n\n"
" WHERE NOT EXISTS (SELECT 1 FROM harbor.relationship r\n"
"                    WHERE NOT r.explicit AND " REL_ROW("n.") " IS NOT DISTINCT FROM " REL_ROW("r.") ")";

/* ---------------------------------------------------------------------
 * The per-backend cache
 * ---------------------------------------------------------------------
 */
static MemoryContext RegistryContext = NULL;
static HarborModel **models_sorted = NULL;	/* by name */
static int	nmodels = 0;

void
harbor_registry_init(void)
{
	/* invalidation and retirement are cache.c's */
}

uint64
harbor_registry_generation(void)
{
	return harbor_cache_generation();
}

const char *
harbor_relkind_name(HarborRelKind kind)
{
	switch (kind)
	{
		case HARBOR_MANY_TO_ONE:
			return "many_to_one";
		case HARBOR_ONE_TO_MANY:
			return "one_to_many";
		case HARBOR_ONE_TO_ONE:
			return "one_to_one";
		case HARBOR_MANY_TO_MANY:
			return "many_to_many";
	}
	return "unknown";
}

static HarborRelKind
relkind_from_name(const char *name)
{
	if (strcmp(name, "many_to_one") == 0)
		return HARBOR_MANY_TO_ONE;
	if (strcmp(name, "one_to_many") == 0)
		return HARBOR_ONE_TO_MANY;
	if (strcmp(name, "one_to_one") == 0)
		return HARBOR_ONE_TO_ONE;
	if (strcmp(name, "many_to_many") == 0)
		return HARBOR_MANY_TO_MANY;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown relationship kind \"%s\"", name),
			 errhint("Use many_to_one, one_to_many, one_to_one or many_to_many.")));
	return HARBOR_MANY_TO_ONE;	/* keep compiler quiet */
}

char *
harbor_quoted_relname(Oid relid)
{
	char	   *relname = get_rel_name(relid);
	char	   *nspname;

	if (relname == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid),
				 errhint("The table of a model was dropped; see harbor.check_models().")));
	nspname = get_namespace_name(get_rel_namespace(relid));
	return quote_qualified_identifier(nspname, relname);
}

static int
model_name_cmp(const void *a, const void *b)
{
	return strcmp((*(HarborModel *const *) a)->name,
				  (*(HarborModel *const *) b)->name);
}

static char **
spi_text_array(HeapTuple tup, TupleDesc desc, int col, int *n)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	if (isnull)
	{
		*n = 0;
		return NULL;
	}
	return harbor_text_array_to_cstrings(d, n);
}

static HarborModel *
find_in(HarborModel **sorted, int n, const char *name)
{
	HarborModel key;
	HarborModel *keyp = &key;
	HarborModel **found;

	if (n == 0)
		return NULL;
	key.name = (char *) name;
	found = bsearch(&keyp, sorted, n, sizeof(HarborModel *), model_name_cmp);
	return found ? *found : NULL;
}

/*
 * Read both registry tables into a new memory context, with a fresh
 * snapshot (read-write SPI mode), so that a second call in one statement
 * sees what the first one wrote.  The context is built as a child of the
 * current one, so a build that errors leaves nothing behind; only a
 * finished build replaces the snapshot, and the previous one is retired
 * until the end of the transaction (cache.c).
 */
static void
registry_rebuild(void)
{
	MemoryContext newcxt;
	MemoryContext oldcxt;
	MemoryContext prevcxt = RegistryContext;
	Oid			nspid;
	Oid			model_table_oid;
	Oid			relationship_table_oid;
	uint64		token;
	int			rc;
	uint64		nrows;
	HarborModel **loaded;
	int			nloaded;

	token = harbor_cache_registry_begin();
	newcxt = AllocSetContextCreate(CurrentMemoryContext, "harbor_orm registry",
								   ALLOCSET_SMALL_SIZES);
	nspid = get_namespace_oid(HARBOR_SCHEMA, true);
	model_table_oid = OidIsValid(nspid) ? get_relname_relid("model", nspid) : InvalidOid;
	relationship_table_oid = OidIsValid(nspid) ? get_relname_relid("relationship", nspid) : InvalidOid;
	harbor_cache_registry_watch(model_table_oid);
	harbor_cache_registry_watch(relationship_table_oid);
	if (OidIsValid(nspid))
		harbor_cache_registry_watch(get_relname_relid("stock_model", nspid));

	loaded = MemoryContextAllocZero(newcxt, sizeof(HarborModel *));
	nloaded = 0;
	if (OidIsValid(model_table_oid) && OidIsValid(relationship_table_oid))
	{
		/*
		 * Callers may run under the caller's search_path (the reservation
		 * and loader functions do): the build's statements run under a fixed
		 * one, whoever triggers it.
		 */
		int			guc_level = NewGUCNestLevel();

		(void) set_config_option("search_path", "pg_catalog, pg_temp",
								 PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		SPI_connect();
		rc = SPI_execute("SELECT name, relation::pg_catalog.oid, primary_key, columns, "
						 "column_types::pg_catalog.oid[] FROM harbor.model ORDER BY name",
						 false, 0);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "could not read harbor.model: %s", SPI_result_code_string(rc));
		nrows = SPI_processed;
		oldcxt = MemoryContextSwitchTo(newcxt);
		loaded = palloc0(sizeof(HarborModel *) * Max(nrows, 1));
		for (uint64 i = 0; i < nrows; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			HarborModel *m = palloc0(sizeof(HarborModel));
			bool		isnull;
			ArrayType  *types;
			Datum	   *typelems;
			int			ntypes;

			m->name = SPI_getvalue(tup, desc, 1);
			m->relid = DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull));
			m->pk_columns = spi_text_array(tup, desc, 3, &m->npk);
			m->columns = spi_text_array(tup, desc, 4, &m->ncolumns);
			types = DatumGetArrayTypeP(SPI_getbinval(tup, desc, 5, &isnull));
			deconstruct_array(types, OIDOID, sizeof(Oid), true, TYPALIGN_INT,
							  &typelems, NULL, &ntypes);
			m->column_types = palloc(sizeof(Oid) * Max(ntypes, 1));
			for (int j = 0; j < ntypes; j++)
				m->column_types[j] = DatumGetObjectId(typelems[j]);
			m->pk_types = palloc(sizeof(Oid) * m->npk);
			for (int k = 0; k < m->npk; k++)
			{
				m->pk_types[k] = InvalidOid;
				for (int j = 0; j < m->ncolumns && j < ntypes; j++)
					if (strcmp(m->columns[j], m->pk_columns[k]) == 0)
						m->pk_types[k] = m->column_types[j];
			}
			loaded[nloaded++] = m;
		}
		MemoryContextSwitchTo(oldcxt);

		rc = SPI_execute("SELECT model, name, kind, target, local_columns, remote_columns, "
						 "secondary::pg_catalog.oid, secondary_local_columns, secondary_remote_columns, "
						 "constraint_name, explicit, ambiguous, "
						 "pg_catalog.count(*) OVER (PARTITION BY model) "
						 "FROM harbor.relationship ORDER BY model, name, constraint_name, id",
						 false, 0);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "could not read harbor.relationship: %s", SPI_result_code_string(rc));
		nrows = SPI_processed;

		oldcxt = MemoryContextSwitchTo(newcxt);
		for (uint64 i = 0; i < nrows; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			HarborModel *m = find_in(loaded, nloaded, SPI_getvalue(tup, desc, 1));
			HarborRelationship *r;
			bool		isnull;
			char	   *tmp;
			int			n1,
						n2;

			if (m == NULL)
				continue;
			if (m->relationships == NULL)
			{
				int64		n = DatumGetInt64(SPI_getbinval(tup, desc, 13, &isnull));

				m->relationships = palloc0(sizeof(HarborRelationship) * n);
			}
			r = &m->relationships[m->nrelationships++];
			r->model = m;
			r->name = SPI_getvalue(tup, desc, 2);
			tmp = SPI_getvalue(tup, desc, 3);
			r->kind = relkind_from_name(tmp);
			r->target = find_in(loaded, nloaded, SPI_getvalue(tup, desc, 4));
			r->local_columns = spi_text_array(tup, desc, 5, &r->ncolumns);
			r->remote_columns = spi_text_array(tup, desc, 6, &r->nremote);
			r->secondary = DatumGetObjectId(SPI_getbinval(tup, desc, 7, &isnull));
			if (isnull)
				r->secondary = InvalidOid;
			r->secondary_local_columns = spi_text_array(tup, desc, 8, &n1);
			r->secondary_remote_columns = spi_text_array(tup, desc, 9, &n2);
			r->constraint_name = SPI_getvalue(tup, desc, 10);
			r->explicit_decl = DatumGetBool(SPI_getbinval(tup, desc, 11, &isnull));
			r->ambiguous = DatumGetBool(SPI_getbinval(tup, desc, 12, &isnull));
		}
		MemoryContextSwitchTo(oldcxt);
		SPI_finish();
		AtEOXact_GUC(true, guc_level);
	}

	/* complete: publish it */
	MemoryContextSetParent(newcxt, CacheMemoryContext);
	RegistryContext = newcxt;
	models_sorted = loaded;
	nmodels = nloaded;
	harbor_cache_registry_end(token, prevcxt);
}

static void
registry_ensure(void)
{
	if (!harbor_cache_registry_valid())
		registry_rebuild();
}

HarborModel **
harbor_model_list(int *n)
{
	registry_ensure();
	*n = nmodels;
	return models_sorted;
}

static char *
known_model_names(void)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < nmodels; i++)
		appendStringInfo(&buf, "%s%s", i > 0 ? ", " : "", models_sorted[i]->name);
	return buf.data;
}

HarborModel *
harbor_model_lookup(const char *name, bool missing_ok)
{
	HarborModel *m;

	registry_ensure();
	m = find_in(models_sorted, nmodels, name);
	if (m == NULL && !missing_ok)
	{
		if (nmodels == 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("model \"%s\" does not exist", name),
					 errhint("No models are registered; register a table with harbor.register_model().")));
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("model \"%s\" does not exist", name),
				 errhint("Known models: %s.", known_model_names())));
	}
	return m;
}

HarborModel *
harbor_model_by_relid(Oid relid)
{
	registry_ensure();
	for (int i = 0; i < nmodels; i++)
		if (models_sorted[i]->relid == relid)
			return models_sorted[i];
	return NULL;
}

static void
describe_candidate(StringInfo buf, HarborRelationship *r)
{
	appendStringInfo(buf, "%s to \"%s\"", harbor_relkind_name(r->kind),
					 r->target ? r->target->name : "?");
	if (r->kind == HARBOR_MANY_TO_MANY)
		appendStringInfo(buf, " through %s (%s)",
						 harbor_quoted_relname(r->secondary),
						 harbor_join_quoted(r->secondary_local_columns, r->ncolumns));
	else if (r->kind == HARBOR_MANY_TO_ONE)
		appendStringInfo(buf, " via %s.(%s)", r->model->name,
						 harbor_join_quoted(r->local_columns, r->ncolumns));
	else
		appendStringInfo(buf, " via %s.(%s)", r->target ? r->target->name : "?",
						 harbor_join_quoted(r->remote_columns, r->nremote));
	if (r->constraint_name)
		appendStringInfo(buf, " [constraint %s]", r->constraint_name);
}

HarborRelationship *
harbor_relationship_lookup(HarborModel *model, const char *name)
{
	HarborRelationship *first = NULL;
	int			nfound = 0;

	for (int i = 0; i < model->nrelationships; i++)
	{
		HarborRelationship *r = &model->relationships[i];

		if (strcmp(r->name, name) == 0)
		{
			if (first == NULL)
				first = r;
			nfound++;
		}
	}

	if (first != NULL && !first->ambiguous)
		return first;

	if (first != NULL)
	{
		StringInfoData detail;
		HarborRelationship *example = first;

		initStringInfo(&detail);
		for (int i = 0; i < model->nrelationships; i++)
		{
			HarborRelationship *r = &model->relationships[i];

			if (strcmp(r->name, name) != 0)
				continue;
			appendStringInfoString(&detail, detail.len > 0 ? "; " : "Candidates: ");
			describe_candidate(&detail, r);
		}
		appendStringInfoChar(&detail, '.');
		ereport(ERROR,
				(errcode(ERRCODE_AMBIGUOUS_ALIAS),
				 errmsg("relationship \"%s\" of model \"%s\" is ambiguous", name, model->name),
				 errdetail_internal("%s", detail.data),
				 errhint("Name one of them with harbor.register_relationship('%s', '<name>', '%s', foreign_key => '{%s}').",
						 model->name, example->target ? example->target->name : "?",
						 example->kind == HARBOR_MANY_TO_MANY ?
						 harbor_join_quoted(example->secondary_local_columns, example->ncolumns) :
						 example->kind == HARBOR_MANY_TO_ONE ?
						 harbor_join_quoted(example->local_columns, example->ncolumns) :
						 harbor_join_quoted(example->remote_columns, example->nremote))));
	}

	{
		StringInfoData known;

		initStringInfo(&known);
		for (int i = 0; i < model->nrelationships; i++)
		{
			HarborRelationship *r = &model->relationships[i];

			if (i > 0 && strcmp(r->name, model->relationships[i - 1].name) == 0)
				continue;
			appendStringInfo(&known, "%s%s%s", known.len > 0 ? ", " : "",
							 r->name, r->ambiguous ? " (ambiguous)" : "");
		}
		if (known.len == 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("model \"%s\" has no relationship \"%s\"", model->name, name),
					 errhint("Model \"%s\" has no relationships.", model->name)));
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("model \"%s\" has no relationship \"%s\"", model->name, name),
				 errhint("Relationships of \"%s\": %s.", model->name, known.data)));
	}
	return NULL;				/* keep compiler quiet */
}

/* ---------------------------------------------------------------------
 * Writing the registry
 * ---------------------------------------------------------------------
 */

static char *
text_arg(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", argname)));
	return text_to_cstring(PG_GETARG_TEXT_PP(argno));
}

static void
check_identifier_arg(const char *value, const char *what)
{
	if (value[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", what)));
	if (strlen(value) >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s \"%s\" is too long", what, value),
				 errdetail("Names are limited to %d bytes.", NAMEDATALEN - 1)));
	for (const char *p = value; *p; p++)
		if (*p == '.' || isspace((unsigned char) *p))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s \"%s\" must not contain dots or white space", what, value),
					 errdetail("Dots separate relationship names in include paths.")));
}

/*
 * The catalog snapshot of a table: its primary key, columns and column
 * types.  Returns false if the table has no primary key.
 */
static bool
snapshot_relation(Relation rel, Datum *pk, Datum *cols, Datum *types)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Oid			pkindex = RelationGetPrimaryKeyIndex(rel);
	char	  **colnames;
	Datum	   *typdatums;
	int			ncols = 0;

	colnames = palloc(sizeof(char *) * Max(desc->natts, 1));
	typdatums = palloc(sizeof(Datum) * Max(desc->natts, 1));
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped)
			continue;
		colnames[ncols] = NameStr(att->attname);
		typdatums[ncols] = ObjectIdGetDatum(att->atttypid);
		ncols++;
	}
	*cols = harbor_cstrings_to_text_array(colnames, ncols);
	*types = PointerGetDatum(construct_array(typdatums, ncols, REGTYPEOID,
											 sizeof(Oid), true, TYPALIGN_INT));

	if (!OidIsValid(pkindex))
		return false;
	{
		Relation	idx = index_open(pkindex, AccessShareLock);
		int			nkeys = IndexRelationGetNumberOfKeyAttributes(idx);
		char	  **pknames = palloc(sizeof(char *) * nkeys);

		for (int i = 0; i < nkeys; i++)
		{
			AttrNumber	attnum = idx->rd_index->indkey.values[i];

			pknames[i] = NameStr(TupleDescAttr(desc, attnum - 1)->attname);
		}
		*pk = harbor_cstrings_to_text_array(pknames, nkeys);
		index_close(idx, AccessShareLock);
	}
	return true;
}

/*
 * Registry writes are serialised: every writer takes this lock, which
 * conflicts with itself but not with readers or with the foreign-key checks
 * of harbor.stock_model, before it reads what it is about to change.
 * Writers that register tables lock those tables first, in the order DDL
 * (whose event triggers write the registry) takes them: table, registry.
 */
void
harbor_registry_write_lock(void)
{
	Oid			nspid = get_namespace_oid(HARBOR_SCHEMA, false);
	Oid			relid = get_relname_relid("model", nspid);

	AclResult	aclresult;

	if (!OidIsValid(relid))
		elog(ERROR, "harbor.model does not exist");
	/* as LOCK TABLE would: only who may write the registry may block it */
	aclresult = pg_class_aclcheck(relid, GetUserId(), ACL_INSERT | ACL_UPDATE | ACL_DELETE);
	if (aclresult != ACLCHECK_OK)
	{
		Oid			stock_relid = get_relname_relid("stock_model", nspid);

		/* enable_stock writes only harbor.stock_model */
		if (!OidIsValid(stock_relid) ||
			pg_class_aclcheck(stock_relid, GetUserId(), ACL_INSERT | ACL_UPDATE | ACL_DELETE) != ACLCHECK_OK)
			aclcheck_error(aclresult, OBJECT_TABLE, "model");
	}
	LockRelationOid(relid, ShareRowExclusiveLock);
}

/* Recompute discovered relationships; writes only what changed. */
static void
registry_rediscover(void)
{
	harbor_spi_exec(rediscover_delete_sql, 0, NULL, NULL, NULL, false, 0);
	harbor_spi_exec(rediscover_insert_sql, 0, NULL, NULL, NULL, false, 0);
}

/* The model name a relation is registered under, or NULL.  Needs SPI. */
static char *
registered_name_of(Oid relid)
{
	Oid			argtypes[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(relid)};

	harbor_spi_exec("SELECT name FROM harbor.model WHERE relation::oid = $1",
					1, argtypes, values, NULL, false, 1);
	return SPI_processed > 0 ? harbor_spi_getcstring(0, 1) : NULL;
}

/*
 * Register or refresh one table as model "name".  With refresh_only, a
 * table without primary key keeps its old snapshot instead of erroring
 * (event triggers must never break a user's DDL).  Needs SPI.
 */
static void
register_one(Oid relid, const char *name, bool refresh_only)
{
	Relation	rel;
	Datum		pk = (Datum) 0,
				cols,
				types;
	bool		has_pk;
	char	   *existing;
	char	   *relname;

	rel = relation_open(relid, AccessShareLock);
	relname = harbor_quoted_relname(relid);
	if (rel->rd_rel->relkind != RELKIND_RELATION &&
		rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("%s is not a table", relname),
				 errdetail("Only plain and partitioned tables can be registered as models.")));

	has_pk = snapshot_relation(rel, &pk, &cols, &types);
	relation_close(rel, AccessShareLock);

	if (!has_pk)
	{
		if (refresh_only)
			return;
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
				 errmsg("could not assemble any primary key columns for table %s", relname),
				 errdetail("harbor_orm identifies rows by primary key."),
				 errhint("Add a PRIMARY KEY constraint to the table.")));
	}

	if (!refresh_only)
	{
		Oid			argtypes[1] = {TEXTOID};
		Datum		values[1] = {CStringGetTextDatum(name)};

		existing = registered_name_of(relid);
		if (existing != NULL && strcmp(existing, name) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("table %s is already registered as model \"%s\"", relname, existing),
					 errhint("Unregister it with harbor.unregister_model('%s') first, or use that name.",
							 existing)));
		harbor_spi_exec("SELECT relation::text FROM harbor.model WHERE name = $1 FOR UPDATE",
						1, argtypes, values, NULL, false, 1);
		if (SPI_processed > 0 && existing == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("model name \"%s\" is already used by table %s", name,
							harbor_spi_getcstring(0, 1)),
					 errhint("Pass another name: harbor.register_model('%s', 'other_name').", relname)));
	}

	{
		Oid			argtypes[5] = {TEXTOID, OIDOID, TEXTARRAYOID, TEXTARRAYOID, REGTYPEARRAYOID};
		Datum		values[5] = {CStringGetTextDatum(name), ObjectIdGetDatum(relid), pk, cols, types};

		/* only touch the row when the snapshot changed */
		harbor_spi_exec("INSERT INTO harbor.model AS m (name, relation, primary_key, columns, column_types) "
						"VALUES ($1, $2::regclass, $3, $4, $5) "
						"ON CONFLICT (name) DO UPDATE "
						"SET primary_key = EXCLUDED.primary_key, columns = EXCLUDED.columns, "
						"    column_types = EXCLUDED.column_types, refreshed_at = pg_catalog.now() "
						"WHERE m.relation OPERATOR(pg_catalog.=) EXCLUDED.relation "
						"  AND (m.primary_key, m.columns, m.column_types) IS DISTINCT FROM "
						"      (EXCLUDED.primary_key, EXCLUDED.columns, EXCLUDED.column_types)",
						5, argtypes, values, NULL, false, 0);
		/* the name must now be this table's, whoever wrote it */
		harbor_spi_exec("SELECT relation::oid, relation::text FROM harbor.model WHERE name = $1",
						1, argtypes, values, NULL, false, 1);
		if (SPI_processed == 0)
			elog(ERROR, "model \"%s\" vanished while being registered", name);
		{
			bool		isnull;
			Oid			owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
															   SPI_tuptable->tupdesc, 1, &isnull));

			if (owner != relid)
				ereport(ERROR,
						(errcode(ERRCODE_DUPLICATE_OBJECT),
						 errmsg("model name \"%s\" is already used by table %s", name,
								harbor_spi_getcstring(0, 2)),
						 errhint("Pass another name: harbor.register_model('%s', 'other_name').", relname)));
		}
	}
}

/*
 * A model's default name: its table's name, with dots and white space
 * (which would clash with include paths) turned into underscores.
 */
static char *
default_model_name(Oid relid)
{
	char	   *name = pstrdup(get_rel_name(relid));

	for (char *p = name; *p; p++)
		if (*p == '.' || isspace((unsigned char) *p))
			*p = '_';
	return name;
}

Datum
harbor_register_model(PG_FUNCTION_ARGS)
{
	Oid			relid;
	char	   *name;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("relation must not be null")));
	relid = PG_GETARG_OID(0);
	if (!OidIsValid(get_rel_name(relid) ? relid : InvalidOid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	name = PG_ARGISNULL(1) ? default_model_name(relid) : text_to_cstring(PG_GETARG_TEXT_PP(1));
	check_identifier_arg(name, "model name");

	LockRelationOid(relid, AccessShareLock);
	if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	harbor_registry_write_lock();
	SPI_connect();
	register_one(relid, name, false);
	registry_rediscover();
	SPI_finish();

	PG_RETURN_TEXT_P(cstring_to_text(name));
}

Datum
harbor_unregister_model(PG_FUNCTION_ARGS)
{
	char	   *name = text_arg(fcinfo, 0, "name");
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};

	harbor_registry_write_lock();
	harbor_model_lookup(name, false);
	SPI_connect();
	harbor_spi_exec("DELETE FROM harbor.model WHERE name = $1", 1, argtypes, values,
					NULL, false, 0);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("model \"%s\" does not exist", name)));
	registry_rediscover();
	SPI_finish();
	PG_RETURN_VOID();
}

Datum
harbor_reflect(PG_FUNCTION_ARGS)
{
	char	   *schema;
	Oid			nspid;
	Oid			argtypes[1] = {OIDOID};
	Datum		values[1];
	uint64		ntables;
	Oid		   *relids;
	int			count = 0;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("schema must not be null")));
	schema = NameStr(*PG_GETARG_NAME(0));
	nspid = get_namespace_oid(schema, false);
	values[0] = ObjectIdGetDatum(nspid);

	SPI_connect();
	harbor_spi_exec("SELECT c.oid FROM pg_catalog.pg_class c "
					" WHERE c.relnamespace = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition "
					"   AND EXISTS (SELECT 1 FROM pg_catalog.pg_index i "
					"                WHERE i.indrelid = c.oid AND i.indisprimary) "
					" ORDER BY c.relname",
					1, argtypes, values, NULL, false, 0);
	ntables = SPI_processed;
	relids = palloc(sizeof(Oid) * Max(ntables, 1));
	for (uint64 i = 0; i < ntables; i++)
	{
		bool		isnull;

		relids[i] = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
												   SPI_tuptable->tupdesc, 1, &isnull));
	}
	/* tables first, then the registry, as DDL takes them */
	for (uint64 i = 0; i < ntables; i++)
	{
		LockRelationOid(relids[i], AccessShareLock);
		if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relids[i])))
			relids[i] = InvalidOid; /* dropped meanwhile */
	}
	harbor_registry_write_lock();
	for (uint64 i = 0; i < ntables; i++)
	{
		char	   *existing;

		if (!OidIsValid(relids[i]))
			continue;
		existing = registered_name_of(relids[i]);

		register_one(relids[i], existing ? existing : default_model_name(relids[i]), false);
		count++;
	}
	registry_rediscover();
	SPI_finish();
	PG_RETURN_INT32(count);
}

/* ---------------------------------------------------------------------
 * register_relationship
 * ---------------------------------------------------------------------
 */

typedef struct FkInfo
{
	char	   *conname;
	Oid			conrelid;
	Oid			confrelid;
	int			ncols;
	char	  **fk_cols;
	char	  **ref_cols;
	bool		fk_unique;
} FkInfo;

/* Foreign keys from "from" to "to" (either may be InvalidOid: any).  SPI. */
static List *
fetch_fks(Oid from, Oid to)
{
	Oid			argtypes[2] = {OIDOID, OIDOID};
	Datum		values[2] = {ObjectIdGetDatum(from), ObjectIdGetDatum(to)};
	List	   *result = NIL;

	harbor_spi_exec("SELECT c.conname::text, c.conrelid, c.confrelid,"
					" ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, o)"
					"         JOIN pg_catalog.pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o),"
					" ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(n, o)"
					"         JOIN pg_catalog.pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.o),"
					" EXISTS (SELECT 1 FROM pg_catalog.pg_index i"
					"          WHERE i.indrelid = c.conrelid AND i.indisunique"
					"            AND i.indpred IS NULL AND i.indexprs IS NULL"
					"            AND i.indnkeyatts = cardinality(c.conkey)"
					"            AND ARRAY(SELECT u.k FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS u(k, o)"
					"                       WHERE u.o <= i.indnkeyatts) @> c.conkey)"
					" FROM pg_catalog.pg_constraint c"
					" WHERE c.contype = 'f' AND c.conparentid = 0"
					"   AND ($1 = 0 OR c.conrelid = $1) AND ($2 = 0 OR c.confrelid = $2)"
					" ORDER BY c.conname",
					2, argtypes, values, NULL, false, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		FkInfo	   *fk = palloc0(sizeof(FkInfo));
		bool		isnull;
		int			nref;

		fk->conname = SPI_getvalue(tup, desc, 1);
		fk->conrelid = DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull));
		fk->confrelid = DatumGetObjectId(SPI_getbinval(tup, desc, 3, &isnull));
		fk->fk_cols = spi_text_array(tup, desc, 4, &fk->ncols);
		fk->ref_cols = spi_text_array(tup, desc, 5, &nref);
		fk->fk_unique = DatumGetBool(SPI_getbinval(tup, desc, 6, &isnull));
		result = lappend(result, fk);
	}
	return result;
}

static bool
same_columns(char **a, int na, char **b, int nb)
{
	if (na != nb)
		return false;
	for (int i = 0; i < na; i++)
		if (strcmp(a[i], b[i]) != 0)
			return false;
	return true;
}

/* Type of a column of a relation, or InvalidOid if it has no such column. */
static Oid
column_type(Oid relid, const char *colname)
{
	AttrNumber	attnum = get_attnum(relid, colname);

	if (attnum == InvalidAttrNumber || attnum < 0)
		return InvalidOid;
	return get_atttype(relid, attnum);
}

static bool
has_columns(Oid relid, char **cols, int n)
{
	for (int i = 0; i < n; i++)
		if (!OidIsValid(column_type(relid, cols[i])))
			return false;
	return true;
}

static bool
columns_unique(Oid relid, char **cols, int n)
{
	Relation	rel = relation_open(relid, AccessShareLock);
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;
	bool		result = false;

	foreach(lc, indexes)
	{
		Relation	idx = index_open(lfirst_oid(lc), AccessShareLock);
		Form_pg_index ind = idx->rd_index;
		int			nkeys = IndexRelationGetNumberOfKeyAttributes(idx);

		if (ind->indisunique && nkeys == n &&
			heap_attisnull(idx->rd_indextuple, Anum_pg_index_indpred, NULL) &&
			heap_attisnull(idx->rd_indextuple, Anum_pg_index_indexprs, NULL))
		{
			bool		all = true;

			for (int k = 0; k < nkeys && all; k++)
			{
				bool		found = false;

				for (int j = 0; j < n; j++)
					if (get_attnum(relid, cols[j]) == ind->indkey.values[k])
						found = true;
				all = found;
			}
			if (all)
				result = true;
		}
		index_close(idx, AccessShareLock);
	}
	relation_close(rel, AccessShareLock);
	return result;
}

/* Columns of fk_cols on fk_rel must match the types of ref_cols on ref_rel. */
static void
check_matching_types(Oid fk_rel, char **fk_cols, Oid ref_rel, char **ref_cols, int n)
{
	for (int i = 0; i < n; i++)
	{
		Oid			t1 = column_type(fk_rel, fk_cols[i]);
		Oid			t2 = column_type(ref_rel, ref_cols[i]);

		if (t1 != t2)
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("column \"%s\" of %s does not match column \"%s\" of %s",
							fk_cols[i], harbor_quoted_relname(fk_rel),
							ref_cols[i], harbor_quoted_relname(ref_rel)),
					 errdetail("Types %s and %s differ and no foreign key links them.",
							   format_type_be(t1), format_type_be(t2))));
	}
}

static void
insert_explicit(const char *model, const char *name, HarborRelKind kind,
				const char *target, char **local, int nlocal, char **remote,
				int nremote, Oid secondary, char **sec_local, char **sec_remote,
				const char *conname)
{
	Oid			argtypes[10] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTARRAYOID,
	TEXTARRAYOID, OIDOID, TEXTARRAYOID, TEXTARRAYOID, TEXTOID};
	Datum		values[10];
	char		nulls[10] = "          ";

	values[0] = CStringGetTextDatum(model);
	values[1] = CStringGetTextDatum(name);
	values[2] = CStringGetTextDatum(harbor_relkind_name(kind));
	values[3] = CStringGetTextDatum(target);
	values[4] = harbor_cstrings_to_text_array(local, nlocal);
	values[5] = harbor_cstrings_to_text_array(remote, nremote);
	values[6] = ObjectIdGetDatum(secondary);
	if (OidIsValid(secondary))
	{
		values[7] = harbor_cstrings_to_text_array(sec_local, nlocal);
		values[8] = harbor_cstrings_to_text_array(sec_remote, nremote);
	}
	else
		nulls[6] = nulls[7] = nulls[8] = 'n';
	if (conname)
		values[9] = CStringGetTextDatum(conname);
	else
		nulls[9] = 'n';

	harbor_spi_exec("DELETE FROM harbor.relationship WHERE model = $1 AND name = $2",
					2, argtypes, values, NULL, false, 0);
	harbor_spi_exec("INSERT INTO harbor.relationship (model, name, kind, target, local_columns,"
					" remote_columns, secondary, secondary_local_columns, secondary_remote_columns,"
					" constraint_name, explicit) "
					"VALUES ($1, $2, $3, $4, $5, $6, $7::regclass, $8, $9, $10, true)",
					10, argtypes, values, nulls, false, 0);
}

Datum
harbor_register_relationship(PG_FUNCTION_ARGS)
{
	char	   *model_name = text_arg(fcinfo, 0, "model");
	char	   *name = text_arg(fcinfo, 1, "name");
	char	   *target_name = text_arg(fcinfo, 2, "target");
	char	  **fkcols = NULL;
	int			nfk = 0;
	Oid			secondary = PG_ARGISNULL(4) ? InvalidOid : PG_GETARG_OID(4);
	bool		kind_given = !PG_ARGISNULL(5);
	HarborRelKind kind = HARBOR_MANY_TO_ONE;
	HarborModel *model;
	HarborModel *target;
	Oid			mrel,
				trel;

	check_identifier_arg(name, "relationship name");
	if (kind_given)
		kind = relkind_from_name(text_to_cstring(PG_GETARG_TEXT_PP(5)));
	if (!PG_ARGISNULL(3))
	{
		fkcols = harbor_text_array_to_cstrings(PG_GETARG_DATUM(3), &nfk);
		if (nfk == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("foreign_key must name at least one column")));
	}
	harbor_registry_write_lock();
	model = harbor_model_lookup(model_name, false);
	target = harbor_model_lookup(target_name, false);
	mrel = model->relid;
	trel = target->relid;
	/* copy what we need: the registry may be rebuilt by our own writes */
	model_name = pstrdup(model->name);
	target_name = pstrdup(target->name);

	SPI_connect();

	if (OidIsValid(secondary) || (kind_given && kind == HARBOR_MANY_TO_MANY))
	{
		List	   *to_model,
				   *to_target;
		FkInfo	   *lfk = NULL,
				   *rfk = NULL;
		ListCell   *lc;

		if (!OidIsValid(secondary))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("a many_to_many relationship needs a secondary table")));
		if (kind_given && kind != HARBOR_MANY_TO_MANY)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("a relationship with a secondary table must be many_to_many")));
		if (get_rel_name(secondary) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_TABLE),
					 errmsg("relation with OID %u does not exist", secondary)));
		to_model = fetch_fks(secondary, mrel);
		to_target = fetch_fks(secondary, trel);
		foreach(lc, to_model)
		{
			FkInfo	   *fk = lfirst(lc);

			if (fkcols == NULL || same_columns(fk->fk_cols, fk->ncols, fkcols, nfk))
			{
				if (lfk != NULL)
					ereport(ERROR,
							(errcode(ERRCODE_AMBIGUOUS_ALIAS),
							 errmsg("more than one foreign key of %s references %s",
									harbor_quoted_relname(secondary), harbor_quoted_relname(mrel)),
							 errhint("Name the local columns of the secondary table with foreign_key => '{...}'.")));
				lfk = fk;
			}
		}
		if (lfk == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_FOREIGN_KEY),
					 errmsg("%s has no foreign key%s%s to %s",
							harbor_quoted_relname(secondary),
							fkcols ? " on " : "", fkcols ? harbor_join_quoted(fkcols, nfk) : "",
							harbor_quoted_relname(mrel)),
					 errhint("An association table needs a foreign key to each side.")));
		foreach(lc, to_target)
		{
			FkInfo	   *fk = lfirst(lc);

			if (fk == lfk || strcmp(fk->conname, lfk->conname) == 0)
				continue;
			if (rfk != NULL)
				ereport(ERROR,
						(errcode(ERRCODE_AMBIGUOUS_ALIAS),
						 errmsg("more than one foreign key of %s references %s",
								harbor_quoted_relname(secondary), harbor_quoted_relname(trel))));
			rfk = fk;
		}
		if (rfk == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_FOREIGN_KEY),
					 errmsg("%s has no foreign key to %s",
							harbor_quoted_relname(secondary), harbor_quoted_relname(trel)),
					 errhint("An association table needs a foreign key to each side.")));
		insert_explicit(model_name, name, HARBOR_MANY_TO_MANY, target_name,
						lfk->ref_cols, lfk->ncols, rfk->ref_cols, rfk->ncols,
						secondary, lfk->fk_cols, rfk->fk_cols,
						psprintf("%s,%s", lfk->conname, rfk->conname));
	}
	else
	{
		List	   *matches = NIL;	/* of FkInfo, forward ones first */
		int			nforward = 0;
		ListCell   *lc;
		bool		on_model = fkcols && has_columns(mrel, fkcols, nfk);
		bool		on_target = fkcols && has_columns(trel, fkcols, nfk);

		if (fkcols && !on_model && !on_target)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("columns %s do not all exist in %s or in %s",
							harbor_join_quoted(fkcols, nfk),
							harbor_quoted_relname(mrel), harbor_quoted_relname(trel))));

		/* forward: model holds the FK (many_to_one); reverse: target does */
		if (!kind_given || kind == HARBOR_MANY_TO_ONE)
		{
			foreach(lc, fetch_fks(mrel, trel))
			{
				FkInfo	   *fk = lfirst(lc);

				if (fkcols == NULL || same_columns(fk->fk_cols, fk->ncols, fkcols, nfk))
					matches = lappend(matches, fk);
			}
			nforward = list_length(matches);
		}
		if (!kind_given || kind != HARBOR_MANY_TO_ONE)
		{
			foreach(lc, fetch_fks(trel, mrel))
			{
				FkInfo	   *fk = lfirst(lc);

				if (fkcols == NULL || same_columns(fk->fk_cols, fk->ncols, fkcols, nfk))
					matches = lappend(matches, fk);
			}
		}

		if (list_length(matches) > 1)
		{
			StringInfoData detail;

			initStringInfo(&detail);
			foreach(lc, matches)
			{
				FkInfo	   *fk = lfirst(lc);

				appendStringInfo(&detail, "%s%s %s (%s) of %s",
								 detail.len > 0 ? "; " : "Candidates: ",
								 foreach_current_index(lc) < nforward ? "many_to_one via" : "one_to_many via",
								 fk->conname, harbor_join_quoted(fk->fk_cols, fk->ncols),
								 harbor_quoted_relname(fk->conrelid));
			}
			appendStringInfoChar(&detail, '.');
			ereport(ERROR,
					(errcode(ERRCODE_AMBIGUOUS_ALIAS),
					 errmsg("more than one foreign key links \"%s\" and \"%s\"", model_name, target_name),
					 errdetail_internal("%s", detail.data),
					 errhint("Pass foreign_key => '{...}' to choose one%s.",
							 mrel == trel ? ", and kind => 'many_to_one' or 'one_to_many' for a self-reference" : "")));
		}

		if (list_length(matches) == 1)
		{
			FkInfo	   *fk = linitial(matches);

			if (nforward == 1)
				insert_explicit(model_name, name, HARBOR_MANY_TO_ONE, target_name,
								fk->fk_cols, fk->ncols, fk->ref_cols, fk->ncols,
								InvalidOid, NULL, NULL, fk->conname);
			else
			{
				HarborRelKind k = kind_given ? kind :
				(fk->fk_unique ? HARBOR_ONE_TO_ONE : HARBOR_ONE_TO_MANY);

				insert_explicit(model_name, name, k, target_name,
								fk->ref_cols, fk->ncols, fk->fk_cols, fk->ncols,
								InvalidOid, NULL, NULL, fk->conname);
			}
		}
		else
		{
			/* No constraint: fall back to matching types against a primary key. */
			bool		forward;

			if (fkcols == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_FOREIGN_KEY),
						 errmsg("no foreign key links \"%s\" and \"%s\"", model_name, target_name),
						 errhint("Name the columns with foreign_key => '{...}'.")));
			if (kind_given)
				forward = (kind == HARBOR_MANY_TO_ONE);
			else if (on_model && on_target)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("columns %s exist on both sides", harbor_join_quoted(fkcols, nfk)),
						 errhint("Pass kind => 'many_to_one' or 'one_to_many'.")));
			else
				forward = on_model;

			if (forward)
			{
				if (!on_model)
					ereport(ERROR,
							(errcode(ERRCODE_UNDEFINED_COLUMN),
							 errmsg("columns %s do not all exist in %s",
									harbor_join_quoted(fkcols, nfk), harbor_quoted_relname(mrel))));
				if (nfk != target->npk)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_FOREIGN_KEY),
							 errmsg("foreign_key has %d columns but the primary key of \"%s\" has %d",
									nfk, target_name, target->npk)));
				check_matching_types(mrel, fkcols, trel, target->pk_columns, nfk);
				insert_explicit(model_name, name, HARBOR_MANY_TO_ONE, target_name,
								fkcols, nfk, target->pk_columns, nfk,
								InvalidOid, NULL, NULL, NULL);
			}
			else
			{
				HarborRelKind k;

				if (!on_target)
					ereport(ERROR,
							(errcode(ERRCODE_UNDEFINED_COLUMN),
							 errmsg("columns %s do not all exist in %s",
									harbor_join_quoted(fkcols, nfk), harbor_quoted_relname(trel))));
				if (nfk != model->npk)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_FOREIGN_KEY),
							 errmsg("foreign_key has %d columns but the primary key of \"%s\" has %d",
									nfk, model_name, model->npk)));
				check_matching_types(trel, fkcols, mrel, model->pk_columns, nfk);
				k = kind_given ? kind :
					(columns_unique(trel, fkcols, nfk) ? HARBOR_ONE_TO_ONE : HARBOR_ONE_TO_MANY);
				insert_explicit(model_name, name, k, target_name,
								model->pk_columns, nfk, fkcols, nfk,
								InvalidOid, NULL, NULL, NULL);
			}
		}
	}

	registry_rediscover();
	SPI_finish();
	PG_RETURN_VOID();
}

Datum
harbor_unregister_relationship(PG_FUNCTION_ARGS)
{
	char	   *model = text_arg(fcinfo, 0, "model");
	char	   *name = text_arg(fcinfo, 1, "name");
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2] = {CStringGetTextDatum(model), CStringGetTextDatum(name)};
	bool		found;

	harbor_registry_write_lock();
	harbor_model_lookup(model, false);
	SPI_connect();
	harbor_spi_exec("DELETE FROM harbor.relationship WHERE model = $1 AND name = $2 AND explicit",
					2, argtypes, values, NULL, false, 0);
	found = SPI_processed > 0;
	registry_rediscover();
	SPI_finish();
	PG_RETURN_BOOL(found);
}

/* ---------------------------------------------------------------------
 * Introspection
 * ---------------------------------------------------------------------
 */

Datum
harbor_describe(PG_FUNCTION_ARGS)
{
	char	   *name = text_arg(fcinfo, 0, "model");
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};
	Datum		result;
	bool		isnull;

	harbor_model_lookup(name, false);
	SPI_connect();
	harbor_spi_exec(
		"SELECT pg_catalog.jsonb_build_object("
		"  'name', m.name, 'relation', m.relation::text, 'primary_key', pg_catalog.to_jsonb(m.primary_key),"
		"  'columns', (SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object("
		"                 'name', a.attname, 'type', pg_catalog.format_type(a.atttypid, a.atttypmod),"
		"                 'nullable', NOT a.attnotnull, 'primary_key', a.attname = ANY (m.primary_key))"
		"               ORDER BY a.attnum)"
		"                FROM pg_catalog.pg_attribute a"
		"               WHERE a.attrelid = m.relation AND a.attnum > 0 AND NOT a.attisdropped),"
		"  'relationships', COALESCE((SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object("
		"                 'name', r.name, 'kind', r.kind, 'target', r.target,"
		"                 'local_columns', r.local_columns, 'remote_columns', r.remote_columns,"
		"                 'secondary', r.secondary::text,"
		"                 'secondary_local_columns', r.secondary_local_columns,"
		"                 'secondary_remote_columns', r.secondary_remote_columns,"
		"                 'constraint', r.constraint_name, 'explicit', r.explicit,"
		"                 'ambiguous', r.ambiguous) ORDER BY r.name, r.constraint_name, r.id)"
		"               FROM harbor.relationship r WHERE r.model = m.name), '[]'::jsonb))"
		"  FROM harbor.model m WHERE m.name = $1",
		1, argtypes, values, NULL, true, 1);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("model \"%s\" does not exist", name)));
	result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	result = SPI_datumTransfer(result, false, -1);
	SPI_finish();
	PG_RETURN_DATUM(result);
}

/* Every drift between registry and catalog, as (model, problem) rows. */
static const char *check_models_sql =
"WITH live AS (\n"
"  SELECT m.name, m.relation, c.oid IS NOT NULL AS present,\n"
"         ARRAY(SELECT a.attname::text FROM pg_catalog.pg_index i\n"
"                 JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY k(n, o) ON true\n"
"                 JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n\n"
"                WHERE i.indrelid = m.relation AND i.indisprimary AND k.o <= i.indnkeyatts\n"
"                ORDER BY k.o) AS pk,\n"
"         ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a\n"
"                WHERE a.attrelid = m.relation AND a.attnum > 0 AND NOT a.attisdropped\n"
"                ORDER BY a.attnum) AS cols,\n"
"         ARRAY(SELECT a.atttypid::regtype FROM pg_catalog.pg_attribute a\n"
"                WHERE a.attrelid = m.relation AND a.attnum > 0 AND NOT a.attisdropped\n"
"                ORDER BY a.attnum) AS types,\n"
"         m.primary_key, m.columns, m.column_types\n"
"    FROM harbor.model m LEFT JOIN pg_catalog.pg_class c ON c.oid = m.relation\n"
")\n"
"SELECT name, problem FROM (\n"
"  SELECT name, format('table %s no longer exists', relation::oid) AS problem, 1 AS ord\n"
"    FROM live WHERE NOT present\n"
"  UNION ALL\n"
"  SELECT name, CASE WHEN cardinality(pk) = 0 THEN 'table has no primary key any more'\n"
"              ELSE format('primary key is %s, registry has %s', pk, primary_key) END, 2\n"
"    FROM live WHERE present AND pk IS DISTINCT FROM primary_key\n"
"  UNION ALL\n"
"  SELECT name, format('columns are %s, registry has %s', cols, columns), 3\n"
"    FROM live WHERE present AND cols IS DISTINCT FROM columns\n"
"  UNION ALL\n"
"  SELECT name, format('column types are %s, registry has %s', types, column_types), 4\n"
"    FROM live WHERE present AND cols IS NOT DISTINCT FROM columns\n"
"     AND types IS DISTINCT FROM column_types\n"
"  UNION ALL\n"
"  SELECT r.model, format('relationship %s: column %s missing on %s', r.name, c.col, c.rel), 5\n"
"    FROM harbor.relationship r\n"
"    JOIN harbor.model mm ON mm.name = r.model\n"
"    JOIN harbor.model mt ON mt.name = r.target\n"
"    CROSS JOIN LATERAL (\n"
"      SELECT mm.relation AS rel, unnest(r.local_columns) AS col\n"
"      UNION ALL SELECT mt.relation, unnest(r.remote_columns)\n"
"      UNION ALL SELECT r.secondary, unnest(r.secondary_local_columns)\n"
"      UNION ALL SELECT r.secondary, unnest(r.secondary_remote_columns)) c\n"
"   WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a\n"
"                      WHERE a.attrelid = c.rel AND a.attname = c.col AND NOT a.attisdropped)\n"
"  UNION ALL\n"
"  SELECT r.model, format('relationship %s: constraint %s no longer exists', r.name, cn), 6\n"
"    FROM harbor.relationship r, unnest(string_to_array(r.constraint_name, ',')) cn\n"
"   WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k WHERE k.conname = cn AND k.contype = 'f')\n"
"  UNION ALL\n"
"  SELECT n.model, format('foreign keys imply %s relationship %s to %s, registry lacks it',\n"
"                         n.kind, n.name, n.target), 7\n"
"    FROM named n\n"
"   WHERE NOT EXISTS (SELECT 1 FROM harbor.relationship r WHERE NOT r.explicit AND "
REL_ROW("n.") " IS NOT DISTINCT FROM " REL_ROW("r.") ")\n"
") p ORDER BY name, ord, problem";

Datum
harbor_check_models(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *sql;

	InitMaterializedSRF(fcinfo, 0);
	/* the discovery CTE precedes the check query */
	sql = psprintf("%s%s", DISCOVERY_CTE ", ",
				   check_models_sql + strlen("WITH "));

	SPI_connect();
	harbor_spi_exec(sql, 0, NULL, NULL, NULL, false, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		Datum		values[2];
		bool		nulls[2] = {false, false};

		values[0] = CStringGetTextDatum(harbor_spi_getcstring(i, 1));
		values[1] = CStringGetTextDatum(harbor_spi_getcstring(i, 2));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	SPI_finish();
	return (Datum) 0;
}

/* ---------------------------------------------------------------------
 * Keeping the registry in step
 * ---------------------------------------------------------------------
 */

Datum
harbor_registry_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("harbor._registry_changed() must be called as a trigger")));
	CacheInvalidateRelcacheByRelid(RelationGetRelid(trigdata->tg_relation));
	harbor_cache_registry_invalidate();
	return PointerGetDatum(NULL);
}

/*
 * Whether an event trigger has anything to do: the registry tables exist
 * (they do not mid-way through DROP EXTENSION) and hold at least one model.
 */
static bool
event_trigger_has_work(FunctionCallInfo fcinfo)
{
	Oid			nspid = get_namespace_oid(HARBOR_SCHEMA, true);
	int			nm;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function must be called as an event trigger")));
	if (!OidIsValid(nspid) ||
		!OidIsValid(get_relname_relid("model", nspid)) ||
		!OidIsValid(get_relname_relid("relationship", nspid)))
		return false;
	harbor_model_list(&nm);
	return nm > 0;
}

Datum
harbor_on_ddl_end(PG_FUNCTION_ARGS)
{
	Oid		   *relids;
	uint64		n;

	if (!event_trigger_has_work(fcinfo))
		PG_RETURN_VOID();

	harbor_registry_write_lock();
	SPI_connect();
	harbor_spi_exec("SELECT DISTINCT m.relation::oid, m.name FROM harbor.model m"
					" WHERE m.relation::oid IN ("
					"   SELECT c.objid FROM pg_catalog.pg_event_trigger_ddl_commands() c"
					"    WHERE c.classid = 'pg_catalog.pg_class'::regclass"
					"   UNION ALL"
					"   SELECT i.indrelid FROM pg_catalog.pg_event_trigger_ddl_commands() c"
					"     JOIN pg_catalog.pg_index i ON i.indexrelid = c.objid)",
					0, NULL, NULL, NULL, false, 0);
	n = SPI_processed;
	relids = palloc(sizeof(Oid) * Max(n, 1));
	{
		char	  **names = palloc(sizeof(char *) * Max(n, 1));

		for (uint64 i = 0; i < n; i++)
		{
			bool		isnull;

			relids[i] = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
													   SPI_tuptable->tupdesc, 1, &isnull));
			names[i] = harbor_spi_getcstring(i, 2);
		}
		for (uint64 i = 0; i < n; i++)
			register_one(relids[i], names[i], true);
	}
	/* constraints and indexes of any table may change what FKs imply */
	registry_rediscover();
	SPI_finish();
	PG_RETURN_VOID();
}

Datum
harbor_on_sql_drop(PG_FUNCTION_ARGS)
{
	if (!event_trigger_has_work(fcinfo))
		PG_RETURN_VOID();

	harbor_registry_write_lock();
	SPI_connect();
	harbor_spi_exec("WITH d AS (SELECT objid FROM pg_catalog.pg_event_trigger_dropped_objects()"
					"            WHERE classid = 'pg_catalog.pg_class'::regclass AND objsubid = 0)"
					" DELETE FROM harbor.relationship r USING d WHERE r.secondary::oid = d.objid",
					0, NULL, NULL, NULL, false, 0);
	harbor_spi_exec("WITH d AS (SELECT objid FROM pg_catalog.pg_event_trigger_dropped_objects()"
					"            WHERE classid = 'pg_catalog.pg_class'::regclass AND objsubid = 0)"
					" DELETE FROM harbor.model m USING d WHERE m.relation::oid = d.objid",
					0, NULL, NULL, NULL, false, 0);
	registry_rediscover();
	SPI_finish();
	PG_RETURN_VOID();
}
