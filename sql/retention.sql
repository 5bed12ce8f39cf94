-- With no bridge running, the outbox stays bounded: senders purge expired
-- messages themselves, ten rows per message sent on average; a commit that
-- sends 100 messages or more always purges (smaller ones do so at random,
-- which test/e2e/test_faults.py checks over many commits).
CREATE EXTENSION wsnotify;
SET wsnotify.retention = 0;

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

-- 500 sent in commits of 100, each commit's clock later than the one before:
-- every commit purged everything committed before it.
SELECT count(*) AS kept, min((body ->> 'i')::int) AS oldest_kept FROM websocket_message;

RESET wsnotify.retention;

-- A purge that finds nothing expired is not repeated by small commits for a
-- tenth of the retention (at most a second): 1,000 one-message commits, each
-- with a 1% chance of a turn, call the purge once, not about ten times.
SET track_functions = 'all';
CALL send_many(1000, 1);
SELECT pg_stat_force_next_flush();
SELECT calls BETWEEN 1 AND 2 AS purged_once
FROM pg_stat_user_functions WHERE funcname = 'wsnotify_purge';
RESET track_functions;

DROP PROCEDURE send_many(int, int);
DROP EXTENSION wsnotify;
