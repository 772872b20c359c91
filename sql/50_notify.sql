-- Commit-time change notifications: harbor.enable_change_notify
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS harbor_orm;
CREATE SCHEMA notify_t;
CREATE TABLE notify_t.items (id bigint PRIMARY KEY, label text, stock integer NOT NULL DEFAULT 0);
CREATE TABLE notify_t.pairs (a integer, b text, PRIMARY KEY (a, b));
CREATE TABLE notify_t.docs (code text PRIMARY KEY, body text);
SELECT harbor.register_model('notify_t.items', 'nt_items');
SELECT harbor.register_model('notify_t.pairs', 'nt_pairs');
SELECT harbor.register_model('notify_t.docs', 'nt_docs');
RESET client_min_messages;

-- errors: unknown model, null model, trigger function called directly
SELECT harbor.enable_change_notify('nt_nope');
SELECT harbor.enable_change_notify(NULL);
SELECT harbor.disable_change_notify('nt_nope');
SELECT harbor._notify_changes();

SELECT harbor.enable_change_notify('nt_items');
-- enabling twice is idempotent
SELECT harbor.enable_change_notify('nt_items');
SELECT tgname FROM pg_trigger WHERE tgrelid = 'notify_t.items'::regclass ORDER BY 1;
SELECT model FROM harbor.change_notify_models ORDER BY 1;

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
SELECT harbor.enable_change_notify('nt_pairs');
INSERT INTO notify_t.pairs VALUES (1, 'x"y'), (2, E'back\\slash'), (3, 'ünï');
SELECT harbor.enable_change_notify('nt_docs');
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

SELECT harbor.disable_change_notify('nt_items');
SELECT harbor.disable_change_notify('nt_items');
SELECT tgname FROM pg_trigger WHERE tgrelid = 'notify_t.items'::regclass ORDER BY 1;

SET client_min_messages = warning;
DROP SCHEMA notify_t CASCADE;
RESET client_min_messages;
