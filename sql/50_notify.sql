-- Commit-time change notifications: harbor.enable_change_notify
-- (payload shapes, channels, who may send keys, the 0.1.0 declaration and
-- triggers, and the upgrade from 0.1.0)
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS harbor_orm;
CREATE SCHEMA notify_t;
CREATE TABLE notify_t.items (id bigint PRIMARY KEY, label text, stock integer NOT NULL DEFAULT 0);
CREATE TABLE notify_t.pairs (a integer, b text, PRIMARY KEY (a, b));
CREATE TABLE notify_t.docs (code text PRIMARY KEY, body text);
CREATE TABLE notify_t.secrets (id integer PRIMARY KEY, owner_name text, body text);
SELECT harbor.register_model('notify_t.items', 'nt_items');
SELECT harbor.register_model('notify_t.pairs', 'nt_pairs');
SELECT harbor.register_model('notify_t.docs', 'nt_docs');
SELECT harbor.register_model('notify_t.secrets', 'nt_secrets');
RESET client_min_messages;

-- errors: unknown model, null model, trigger function called directly,
-- bad channel or payload (nothing is created by a failed call)
SELECT harbor.enable_change_notify('nt_nope');
SELECT harbor.enable_change_notify(NULL);
SELECT harbor.disable_change_notify('nt_nope');
SELECT harbor._notify_changes();
\set VERBOSITY terse
SELECT harbor.enable_change_notify('nt_items', payload => 'rows');
SELECT harbor.enable_change_notify('nt_items', payload => NULL);
SELECT harbor.enable_change_notify('nt_items', channel => NULL);
SELECT harbor.enable_change_notify('nt_items', channel => '');
SELECT harbor.enable_change_notify('nt_items', channel => repeat('c', 64));
\set VERBOSITY default
SELECT count(*) FROM pg_trigger WHERE tgrelid = 'notify_t.items'::regclass;

-- the tests below that look at ids ask for them explicitly
SELECT harbor.enable_change_notify('nt_items', payload => 'keys');
-- enabling twice is idempotent
SELECT harbor.enable_change_notify('nt_items', payload => 'keys');
SELECT tgname FROM pg_trigger WHERE tgrelid = 'notify_t.items'::regclass ORDER BY 1;
SELECT model, channel, payload FROM harbor.change_notify_models ORDER BY 1;

LISTEN harbor_changes;
-- psql prints each notification with the sender's PID, which changes from
-- run to run: capture them with \o (\qecho labels go to the same file)
-- and print the capture with the PID masked.
\o results/50_notify.log
\qecho '-- one notification per statement, not per row'
INSERT INTO notify_t.items (id, label) VALUES (1, 'a'), (2, 'b'), (3, 'c');
UPDATE notify_t.items SET stock = stock + 1 WHERE id IN (1, 3);
\qecho '-- a statement that changes nothing says nothing'
UPDATE notify_t.items SET stock = 0 WHERE id < 0;
\qecho '-- a key change reports the new and the old id'
UPDATE notify_t.items SET id = 10 WHERE id = 2;
DELETE FROM notify_t.items WHERE id = 10;
\qecho '-- nothing is sent before commit, nothing at all after rollback'
BEGIN;
INSERT INTO notify_t.items (id) VALUES (4);
SELECT 'inside the transaction' AS note;
COMMIT;
BEGIN;
INSERT INTO notify_t.items (id) VALUES (5);
DELETE FROM notify_t.items WHERE id = 1;
ROLLBACK;
SELECT 'after rollback' AS note;
\qecho '-- ON CONFLICT DO UPDATE fires the insert and the update statement triggers'
INSERT INTO notify_t.items (id, label) VALUES (3, 'c2'), (6, 'f')
    ON CONFLICT (id) DO UPDATE SET label = EXCLUDED.label;
TRUNCATE notify_t.items;

\qecho '-- the registry''s DDL event triggers keep working on a notifying table'
ALTER TABLE notify_t.items ADD COLUMN note text;
SELECT columns FROM harbor.models WHERE name = 'nt_items';
INSERT INTO notify_t.items (id, note) VALUES (7, 'after alter');

\qecho '-- composite and text keys, hostile strings escaped as JSON'
SELECT harbor.enable_change_notify('nt_pairs', payload => 'keys');
INSERT INTO notify_t.pairs VALUES (1, 'x"y'), (2, E'back\\slash'), (3, 'ünï');
SELECT harbor.enable_change_notify('nt_docs', payload => 'keys');
INSERT INTO notify_t.docs VALUES (E'line\nbreak', 'x');

