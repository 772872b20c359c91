/*-------------------------------------------------------------------------
 *
 * harbor_orm.h
 *	  Settings and entry points shared by the harbor_orm modules.
 *
 * Copyright (c) 2026, harbor_orm developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef HARBOR_ORM_H
#define HARBOR_ORM_H

#include "compat.h"

/* Schema that holds every extension object. */
#define HARBOR_SCHEMA "harbor"

/* GUCs, defined in harbor_orm.c */
extern int	harbor_reservation_retention;	/* seconds */
extern int	harbor_sweep_interval;	/* seconds */
extern int	harbor_sweep_batch_size;
extern char *harbor_sweeper_databases;
extern char *harbor_sweeper_role;
extern bool harbor_sweeper_enabled;
extern int	harbor_load_chunk_size;
extern int	harbor_max_include_depth;
extern int	harbor_load_max_rows;

/* registry.c */
extern void harbor_registry_init(void);

#endif							/* HARBOR_ORM_H */
