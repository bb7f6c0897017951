-- Nothing is granted to PUBLIC: a role without grants can call nothing and read nothing.
CREATE ROLE wf_nobody;
SET ROLE wf_nobody;
SELECT try($$SELECT * FROM workflow.start('x')$$);
SELECT try($$SELECT * FROM workflow.runs$$);
RESET ROLE;
GRANT USAGE ON SCHEMA workflow TO wf_nobody;
SET ROLE wf_nobody;
SELECT try($$SELECT * FROM workflow.start('x')$$);
SELECT try($$SELECT * FROM workflow.runs$$);
RESET ROLE;
REVOKE USAGE ON SCHEMA workflow FROM wf_nobody;
SELECT count(*) AS public_grants
FROM pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
WHERE p.pronamespace = 'workflow'::regnamespace AND a.grantee = 0;
SELECT count(*) AS security_definer FROM pg_proc
WHERE pronamespace = 'workflow'::regnamespace AND prosecdef;
DROP ROLE wf_nobody;
