/*-------------------------------------------------------------------------
 *
 * registry.h
 *	  The mapped-model registry as other modules see it.
 *
 * The registry lives in the tables harbor.model and harbor.relationship;
 * each backend keeps a read-only copy, rebuilt when those tables change.
 * Pointers returned here stay valid until the end of the current
 * transaction, even if the registry is invalidated meanwhile.
 *
 * Copyright (c) 2026, harbor_orm developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef HARBOR_REGISTRY_H
#define HARBOR_REGISTRY_H

typedef enum HarborRelKind
{
	HARBOR_MANY_TO_ONE,
	HARBOR_ONE_TO_MANY,
	HARBOR_ONE_TO_ONE,
	HARBOR_MANY_TO_MANY
} HarborRelKind;

typedef struct HarborModel HarborModel;

/*
 * A relationship from model to target.  The join condition is
 *	 model.local_columns[i] = target.remote_columns[i]
 * or, for many_to_many, through the secondary (association) table:
 *	 model.local_columns[i] = secondary.secondary_local_columns[i] and
 *	 secondary.secondary_remote_columns[j] = target.remote_columns[j].
 * For many_to_many, ncolumns counts the local side and nremote the remote
 * side; otherwise both are equal.
 */
typedef struct HarborRelationship
{
	char	   *name;
	HarborRelKind kind;
	HarborModel *model;
	HarborModel *target;
	int			ncolumns;
	char	  **local_columns;
	int			nremote;
	char	  **remote_columns;
	Oid			secondary;		/* InvalidOid unless many_to_many */
	char	  **secondary_local_columns;
	char	  **secondary_remote_columns;
	char	   *constraint_name;	/* backing FK constraint, or NULL */
	bool		explicit_decl;
	bool		ambiguous;
} HarborRelationship;

struct HarborModel
{
	char	   *name;
	Oid			relid;
	int			npk;
	char	  **pk_columns;
	Oid		   *pk_types;
	int			ncolumns;
	char	  **columns;
	Oid		   *column_types;
	int			nrelationships;
	HarborRelationship *relationships;	/* ordered by name */
};

/* Errors with 42704 and a hint naming the known models unless missing_ok. */
extern HarborModel *harbor_model_lookup(const char *name, bool missing_ok);
extern HarborModel *harbor_model_by_relid(Oid relid);
extern HarborModel **harbor_model_list(int *nmodels);

/*
 * Errors with 42704 (hint: the model's relationships) for an unknown name
 * and 42P09 (detail: the candidates) for an ambiguous one.
 */
extern HarborRelationship *harbor_relationship_lookup(HarborModel *model,
													  const char *name);

/* Changes whenever the registry is rebuilt; cached plans compare it. */
extern uint64 harbor_registry_generation(void);

extern const char *harbor_relkind_name(HarborRelKind kind);

/*
 * Serialises registry writers (harbor.model, harbor.relationship and
 * harbor.stock_model): a lock on harbor.model that conflicts only with
 * other writers; 42501 for roles that may not write the registry.  Lock
 * the user tables involved first.
 */
extern void harbor_registry_write_lock(void);

/* "schema"."table" for a relation, quoted as needed. */
extern char *harbor_quoted_relname(Oid relid);

#endif							/* HARBOR_REGISTRY_H */
