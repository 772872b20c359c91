#!/usr/bin/env bash
# Registry across sessions and dumps:
#  - a backend's cached registry sees another session's registration at once;
#  - registrations, declared relationships included, survive pg_dump/restore.
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/cluster.sh

in_cluster -- bash -s <<'INNER'
set -uo pipefail
. test/lib/tap.sh
q() { psql -X -qAt -v ON_ERROR_STOP=1 "$@"; }

createdb src
q -d src >/dev/null <<'SQL'
CREATE EXTENSION harbor_orm;
CREATE TABLE ports (id int PRIMARY KEY, code text);
CREATE TABLE shipments (id int PRIMARY KEY, from_port_id int REFERENCES ports, to_port_id int REFERENCES ports);
CREATE TABLE crates (id int PRIMARY KEY, shipment_id int REFERENCES shipments);
SELECT harbor.reflect();
SELECT harbor.register_relationship('ports', 'departures', 'shipments', '{from_port_id}');
SQL

# cache invalidation: session A caches the registry, session B changes it
out=$(q -d src <<'SQL'
SELECT harbor.describe('ports')->>'name';
\! psql -X -qAt -d src -c "SELECT harbor.unregister_model('crates')" >/dev/null
SELECT coalesce((SELECT string_agg(name, ',' ORDER BY name) FROM harbor.models), '');
\! psql -X -qAt -d src -c "SELECT harbor.register_model('crates')" >/dev/null
SELECT harbor.describe('crates')->>'name';
SQL
)
check "a cached backend sees registrations made by other sessions" \
  "$out" "$(printf 'ports\nports,shipments\ncrates')"
out=$(q -d src -c "SELECT harbor.describe('crates')->>'name'" 2>&1; \
      q -d src <<'SQL' 2>&1
SELECT harbor.describe('crates')->>'name';
\! psql -X -qAt -d src -c "SELECT harbor.unregister_model('crates')" >/dev/null
SELECT harbor.describe('crates');
SQL
)
case "$out" in
  *'model "crates" does not exist'*) ok "a cached backend forgets a model unregistered elsewhere" ;;
  *) not_ok "stale cache after unregister" "$out" ;;
esac
q -d src -c "SELECT harbor.register_model('crates')" >/dev/null

# dump and restore
before=$(q -d src -c "SELECT name, relation, primary_key FROM harbor.models ORDER BY 1;
                      SELECT model, name, kind, target, local_columns, remote_columns, explicit, ambiguous
                        FROM harbor.relationships ORDER BY 1, 2, 5")
pg_dump -Fc -d src -f /tmp/harbor_registry_dump.$$ || not_ok "pg_dump"
createdb dst
pg_restore -d dst /tmp/harbor_registry_dump.$$ 2>&1 | grep -v '^$' && not_ok "pg_restore reported errors"
rm -f /tmp/harbor_registry_dump.$$
after=$(q -d dst -c "SELECT name, relation, primary_key FROM harbor.models ORDER BY 1;
                     SELECT model, name, kind, target, local_columns, remote_columns, explicit, ambiguous
                       FROM harbor.relationships ORDER BY 1, 2, 5")
check "models and relationships survive pg_dump/restore" "$after" "$before"
check "the restored registry has the declared relationship" \
  "$(q -d dst -c "SELECT name FROM harbor.relationships WHERE explicit")" departures
check "the restored registry is in step with the catalog" "$(q -d dst -c 'SELECT * FROM harbor.check_models()')" ""
check "the restored registry still follows DDL" \
  "$(q -d dst -c "ALTER TABLE ports ADD COLUMN country text" -c "SELECT columns FROM harbor.models WHERE name = 'ports'")" "{id,code,country}"
finish
INNER
