-- =====================================================================
-- Mapped-model registry (src/registry.c)
-- =====================================================================

-- One row per mapped table.  Column names, not attribute numbers, so that a
-- dump restored elsewhere still lines up; regclass is dumped as a name.
CREATE TABLE harbor.model (
    name          text        PRIMARY KEY CHECK (name <> '' AND name !~ '[.\s]'),
    relation      regclass    NOT NULL UNIQUE,
    primary_key   text[]      NOT NULL CHECK (cardinality(primary_key) > 0),
    columns       text[]      NOT NULL,
    column_types  regtype[]   NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    refreshed_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- Relationships: discovered from foreign keys (explicit = false, rebuilt on
-- every registry change) or declared with register_relationship (explicit).
-- A discovered name that two foreign keys would both give is kept once per
-- candidate with ambiguous = true, so that its use can list the candidates.
CREATE TABLE harbor.relationship (
    id                       integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model                    text    NOT NULL REFERENCES harbor.model (name)
                                     ON UPDATE CASCADE ON DELETE CASCADE,
    name                     text    NOT NULL CHECK (name <> '' AND name !~ '[.\s]'),
    kind                     text    NOT NULL CHECK (kind IN ('many_to_one', 'one_to_many',
                                                              'one_to_one', 'many_to_many')),
    target                   text    NOT NULL REFERENCES harbor.model (name)
                                     ON UPDATE CASCADE ON DELETE CASCADE,
    local_columns            text[]  NOT NULL,
    remote_columns           text[]  NOT NULL,
    secondary                regclass,
    secondary_local_columns  text[],
    secondary_remote_columns text[],
    constraint_name          text,
    explicit                 boolean NOT NULL DEFAULT false,
    ambiguous                boolean NOT NULL DEFAULT false,
    CHECK (kind = 'many_to_many' OR cardinality(local_columns) = cardinality(remote_columns)),
    CHECK ((kind = 'many_to_many') = (secondary IS NOT NULL)),
    CHECK (NOT (explicit AND ambiguous))
);
CREATE UNIQUE INDEX relationship_model_name_key
    ON harbor.relationship (model, name) WHERE NOT ambiguous;
CREATE INDEX relationship_target_idx ON harbor.relationship (target);

SELECT pg_catalog.pg_extension_config_dump('harbor.model', '');
SELECT pg_catalog.pg_extension_config_dump('harbor.relationship', '');
SELECT pg_catalog.pg_extension_config_dump('harbor.relationship_id_seq', '');

-- Backends cache the registry; any change to these tables invalidates it.
CREATE FUNCTION harbor._registry_changed() RETURNS trigger
    LANGUAGE c
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_registry_changed';
-- Row triggers, so that a statement that changes nothing invalidates nothing.
CREATE TRIGGER model_changed AFTER INSERT OR UPDATE OR DELETE
    ON harbor.model FOR EACH ROW EXECUTE FUNCTION harbor._registry_changed();
CREATE TRIGGER model_truncated AFTER TRUNCATE
    ON harbor.model FOR EACH STATEMENT EXECUTE FUNCTION harbor._registry_changed();
CREATE TRIGGER relationship_changed AFTER INSERT OR UPDATE OR DELETE
    ON harbor.relationship FOR EACH ROW EXECUTE FUNCTION harbor._registry_changed();
CREATE TRIGGER relationship_truncated AFTER TRUNCATE
    ON harbor.relationship FOR EACH STATEMENT EXECUTE FUNCTION harbor._registry_changed();

CREATE FUNCTION harbor.register_model(relation regclass, name text DEFAULT NULL)
    RETURNS text
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_register_model';
COMMENT ON FUNCTION harbor.register_model(regclass, text) IS
    'register a table with a primary key as a mapped model; returns the model name';

CREATE FUNCTION harbor.unregister_model(name text)
    RETURNS void
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_unregister_model';

CREATE FUNCTION harbor.reflect(schema name DEFAULT 'public')
    RETURNS integer
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_reflect';
COMMENT ON FUNCTION harbor.reflect(name) IS
    'register every table with a primary key in a schema; returns how many were registered or refreshed';

CREATE FUNCTION harbor.register_relationship(model text, name text, target text,
                                             foreign_key text[] DEFAULT NULL,
                                             secondary regclass DEFAULT NULL,
                                             kind text DEFAULT NULL)
    RETURNS void
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_register_relationship';
COMMENT ON FUNCTION harbor.register_relationship(text, text, text, text[], regclass, text) IS
    'declare a relationship explicitly, overriding discovery under that name';

CREATE FUNCTION harbor.unregister_relationship(model text, name text)
    RETURNS boolean
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_unregister_relationship';

CREATE FUNCTION harbor.describe(model text)
    RETURNS jsonb
    LANGUAGE c STABLE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_describe';

CREATE FUNCTION harbor.check_models()
    RETURNS TABLE (model text, problem text)
    LANGUAGE c STABLE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_check_models';
COMMENT ON FUNCTION harbor.check_models() IS
    'every difference between the registry and the live catalog; empty when in step';

CREATE VIEW harbor.models AS
    SELECT m.name, m.relation, m.primary_key, m.columns, m.column_types,
           m.registered_at, m.refreshed_at
      FROM harbor.model m;

CREATE VIEW harbor.relationships AS
    SELECT r.model, r.name, r.kind, r.target, r.local_columns, r.remote_columns,
           r.secondary, r.secondary_local_columns, r.secondary_remote_columns,
           r.constraint_name, r.explicit, r.ambiguous
      FROM harbor.relationship r;

-- DDL stays in step: event triggers refresh or remove models.  They run as
-- the extension owner (SECURITY DEFINER) because the user running the DDL
-- need not have write access to the registry; they only re-read the catalog.
CREATE FUNCTION harbor._on_ddl_end() RETURNS event_trigger
    LANGUAGE c SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_on_ddl_end';
CREATE FUNCTION harbor._on_sql_drop() RETURNS event_trigger
    LANGUAGE c SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_on_sql_drop';
REVOKE ALL ON FUNCTION harbor._on_ddl_end() FROM PUBLIC;
REVOKE ALL ON FUNCTION harbor._on_sql_drop() FROM PUBLIC;
REVOKE ALL ON FUNCTION harbor._registry_changed() FROM PUBLIC;

CREATE EVENT TRIGGER harbor_ddl_end ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE', 'CREATE INDEX', 'DROP INDEX', 'ALTER INDEX')
    EXECUTE FUNCTION harbor._on_ddl_end();
CREATE EVENT TRIGGER harbor_sql_drop ON sql_drop
    EXECUTE FUNCTION harbor._on_sql_drop();

GRANT USAGE ON SCHEMA harbor TO PUBLIC;
-- The registry is metadata every user of the models reads (the loader does).
GRANT SELECT ON harbor.model, harbor.relationship, harbor.models, harbor.relationships TO PUBLIC;
