-- Least privilege (docs/security.md): every SECURITY DEFINER function pins
-- its search_path; application roles can neither write the bridge's tables,
-- nor call the bridge's functions, nor read secrets; the bridge's role
-- writes websocket_client only through those functions.
CREATE EXTENSION IF NOT EXISTS wsnotify;

-- the extension's functions (pg_depend), SECURITY DEFINER ones among them
CREATE TEMP VIEW ext_functions AS
SELECT p.oid, p.oid::regprocedure AS fn, p.prosecdef, p.proconfig
FROM pg_proc p
JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'wsnotify';

SELECT count(*) > 10 AS has_security_definer_functions
FROM ext_functions WHERE prosecdef;

-- none without a pinned search_path (this list must stay empty)
SELECT fn AS definer_without_search_path
FROM ext_functions
WHERE prosecdef
  AND NOT EXISTS (SELECT 1 FROM unnest(proconfig) c WHERE c LIKE 'search_path=%');

-- and the pinned path is pg_catalog, pg_temp: no schema a user can create in
SELECT DISTINCT c AS pinned_search_path
FROM ext_functions, unnest(proconfig) c
WHERE prosecdef AND c LIKE 'search_path=%';

CREATE ROLE wsnotify_sec_app LOGIN;
GRANT CREATE ON SCHEMA public TO wsnotify_sec_app;
CREATE ROLE wsnotify_sec_bridge LOGIN IN ROLE wsnotify_bridge;
SELECT rolsuper FROM pg_roles WHERE rolname = 'wsnotify_sec_bridge';

-- no extension table is writable by an application role or by the bridge's role
SELECT r.rolname, c.relname, priv
FROM pg_class c
JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'wsnotify'
CROSS JOIN (VALUES ('wsnotify_sec_app'), ('wsnotify_sec_bridge')) r(rolname)
CROSS JOIN (VALUES ('INSERT'), ('UPDATE'), ('DELETE'), ('TRUNCATE')) p(priv)
WHERE c.relkind IN ('r', 'v', 'p') AND has_table_privilege(r.rolname, c.oid, priv)
ORDER BY 1, 2, 3;

-- the bridge's functions are the bridge's alone
SELECT fn AS app_may_execute_bridge_function
FROM ext_functions
WHERE fn::text LIKE 'wsnotify\_%'
  AND has_function_privilege('wsnotify_sec_app', oid, 'EXECUTE')
ORDER BY 1;

-- the SECURITY DEFINER functions an application may call: the public API,
-- each of which checks its arguments itself (docs/security.md)
SELECT fn AS app_may_execute_definer
FROM ext_functions
WHERE prosecdef AND has_function_privilege('wsnotify_sec_app', oid, 'EXECUTE')
ORDER BY 1;

SET ROLE wsnotify_sec_app;
INSERT INTO websocket_client (connection_id, user_id, bridge_id) VALUES ('x', 'mallory', 'b');
UPDATE websocket_client SET user_id = 'mallory';
DELETE FROM websocket_client;
SELECT wsnotify_connect('c1', 'b1', 'not.a.token', '127.0.0.1', NULL, NULL);
SELECT wsnotify_order_barrier() AS ordered \gset
SELECT * FROM websocket_message;
-- the presence triggers run as the owner: nobody may attach them to a table of
-- their own to forge a join for another user
CREATE TABLE public.forged (connection_id text, user_id text, topic text);
CREATE TRIGGER forge AFTER INSERT ON public.forged
    FOR EACH ROW EXECUTE FUNCTION wsnotify_presence_subscribed();
DROP TABLE public.forged;
-- secrets: not even their names through pg_settings
SELECT name FROM pg_settings WHERE name IN ('wsnotify.jwt_secret', 'wsnotify.jwt_jwks');
SELECT current_setting('wsnotify.jwt_jwks');
RESET ROLE;

SET ROLE wsnotify_sec_bridge;
INSERT INTO websocket_client (connection_id, user_id, bridge_id) VALUES ('x', 'mallory', 'b');
DELETE FROM websocket_client;
SELECT current_setting('wsnotify.jwt_secret');
RESET ROLE;

DROP VIEW ext_functions;
REVOKE CREATE ON SCHEMA public FROM wsnotify_sec_app;
DROP ROLE wsnotify_sec_app;
DROP ROLE wsnotify_sec_bridge;
DROP EXTENSION wsnotify;
