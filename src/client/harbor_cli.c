/*-------------------------------------------------------------------------
 *
 * harbor_cli.c
 *	  The harbor command-line tool, on libharbor.
 *
 *	  harbor [--dsn DSN] [--json] COMMAND [ARGS...]
 *
 * Human-readable tables by default, JSON with --json.  Exit codes tell
 * the failure apart (see usage()), and every failure is one line on
 * stderr (with --json, also a JSON object on stdout).
 *
 * Copyright (c) 2026, harbor_orm developers
 *
 *-------------------------------------------------------------------------
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harbor.h"
#include "json_text.h"

/* Exit codes; documented in usage() and docs/client.md. */
enum
{
	EXIT_OK = 0,
	EXIT_ERROR = 1,
	EXIT_BAD_INPUT = 2,
	EXIT_INSUFFICIENT = 3,
	EXIT_CONNECTION = 4,
	EXIT_UNKNOWN_ITEM = 5,
	EXIT_NOT_HELD = 6,
	EXIT_CONFLICT = 7
};

static bool json_output = false;

/* ---------------------------------------------------------------------
 * A small JSON reader, enough to lay out what the server returns
 * ---------------------------------------------------------------------
 */
typedef enum
{
	J_NULL, J_BOOL, J_NUMBER, J_STRING, J_ARRAY, J_OBJECT
} jtype;

typedef struct jnode
{
	jtype		type;
	char	   *text;			/* decoded string, or the literal */
	char	   *key;			/* member name inside an object */
	const char *raw_start;		/* the value's JSON text */
	size_t		raw_len;
	struct jnode *child;
	struct jnode *next;
	size_t		nchildren;
} jnode;

static void
jfree(jnode *n)
{
	while (n)
	{
		jnode	   *next = n->next;

		jfree(n->child);
		free(n->text);
		free(n->key);
		free(n);
		n = next;
	}
}

static void
skip_ws(const char **p)
{
	while (**p == ' ' || **p == '\n' || **p == '\t' || **p == '\r')
		(*p)++;
}

static jnode *
parse_value(const char **p)
{
	jnode	   *n = calloc(1, sizeof(jnode));

	if (n == NULL)
		return NULL;
	skip_ws(p);
	n->raw_start = *p;
	if (**p == '{' || **p == '[')
	{
		char		close = **p == '{' ? '}' : ']';
		jnode	  **tail = &n->child;

		n->type = **p == '{' ? J_OBJECT : J_ARRAY;
		(*p)++;
		skip_ws(p);
		while (**p && **p != close)
		{
			char	   *key = NULL;
			jnode	   *c;

			if (n->type == J_OBJECT)
			{
				if (**p != '"')
					break;
				key = harbor_json_decode_string(p);
				skip_ws(p);
				if (**p == ':')
					(*p)++;
			}
			c = parse_value(p);
			if (c == NULL)
			{
				free(key);
				break;
			}
			c->key = key;
			*tail = c;
			tail = &c->next;
			n->nchildren++;
			skip_ws(p);
			if (**p == ',')
				(*p)++;
			skip_ws(p);
		}
		if (**p == close)
			(*p)++;
	}
	else if (**p == '"')
	{
		n->type = J_STRING;
		n->text = harbor_json_decode_string(p);
	}
	else
	{
		const char *s = *p;

		while (**p && strchr(",}] \n\t\r", **p) == NULL)
			(*p)++;
		n->text = strndup(s, (size_t) (*p - s));
		n->type = strcmp(n->text, "null") == 0 ? J_NULL :
			(strcmp(n->text, "true") == 0 || strcmp(n->text, "false") == 0) ? J_BOOL : J_NUMBER;
	}
	n->raw_len = (size_t) (*p - n->raw_start);
	return n;
}

static jnode *
jparse(const char *text)
{
	const char *p = text;

	return parse_value(&p);
}

static jnode *
jget(const jnode *obj, const char *key)
{
	if (obj == NULL || obj->type != J_OBJECT)
		return NULL;
	for (jnode *c = obj->child; c; c = c->next)
		if (c->key && strcmp(c->key, key) == 0)
			return c;
	return NULL;
}

