/*-------------------------------------------------------------------------
 *
 * loader_json.c
 *	  Column values to JsonbValues for the relation loader, rendered as
 *	  to_jsonb renders them, and the same values as JSON text for the text
 *	  output (load_text), exactly as jsonb_out prints those JsonbValues.
 *
 * Scalars are converted here, without going through text where the jsonb
 * value can be taken from the datum directly; types whose rendering needs
 * more than a scalar (arrays, composites, ranges, json and types with a
 * cast to json) go through to_jsonb() called here, and the resulting jsonb
 * is unpacked.  Statements return every column as it is, so a key column
 * hashes and binds as its own type whatever its rendering.  Which
 * conversion a column gets is decided from its type in the catalog when its
 * model is compiled, and every result is checked against those types
 * before it is converted (loader_plan.c).
 *
 * Copyright (c) 2026, harbor_orm developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "parser/parse_coerce.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"

#include "loader.h"

ConvKind
loader_conv_kind(Oid type, Oid *basetype)
{
	Oid			base = getBaseType(type);

	*basetype = base;
	switch (base)
	{
		case BOOLOID:
			return CONV_BOOL;
		case INT2OID:
			return CONV_INT2;
		case INT4OID:
			return CONV_INT4;
		case INT8OID:
			return CONV_INT8;
		case NUMERICOID:
			return CONV_NUMERIC;
		case FLOAT4OID:
		case FLOAT8OID:
			return CONV_FLOAT;
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
			return CONV_TEXT;
		case DATEOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			return CONV_DATETIME;
		case JSONBOID:
			return CONV_JSONB;
		case JSONOID:
			return CONV_TO_JSONB;
		default:
			break;
	}
	if (OidIsValid(get_element_type(base)) || type_is_rowtype(base) ||
		get_typtype(base) == TYPTYPE_RANGE || get_typtype(base) == TYPTYPE_MULTIRANGE)
		return CONV_TO_JSONB;
	{
		/* to_jsonb uses a cast to json where one exists */
		Oid			castfunc;

		if (find_coercion_pathway(JSONOID, base, COERCION_EXPLICIT, &castfunc) == COERCION_PATH_FUNC)
			return CONV_TO_JSONB;
	}
	return CONV_OTHER;
}

/* A jsonb datum as a JsonbValue tree (not jbvBinary: the tree is serialised). */
static void
jsonb_to_tree(Jsonb *jb, JsonbValue *out)
{
	JsonbParseState *state = NULL;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	JsonbValue *res = NULL;

	if (JB_ROOT_IS_SCALAR(jb))
	{
		JsonbExtractScalar(&jb->root, out);
		return;
	}
	it = JsonbIteratorInit(&jb->root);
	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
		res = pushJsonbValue(&state, tok, tok < WJB_BEGIN_ARRAY ? &v : NULL);
	*out = *res;
}

/*
 * A float as to_jsonb holds it: the numeric its output text reads as, or
 * NULL for NaN and infinities, which become strings (*text).
 */
static Numeric
float_numeric(ModelInfo *mi, int col, Datum d, char **text)
{
	double		f = (mi->basetype[col] == FLOAT4OID) ? DatumGetFloat4(d) : DatumGetFloat8(d);

	*text = OutputFunctionCall(&mi->outfn[col], d);
	if (isnan(f) || isinf(f))
		return NULL;
	return DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(*text),
											   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
}

void
loader_set_string(JsonbValue *v, char *s)
{
	v->type = jbvString;
	v->val.string.val = s;
	v->val.string.len = strlen(s);
}

/*
 * Converts one value of column col.  The caller has checked that the
 * result column holds mi->coltype[col].
 */
void
loader_convert_value(ModelInfo *mi, int col, Datum d, bool isnull, JsonbValue *v)
{
	if (isnull)
	{
		v->type = jbvNull;
		return;
	}
	switch (mi->conv[col])
	{
		case CONV_BOOL:
			v->type = jbvBool;
			v->val.boolean = DatumGetBool(d);
			break;
		case CONV_INT2:
			v->type = jbvNumeric;
			v->val.numeric = int64_to_numeric(DatumGetInt16(d));
			break;
		case CONV_INT4:
			v->type = jbvNumeric;
			v->val.numeric = int64_to_numeric(DatumGetInt32(d));
			break;
		case CONV_INT8:
			v->type = jbvNumeric;
			v->val.numeric = int64_to_numeric(DatumGetInt64(d));
			break;
		case CONV_NUMERIC:
			{
				Numeric		n = DatumGetNumeric(d);

				if (numeric_is_nan(n) || numeric_is_inf(n))
					loader_set_string(v, DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(n))));
				else
				{
					v->type = jbvNumeric;
					v->val.numeric = n;
				}
			}
			break;
		case CONV_FLOAT:
			{
				char	   *s;
				Numeric		n = float_numeric(mi, col, d, &s);

				if (n == NULL)
					loader_set_string(v, s);
				else
				{
					v->type = jbvNumeric;
					v->val.numeric = n;
				}
			}
			break;
		case CONV_TEXT:
			{
				struct varlena *t = PG_DETOAST_DATUM_PACKED(d);

				v->type = jbvString;
				v->val.string.val = VARDATA_ANY(t);
				v->val.string.len = VARSIZE_ANY_EXHDR(t);
			}
			break;
		case CONV_DATETIME:
			loader_set_string(v, JsonEncodeDateTime(NULL, d, mi->basetype[col], NULL));
			break;
		case CONV_OTHER:
			loader_set_string(v, OutputFunctionCall(&mi->outfn[col], d));
			break;
		case CONV_JSONB:
			jsonb_to_tree(DatumGetJsonbP(d), v);
			break;
		case CONV_TO_JSONB:
			jsonb_to_tree(DatumGetJsonbP(FunctionCall1(&mi->outfn[col], d)), v);
			break;
	}
}