\qecho '-- a key too long for any payload: ids null, the whole model counts as changed'
INSERT INTO notify_t.docs VALUES (repeat('k', 9000), 'long key');

\o
\! sed -E 's/PID [0-9]+/PID N/' results/50_notify.log

-- 3,000 ids in one statement are split below the 8000-byte payload limit
\o results/50_notify_split.log
INSERT INTO notify_t.items (id) SELECT g FROM generate_series(100000, 102999) g;
\o
\! sed -E -e 's/^Asynchronous notification "harbor_changes" with payload "//' -e 's/" received from server process with PID [0-9]+\.$//' results/50_notify_split.log | awk '{ n++; if (length($0) >= 8000) big++; ids += gsub(/1[0-9][0-9][0-9][0-9][0-9]/, "") } END { printf "%d notifications, %d ids, %d over the limit\n", n, ids, big }'

-- #8: a big statement spills the transition tables to disk (work_mem is
-- 64kB); the trigger reads them through its own rewound read pointers, and
-- an UPDATE pairs each old row with its new one there too
SET work_mem = '64kB';
\o results/50_notify_spill.log
UPDATE notify_t.items SET id = id + 10000 WHERE id >= 100000;
\o
RESET work_mem;
\! sed -E -e 's/^Asynchronous notification "harbor_changes" with payload "//' -e 's/" received from server process with PID [0-9]+\.$//' results/50_notify_spill.log | awk '{ n++; ids += gsub(/1[0-9][0-9][0-9][0-9][0-9]/, "") } END { printf "%d notifications, %d ids (3,000 new and 3,000 old keys)\n", n, ids }'

SELECT harbor.disable_change_notify('nt_items');
SELECT harbor.disable_change_notify('nt_items');
SELECT tgname FROM pg_trigger WHERE tgrelid = 'notify_t.items'::regclass ORDER BY 1;

-- #4: enable and disable in one statement; disable sees what enable made
SELECT harbor.enable_change_notify('nt_items'), harbor.disable_change_notify('nt_items');
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgrelid = 'notify_t.items'::regclass
   AND tgname LIKE 'harbor\_notify\_%';

-- #9: what is sent, and where, is the enabler's choice.  The default
-- payload carries no keys: model, operation and row count only.
SELECT harbor.enable_change_notify('nt_items');
SELECT harbor.enable_change_notify('nt_pairs', payload => 'none');
SELECT harbor.enable_change_notify('nt_docs', channel => 'docs_7f3a9c', payload => 'keys');
SELECT model, channel, payload FROM harbor.change_notify_models ORDER BY 1;
LISTEN docs_7f3a9c;
\o results/50_notify_shapes.log
\qecho '-- count (the default): no ids'
INSERT INTO notify_t.items (id) VALUES (1), (2);
UPDATE notify_t.items SET stock = 1 WHERE id = 1;
UPDATE notify_t.items SET stock = 1 WHERE id < 0;
TRUNCATE notify_t.items;
\qecho '-- none: model and operation only'
INSERT INTO notify_t.pairs VALUES (9, 'nine');
DELETE FROM notify_t.pairs WHERE a = 9;
\qecho '-- keys on the channel chosen for docs, nothing of docs on harbor_changes'
INSERT INTO notify_t.docs VALUES ('d-1', 'x');
\o
\! sed -E 's/PID [0-9]+/PID N/' results/50_notify_shapes.log
UNLISTEN docs_7f3a9c;

