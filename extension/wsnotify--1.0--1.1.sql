/* wsnotify--1.0--1.1.sql: from 1.0 to 1.1 (ALTER EXTENSION wsnotify UPDATE) */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION wsnotify UPDATE TO '1.1'" to load this file. \quit

-- Positions are given after the commit by the ordering worker (order.c):
-- a sender's rows carry their transaction (xid) and order in it (seq) and
-- no position yet. Retained 1.0 rows keep their ids as positions (xid NULL).
-- The new library must already be loaded (server restarted with the 1.1
-- library in shared_preload_libraries): docs/operations.md.
ALTER TABLE @extschema@.websocket_message
    ADD COLUMN xid xid8,
    ADD COLUMN seq integer;
ALTER TABLE @extschema@.websocket_message
    DROP CONSTRAINT websocket_message_pkey;
ALTER TABLE @extschema@.websocket_message
    ALTER COLUMN id DROP NOT NULL;
CREATE UNIQUE INDEX websocket_message_position_idx
    ON @extschema@.websocket_message (id) WHERE id IS NOT NULL;
CREATE INDEX websocket_message_unpositioned_idx
    ON @extschema@.websocket_message (xid) WHERE id IS NULL;

CREATE TABLE @extschema@.websocket_history (
    epoch integer NOT NULL
);
INSERT INTO @extschema@.websocket_history
SELECT ('x' || substr(md5(gen_random_uuid()::text), 1, 8))::bit(32)::integer;
REVOKE ALL ON @extschema@.websocket_history FROM PUBLIC;

---------------------------------------------------------------------------
-- Ordering (1.1): positions are given after the commit by a background
-- worker per database (order.c); cursors of a snapshot (ws_cursor)
---------------------------------------------------------------------------

-- Start this database's ordering worker if it is not running; true when it
-- runs or was launched. Bridges call it at start and with every heartbeat,
-- so rows committed before a restart get positions even when nobody sends.
CREATE FUNCTION @extschema@.wsnotify_worker_start()
RETURNS boolean
AS 'MODULE_PATHNAME', 'wsnotify_worker_start'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;

-- Wait (up to timeout_ms) until every sending transaction that committed
-- before the call has its positions committed; false on timeout. Anyone may
-- wait (tests and scripts that read websocket_message after sending).
CREATE FUNCTION @extschema@.wsnotify_order_barrier(timeout_ms integer DEFAULT 10000)
RETURNS boolean
AS 'MODULE_PATHNAME', 'wsnotify_order_barrier'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;

-- The server's WAL timeline (changes with a promotion or a restore).
CREATE FUNCTION @extschema@.wsnotify_timeline()
RETURNS integer
AS 'MODULE_PATHNAME', 'wsnotify_timeline'
LANGUAGE C VOLATILE STRICT PARALLEL SAFE;

-- The history positions belong to: 16 hex digits, the random epoch of
-- websocket_history and the timeline.
CREATE FUNCTION @extschema@.wsnotify_epoch()
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT lpad(to_hex(h.epoch), 8, '0') || lpad(to_hex(@extschema@.wsnotify_timeline()), 8, '0')
    FROM @extschema@.websocket_history h
$$;

-- The cursor of the caller's snapshot: "<epoch>:<P>:<xmin>:<xmax>:<xip,...>",
-- where P is the highest position the snapshot sees and the rest is the
-- snapshot (pg_current_snapshot). Replay from it gives exactly the messages
-- of transactions the snapshot does not see. It first waits for the worker
-- to position every transaction committed so far (a few milliseconds at
-- most), so that none the snapshot sees can get a position after a later
-- connection's start. In READ COMMITTED, read the state and call ws_cursor()
-- in one statement (each statement has its own snapshot), or use
-- REPEATABLE READ.
CREATE FUNCTION @extschema@.ws_cursor()
RETURNS text
LANGUAGE plpgsql STABLE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT @extschema@.wsnotify_order_barrier(10000) THEN
        RAISE EXCEPTION 'wsnotify ordering worker is not keeping up'
            USING ERRCODE = 'lock_not_available',
                  DETAIL = 'Messages committed before this call had no position after 10 seconds.',
                  HINT = 'Check that the wsnotify ordering worker runs (pg_stat_activity).';
    END IF;
    RETURN @extschema@.wsnotify_epoch() || ':' ||
           greatest((SELECT coalesce(max(m.id), 0) FROM @extschema@.websocket_message m),
                    (SELECT s.purged_through FROM @extschema@.websocket_purge_state s))
           || ':' || pg_current_snapshot()::text;