/* An ISO 8601 timestamp as to_jsonb renders timestamptz. */
static bool
looks_like_timestamp(const char *s)
{
	static const char pattern[] = "dddd-dd-ddTdd:dd:dd";

	for (size_t i = 0; i < sizeof(pattern) - 1; i++)
	{
		if (pattern[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != pattern[i])
			return false;
	}
	return true;
}

/* The text a table cell shows for a value (malloc'd). */
static char *
cell_text(const jnode *v)
{
	char		buf[64];

	if (v == NULL || v->type == J_NULL)
		return strdup("");
	if (v->type == J_STRING && looks_like_timestamp(v->text))
	{
		/* 2026-11-25T20:11:30.517056+00:00 reads better as 2026-11-25 20:11:30 */
		snprintf(buf, sizeof(buf), "%.10s %.8s", v->text, v->text + 11);
		return strdup(buf);
	}
	if (v->type == J_STRING || v->type == J_NUMBER || v->type == J_BOOL)
		return strdup(v->text);
	if (v->type == J_ARRAY)
	{
		bool		scalars = true;
		size_t		len = 3;
		char	   *out;

		for (jnode *c = v->child; c; c = c->next)
		{
			if (c->type == J_ARRAY || c->type == J_OBJECT)
				scalars = false;
			else
				len += strlen(c->text ? c->text : "") + 2;
		}
		if (!scalars)
		{
			snprintf(buf, sizeof(buf), "[%zu %s]", v->nchildren,
					 v->nchildren == 1 ? "object" : "objects");
			return strdup(buf);
		}
		out = malloc(len);
		if (out == NULL)
			return NULL;
		out[0] = '\0';
		for (jnode *c = v->child; c; c = c->next)
		{
			if (c != v->child)
				strcat(out, ", ");
			strcat(out, c->text ? c->text : "");
		}
		return out;
	}
	/* a nested object: its name, sku or id says most */
	{
		const char *labels[] = {"name", "label", "sku", "id"};

		for (size_t i = 0; i < sizeof(labels) / sizeof(labels[0]); i++)
		{
			jnode	   *l = jget(v, labels[i]);

			if (l && l->text)
				return strdup(l->text);
		}
	}
	return strdup("{...}");
}

/* Display width of UTF-8 text: one column per code point. */
static size_t
display_width(const char *s)
{
	size_t		w = 0;

	for (; *s; s++)
		if (((unsigned char) *s & 0xC0) != 0x80)
			w++;
	return w;
}

#define MAX_COLS 32
#define MAX_CELL 48

/* Print a cell, cut at MAX_CELL columns and without line breaks. */
static void
print_cell(const char *s, size_t width)
{
	size_t		w = 0;

	for (; *s && w < width; s++)
	{
		if (((unsigned char) *s & 0xC0) != 0x80)
		{
			w++;
			if (w == MAX_CELL && display_width(s) > 1)
			{
				fputs("~", stdout);
				break;
			}
		}
		putchar(*s == '\n' || *s == '\t' || *s == '\r' ? ' ' : *s);
	}
	for (; w < width; w++)
		putchar(' ');
}

/*
 * Lay out an array of objects as a table; columns are the keys of the
 * first object, or the given list.
 */
static void
print_table(const jnode *arr, const char *const *cols_in, size_t ncols_in)
{
	const char *cols[MAX_COLS];
	size_t		ncols = 0;
	size_t		width[MAX_COLS];
	size_t		nrows = 0;
	char	  **cells;
	size_t		r = 0;

	if (arr == NULL || arr->type != J_ARRAY)
		return;
	if (cols_in)
		for (; ncols < ncols_in && ncols < MAX_COLS; ncols++)
			cols[ncols] = cols_in[ncols];
	else if (arr->child && arr->child->type == J_OBJECT)
		for (jnode *c = arr->child->child; c && ncols < MAX_COLS; c = c->next)
			cols[ncols++] = c->key;
	if (ncols == 0)
	{
		printf("(%zu rows)\n", arr->nchildren);
		return;
	}
	for (size_t i = 0; i < ncols; i++)
		width[i] = display_width(cols[i]);
	nrows = arr->nchildren;
	cells = calloc(nrows * ncols + 1, sizeof(char *));
	if (cells == NULL)
		return;
	for (jnode *row = arr->child; row; row = row->next, r++)
		for (size_t i = 0; i < ncols; i++)
		{
			char	   *t = cell_text(jget(row, cols[i]));
			size_t		w = t ? display_width(t) : 0;

			cells[r * ncols + i] = t;
			if (w > MAX_CELL)
				w = MAX_CELL;
			if (w > width[i])
				width[i] = w;
		}
	for (size_t i = 0; i < ncols; i++)
	{
		printf(i ? " | " : " ");
		print_cell(cols[i], width[i]);
	}
	printf("\n");
	for (size_t i = 0; i < ncols; i++)
	{
		printf(i ? "-+-" : "-");
		for (size_t k = 0; k < width[i]; k++)
			putchar('-');
	}
	printf("-\n");
	for (r = 0; r < nrows; r++)
	{
		for (size_t i = 0; i < ncols; i++)
		{
			printf(i ? " | " : " ");
			print_cell(cells[r * ncols + i] ? cells[r * ncols + i] : "", width[i]);
		}
		printf("\n");
	}
	printf("(%zu %s)\n", nrows, nrows == 1 ? "row" : "rows");
	for (size_t k = 0; k < nrows * ncols; k++)
		free(cells[k]);
	free(cells);
}

static void
print_json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c == '\t')
			fputs("\\t", f);
		else if (c == '\r')
			fputs("\\r", f);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

