-- pg_workflow 0.2.0 -> 0.3.0. Every schema change since 0.2.0 lands here in the same commit as
-- the change itself; tests/integration/test_upgrade.py shows upgraded = fresh (pg_dump -s).
\echo Use "ALTER EXTENSION pg_workflow UPDATE TO '0.3.0'" to load this file. \quit