END
$$;
COMMENT ON FUNCTION @extschema@.ws_cursor() IS
    'cursor of the calling snapshot: connect with ?since= it to receive exactly what the snapshot did not see';

-- A resuming client's cursor as text: a message id (digits: as the bigint
-- form), or a ws_cursor() value. For the latter: the messages with a
-- position in (P, upto] whose transaction the cursor's snapshot did not
-- see; a reset (kind 'r', id upto) when the cursor is of another history
-- (epoch), malformed, newer than upto, or when messages after P were purged.
CREATE FUNCTION @extschema@.wsnotify_replay(connection_id text, since text,
                                            upto bigint)
RETURNS TABLE (id bigint, kind "char", target text, body text,
               is_binary boolean)
LANGUAGE plpgsql STABLE STRICT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    resumed_user text;
    seen bigint;
    snap pg_snapshot;
BEGIN
    IF since ~ '^[0-9]{1,18}$' THEN
        RETURN QUERY SELECT * FROM @extschema@.wsnotify_replay($1, since::bigint, upto);
        RETURN;
    END IF;
    SELECT c.user_id INTO resumed_user
    FROM @extschema@.websocket_client c WHERE c.connection_id = $1;
    IF length(since) <= 16384
       AND since ~ '^[0-9a-f]{16}:[0-9]{1,18}:[0-9]{1,18}:[0-9]{1,18}:([0-9]{1,18}(,[0-9]{1,18})*)?$'
       AND split_part(since, ':', 1) = @extschema@.wsnotify_epoch() THEN
        BEGIN
            seen := split_part(since, ':', 2)::bigint;
            snap := substr(since, 18 + length(split_part(since, ':', 2)) + 1)::pg_snapshot;
        EXCEPTION WHEN OTHERS THEN
            snap := NULL;
        END;
    END IF;
    IF snap IS NULL OR resumed_user IS NULL OR seen > upto
       OR (SELECT s.purged_through FROM @extschema@.websocket_purge_state s) > seen THEN
        RETURN QUERY SELECT upto, 'r'::"char", NULL::text, NULL::text,
                            NULL::boolean;
        RETURN;
    END IF;
    RETURN QUERY
        SELECT m.id, m.kind, m.target,
               coalesce(m.body::text,
                        translate(encode(m.body_binary, 'base64'), E'\n', '')),
               m.body_binary IS NOT NULL
        FROM @extschema@.websocket_message m
        WHERE m.id > seen AND m.id <= upto
          AND m.xid IS NOT NULL AND NOT pg_visible_in_snapshot(m.xid, snap)
          AND (m.kind = 'b'
               OR (m.kind = 'u' AND m.target = resumed_user)
               OR (m.kind = 'c' AND m.target = $1)
               OR (m.kind = 't' AND m.target IN (
                       SELECT s.topic FROM @extschema@.websocket_subscription s
                       WHERE s.connection_id = $1)))
        ORDER BY m.id;
END
$$;

REVOKE ALL ON FUNCTION
    @extschema@.wsnotify_worker_start(),
    @extschema@.wsnotify_timeline(),
    @extschema@.wsnotify_epoch(),
    @extschema@.wsnotify_replay(text, text, bigint)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    @extschema@.wsnotify_worker_start(),
    @extschema@.wsnotify_replay(text, text, bigint)
TO wsnotify_bridge;

-- Bridges start the ordering worker.
CREATE OR REPLACE FUNCTION @extschema@.wsnotify_bridge_start(bridge_id text,
                                                  OUT reaped integer,
                                                  OUT last_id bigint)
LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM @extschema@.websocket_client c WHERE c.bridge_id = $1;
    GET DIAGNOSTICS reaped = ROW_COUNT;
    INSERT INTO @extschema@.websocket_bridge AS b (bridge_id)
        VALUES ($1)
        ON CONFLICT ON CONSTRAINT websocket_bridge_pkey
        DO UPDATE SET started_at = now(), heartbeat_at = now();
    PERFORM @extschema@.wsnotify_worker_start();
    SELECT coalesce(max(m.id), 0) INTO last_id FROM @extschema@.websocket_message m;
END
$$;