-- Who may send keys.  Any role that can connect may LISTEN, so keys go out
-- only when the enabler could read every one of them itself: it owns the
-- table, or has SELECT on the key columns and row-level security does not
-- apply to it.  The TRIGGER privilege alone allows the keyless payloads.
CREATE ROLE nt_clerk;
GRANT USAGE ON SCHEMA notify_t TO nt_clerk;
GRANT TRIGGER ON notify_t.secrets TO nt_clerk;
SET ROLE nt_clerk;
SELECT harbor.enable_change_notify('nt_secrets', payload => 'keys');
\set VERBOSITY terse
SELECT harbor.enable_change_notify('nt_secrets');
RESET ROLE;
-- SELECT on the key column alone is enough (no RLS on the table)
GRANT SELECT (id) ON notify_t.secrets TO nt_clerk;
SET ROLE nt_clerk;
SELECT harbor.enable_change_notify('nt_secrets', payload => 'keys');
RESET ROLE;
-- SELECT on another column is not
REVOKE SELECT (id) ON notify_t.secrets FROM nt_clerk;
GRANT SELECT (body) ON notify_t.secrets TO nt_clerk;
SET ROLE nt_clerk;
SELECT harbor.enable_change_notify('nt_secrets', payload => 'keys');
RESET ROLE;
-- with row-level security the clerk sees only its own rows: refused even
-- with SELECT on the whole table; the owner may still choose keys
GRANT SELECT ON notify_t.secrets TO nt_clerk;
ALTER TABLE notify_t.secrets ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON notify_t.secrets USING (owner_name = current_user);
SET ROLE nt_clerk;
SELECT harbor.enable_change_notify('nt_secrets', payload => 'keys');
SELECT harbor.enable_change_notify('nt_secrets', payload => 'none');
RESET ROLE;
\set VERBOSITY default
SELECT model, channel, payload FROM harbor.change_notify_models WHERE model = 'nt_secrets';
SELECT harbor.enable_change_notify('nt_secrets', payload => 'keys');
SELECT model, channel, payload FROM harbor.change_notify_models WHERE model = 'nt_secrets';
SELECT harbor.disable_change_notify('nt_secrets');

-- The 0.1.0 declaration, still paired with this library until ALTER
-- EXTENSION UPDATE, passes only the model: it enables the default payload.
CREATE FUNCTION notify_t.enable_010(model text) RETURNS void
    LANGUAGE c AS '$libdir/harbor_orm', 'harbor_enable_change_notify';
SELECT notify_t.enable_010('nt_pairs');
SELECT model, channel, payload FROM harbor.change_notify_models WHERE model = 'nt_pairs';
-- Triggers made by 0.1.0 carry only the model: they send counts, no keys.
SELECT harbor.disable_change_notify('nt_pairs');
CREATE TRIGGER harbor_notify_insert AFTER INSERT ON notify_t.pairs
    REFERENCING NEW TABLE AS harbor_new
    FOR EACH STATEMENT EXECUTE FUNCTION harbor._notify_changes('nt_pairs');
SELECT model, channel, payload FROM harbor.change_notify_models WHERE model = 'nt_pairs';
\o results/50_notify_legacy.log
INSERT INTO notify_t.pairs VALUES (10, 'ten'), (11, 'eleven');
\o
\! sed -E 's/PID [0-9]+/PID N/' results/50_notify_legacy.log
SELECT harbor.disable_change_notify('nt_pairs');
UNLISTEN harbor_changes;

SET client_min_messages = warning;
DROP SCHEMA notify_t CASCADE;
DROP OWNED BY nt_clerk;
DROP ROLE nt_clerk;
RESET client_min_messages;

-- Upgrading from 0.1.0 with a model whose notifications were enabled then:
-- the update says that they no longer carry keys, and they do not.
SELECT current_database() AS regress_db \gset
SET client_min_messages = warning;
DROP DATABASE IF EXISTS harbor_notify_upgrade;
CREATE DATABASE harbor_notify_upgrade;
RESET client_min_messages;
\c harbor_notify_upgrade
SET client_min_messages = warning;
CREATE EXTENSION harbor_orm VERSION '0.1.0';
CREATE TABLE stock (id integer PRIMARY KEY, qty integer);
SELECT harbor.register_model('public.stock', 'stock');
-- the trigger as 0.1.0's enable_change_notify made it: the model only
CREATE TRIGGER harbor_notify_insert AFTER INSERT ON stock
    REFERENCING NEW TABLE AS harbor_new
    FOR EACH STATEMENT EXECUTE FUNCTION harbor._notify_changes('stock');
RESET client_min_messages;
ALTER EXTENSION harbor_orm UPDATE TO '0.2.0';
SELECT model, channel, payload FROM harbor.change_notify_models;
LISTEN harbor_changes;
\o results/50_notify_upgrade.log
INSERT INTO stock VALUES (1, 5), (2, 7);
\o
\! sed -E 's/PID [0-9]+/PID N/' results/50_notify_upgrade.log
-- the owner chooses keys again, explicitly
SELECT harbor.enable_change_notify('stock', payload => 'keys');
\o results/50_notify_upgrade.log
UPDATE stock SET qty = 4 WHERE id = 1;
\o
\! sed -E 's/PID [0-9]+/PID N/' results/50_notify_upgrade.log
\c :regress_db
DROP DATABASE harbor_notify_upgrade;
