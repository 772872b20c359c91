/*-------------------------------------------------------------------------
 *
 * loader_out.c
 *	  What a load call returns: the object tree as one JsonbValue
 *	  (harbor.load, get, find), or as JSON text written directly
 *	  (harbor.load_text), and the call's statistics.
 *
 * Both outputs put an object's keys in the order jsonb stores them
 * (shorter keys first, then bytewise), computed once per include node.
 * The text output is the text jsonb_out would print for the jsonb output,
 * byte for byte: each row's columns were rendered once, as "key": value
 * pairs in that order (loader_json.c), so an object is a few copies of
 * runs of columns with its relationships spliced in between.  No jsonb is
 * built and none is printed, which is most of what the jsonb output costs
 * beyond fetching the rows.
 *
 * Copyright (c) 2026, harbor_orm developers
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/json.h"

#include "harbor_orm.h"
#include "loader.h"

void
loader_check_row_limit(LoadCall *lc, int64 n)
{
	if (n > harbor_load_max_rows)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("harbor.%s would build more than %d rows", lc->function, harbor_load_max_rows),
				 errdetail("The roots and included relationships reach at least " INT64_FORMAT " rows.", n),
				 errhint("Load fewer roots or include fewer relationships, or raise harbor_orm.load_max_rows.")));
}

static int
jsonb_key_cmp(const void *a, const void *b)
{
	const JsonbValue *ka = &((const OutSlot *) a)->key;
	const JsonbValue *kb = &((const OutSlot *) b)->key;

	if (ka->val.string.len != kb->val.string.len)
		return ka->val.string.len > kb->val.string.len ? 1 : -1;
	return memcmp(ka->val.string.val, kb->val.string.val, ka->val.string.len);
}

/*
 * Every node's output keys, sorted as jsonb stores them, and for the text
 * output the same order as runs of columns and relationships.  Columns
 * keep their relative order among the slots, which is the model's
 * text_order, so the k-th column slot is column k of the row's text.
 */
void
loader_prepare_slots(IncNode *n)
{
	ListCell   *cell;
	int			i = 0;
	int			ncol = 0;

	n->nslots = n->mi->ncols + list_length(n->children);
	n->slots = palloc(sizeof(OutSlot) * Max(n->nslots, 1));
	for (int c = 0; c < n->mi->ncols; c++, i++)
	{
		n->slots[i].key = n->mi->colkey[c];
		n->slots[i].col = c;
		n->slots[i].child = NULL;
	}
	foreach(cell, n->children)
	{
		IncNode    *c = lfirst(cell);

		loader_set_string(&n->slots[i].key, c->name);
		n->slots[i].col = -1;
		n->slots[i].child = c;
		i++;
		loader_prepare_slots(c);
	}
	qsort(n->slots, n->nslots, sizeof(OutSlot), jsonb_key_cmp);

	n->pieces = palloc(sizeof(OutPiece) * Max(n->nslots, 1));
	n->npieces = 0;
	for (i = 0; i < n->nslots; i++)
	{
		OutSlot    *s = &n->slots[i];
		OutPiece   *p;

		if (s->col >= 0)
		{
			if (n->npieces > 0 && n->pieces[n->npieces - 1].child == NULL)
			{
				n->pieces[n->npieces - 1].to = ncol++;
				continue;
			}
			p = &n->pieces[n->npieces++];
			p->from = p->to = ncol++;
			p->child = NULL;
			p->keytext = NULL;
			p->keylen = 0;
		}
		else
		{
			StringInfoData buf;

			initStringInfo(&buf);
			escape_json(&buf, s->child->name);
			appendStringInfoString(&buf, ": ");
			p = &n->pieces[n->npieces++];
			p->from = p->to = -1;
			p->child = s->child;
			p->keytext = buf.data;
			p->keylen = buf.len;
		}
	}
}

/* The link of row to its children under include node child, or NULL. */
Link *
loader_node_link(IncNode *child, LRow *row)
{
	RelInfo    *ri = child->ri;
	Datum		keybuf[INDEX_MAX_KEYS];
	Datum	   *key = ri->nkey <= INDEX_MAX_KEYS ? keybuf : palloc(sizeof(Datum) * ri->nkey);

	for (int k = 0; k < ri->nkey; k++)
	{
		if (row->nulls[ri->parent_idx[k]])
			return NULL;
		key[k] = loader_key_normalise(&ri->key, k, row->values[ri->parent_idx[k]]);
	}
	return loader_keymap_get(child->links, key, loader_key_hash(&ri->key, key));
}

static void
count_object(LoadCall *lc)
{
	check_stack_depth();
	CHECK_FOR_INTERRUPTS();
	lc->built++;
	loader_check_row_limit(lc, lc->built);
}