CREATE OR REPLACE FUNCTION @extschema@.wsnotify_heartbeat(bridge_id text,
                                               reap_after interval)
RETURNS integer
LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    reaped integer := 0;
    gone @extschema@.websocket_client;
BEGIN
    INSERT INTO @extschema@.websocket_bridge AS b (bridge_id)
        VALUES ($1)
        ON CONFLICT ON CONSTRAINT websocket_bridge_pkey
        DO UPDATE SET heartbeat_at = now();
    FOR gone IN
        WITH dead AS (
            DELETE FROM @extschema@.websocket_bridge b
            WHERE b.heartbeat_at < now() - reap_after AND b.bridge_id <> $1
            RETURNING b.bridge_id
        )
        DELETE FROM @extschema@.websocket_client c
        USING dead WHERE c.bridge_id = dead.bridge_id
        RETURNING c.*
    LOOP
        reaped := reaped + 1;
        PERFORM @extschema@.wsnotify_run_disconnect(gone);
    END LOOP;
    PERFORM @extschema@.wsnotify_publish_leaves();
    PERFORM @extschema@.wsnotify_worker_start();
    PERFORM @extschema@.wsnotify_purge();
    RETURN reaped;
END
$$;

-- A connection's start cursor covers every commit before it.
CREATE OR REPLACE FUNCTION @extschema@.wsnotify_connect(connection_id text,
                                             bridge_id text,
                                             token text,
                                             remote_addr text,
                                             user_agent text,
                                             topics text[] DEFAULT NULL,
                                             OUT user_id text,
                                             OUT claims jsonb,
                                             OUT expires_at timestamptz,
                                             OUT last_id bigint,
                                             OUT welcome jsonb,
                                             OUT refused_topics jsonb)
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    failed_state text;
    failed_message text;
    topic text;
BEGIN
    IF connection_id IS NULL OR bridge_id IS NULL THEN
        RAISE EXCEPTION 'connection_id and bridge_id must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    claims := @extschema@.verify_token(token);
    user_id := claims ->> current_setting('wsnotify.user_claim');
    IF claims ? 'exp' THEN
        expires_at := to_timestamp((claims ->> 'exp')::double precision);
    END IF;
    INSERT INTO @extschema@.websocket_client AS c
        (connection_id, user_id, bridge_id, remote_addr, user_agent,
         claims, expires_at)
    VALUES ($1, user_id, $2, $4, $5, claims, expires_at);
    -- what committed before this connection existed is not its: wait until
    -- it has its positions (a worker batch), then take the start cursor
    PERFORM @extschema@.wsnotify_order_barrier(2000);
    SELECT coalesce(max(m.id), 0) INTO last_id FROM @extschema@.websocket_message m;
    BEGIN
        welcome := @extschema@.wsnotify_invoke_route('$connect',
            jsonb_build_object('connection_id', $1, 'user_id', user_id,
                               'bridge_id', $2, 'connected_at', now(),
                               'remote_addr', $4, 'user_agent', $5,
                               'claims', claims),
            '{}'::jsonb);
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS failed_state = RETURNED_SQLSTATE,
                                failed_message = MESSAGE_TEXT;
        -- Only what the handler raised on purpose reaches the client.
        IF failed_state LIKE 'P0%' THEN
            RAISE EXCEPTION '%', failed_message USING ERRCODE = 'insufficient_privilege';
        END IF;
        RAISE EXCEPTION 'connection refused'
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = format('The $connect handler failed with SQLSTATE %s: %s',
                                  failed_state, failed_message);
    END;
    FOREACH topic IN ARRAY coalesce(topics, '{}') LOOP
        BEGIN
            PERFORM @extschema@.wsnotify_client_subscribe($1, topic);
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS failed_message = MESSAGE_TEXT;
            refused_topics := coalesce(refused_topics, '[]'::jsonb)
                || jsonb_build_object('topic', topic, 'message', failed_message);
        END;
    END LOOP;
END
$$;

-- Presence with state (1.1): a connection's tracked state per topic; join,
-- leave and update frames carry it.
ALTER TABLE @extschema@.websocket_subscription
    ADD COLUMN state jsonb,
    ADD COLUMN state_at timestamptz;
ALTER TABLE @extschema@.websocket_presence_leaving
    ADD COLUMN state jsonb;
