-- Every test file runs in one database, in the order of the schedule.
CREATE EXTENSION pg_workflow;
-- try(sql) runs one statement and shows how it ended: 'ok' or 'SQLSTATE: message'.
CREATE FUNCTION try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE sql;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
SELECT extname, extversion FROM pg_extension WHERE extname = 'pg_workflow';
