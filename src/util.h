/*-------------------------------------------------------------------------
 *
 * util.h
 *	  Small helpers shared by the harbor_orm modules: text[] conversion and
 *	  SPI conveniences.
 *
 * Copyright (c) 2026, harbor_orm developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef HARBOR_UTIL_H
#define HARBOR_UTIL_H

#include "executor/spi.h"

/* text[] Datum -> palloc'd array of C strings; NULL elements are errors. */
extern char **harbor_text_array_to_cstrings(Datum array, int *n);

/* C strings -> text[] Datum. */
extern Datum harbor_cstrings_to_text_array(char **items, int n);

/* Comma-separated, quoted list of C strings, for messages. */
extern char *harbor_join_quoted(char **items, int n);

/* Run a read-only or read-write SPI statement with parameters; errors on failure. */
extern int	harbor_spi_exec(const char *sql, int nargs, Oid *argtypes,
							Datum *values, const char *nulls, bool read_only,
							long count);

/* Column value of the current SPI result as C string (NULL for SQL NULL). */
extern char *harbor_spi_getcstring(int row, int col);

#endif							/* HARBOR_UTIL_H */