/* ---------------------------------------------------------------------
 * Errors and exit codes
 * ---------------------------------------------------------------------
 */

static int
exit_code_for(harbor_status st)
{
	switch (st)
	{
		case HARBOR_OK:
			return EXIT_OK;
		case HARBOR_INSUFFICIENT_STOCK:
			return EXIT_INSUFFICIENT;
		case HARBOR_UNKNOWN_ITEM:
			return EXIT_UNKNOWN_ITEM;
		case HARBOR_NOT_HELD:
			return EXIT_NOT_HELD;
		case HARBOR_INVALID_ARGUMENT:
			return EXIT_BAD_INPUT;
		case HARBOR_RETRYABLE:
			return EXIT_CONFLICT;
		case HARBOR_CONNECTION_LOST:
			return EXIT_CONNECTION;
		case HARBOR_ERROR:
			return EXIT_ERROR;
	}
	return EXIT_ERROR;
}

/* One line on stderr; with --json also an object on stdout. */
static int
fail(harbor_conn *conn, harbor_status st)
{
	const char *msg = harbor_errmsg(conn);
	const char *detail = harbor_errdetail(conn);

	if (st == HARBOR_CONNECTION_LOST)
		fprintf(stderr, "harbor: cannot reach the database: %s\n", msg);
	else if (detail[0])
		fprintf(stderr, "harbor: %s: %s (%s)\n", harbor_status_name(st), msg, detail);
	else
		fprintf(stderr, "harbor: %s: %s\n", harbor_status_name(st), msg);
	if (json_output)
	{
		printf("{\"error\": {\"status\": \"%s\", \"sqlstate\": ", harbor_status_name(st));
		print_json_string(stdout, harbor_sqlstate(conn));
		printf(", \"message\": ");
		print_json_string(stdout, msg);
		printf(", \"detail\": ");
		print_json_string(stdout, detail);
		printf(", \"hint\": ");
		print_json_string(stdout, harbor_errhint(conn));
		printf("}}\n");
	}
	return exit_code_for(st);
}

