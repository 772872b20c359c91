/*-------------------------------------------------------------------------
 *
 * loader_find.c
 *	  harbor.find()'s statement: a JSON filter and an order_by list turned
 *	  into a parameterised SELECT over a model's table.
 *
 * Column names are checked against the model and quoted; every value is
 * a bound parameter, passed as text and cast to the column's type in the
 * statement, so that the column type's own input function reads it.  The
 * column types are the catalog's, from the model's ModelInfo.
 *
 * Copyright (c) 2026, harbor_orm developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "parser/parse_coerce.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"

#include "loader.h"
#include "util.h"

static int
find_column(ModelInfo *mi, const char *name)
{
	HarborModel *m = mi->model;

	for (int i = 0; i < m->ncolumns; i++)
		if (strcmp(m->columns[i], name) == 0)
			return i;
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_COLUMN),
			 errmsg("model \"%s\" has no column \"%s\"", m->name, name),
			 errhint("Columns of \"%s\": %s.", m->name, harbor_join_quoted(m->columns, m->ncolumns))));
	return -1;					/* keep compiler quiet */
}



int
loader_find_add_param(FindQuery *q, Oid type, Datum value, bool isnull)
{
	if (q->nparams >= FUNC_MAX_ARGS - 2)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("filter has too many conditions"),
				 errdetail("At most %d values can be bound.", FUNC_MAX_ARGS - 2)));
	q->types[q->nparams] = type;
	q->values[q->nparams] = value;
	q->nulls[q->nparams] = isnull ? 'n' : ' ';
	return ++q->nparams;
}

static void
add_condition(FindQuery *q, ModelInfo *mi, int col, const char *op, JsonbValue *v)
{
	const char *qcol = quote_identifier(mi->model->columns[col]);
	Oid			type = mi->coltype[col];
	char	   *typname = format_type_be_qualified(type);
	const char *sqlop = NULL;
	char	   *text;
	int			p;

	appendStringInfoString(&q->sql, q->nconds++ > 0 ? " AND " : " WHERE ");

	if (strcmp(op, "is_null") == 0)
	{
		if (v->type != jbvBool)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("operator is_null of column \"%s\" takes true or false", mi->model->columns[col])));
		appendStringInfo(&q->sql, "t.%s IS %sNULL", qcol, v->val.boolean ? "" : "NOT ");
		return;
	}
	if (strcmp(op, "in") == 0)
	{
		JsonbIterator *it;
		JsonbValue	e;
		JsonbIteratorToken tok;
		Datum	   *elems;
		bool	   *enulls;
		int			n = 0;
		int			cap = 8;
		int			dims[1];
		int			lbs[1] = {1};
		Oid			arrtype = get_array_type(type);

		if (v->type != jbvBinary || !JsonContainerIsArray(v->val.binary.data))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("operator in of column \"%s\" takes an array", mi->model->columns[col])));
		if (!OidIsValid(arrtype) || OidIsValid(get_element_type(type)))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("operator in is not supported for column \"%s\" of type %s",
							mi->model->columns[col], format_type_be(type))));
		elems = palloc(sizeof(Datum) * cap);
		enulls = palloc(sizeof(bool) * cap);
		it = JsonbIteratorInit(v->val.binary.data);
		while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
		{
			CHECK_FOR_INTERRUPTS();
			if (tok != WJB_ELEM)
				continue;
			if (n == cap)
			{
				cap *= 2;
				elems = repalloc(elems, sizeof(Datum) * cap);
				enulls = repalloc(enulls, sizeof(bool) * cap);
			}
			text = loader_jsonb_scalar_text(&e);
			enulls[n] = (text == NULL);
			elems[n] = text ? CStringGetTextDatum(text) : (Datum) 0;
			n++;
		}
		dims[0] = n;
		p = loader_find_add_param(q, TEXTARRAYOID,
					  PointerGetDatum(construct_md_array(elems, enulls, 1, dims, lbs, TEXTOID, -1, false, TYPALIGN_INT)),
					  false);
		appendStringInfo(&q->sql, "t.%s OPERATOR(pg_catalog.=) ANY ($%d::%s[])", qcol, p, typname);
		return;
	}

	if (strcmp(op, "eq") == 0)
		sqlop = "OPERATOR(pg_catalog.=)";
	else if (strcmp(op, "ne") == 0)
		sqlop = "OPERATOR(pg_catalog.<>)";
	else if (strcmp(op, "lt") == 0)
		sqlop = "OPERATOR(pg_catalog.<)";
	else if (strcmp(op, "lte") == 0)
		sqlop = "OPERATOR(pg_catalog.<=)";
	else if (strcmp(op, "gt") == 0)
		sqlop = "OPERATOR(pg_catalog.>)";
	else if (strcmp(op, "gte") == 0)
		sqlop = "OPERATOR(pg_catalog.>=)";
	else if (strcmp(op, "like") == 0 || strcmp(op, "ilike") == 0)
	{
		if (TypeCategory(getBaseType(type)) != TYPCATEGORY_STRING)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_FUNCTION),
					 errmsg("operator %s needs a text column, but \"%s\" is of type %s",
							op, mi->model->columns[col], format_type_be(type))));
		sqlop = op[0] == 'l' ? "OPERATOR(pg_catalog.~~)" : "OPERATOR(pg_catalog.~~*)";
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown filter operator \"%s\" for column \"%s\"", op, mi->model->columns[col]),
				 errhint("Operators: eq, ne, lt, lte, gt, gte, in, like, ilike, is_null.")));

	text = loader_jsonb_scalar_text(v);
	if (text == NULL)
	{
		/* comparing with null: eq and ne mean IS [NOT] NULL, as in SQLAlchemy */
		if (strcmp(op, "eq") == 0 || strcmp(op, "ne") == 0)
		{
			appendStringInfo(&q->sql, "t.%s IS %sNULL", qcol, op[0] == 'e' ? "" : "NOT ");
			return;
		}
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("operator %s of column \"%s\" needs a value, not null", op, mi->model->columns[col])));
	}
	p = loader_find_add_param(q, TEXTOID, CStringGetTextDatum(text), false);
	if (strcmp(op, "like") == 0 || strcmp(op, "ilike") == 0)
		appendStringInfo(&q->sql, "t.%s::pg_catalog.text %s $%d", qcol, sqlop, p);
	else
		appendStringInfo(&q->sql, "t.%s %s $%d::%s", qcol, sqlop, p, typname);
}