DROP FUNCTION @extschema@.ws_presence(text);
CREATE FUNCTION @extschema@.ws_presence(topic text)
RETURNS TABLE (user_id text, connections integer, state jsonb)
LANGUAGE sql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.user_id, count(*)::integer,
           (array_agg(s.state ORDER BY s.state_at DESC NULLS LAST))[1]
    FROM @extschema@.websocket_subscription s
    WHERE s.topic = $1
    GROUP BY s.user_id
    ORDER BY s.user_id
$$;
COMMENT ON FUNCTION @extschema@.ws_presence(text) IS
    'the users subscribed to a topic now, with their connection counts and latest tracked state';
CREATE OR REPLACE FUNCTION @extschema@.wsnotify_presence_subscribed()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM @extschema@.websocket_topic t
                   WHERE t.topic = NEW.topic AND t.presence) THEN
        RETURN NULL;
    END IF;
    -- Two connections of one user subscribing at once: one join.
    PERFORM pg_advisory_xact_lock(hashtext(NEW.topic), hashtext(NEW.user_id));
    DELETE FROM @extschema@.websocket_presence_leaving l
    WHERE l.topic = NEW.topic AND l.user_id = NEW.user_id;
    IF FOUND OR EXISTS (SELECT 1 FROM @extschema@.websocket_subscription s
                        WHERE s.topic = NEW.topic AND s.user_id = NEW.user_id
                          AND s.connection_id <> NEW.connection_id) THEN
        RETURN NULL;
    END IF;
    PERFORM @extschema@.publish_ws(NEW.topic,
        jsonb_build_object('presence', 'join', 'topic', NEW.topic,
                           'user_id', NEW.user_id));
    RETURN NULL;
END
$$;
CREATE OR REPLACE FUNCTION @extschema@.wsnotify_presence_unsubscribed()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM @extschema@.websocket_topic t
                   WHERE t.topic = OLD.topic AND t.presence) THEN
        RETURN NULL;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext(OLD.topic), hashtext(OLD.user_id));
    IF EXISTS (SELECT 1 FROM @extschema@.websocket_subscription s
               WHERE s.topic = OLD.topic AND s.user_id = OLD.user_id) THEN
        RETURN NULL;
    END IF;
    INSERT INTO @extschema@.websocket_presence_leaving AS l (topic, user_id, state)
    VALUES (OLD.topic, OLD.user_id, OLD.state)
    ON CONFLICT (topic, user_id) DO UPDATE SET left_at = now(), state = OLD.state;
    RETURN NULL;
END
$$;
CREATE OR REPLACE FUNCTION @extschema@.wsnotify_publish_leaves()
RETURNS integer
LANGUAGE sql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH due AS (
        DELETE FROM @extschema@.websocket_presence_leaving l
        WHERE l.left_at < now() - current_setting('wsnotify.presence_debounce')::interval
        RETURNING l.topic, l.user_id, l.state
    )
    SELECT count(@extschema@.publish_ws(due.topic,
               jsonb_build_object('presence', 'leave', 'topic', due.topic,
                                  'user_id', due.user_id)
               -- the state the user left with, when they had one
               || CASE WHEN due.state IS NULL THEN '{}'::jsonb
                       ELSE jsonb_build_object('state', due.state) END))::integer
    FROM due
    WHERE NOT EXISTS (SELECT 1 FROM @extschema@.websocket_subscription s
                      WHERE s.topic = due.topic AND s.user_id = due.user_id);
$$;

-- Signals (1.1, signal.c): to a topic's subscribers at once, outside any
-- commit; never stored. The bridges relay them through the ordering worker.
CREATE FUNCTION @extschema@.signal_ws(topic text, message jsonb)
RETURNS integer
AS 'MODULE_PATHNAME', 'signal_ws'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION @extschema@.signal_ws(text, jsonb) IS
    'send a signal to every connection subscribed to a topic, now (not stored, not replayed)';

-- signal_ws for a client's signal: sender (a connection id, or NULL) does
-- not get it back.
CREATE FUNCTION @extschema@.wsnotify_signal(topic text, message jsonb, sender text)
RETURNS integer
AS 'MODULE_PATHNAME', 'wsnotify_signal'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;

