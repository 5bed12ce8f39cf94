-- With no bridge running, the outbox stays bounded: senders purge expired
-- messages themselves, a batch every 100 commits that sent.
CREATE EXTENSION wsnotify;
SET wsnotify.retention = 0;

CREATE PROCEDURE send_many(n int) LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..n LOOP
        PERFORM send_ws('offline-user', jsonb_build_object('i', i));
        COMMIT;
    END LOOP;
END
$$;
CALL send_many(250);

-- 250 sent, each commit's clock later than the one before; the 100th and the
-- 200th commit purged everything committed before them.
SELECT count(*) AS kept, min((body ->> 'i')::int) AS oldest_kept FROM websocket_message;

RESET wsnotify.retention;
DROP PROCEDURE send_many(int);
DROP EXTENSION wsnotify;