/* jsonb output: the object of row at node, as a JsonbValue. */
void
loader_build_object(LoadCall *lc, LRow *row, IncNode *node, JsonbValue *out)
{
	JsonbPair  *pairs;

	count_object(lc);
	pairs = palloc(sizeof(JsonbPair) * Max(node->nslots, 1));
	for (int i = 0; i < node->nslots; i++)
	{
		OutSlot    *s = &node->slots[i];

		pairs[i].key = s->key;
		pairs[i].order = i;
		if (s->col >= 0)
			pairs[i].value = row->json[s->col];
		else
		{
			IncNode    *c = s->child;
			Link	   *l = loader_node_link(c, row);
			JsonbValue *v = &pairs[i].value;

			if (c->ri->to_many)
			{
				int			n = l ? l->nrows : 0;

				v->type = jbvArray;
				v->val.array.rawScalar = false;
				v->val.array.nElems = n;
				v->val.array.elems = palloc(sizeof(JsonbValue) * Max(n, 1));
				for (int e = 0; e < n; e++)
					loader_build_object(lc, l->rows[e], c, &v->val.array.elems[e]);
			}
			else if (l != NULL && l->nrows > 0)
				loader_build_object(lc, l->rows[0], c, v);
			else
				v->type = jbvNull;
		}
	}
	out->type = jbvObject;
	out->val.object.nPairs = node->nslots;
	out->val.object.pairs = pairs;
}

/*
 * Text output: appends the object of row at node to out, as jsonb_out
 * prints it ("{" pairs separated by ", " "}").
 */
void
loader_write_object(LoadCall *lc, LRow *row, IncNode *node, StringInfo out)
{
	/* the arena is complete: nothing moves it while objects are written */
	const char *rowtext = lc->arena.data + row->textoff;

	count_object(lc);
	loader_append_char(out, '{');
	for (int i = 0; i < node->npieces; i++)
	{
		OutPiece   *p = &node->pieces[i];

		if (i > 0)
			loader_append(out, ", ", 2);
		if (p->child == NULL)
		{
			int32		start = row->textpos[p->from];

			loader_append(out, rowtext + start, row->textpos[p->to + 1] - 2 - start);
		}
		else
		{
			IncNode    *c = p->child;
			Link	   *l = loader_node_link(c, row);

			loader_append(out, p->keytext, p->keylen);
			if (c->ri->to_many)
			{
				int			n = l ? l->nrows : 0;

				loader_append_char(out, '[');
				for (int e = 0; e < n; e++)
				{
					if (e > 0)
						loader_append(out, ", ", 2);
					loader_write_object(lc, l->rows[e], c, out);
				}
				loader_append_char(out, ']');
			}
			else if (l != NULL && l->nrows > 0)
				loader_write_object(lc, l->rows[0], c, out);
			else
				loader_append(out, "null", 4);
		}
	}
	loader_append_char(out, '}');
}

static void
append_stats_counts(StringInfo buf, int64 queries, int64 rows, int64 hits)
{
	appendStringInfo(buf, "\"queries\": " INT64_FORMAT ", \"rows_fetched\": " INT64_FORMAT
					 ", \"identity_hits\": " INT64_FORMAT, queries, rows, hits);
}

/* The call's statistics, as the JSON text last_load_stats() returns. */
char *
loader_stats_text(LoadCall *lc)
{
	StringInfoData buf;
	ListCell   *cell;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"function\": ");
	escape_json(&buf, lc->function);
	appendStringInfoString(&buf, ", \"model\": ");
	escape_json(&buf, lc->root->mi->model->name);
	appendStringInfo(&buf, ", \"roots\": %d, \"objects_built\": " INT64_FORMAT
					 ", \"chunk_size\": %d, ", lc->root->ninst, lc->built, harbor_load_chunk_size);
	append_stats_counts(&buf, lc->queries, lc->fetched, lc->hits);
	appendStringInfoString(&buf, ", \"paths\": [");
	foreach(cell, lc->nodes)
	{
		IncNode    *n = lfirst(cell);

		if (foreach_current_index(cell) > 0)
			appendStringInfoString(&buf, ", ");
		appendStringInfoString(&buf, "{\"path\": ");
		escape_json(&buf, n->path);
		appendStringInfoString(&buf, ", \"model\": ");
		escape_json(&buf, n->mi->model->name);
		if (n->ri)
		{
			appendStringInfoString(&buf, ", \"relationship\": ");
			escape_json(&buf, n->ri->label);
			appendStringInfoString(&buf, ", \"kind\": ");
			escape_json(&buf, harbor_relkind_name(n->ri->rel->kind));
		}
		appendStringInfo(&buf, ", \"distinct_rows\": %d, ", n->ninst);
		append_stats_counts(&buf, n->queries, n->rows, n->hits);
		appendStringInfoChar(&buf, '}');
	}
	appendStringInfoString(&buf, "]}");
	return buf.data;
}
