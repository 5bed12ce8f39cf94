-- With no bridge running, the outbox stays bounded: the ordering worker
-- purges expired messages itself (docs/design.md), after the messages it
-- positions, about ten rows per message positioned.
CREATE EXTENSION wsnotify;
ALTER DATABASE contrib_regression SET wsnotify.retention = 0;
SELECT count(pg_terminate_backend(pid)) <= 1 AS worker_restarted
FROM pg_stat_activity WHERE backend_type = 'wsnotify ordering worker';

CREATE PROCEDURE send_many(commits int, per_commit int) LANGUAGE plpgsql AS $$
BEGIN
    FOR c IN 1..commits LOOP
        FOR m IN 1..per_commit LOOP
            PERFORM send_ws('offline-user', jsonb_build_object('i', (c - 1) * per_commit + m));
        END LOOP;
        COMMIT;
    END LOOP;
END
$$;
CALL send_many(5, 100);
SELECT wsnotify_order_barrier() AS ordered;

-- 500 sent with a retention of 0: the worker purges them all, without any
-- bridge's heartbeat, within a few seconds.
DO $$
BEGIN
    FOR i IN 1..200 LOOP
        EXIT WHEN NOT EXISTS (SELECT 1 FROM websocket_message);
        PERFORM pg_sleep(0.05);
    END LOOP;
END
$$;
SELECT count(*) AS kept FROM websocket_message;

ALTER DATABASE contrib_regression RESET wsnotify.retention;
SELECT count(pg_terminate_backend(pid)) <= 1 AS worker_restarted
FROM pg_stat_activity WHERE backend_type = 'wsnotify ordering worker';
DROP PROCEDURE send_many(int, int);
DROP EXTENSION wsnotify;
