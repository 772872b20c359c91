-- =====================================================================
-- Commit-time change notifications (src/notify.c)
-- =====================================================================

-- Statement-level trigger behind every notifying model; its one argument
-- is the model name.  Anyone may fire it (it only queues NOTIFY payloads);
-- calling it outside a trigger is an error.
CREATE FUNCTION harbor._notify_changes() RETURNS trigger
    LANGUAGE c
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_notify_changes';

CREATE FUNCTION harbor.enable_change_notify(model text)
    RETURNS void
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_enable_change_notify';
COMMENT ON FUNCTION harbor.enable_change_notify(text) IS
    'after each committed INSERT/UPDATE/DELETE/TRUNCATE on the model, NOTIFY harbor_changes with {"model","op","ids"}';

CREATE FUNCTION harbor.disable_change_notify(model text)
    RETURNS void
    LANGUAGE c VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'harbor_disable_change_notify';
COMMENT ON FUNCTION harbor.disable_change_notify(text) IS
    'stop the change notifications of a model; does nothing if they are off';

-- Models whose changes are announced.
CREATE VIEW harbor.change_notify_models AS
    SELECT m.name AS model, m.relation
      FROM harbor.model m
     WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                    WHERE t.tgrelid = m.relation
                      AND t.tgname = 'harbor_notify_insert');
GRANT SELECT ON harbor.change_notify_models TO PUBLIC;