static int
bad_input(const char *fmt, const char *arg)
{
	fprintf(stderr, "harbor: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, " (see harbor --help)\n");
	return EXIT_BAD_INPUT;
}

static bool
parse_int64(const char *s, int64_t *out)
{
	char	   *end;
	long long	v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0')
		return false;
	*out = (int64_t) v;
	return true;
}

static bool
parse_int32(const char *s, int32_t *out)
{
	int64_t		v;

	if (!parse_int64(s, &v) || v < INT32_MIN || v > INT32_MAX)
		return false;
	*out = (int32_t) v;
	return true;
}

/* ---------------------------------------------------------------------
 * Commands
 * ---------------------------------------------------------------------
 */

typedef struct command
{
	const char *name;
	const char *args;
	const char *help;
	int			(*run) (harbor_conn *conn, int argc, char **argv);
} command;

/* Options a command accepts after its name; positional args stay in order. */
typedef struct cmdopts
{
	const char *ttl;
	const char *model;
	const char *filter;
	const char *include[64];
	size_t		ninclude;
	const char *order_by[16];
	size_t		norder_by;
	int			limit;
	int			offset;
	int			batch;
	int			timeout;		/* seconds, -1 none */
	int			count;			/* notifications, -1 none */
	const char *channel;		/* listen: NULL for the default */
	char	   *pos[256];
	int			npos;
} cmdopts;

static int
parse_cmdopts(int argc, char **argv, cmdopts *o)
{
	memset(o, 0, sizeof(*o));
	o->limit = -1;
	o->timeout = -1;
	o->count = -1;
	for (int i = 1; i < argc; i++)
	{
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		int32_t		n;

#define NEED_VALUE() do { if (v == NULL) return bad_input("option %s needs a value", a); i++; } while (0)
		if (strcmp(a, "--ttl") == 0)
		{
			NEED_VALUE();
			o->ttl = v;
		}
		else if (strcmp(a, "--model") == 0)
		{
			NEED_VALUE();
			o->model = v;
		}
		else if (strcmp(a, "--channel") == 0)
		{
			NEED_VALUE();
			o->channel = v;
		}
		else if (strcmp(a, "--filter") == 0)
		{
			NEED_VALUE();
			o->filter = v;
		}
		else if (strcmp(a, "--include") == 0)
		{
			NEED_VALUE();
			if (o->ninclude >= 64)
				return bad_input("too many %s options", a);
			o->include[o->ninclude++] = v;
		}
		else if (strcmp(a, "--order-by") == 0)
		{
			NEED_VALUE();
			if (o->norder_by >= 16)
				return bad_input("too many %s options", a);
			o->order_by[o->norder_by++] = v;
		}
		else if (strcmp(a, "--limit") == 0 || strcmp(a, "--offset") == 0 ||
				 strcmp(a, "--batch") == 0 || strcmp(a, "--timeout") == 0 ||
				 strcmp(a, "--count") == 0)
		{
			NEED_VALUE();
			if (!parse_int32(v, &n) || n < 0)
				return bad_input("not a non-negative number: %s", v);
			if (a[2] == 'l')
				o->limit = n;
			else if (a[2] == 'o')
				o->offset = n;
			else if (a[2] == 'b')
				o->batch = n;
			else if (a[2] == 't')
				o->timeout = n;
			else
				o->count = n;
		}
		else if (strcmp(a, "--") == 0)
		{
			for (i++; i < argc && o->npos < 256; i++)
				o->pos[o->npos++] = argv[i];
		}
		else if (a[0] == '-' && a[1] == '-')
			return bad_input("unknown option %s", a);
		else if (o->npos < 256)
			o->pos[o->npos++] = argv[i];
		else
			return bad_input("too many arguments%s", "");
#undef NEED_VALUE
	}
	return EXIT_OK;
}

/*
 * The start of every command: its options, then the count of positional
 * arguments (max -1: no upper bound), complaining as usage says.
 */
static int
command_args(int argc, char **argv, cmdopts *o, int min, int max, const char *usage)
{
	int			rc = parse_cmdopts(argc, argv, o);

	if (rc)
		return rc;
	if (o->npos < min || (max >= 0 && o->npos > max))
		return bad_input("%s", usage);
	return EXIT_OK;
}

static void
print_reservations(const harbor_reservation *r, size_t n)
{
	if (json_output)
	{
		printf("[");
		for (size_t i = 0; i < n; i++)
		{
			printf("%s{\"id\": %" PRId64 ", \"model\": ", i ? ", " : "", r[i].id);
			print_json_string(stdout, r[i].model);
			printf(", \"item_id\": %" PRId64 ", \"qty\": %" PRId32 ", \"order_id\": ",
				   r[i].item_id, r[i].qty);
			print_json_string(stdout, r[i].order_id);
			printf(", \"status\": ");
			print_json_string(stdout, r[i].status);
			printf(", \"expires_at\": ");
			print_json_string(stdout, r[i].expires_at);
			printf("}");
		}
		printf("]\n");
		return;
	}
	for (size_t i = 0; i < n; i++)
		printf("reserved %" PRId32 " x %s %" PRId64 " for order %s (reservation %" PRId64
			   ", %s, expires %s)\n",
			   r[i].qty, r[i].model, r[i].item_id, r[i].order_id, r[i].id,
			   r[i].status, r[i].expires_at);
}

static int
cmd_reserve(harbor_conn *conn, int argc, char **argv)
{
	cmdopts		o;
	int64_t		item;
	int32_t		qty;
	harbor_reservation r;
	harbor_status st;
	int			rc = command_args(argc, argv, &o, 3, 3, "reserve needs ITEM QTY ORDER");

	if (rc)
		return rc;
	if (!parse_int64(o.pos[0], &item))
		return bad_input("item id is not an integer: %s", o.pos[0]);
	if (!parse_int32(o.pos[1], &qty))
		return bad_input("quantity is not an integer: %s", o.pos[1]);
	st = harbor_reserve_stock(conn, item, qty, o.pos[2], o.ttl, o.model, &r);
	if (st != HARBOR_OK)
		return fail(conn, st);
	print_reservations(&r, 1);
	harbor_reservation_clear(&r);
	return EXIT_OK;
}

static int
cmd_reserve_many(harbor_conn *conn, int argc, char **argv)
{
	cmdopts		o;
	harbor_item items[255];
	harbor_reservation *r;
	size_t		n;
	harbor_status st;
	int			rc = command_args(argc, argv, &o, 2, -1,
								   "reserve-many needs ORDER ITEM:QTY...");

	if (rc)
		return rc;
	for (int i = 1; i < o.npos; i++)
	{
		char	   *colon = strchr(o.pos[i], ':');

		if (colon == NULL)
			return bad_input("expected ITEM:QTY, got %s", o.pos[i]);
		*colon = '\0';
		if (!parse_int64(o.pos[i], &items[i - 1].item_id) ||
			!parse_int32(colon + 1, &items[i - 1].qty))
		{
			*colon = ':';
			return bad_input("expected ITEM:QTY with integers, got %s", o.pos[i]);
		}
	}
	st = harbor_reserve_many(conn, o.pos[0], items, (size_t) o.npos - 1, o.ttl, o.model,
							 &r, &n);
	if (st != HARBOR_OK)
		return fail(conn, st);
	print_reservations(r, n);
	harbor_reservations_free(r, n);
	return EXIT_OK;
}

static int
print_count(harbor_conn *conn, harbor_status st, const char *key, int64_t n,
			const char *human)
{
	if (st != HARBOR_OK)
		return fail(conn, st);
	if (json_output)
		printf("{\"%s\": %" PRId64 "}\n", key, n);
	else
		printf(human, n);
	return EXIT_OK;
}

static int
cmd_confirm(harbor_conn *conn, int argc, char **argv)
{
	cmdopts		o;
	int			n = 0;
	harbor_status st;
	int			rc = command_args(argc, argv, &o, 1, 1, "confirm needs ORDER");

	if (rc)
		return rc;
	st = harbor_confirm(conn, o.pos[0], &n);
	return print_count(conn, st, "confirmed", n,
					   "confirmed %" PRId64 " reservation(s)\n");
}

static int
cmd_release(harbor_conn *conn, int argc, char **argv)
{
	cmdopts		o;
	int			n = 0;
	int64_t		item;
	harbor_status st;
	int			rc = command_args(argc, argv, &o, 1, 2, "release needs ORDER [ITEM]");

	if (rc)
		return rc;
	if (o.npos == 2 && !parse_int64(o.pos[1], &item))
		return bad_input("item id is not an integer: %s", o.pos[1]);
	st = harbor_release(conn, o.pos[0], o.npos == 2 ? &item : NULL, &n);
	return print_count(conn, st, "released", n, "released %" PRId64 " reservation(s)\n");
}

static int
cmd_extend(harbor_conn *conn, int argc, char **argv)
{
	cmdopts		o;
	int			n = 0;
	harbor_status st;
	int			rc = command_args(argc, argv, &o, 2, 2, "extend needs ORDER TTL");

	if (rc)
		return rc;
	st = harbor_extend(conn, o.pos[0], o.pos[1], &n);
	return print_count(conn, st, "extended", n,
					   "extended %" PRId64 " reservation(s)\n");
}

static int
cmd_sweep(harbor_conn *conn, int argc, char **argv)
{
	cmdopts		o;
	int64_t		n = 0;
	harbor_status st;
	int			rc = command_args(argc, argv, &o, 0, 0, "sweep takes no arguments");

	if (rc)
		return rc;
	st = harbor_sweep(conn, o.batch, &n);
	return print_count(conn, st, "released", n,
					   "released %" PRId64 " expired reservation(s)\n");
}

/* Print a JSON document: as is with --json, as a table otherwise. */
static int
print_document(const char *json, const char *empty)
{
	jnode	   *doc;

	if (json_output)
	{
		printf("%s\n", json);
		return EXIT_OK;
	}
	doc = jparse(json);
	if (doc && doc->type == J_OBJECT)
	{
		/* one object (get): a column per key */
		jnode		wrapper = {.type = J_ARRAY, .child = doc, .nchildren = 1};
		jnode	   *saved = doc->next;

		doc->next = NULL;
		print_table(&wrapper, NULL, 0);
		doc->next = saved;
	}
	else if (doc && doc->type == J_ARRAY && doc->nchildren > 0)
		print_table(doc, NULL, 0);
	else
		printf("%s\n", empty);
	jfree(doc);
	return EXIT_OK;
}

/* The end of every command that returns a JSON document. */
static int
document_result(harbor_conn *conn, harbor_status st, char *json, const char *empty)
{
	int			rc;

	if (st != HARBOR_OK)
		return fail(conn, st);
	rc = print_document(json, empty);
	harbor_free(json);
	return rc;
}

static int
cmd_load(harbor_conn *conn, int argc, char **argv)
{
	cmdopts		o;
	char	   *json;
	harbor_status st;
	int			rc = command_args(argc, argv, &o, 1, -1, "load needs MODEL ID...");

	if (rc)
		return rc;
	st = harbor_load(conn, o.pos[0], (const char *const *) &o.pos[1], (size_t) o.npos - 1,
					 o.include, o.ninclude, &json);
	return document_result(conn, st, json, "(no rows)");
}

static int
cmd_get(harbor_conn *conn, int argc, char **argv)
{
	cmdopts		o;
	char	   *json;
	harbor_status st;
	int			rc = command_args(argc, argv, &o, 2, 2, "get needs MODEL ID");

	if (rc)
		return rc;
	st = harbor_get(conn, o.pos[0], o.pos[1], o.include, o.ninclude, &json);
	return document_result(conn, st, json, "(not found)");
}

static int
cmd_find(harbor_conn *conn, int argc, char **argv)
{
	cmdopts		o;
	char	   *json;
	harbor_status st;
	int			rc = command_args(argc, argv, &o, 1, 1, "find needs MODEL");

	if (rc)
		return rc;
	st = harbor_find(conn, o.pos[0], o.filter, o.include, o.ninclude, o.order_by,
					 o.norder_by, o.limit, o.offset, &json);
	return document_result(conn, st, json, "(no rows)");
}

static int
cmd_models(harbor_conn *conn, int argc, char **argv)
{
	cmdopts		o;
	char	   *json;
	jnode	   *doc;
	harbor_status st;
	int			rc = command_args(argc, argv, &o, 0, 0, "models takes no arguments");

	if (rc)
		return rc;
	st = harbor_models(conn, &json);
	if (st != HARBOR_OK)
		return fail(conn, st);
	if (json_output)
	{
		printf("%s\n", json);
		harbor_free(json);
		return EXIT_OK;
	}
	doc = jparse(json);
	if (doc == NULL || doc->nchildren == 0)
		printf("no models registered (harbor.reflect() or harbor.register_model())\n");
	else
	{
		/* relationships as "name -> target (kind)" under each model */
		static const char *const cols[] = {"name", "relation", "primary_key", "notify"};

		print_table(doc, cols, 4);
		printf("\nrelationships:\n");
		for (jnode *m = doc->child; m; m = m->next)
		{
			jnode	   *rels = jget(m, "relationships");
			jnode	   *name = jget(m, "name");

			for (jnode *r = rels ? rels->child : NULL; r; r = r->next)
			{
				jnode	   *rn = jget(r, "name"),
						   *rk = jget(r, "kind"),
						   *rt = jget(r, "target");

				printf("  %s.%s -> %s (%s)\n", name && name->text ? name->text : "?",
					   rn && rn->text ? rn->text : "?", rt && rt->text ? rt->text : "?",
					   rk && rk->text ? rk->text : "?");
			}
		}
	}
	jfree(doc);
	harbor_free(json);
	return EXIT_OK;
}

static int
cmd_status(harbor_conn *conn, int argc, char **argv)
{
	cmdopts		o;
	char	   *json;
	jnode	   *doc;
	harbor_status st;
	int64_t		item;
	int			rc = command_args(argc, argv, &o, 0, 1, "status takes at most one ITEM");

	if (rc)
		return rc;
	if (o.npos == 1)
	{
		if (!parse_int64(o.pos[0], &item))
			return bad_input("item id is not an integer: %s", o.pos[0]);
		st = harbor_stock_status(conn, item, o.model, &json);
		return document_result(conn, st, json, "(no stock information)");
	}
	st = harbor_overview(conn, &json);
	if (st != HARBOR_OK)
		return fail(conn, st);
	if (json_output)
	{
		printf("%s\n", json);
		harbor_free(json);
		return EXIT_OK;
	}
	doc = jparse(json);
	{
		jnode	   *res = jget(doc, "reservations");
		jnode	   *sw = jget(doc, "sweeper");

		printf("reservations by status:\n");
		if (res == NULL || res->type != J_ARRAY)
			printf("  (reservations are not installed on this server)\n");
		else if (res->nchildren == 0)
			printf("  (none)\n");
		else
			print_table(res, NULL, 0);
		printf("\nexpiry sweeper:\n");
		if (sw == NULL || sw->type != J_ARRAY)
			printf("  (the sweeper is not installed on this server)\n");
		else if (sw->nchildren == 0)
			printf("  (not running for this database)\n");
		else
		{
			static const char *const cols[] = {"database", "mode", "pid", "state", "rounds",
				"released_total", "purged_total", "last_run_end", "last_error"};

			/* the usual columns when the server has them, else all */
			print_table(sw, jget(sw->child, "released_total") ? cols : NULL,
						jget(sw->child, "released_total") ? 9 : 0);
		}
	}
	jfree(doc);
	harbor_free(json);
	return EXIT_OK;
}

static int
on_change(const harbor_change *ch, void *arg)
{
	int		   *left = arg;

	if (json_output)
		printf("%s\n", ch->payload);
	else if (ch->count >= 0)
		printf("%-8s %-16s count=%lld\n", ch->op, ch->model, ch->count);
	else
		printf("%-8s %-16s ids=%s\n", ch->op, ch->model, ch->ids);
	fflush(stdout);
	if (*left > 0 && --*left == 0)
		return 1;
	return 0;
}

static int
cmd_listen(harbor_conn *conn, int argc, char **argv)
{
	cmdopts		o;
	int			left;
	harbor_status st;
	int			rc = command_args(argc, argv, &o, 0, 0, "listen takes no arguments");

	if (rc)
		return rc;
	left = o.count;
	if (left == 0)
		return EXIT_OK;
	st = harbor_listen_channel(conn, o.channel, on_change, &left,
							   o.timeout < 0 ? -1 : o.timeout * 1000, NULL);
	if (st != HARBOR_OK)
		return fail(conn, st);
	return EXIT_OK;
}

static const command commands[] = {
	{"reserve", "ITEM QTY ORDER [--ttl INTERVAL] [--model MODEL]",
	"Reserve QTY of ITEM for ORDER (harbor.reserve_stock); again for the same order\n"
	"  and item replaces the quantity and renews the expiry.", cmd_reserve},
	{"reserve-many", "ORDER ITEM:QTY... [--ttl INTERVAL] [--model MODEL]",
	"Reserve several items for ORDER, all or none (harbor.reserve_many).", cmd_reserve_many},
	{"confirm", "ORDER", "Confirm the order's active reservations (harbor.confirm_reservation).",
	cmd_confirm},
	{"release", "ORDER [ITEM]",
	"Release the order's active reservations, or one item's (harbor.release_reservation).",
	cmd_release},
	{"extend", "ORDER TTL", "Renew the expiry of the order's reservations (harbor.extend_reservation).",
	cmd_extend},
	{"sweep", "[--batch N]", "Release expired reservations now (harbor.sweep_expired).", cmd_sweep},
	{"load", "MODEL ID... [--include PATH]...",
	"Rows of MODEL by primary key with related rows (harbor.load).", cmd_load},
	{"get", "MODEL ID [--include PATH]...", "One row of MODEL by primary key (harbor.get).", cmd_get},
	{"find", "MODEL [--filter JSON] [--include PATH]... [--order-by COL[ desc]]... [--limit N] [--offset N]",
	"Rows of MODEL matching a filter such as '{\"stock_qty\": {\"gt\": 0}}' (harbor.find).", cmd_find},
	{"models", "", "The registered models and their relationships.", cmd_models},
	{"status", "[ITEM [--model MODEL]]",
	"Reservations by status and the expiry sweeper's state; with ITEM, that item's stock.",
	cmd_status},
	{"listen", "[--channel NAME] [--timeout SECONDS] [--count N]",
	"Print change notifications (harbor.enable_change_notify) as they arrive, from\n"
	"  channel NAME (default harbor_changes); stops after SECONDS or N notifications\n"
	"  if given.  Needs a direct connection, not a transaction-pooling PgBouncer.",
	cmd_listen},
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void
usage(FILE *f)
{
	fprintf(f,
			"harbor %s - command-line client for harbor_orm\n\n"
			"usage: harbor [--dsn DSN] [--json] COMMAND [ARGS...]\n"
			"       harbor COMMAND --help\n\n"
			"commands:\n", HARBOR_VERSION);
	for (size_t i = 0; i < N_COMMANDS; i++)
		fprintf(f, "  %-13s %s\n", commands[i].name, commands[i].args);
	fprintf(f,
			"\noptions:\n"
			"  --dsn DSN   libpq connection string or URI; without it the PGHOST, PGPORT,\n"
			"              PGDATABASE, PGUSER, ... environment variables apply\n"
			"  --json      machine-readable JSON on stdout (errors too)\n\n"
			"exit codes:\n"
			"  0 ok                  4 cannot connect / connection lost\n"
			"  1 other error         5 unknown item\n"
			"  2 bad input           6 order does not hold the reservation\n"
			"  3 insufficient stock  7 conflict still failing after retries\n");
}

int
main(int argc, char **argv)
{
	const char *dsn = NULL;
	const command *cmd = NULL;
	harbor_conn *conn;
	harbor_status st;
	int			i;
	int			rc;

	for (i = 1; i < argc; i++)
	{
		if (strcmp(argv[i], "--dsn") == 0)
		{
			if (i + 1 >= argc)
				return bad_input("option %s needs a value", "--dsn");
			dsn = argv[++i];
		}
		else if (strncmp(argv[i], "--dsn=", 6) == 0)
			dsn = argv[i] + 6;
		else if (strcmp(argv[i], "--json") == 0)
			json_output = true;
		else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
		{
			usage(stdout);
			return EXIT_OK;
		}
		else if (strcmp(argv[i], "--version") == 0)
		{
			printf("harbor %s\n", HARBOR_VERSION);
			return EXIT_OK;
		}
		else if (argv[i][0] == '-')
			return bad_input("unknown option %s", argv[i]);
		else
			break;
	}
	if (i >= argc)
	{
		usage(stderr);
		return EXIT_BAD_INPUT;
	}
	for (size_t k = 0; k < N_COMMANDS; k++)
		if (strcmp(argv[i], commands[k].name) == 0)
			cmd = &commands[k];
	if (cmd == NULL)
		return bad_input("unknown command %s", argv[i]);
	for (int k = i + 1; k < argc; k++)
	{
		if (strcmp(argv[k], "--") == 0)
			break;
		if (strcmp(argv[k], "--help") == 0 || strcmp(argv[k], "-h") == 0)
		{
			printf("usage: harbor [--dsn DSN] [--json] %s %s\n\n  %s\n", cmd->name, cmd->args,
				   cmd->help);
			return EXIT_OK;
		}
		/* --json after the command is accepted too */
		if (strcmp(argv[k], "--json") == 0)
		{
			json_output = true;
			for (int m = k; m + 1 < argc; m++)
				argv[m] = argv[m + 1];
			argc--;
			k--;
		}
	}

	st = harbor_connect(&conn, dsn, NULL);
	if (conn == NULL)
	{
		fprintf(stderr, "harbor: out of memory\n");
		return EXIT_ERROR;
	}
	if (st != HARBOR_OK)
	{
		rc = fail(conn, st);
		harbor_close(conn);
		return rc;
	}
	rc = cmd->run(conn, argc - i, argv + i);
	harbor_close(conn);
	return rc;
}
