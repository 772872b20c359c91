-- harbor_orm 0.1.0 -> 0.2.0
--
-- A fresh CREATE EXTENSION harbor_orm runs the 0.1.0 install script and then
-- this one, so an upgraded database and a new one are the same by
-- construction.  Sections follow the capabilities.
\echo Use "ALTER EXTENSION harbor_orm UPDATE TO '0.2.0'" to load this file. \quit

-- ---- registry ----

-- ---- reservations ----

-- ---- sweeper ----

-- ---- loader ----

-- ---- notify ----