-- Signals of this database dropped by a full queue since the server started
-- (the bridges' /metrics).
CREATE FUNCTION @extschema@.wsnotify_signals_dropped()
RETURNS bigint
AS 'MODULE_PATHNAME', 'wsnotify_signals_dropped'
LANGUAGE C VOLATILE STRICT PARALLEL SAFE;

-- The connection a client action runs for, as route handlers receive it.
CREATE FUNCTION @extschema@.wsnotify_connection(connection_id text)
RETURNS jsonb
LANGUAGE sql STABLE STRICT PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object('connection_id', c.connection_id,
                              'user_id', c.user_id, 'bridge_id', c.bridge_id,
                              'connected_at', c.connected_at,
                              'remote_addr', c.remote_addr,
                              'user_agent', c.user_agent, 'claims', c.claims)
    FROM @extschema@.websocket_client c WHERE c.connection_id = $1
$$;

-- A client's {"action": "signal", "topic": ..., "data": ..., "echo": bool}:
-- allowed by the $signal route (true to allow), then sent to the topic's
-- subscribers, the sender only when it asked for an echo. No reply.
CREATE FUNCTION @extschema@.wsnotify_client_signal(connection_id text,
                                                   message jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    topic text := message ->> 'topic';
    conn jsonb;
    verdict jsonb;
    failed_state text;
    failed_message text;
    failed_detail text;
BEGIN
    IF jsonb_typeof(message -> 'topic') IS DISTINCT FROM 'string' THEN
        RAISE EXCEPTION 'signal needs a "topic" string' USING ERRCODE = 'raise_exception';
    END IF;
    IF NOT message ? 'data' THEN
        RAISE EXCEPTION 'signal needs "data"' USING ERRCODE = 'raise_exception';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM @extschema@.websocket_route r
                   WHERE r.route = '$signal') THEN
        RAISE EXCEPTION 'signals are not allowed'
            USING ERRCODE = 'raise_exception',
                  HINT = 'Register a $signal route to let clients send signals.';
    END IF;
    conn := @extschema@.wsnotify_connection($1);
    IF conn IS NULL THEN
        RETURN NULL;
    END IF;
    BEGIN
        verdict := @extschema@.wsnotify_invoke_route('$signal', conn, message);
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS failed_state = RETURNED_SQLSTATE,
                                failed_message = MESSAGE_TEXT;
        IF failed_state LIKE 'P0%' THEN
            RAISE EXCEPTION '%', failed_message USING ERRCODE = 'raise_exception';
        END IF;
        RAISE EXCEPTION 'signal refused'
            USING ERRCODE = 'raise_exception',
                  DETAIL = format('The $signal handler failed with SQLSTATE %s: %s',
                                  failed_state, failed_message);
    END;
    IF verdict IS DISTINCT FROM 'true'::jsonb THEN
        RAISE EXCEPTION 'signal to "%" refused', topic USING ERRCODE = 'raise_exception';
    END IF;
    BEGIN
        PERFORM @extschema@.wsnotify_signal(topic, message -> 'data',
            CASE WHEN message -> 'echo' = 'true'::jsonb THEN NULL ELSE $1 END);
    EXCEPTION WHEN invalid_parameter_value OR program_limit_exceeded THEN
        GET STACKED DIAGNOSTICS failed_message = MESSAGE_TEXT,
                                failed_detail = PG_EXCEPTION_DETAIL;
        RAISE EXCEPTION '%', failed_message
            USING ERRCODE = 'raise_exception', DETAIL = failed_detail;
    END;
    RETURN NULL;
END
$$;

-- A client's {"action": "track", "topic": ..., "state": {...}}: the state of
-- its presence in a topic it is subscribed to (null clears it); presence
-- topics get an update frame. Replies {"tracked": topic}.
CREATE FUNCTION @extschema@.wsnotify_client_track(connection_id text,
                                                  message jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    topic text := message ->> 'topic';
    new_state jsonb := nullif(message -> 'state', 'null'::jsonb);
    limit_bytes integer := current_setting('wsnotify.presence_state_max_size')::integer;
    who text;
BEGIN
    IF jsonb_typeof(message -> 'topic') IS DISTINCT FROM 'string' THEN
        RAISE EXCEPTION 'track needs a "topic" string' USING ERRCODE = 'raise_exception';
    END IF;
    IF octet_length(new_state::text) > limit_bytes THEN
        RAISE EXCEPTION 'presence state too large'
            USING ERRCODE = 'raise_exception',
                  DETAIL = format('A presence state is at most %s bytes of JSON; this one is %s.',
                                  limit_bytes, octet_length(new_state::text));
    END IF;
    UPDATE @extschema@.websocket_subscription AS s
    SET state = new_state, state_at = clock_timestamp()
    WHERE s.connection_id = $1 AND s.topic = message ->> 'topic'
    RETURNING s.user_id INTO who;
    IF who IS NULL THEN
        RAISE EXCEPTION 'not subscribed to "%"', topic
            USING ERRCODE = 'raise_exception',
                  HINT = 'Subscribe to the topic before tracking a state in it.';
    END IF;
    IF EXISTS (SELECT 1 FROM @extschema@.websocket_topic t
               WHERE t.topic = message ->> 'topic' AND t.presence) THEN
        PERFORM @extschema@.publish_ws(topic,
            jsonb_build_object('presence', 'update', 'topic', topic,
                               'user_id', who, 'state', new_state));
    END IF;
    RETURN jsonb_build_object('tracked', topic);
END
$$;

-- A client's {"action": "refresh", "token": ...}: the token is verified as
-- at connect and must name the same user; the connection's claims and
-- expiry become the new token's. Replies {"refreshed": true, "expires_at":
-- epoch seconds or null}, which the bridge reads to move its 4001 timer.
CREATE FUNCTION @extschema@.wsnotify_client_refresh(connection_id text,
                                                    message jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    was text;
    new_claims jsonb;
    expires timestamptz;
    failed_message text;
BEGIN
    IF jsonb_typeof(message -> 'token') IS DISTINCT FROM 'string' THEN
        RAISE EXCEPTION 'refresh needs a "token" string' USING ERRCODE = 'raise_exception';
    END IF;
    SELECT c.user_id INTO was FROM @extschema@.websocket_client c
    WHERE c.connection_id = $1;
    IF was IS NULL THEN
        RETURN NULL;
    END IF;
    BEGIN
        new_claims := @extschema@.verify_token(message ->> 'token');
    EXCEPTION WHEN invalid_authorization_specification THEN
        GET STACKED DIAGNOSTICS failed_message = MESSAGE_TEXT;
        RAISE EXCEPTION 'token refused: %', failed_message USING ERRCODE = 'raise_exception';
    END;
    IF new_claims ->> current_setting('wsnotify.user_claim') IS DISTINCT FROM was THEN
        RAISE EXCEPTION 'token refused: it names another user'
            USING ERRCODE = 'raise_exception',
                  HINT = 'A refresh keeps the connection''s user; connect again to change it.';
    END IF;
    IF new_claims ? 'exp' THEN
        expires := to_timestamp((new_claims ->> 'exp')::double precision);
    END IF;
    UPDATE @extschema@.websocket_client AS c
    SET claims = new_claims, expires_at = expires
    WHERE c.connection_id = $1;
    RETURN jsonb_build_object('refreshed', true,
                              'expires_at', floor(extract(epoch FROM expires))::bigint);
END
$$;

REVOKE ALL ON FUNCTION
    @extschema@.wsnotify_signal(text, jsonb, text),
    @extschema@.wsnotify_signals_dropped(),
    @extschema@.wsnotify_connection(text),
    @extschema@.wsnotify_client_signal(text, jsonb),
    @extschema@.wsnotify_client_track(text, jsonb),
    @extschema@.wsnotify_client_refresh(text, jsonb)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    @extschema@.wsnotify_signals_dropped(),
    @extschema@.wsnotify_client_signal(text, jsonb),
    @extschema@.wsnotify_client_track(text, jsonb),
    @extschema@.wsnotify_client_refresh(text, jsonb)
TO wsnotify_bridge;

-- A bridge's recipients of relayed signals: per topic, the JSON array of the
-- connections on that bridge subscribed to it.
CREATE FUNCTION @extschema@.wsnotify_signal_recipients(bridge_id text, topics text[])
RETURNS TABLE (topic text, connections text)
LANGUAGE sql STABLE STRICT PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.topic, jsonb_agg(s.connection_id ORDER BY s.connection_id)::text
    FROM @extschema@.websocket_subscription s
    JOIN @extschema@.websocket_client c USING (connection_id)
    WHERE s.topic = ANY ($2) AND c.bridge_id = $1
    GROUP BY s.topic
$$;
REVOKE ALL ON FUNCTION @extschema@.wsnotify_signal_recipients(text, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.wsnotify_signal_recipients(text, text[])
    TO wsnotify_bridge;