void
loader_find_add_filter(FindQuery *q, ModelInfo *mi, Jsonb *filter)
{
	JsonbIterator *it;
	JsonbValue	k;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (!JB_ROOT_IS_OBJECT(filter))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("filter must be a JSON object"),
				 errhint("Map column names to values or to operators, like '{\"price_cents\": {\"lt\": 500}}'.")));
	it = JsonbIteratorInit(&filter->root);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		char	   *colname;
		int			col;

		if (tok != WJB_KEY)
			continue;
		colname = pnstrdup(k.val.string.val, k.val.string.len);
		col = find_column(mi, colname);
		tok = JsonbIteratorNext(&it, &v, true);
		if (v.type == jbvBinary && JsonContainerIsObject(v.val.binary.data))
		{
			JsonbIterator *oit = JsonbIteratorInit(v.val.binary.data);
			JsonbValue	ok;
			JsonbValue	ov;
			JsonbIteratorToken otok;
			bool		any = false;

			while ((otok = JsonbIteratorNext(&oit, &ok, true)) != WJB_DONE)
			{
				if (otok != WJB_KEY)
					continue;
				JsonbIteratorNext(&oit, &ov, true);
				add_condition(q, mi, col, pnstrdup(ok.val.string.val, ok.val.string.len), &ov);
				any = true;
			}
			if (!any)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("filter on column \"%s\" names no operator", colname)));
		}
		else
			add_condition(q, mi, col, "eq", &v);
	}
}

void
loader_find_add_order_by(FindQuery *q, ModelInfo *mi, ArrayType *order_by)
{
	char	  **items = NULL;
	int			n = 0;

	appendStringInfoString(&q->sql, " ORDER BY ");
	if (order_by != NULL)
		items = harbor_text_array_to_cstrings(PointerGetDatum(order_by), &n);
	for (int i = 0; i < n; i++)
	{
		char	   *item = pstrdup(items[i]);
		char	   *dir = NULL;
		char	   *sp;
		int			col;

		while (*item == ' ')
			item++;
		sp = strchr(item, ' ');
		if (sp)
		{
			*sp = '\0';
			dir = sp + 1;
			while (*dir == ' ')
				dir++;
			for (char *e = dir + strlen(dir); e > dir && e[-1] == ' '; e--)
				e[-1] = '\0';
		}
		col = find_column(mi, item);
		if (dir != NULL && *dir != '\0' && pg_strcasecmp(dir, "asc") != 0 && pg_strcasecmp(dir, "desc") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid order_by item \"%s\"", items[i]),
					 errhint("Write a column name, optionally followed by asc or desc.")));
		appendStringInfo(&q->sql, "t.%s%s, ", quote_identifier(mi->model->columns[col]),
						 dir && pg_strcasecmp(dir, "desc") == 0 ? " DESC" : "");
	}
	/* the primary key breaks ties, so that pages are stable */
	appendStringInfoString(&q->sql, mi->pk_order);
}
