\echo '== Harbor Commerce: the catalog schema of the worked example, registered as models'
SET client_min_messages = warning;
CREATE EXTENSION harbor_orm;
\i demo/schema.sql
\echo
\echo 'harbor.reflect() registers every table with a primary key (like automap):'
SELECT harbor.reflect() AS models_registered;
\echo 'The models and their primary keys:'
SELECT name, relation, primary_key, columns FROM harbor.models ORDER BY name;
\echo 'Relationships discovered from the foreign keys (many-to-many through association tables):'
SELECT model, name, kind, target, local_columns, remote_columns, secondary
  FROM harbor.relationships ORDER BY model, name;