/* Text of a jsonb scalar as the cast from text to the column type reads it. */
char *
loader_jsonb_scalar_text(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvString:
			return pnstrdup(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
		case jbvBool:
			return pstrdup(v->val.boolean ? "true" : "false");
		case jbvBinary:
			return JsonbToCString(NULL, v->val.binary.data, v->val.binary.len);
		default:
			return NULL;
	}
}

/*
 * Appends s (len bytes, no NUL inside) as a JSON string, exactly as
 * escape_json() writes it, copying runs that need no escape at once.
 */
void
loader_escape_json(StringInfo buf, const char *s, int len)
{
	const char *run = s;
	const char *end = s + len;

	enlargeStringInfo(buf, len + 2);
	buf->data[buf->len++] = '"';
	for (const char *p = s; p < end; p++)
	{
		unsigned char c = (unsigned char) *p;
		const char *esc;

		if (c >= ' ' && c != '"' && c != '\\')
			continue;
		if (p > run)
			loader_append(buf, run, p - run);
		run = p + 1;
		switch (c)
		{
			case '\b':
				esc = "\\b";
				break;
			case '\f':
				esc = "\\f";
				break;
			case '\n':
				esc = "\\n";
				break;
			case '\r':
				esc = "\\r";
				break;
			case '\t':
				esc = "\\t";
				break;
			case '"':
				esc = "\\\"";
				break;
			case '\\':
				esc = "\\\\";
				break;
			default:
				appendStringInfo(buf, "\\u%04x", (int) c);
				continue;
		}
		loader_append(buf, esc, 2);
	}
	if (end > run)
		loader_append(buf, run, end - run);
	appendStringInfoCharMacro(buf, '"');
}

static void
append_cstring_json(StringInfo buf, const char *s)
{
	loader_escape_json(buf, s, strlen(s));
}

/* A numeric as jsonb prints it: a number, or a string for NaN/Infinity. */
static void
append_numeric(StringInfo buf, Numeric n)
{
	char	   *s = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(n)));

	if (numeric_is_nan(n) || numeric_is_inf(n))
		append_cstring_json(buf, s);
	else
		appendStringInfoString(buf, s);
}

/*
 * Appends one value of column col as JSON text: the text jsonb_out prints
 * for the JsonbValue loader_convert_value() makes of it.
 */
static void
render_value(ModelInfo *mi, int col, Datum d, bool isnull, StringInfo buf)
{
	char		num[MAXINT8LEN + 1];

	if (isnull)
	{
		loader_append(buf, "null", 4);
		return;
	}
	switch (mi->conv[col])
	{
		case CONV_BOOL:
			if (DatumGetBool(d))
				loader_append(buf, "true", 4);
			else
				loader_append(buf, "false", 5);
			break;
		case CONV_INT2:
			loader_append(buf, num, pg_ltoa(DatumGetInt16(d), num));
			break;
		case CONV_INT4:
			loader_append(buf, num, pg_ltoa(DatumGetInt32(d), num));
			break;
		case CONV_INT8:
			loader_append(buf, num, pg_lltoa(DatumGetInt64(d), num));
			break;
		case CONV_NUMERIC:
			append_numeric(buf, DatumGetNumeric(d));
			break;
		case CONV_FLOAT:
			{
				char	   *s;
				Numeric		n = float_numeric(mi, col, d, &s);

				if (n == NULL)
					append_cstring_json(buf, s);
				else
					append_numeric(buf, n);
			}
			break;
		case CONV_TEXT:
			{
				struct varlena *t = PG_DETOAST_DATUM_PACKED(d);

				loader_escape_json(buf, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
			}
			break;
		case CONV_DATETIME:
			{
				char		dt[MAXDATELEN + 1];

				append_cstring_json(buf, JsonEncodeDateTime(dt, d, mi->basetype[col], NULL));
			}
			break;
		case CONV_OTHER:
			append_cstring_json(buf, OutputFunctionCall(&mi->outfn[col], d));
			break;
		case CONV_JSONB:
			{
				Jsonb	   *jb = DatumGetJsonbP(d);

				JsonbToCString(buf, &jb->root, VARSIZE(jb));
			}
			break;
		case CONV_TO_JSONB:
			{
				Jsonb	   *jb = DatumGetJsonbP(FunctionCall1(&mi->outfn[col], d));

				JsonbToCString(buf, &jb->root, VARSIZE(jb));
			}
			break;
	}
}

/*
 * Text output: appends a row's columns to the call's arena as
 * "key": value pairs separated by ", ", in jsonb key order.  *off is where
 * the row starts; pos[i] where pair i starts, relative to it, and
 * pos[ncols] the end plus 2, so that pair i ends at pos[i + 1] - 2.
 */
void
loader_render_row(ModelInfo *mi, Datum *values, bool *nulls, StringInfo arena,
				  int64 *off, int32 *pos)
{
	int64		start = arena->len;

	*off = start;
	for (int i = 0; i < mi->ncols; i++)
	{
		int			c = mi->text_order[i];

		if (i > 0)
			loader_append(arena, ", ", 2);
		pos[i] = (int32) (arena->len - start);
		loader_append(arena, mi->keytext[c], mi->keytextlen[c]);
		render_value(mi, c, values[c], nulls[c], arena);
	}
	pos[mi->ncols] = (int32) (arena->len - start) + 2;
}
