/* wsnotify--1.1.sql: objects of the wsnotify extension, version 1.1 */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION wsnotify" to load this file. \quit

-- The bridge connects as a role that is a member of wsnotify_bridge; it is
-- the only role, besides the owner, that may run the bridge-side functions.
-- Roles are cluster-wide, so it outlives DROP EXTENSION and is shared by
-- every database that installs wsnotify.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles
                   WHERE rolname = 'wsnotify_bridge') THEN
        CREATE ROLE wsnotify_bridge NOLOGIN;
    END IF;
END
$$;

---------------------------------------------------------------------------
-- Tables
---------------------------------------------------------------------------

-- One row per live WebSocket connection. Everyone may read it (who is
-- online); only the bridge, through the functions below, writes it.
CREATE TABLE @extschema@.websocket_client (
    connection_id text PRIMARY KEY,
    user_id       text NOT NULL,
    bridge_id     text NOT NULL,
    connected_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    remote_addr   text,
    user_agent    text,
    claims        jsonb,
    expires_at    timestamptz
);
CREATE INDEX websocket_client_user_id_idx
    ON @extschema@.websocket_client (user_id);
CREATE INDEX websocket_client_bridge_id_idx
    ON @extschema@.websocket_client (bridge_id);
REVOKE ALL ON @extschema@.websocket_client FROM PUBLIC;
GRANT SELECT ON @extschema@.websocket_client TO PUBLIC;

-- One row per running bridge; heartbeat_at tells live bridges from dead
-- ones whose connection rows must be reaped.
CREATE TABLE @extschema@.websocket_bridge (
    bridge_id     text PRIMARY KEY,
    started_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);
REVOKE ALL ON @extschema@.websocket_bridge FROM PUBLIC;
GRANT SELECT ON @extschema@.websocket_bridge TO PUBLIC;

-- The outbox. A sending transaction writes its rows at commit without a
-- position (id NULL), tagged with its xid and their order in it (seq); the
-- ordering worker (order.c) gives them positions after the commit, in one
-- transaction of its own for many senders, so position order is the
-- worker's commit order (see docs/design.md): a reader that has seen
-- position N will never later see a smaller one appear. The sequence keeps
-- the last position given, across restarts. kind: 'u' to a user, 'c' to one
-- connection, 'b' to everyone, 't' to a topic's subscribers, 'x' close one
-- connection. xid is NULL only for rows sent before 1.1.
CREATE SEQUENCE @extschema@.websocket_message_id_seq AS bigint;
REVOKE ALL ON SEQUENCE @extschema@.websocket_message_id_seq FROM PUBLIC;

CREATE TABLE @extschema@.websocket_message (
    id       bigint,
    sent_at  timestamptz NOT NULL,
    kind     "char" NOT NULL CHECK (kind IN ('u', 'c', 'b', 't', 'x')),
    target   text,
    body     jsonb,
    -- a binary message (send_ws_binary and its forms) instead of a JSON one
    body_binary bytea,
    xid      xid8,
    seq      integer,
    CONSTRAINT websocket_message_one_body
        CHECK ((body IS NULL) <> (body_binary IS NULL))
);
-- Positioned rows by position: fetch, replay and purge walk it. A sender's
-- rows are not in it (they have no position yet), so sending writes one
-- index entry per message: websocket_message_unpositioned_idx, which the
-- worker finds unpositioned rows through (after a crash or an overflow)
-- and which a row leaves when it is positioned.
CREATE UNIQUE INDEX websocket_message_position_idx
    ON @extschema@.websocket_message (id) WHERE id IS NOT NULL;
CREATE INDEX websocket_message_unpositioned_idx
    ON @extschema@.websocket_message (xid) WHERE id IS NULL;
-- No index on sent_at: the worker sets it when it positions a row, so it
-- grows with id and the purge walks the position index.
REVOKE ALL ON @extschema@.websocket_message FROM PUBLIC;

-- Which history positions belong to: a random number, and (in
-- wsnotify_epoch) the server's timeline, which a promotion or a restore
-- changes. A ws_cursor() value of another history gets a reset.
CREATE TABLE @extschema@.websocket_history (
    epoch integer NOT NULL
);
INSERT INTO @extschema@.websocket_history
SELECT ('x' || substr(md5(gen_random_uuid()::text), 1, 8))::bit(32)::integer;
REVOKE ALL ON @extschema@.websocket_history FROM PUBLIC;

-- Where the purge stopped: every id up to purged_through is gone. One row,
-- written only by the one purger that holds the purge's advisory lock.
CREATE TABLE @extschema@.websocket_purge_state (
    purged_through bigint NOT NULL
);
INSERT INTO @extschema@.websocket_purge_state VALUES (0);
REVOKE ALL ON @extschema@.websocket_purge_state FROM PUBLIC;

-- The key that seals small messages carried in NOTIFY payloads (seal.c,
-- docs/design.md): any role may LISTEN to any channel, so only the owner and
-- the bridges (wsnotify_inline_key) may read it.  Two version-4 UUIDs give
-- 244 bits from pg_strong_random.
CREATE TABLE @extschema@.websocket_inline_key (
    key bytea NOT NULL CHECK (length(key) = 32)
);
INSERT INTO @extschema@.websocket_inline_key
SELECT decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex');
REVOKE ALL ON @extschema@.websocket_inline_key FROM PUBLIC;

CREATE FUNCTION @extschema@.wsnotify_inline_key()
RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT k.key FROM @extschema@.websocket_inline_key k $$;
REVOKE ALL ON FUNCTION @extschema@.wsnotify_inline_key() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.wsnotify_inline_key() TO wsnotify_bridge;

-- Topic subscriptions; they go with their connection's row.
CREATE TABLE @extschema@.websocket_subscription (
    connection_id text NOT NULL
        REFERENCES @extschema@.websocket_client (connection_id) ON DELETE CASCADE,
    user_id       text NOT NULL,
    topic         text NOT NULL,
    subscribed_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    state         jsonb,
    state_at      timestamptz,
    PRIMARY KEY (connection_id, topic)
);
CREATE INDEX websocket_subscription_topic_idx
    ON @extschema@.websocket_subscription (topic, user_id);
REVOKE ALL ON @extschema@.websocket_subscription FROM PUBLIC;
GRANT SELECT ON @extschema@.websocket_subscription TO PUBLIC;

-- Topics marked with ws_topic_presence() get join/leave frames.
CREATE TABLE @extschema@.websocket_topic (
    topic     text PRIMARY KEY,
    presence  boolean NOT NULL DEFAULT false
);
REVOKE ALL ON @extschema@.websocket_topic FROM PUBLIC;
GRANT SELECT ON @extschema@.websocket_topic TO PUBLIC;

-- Users whose last subscription to a presence topic went away, waiting out
-- wsnotify.presence_debounce before their leave frame; a user who comes back
-- meanwhile (a reconnect blip) is taken off and no frame is sent at all.
CREATE TABLE @extschema@.websocket_presence_leaving (
    topic    text NOT NULL,
    user_id  text NOT NULL,
    left_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    state    jsonb,
    PRIMARY KEY (topic, user_id)
);
REVOKE ALL ON @extschema@.websocket_presence_leaving FROM PUBLIC;

-- Route handlers, by route name ($connect, $disconnect, $default, an
-- action). Written only through ws_route()/ws_unroute(); readable by all.
-- handler is the function's signature text (not regprocedure, which
-- pg_upgrade refuses in user tables), resolved at every call.
CREATE TABLE @extschema@.websocket_route (
    route       text PRIMARY KEY,
    handler     text NOT NULL,
    run_as      regrole NOT NULL,
    owner       regrole NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);
REVOKE ALL ON @extschema@.websocket_route FROM PUBLIC;
GRANT SELECT ON @extschema@.websocket_route TO PUBLIC;

---------------------------------------------------------------------------
-- Functions for applications
---------------------------------------------------------------------------

CREATE FUNCTION @extschema@.send_ws(user_id text, message jsonb)
RETURNS integer
AS 'MODULE_PATHNAME', 'send_ws'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION @extschema@.send_ws(text, jsonb) IS
    'queue a message for every live connection of a user; sent at commit';

CREATE FUNCTION @extschema@.send_ws_connection(connection_id text, message jsonb)
RETURNS boolean
AS 'MODULE_PATHNAME', 'send_ws_connection'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION @extschema@.send_ws_connection(text, jsonb) IS
    'queue a message for one connection; false when it is gone';

CREATE FUNCTION @extschema@.broadcast_ws(message jsonb)
RETURNS integer
AS 'MODULE_PATHNAME', 'broadcast_ws'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION @extschema@.broadcast_ws(jsonb) IS
    'queue a message for every live connection; sent at commit';

CREATE FUNCTION @extschema@.close_ws(connection_id text,
                                     code integer DEFAULT 1000,
                                     reason text DEFAULT '')
RETURNS boolean
AS 'MODULE_PATHNAME', 'close_ws'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION @extschema@.close_ws(text, integer, text) IS
    'close one connection at commit; false when it is gone';

CREATE FUNCTION @extschema@.publish_ws(topic text, message jsonb)
RETURNS integer
AS 'MODULE_PATHNAME', 'publish_ws'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION @extschema@.publish_ws(text, jsonb) IS
    'queue a message for every connection subscribed to a topic; sent at commit';

-- Binary messages: separate names, because a bytea overload of send_ws
-- would make send_ws('alice', '{...}') with an untyped literal ambiguous.
CREATE FUNCTION @extschema@.send_ws_binary(user_id text, message bytea)
RETURNS integer
AS 'MODULE_PATHNAME', 'send_ws_binary'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION @extschema@.send_ws_binary(text, bytea) IS
    'queue a binary message for every live connection of a user; sent at commit';

CREATE FUNCTION @extschema@.send_ws_connection_binary(connection_id text, message bytea)
RETURNS boolean
AS 'MODULE_PATHNAME', 'send_ws_connection_binary'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION @extschema@.send_ws_connection_binary(text, bytea) IS
    'queue a binary message for one connection; false when it is gone';

CREATE FUNCTION @extschema@.broadcast_ws_binary(message bytea)
RETURNS integer
AS 'MODULE_PATHNAME', 'broadcast_ws_binary'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION @extschema@.broadcast_ws_binary(bytea) IS
    'queue a binary message for every live connection; sent at commit';

CREATE FUNCTION @extschema@.publish_ws_binary(topic text, message bytea)
RETURNS integer
AS 'MODULE_PATHNAME', 'publish_ws_binary'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION @extschema@.publish_ws_binary(text, bytea) IS
    'queue a binary message for every connection subscribed to a topic; sent at commit';

CREATE FUNCTION @extschema@.ws_subscribe(connection_id text, topic text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'ws_subscribe'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION @extschema@.ws_subscribe(text, text) IS
    'subscribe a live connection to a topic; false when it is gone';

CREATE FUNCTION @extschema@.ws_unsubscribe(connection_id text, topic text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'ws_unsubscribe'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION @extschema@.ws_unsubscribe(text, text) IS
    'remove a subscription; false when there was none';

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

CREATE FUNCTION @extschema@.ws_topic_presence(topic text,
                                              enabled boolean DEFAULT true)
RETURNS void
LANGUAGE sql VOLATILE STRICT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO @extschema@.websocket_topic AS t (topic, presence)
    VALUES ($1, $2)
    ON CONFLICT (topic) DO UPDATE SET presence = $2;
$$;
COMMENT ON FUNCTION @extschema@.ws_topic_presence(text, boolean) IS
    'send join/leave frames to a topic''s subscribers (debounced leaves)';

-- A user's first subscription to a presence topic publishes a join, unless
-- the user was only gone for a blip (a pending leave is cancelled instead).
CREATE FUNCTION @extschema@.wsnotify_presence_subscribed()
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
CREATE TRIGGER presence_subscribed AFTER INSERT ON @extschema@.websocket_subscription
    FOR EACH ROW EXECUTE FUNCTION @extschema@.wsnotify_presence_subscribed();

-- A user's last subscription to a presence topic going away starts the
-- debounce of its leave.
CREATE FUNCTION @extschema@.wsnotify_presence_unsubscribed()
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
CREATE TRIGGER presence_unsubscribed AFTER DELETE ON @extschema@.websocket_subscription
    FOR EACH ROW EXECUTE FUNCTION @extschema@.wsnotify_presence_unsubscribed();
-- Nobody else may attach these SECURITY DEFINER triggers to a table of their
-- own (CREATE TRIGGER needs EXECUTE; firing does not): that would forge
-- presence joins for any user.
REVOKE ALL ON FUNCTION
    @extschema@.wsnotify_presence_subscribed(),
    @extschema@.wsnotify_presence_unsubscribed()
FROM PUBLIC;

CREATE FUNCTION @extschema@.verify_token(token text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'verify_token'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.verify_token(text) IS
    'verify a JWT with the configured keys and rules; return its claims';

CREATE FUNCTION @extschema@.verify_token(token text, key text, algorithm text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'verify_token_with_key'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.verify_token(text, text, text) IS
    'verify a JWT with the given key and algorithm; return its claims';

CREATE FUNCTION @extschema@.ws_route(route text, handler regprocedure,
                                     run_as regrole DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'ws_route'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION @extschema@.ws_route(text, regprocedure, regrole) IS
    'route client messages (or $connect/$disconnect/$default) to a SQL function';

CREATE FUNCTION @extschema@.ws_unroute(route text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'ws_unroute'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION @extschema@.ws_unroute(text) IS
    'remove a route; false when there was none';

---------------------------------------------------------------------------
-- Functions for the bridge (wsnotify_bridge members only)
---------------------------------------------------------------------------

-- Run the handler for a client's message (its "action", else $default) as
-- the route's role, with wsnotify.* context set; SQLSTATE 42883 when there
-- is no route. NULL: no reply.
CREATE FUNCTION @extschema@.wsnotify_invoke(connection_id text, message jsonb)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'wsnotify_invoke'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;

-- Run the handler of one named route ($connect, $disconnect) for the given
-- connection object, if the route exists.
CREATE FUNCTION @extschema@.wsnotify_invoke_route(route text, connection jsonb,
                                                  message jsonb)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'wsnotify_invoke_route'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;

-- Run the $binary route's handler, (connection jsonb, message bytea) RETURNS
-- jsonb, for a client's binary frame; SQLSTATE 42883 when there is no
-- $binary route (the bridge then closes with 1003). NULL: no reply.
CREATE FUNCTION @extschema@.wsnotify_invoke_binary(connection_id text, message bytea)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'wsnotify_invoke_binary'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;

-- A bridge starts: forget the connections of its previous life (it holds
-- none now), record it as alive, and return where delivery starts.
CREATE FUNCTION @extschema@.wsnotify_bridge_start(bridge_id text,
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

-- A bridge is alive: record it, reap the rows of bridges silent for longer
-- than reap_after (running $disconnect for each), publish the presence
-- leaves whose debounce has passed, and purge messages older than
-- wsnotify.retention. Returns the number of connection rows reaped.
CREATE FUNCTION @extschema@.wsnotify_heartbeat(bridge_id text,
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

-- Run the $disconnect handler, if any, for a connection row just deleted;
-- its errors become warnings.
CREATE FUNCTION @extschema@.wsnotify_run_disconnect(gone @extschema@.websocket_client)
RETURNS void
LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    failed_message text;
BEGIN
    PERFORM @extschema@.wsnotify_invoke_route('$disconnect',
        jsonb_build_object('connection_id', gone.connection_id,
                           'user_id', gone.user_id,
                           'bridge_id', gone.bridge_id,
                           'connected_at', gone.connected_at,
                           'remote_addr', gone.remote_addr,
                           'user_agent', gone.user_agent,
                           'claims', gone.claims),
        '{}'::jsonb);
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS failed_message = MESSAGE_TEXT;
    RAISE WARNING 'the $disconnect handler failed: %', failed_message;
END
$$;

-- Publish the leave frames of users gone from a presence topic for longer
-- than wsnotify.presence_debounce.
CREATE FUNCTION @extschema@.wsnotify_publish_leaves()
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

-- Delete messages older than wsnotify.retention, a bounded batch at a time
-- so that no purge holds many row locks or runs long. Because sent_at grows
-- with id, the expired messages are a prefix of the ids: look at the oldest
-- `batch` rows only, never at the whole retention window, and a cursor whose
-- own row still exists has lost nothing after it. One purger at a time
-- (a transaction-level advisory lock, tried, never waited for): the others
-- skip their turn rather than wait. The purger remembers where it stopped
-- (websocket_purge_state), so that it starts past the deleted rows that
-- vacuum has not yet removed instead of stepping over them every time.
CREATE FUNCTION @extschema@.wsnotify_purge(batch integer DEFAULT 10000)
RETURNS bigint
LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    horizon timestamptz :=
        now() - current_setting('wsnotify.retention')::interval;
    start bigint;
    boundary bigint;
    purged bigint;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('wsnotify_purge')) THEN
        RETURN 0;
    END IF;
    SELECT s.purged_through INTO start FROM @extschema@.websocket_purge_state s;
    SELECT max(o.id) INTO boundary
    FROM (SELECT m.id, m.sent_at FROM @extschema@.websocket_message m
          WHERE m.id > start
          ORDER BY m.id LIMIT batch) AS o
    WHERE o.sent_at < horizon;
    IF boundary IS NULL THEN
        RETURN 0;
    END IF;
    DELETE FROM @extschema@.websocket_message m
    WHERE m.id > start AND m.id <= boundary;
    GET DIAGNOSTICS purged = ROW_COUNT;
    UPDATE @extschema@.websocket_purge_state SET purged_through = boundary;
    RETURN purged;
END
$$;

-- The upgrade's round trip: verify the token (SQLSTATE 28000 when it is
-- refused), record the connection, run the $connect handler if there is one
-- (SQLSTATE 42501 with the handler's message when it raises: the bridge
-- answers 403), and return who it is, the cursor from which its messages are
-- delivered, and the handler's result, the first frame the client receives.
-- topics (the client's ?topics=) are subscribed in the same transaction, each
-- as a client subscribe action, so that a resume's replay and the live
-- stream both include them; refused_topics lists the refusals as
-- [{"topic": T, "message": M}] (NULL when none).
CREATE FUNCTION @extschema@.wsnotify_connect(connection_id text,
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

-- The socket is gone: remove its row, then run the $disconnect handler if
-- there is one (its errors are logged as warnings and change nothing).
-- False when the row was already gone.
CREATE FUNCTION @extschema@.wsnotify_disconnect(connection_id text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    gone @extschema@.websocket_client;
BEGIN
    DELETE FROM @extschema@.websocket_client c WHERE c.connection_id = $1
        RETURNING * INTO gone;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM @extschema@.wsnotify_run_disconnect(gone);
    RETURN true;
END
$$;

-- Messages after cursor `after` for connections of this bridge, in commit
-- order, at most max_rows of them; the last row always has kind '.' and
-- carries, as its id, the cursor to pass next time (everything up to it has
-- been seen, including messages for other bridges). For a topic message
-- (kind 't'), `connections` is a JSON array of this bridge's connections
-- subscribed to it, so that the bridge keeps no subscription state.
-- A binary message has is_binary true and its bytes in body as one line of
-- standard base64 (no newlines): the bridge decodes it, and a text body can
-- never be mistaken for one.
CREATE FUNCTION @extschema@.wsnotify_fetch(bridge_id text, after bigint,
                                           max_rows integer)
RETURNS TABLE (id bigint, kind "char", target text, body text,
               connections text, is_binary boolean)
LANGUAGE sql STABLE STRICT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- the generic plan's cost estimate on a large outbox would trigger JIT:
-- ~280 ms of compilation per call for a sub-millisecond query
SET jit = off
AS $$
    WITH batch AS (
        SELECT m.id, m.kind, m.target, m.body, m.body_binary
        FROM @extschema@.websocket_message m
        WHERE m.id > $2
        ORDER BY m.id
        LIMIT $3
    ), mine AS (
        SELECT b.id, b.kind, b.target,
               coalesce(b.body::text,
                        translate(encode(b.body_binary, 'base64'), E'\n', '')) AS body,
               CASE WHEN b.kind = 't' THEN (
                   SELECT jsonb_agg(s.connection_id ORDER BY s.connection_id)::text
                   FROM @extschema@.websocket_subscription s
                   JOIN @extschema@.websocket_client c USING (connection_id)
                   WHERE s.topic = b.target AND c.bridge_id = $1)
               END AS connections,
               b.body_binary IS NOT NULL AS is_binary
        FROM batch b
        WHERE b.kind = 'b'
           OR (b.kind = 'u' AND EXISTS (
                   SELECT 1 FROM @extschema@.websocket_client c
                   WHERE c.user_id = b.target AND c.bridge_id = $1))
           OR (b.kind IN ('c', 'x') AND EXISTS (
                   SELECT 1 FROM @extschema@.websocket_client c
                   WHERE c.connection_id = b.target AND c.bridge_id = $1))
           OR (b.kind = 't' AND EXISTS (
                   SELECT 1 FROM @extschema@.websocket_subscription s
                   JOIN @extschema@.websocket_client c USING (connection_id)
                   WHERE s.topic = b.target AND c.bridge_id = $1))
    )
    SELECT * FROM (SELECT * FROM mine ORDER BY id) AS ordered
    UNION ALL
    SELECT CASE WHEN (SELECT count(*) FROM batch) < $3
                THEN greatest($2, (SELECT coalesce(max(m.id), 0)
                                   FROM @extschema@.websocket_message m))
                ELSE (SELECT max(batch.id) FROM batch)
           END,
           '.', NULL, NULL, NULL, NULL;
$$;

REVOKE ALL ON FUNCTION
    @extschema@.wsnotify_bridge_start(text),
    @extschema@.wsnotify_heartbeat(text, interval),
    @extschema@.wsnotify_purge(integer),
    @extschema@.wsnotify_connect(text, text, text, text, text, text[]),
    @extschema@.wsnotify_disconnect(text),
    @extschema@.wsnotify_fetch(text, bigint, integer),
    @extschema@.wsnotify_invoke(text, jsonb),
    @extschema@.wsnotify_invoke_route(text, jsonb, jsonb),
    @extschema@.wsnotify_invoke_binary(text, bytea),
    @extschema@.wsnotify_run_disconnect(@extschema@.websocket_client),
    @extschema@.wsnotify_publish_leaves()
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    @extschema@.wsnotify_bridge_start(text),
    @extschema@.wsnotify_heartbeat(text, interval),
    @extschema@.wsnotify_purge(integer),
    @extschema@.wsnotify_connect(text, text, text, text, text, text[]),
    @extschema@.wsnotify_disconnect(text),
    @extschema@.wsnotify_fetch(text, bigint, integer),
    @extschema@.wsnotify_invoke(text, jsonb),
    @extschema@.wsnotify_invoke_route(text, jsonb, jsonb),
    @extschema@.wsnotify_invoke_binary(text, bytea)
TO wsnotify_bridge;

-- A bridge's database connection came back: record the bridge as alive and
-- put back the rows of its live connections that were reaped while it could
-- not reach the database (connections is a JSON array of objects with
-- connection_id, user_id, connected_at, remote_addr, user_agent, claims,
-- expires_at as epoch seconds).  Rows still present are left alone.
-- Returns the number of rows put back.
CREATE FUNCTION @extschema@.wsnotify_restore(bridge_id text, connections jsonb)
RETURNS integer
LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    restored integer;
BEGIN
    INSERT INTO @extschema@.websocket_bridge AS b (bridge_id)
        VALUES ($1)
        ON CONFLICT ON CONSTRAINT websocket_bridge_pkey
        DO UPDATE SET heartbeat_at = now();
    INSERT INTO @extschema@.websocket_client AS c
        (connection_id, user_id, bridge_id, connected_at, remote_addr,
         user_agent, claims, expires_at)
    SELECT e ->> 'connection_id', e ->> 'user_id', $1,
           coalesce((e ->> 'connected_at')::timestamptz, now()),
           e ->> 'remote_addr', e ->> 'user_agent', e -> 'claims',
           to_timestamp((e ->> 'expires_at')::double precision)
    FROM jsonb_array_elements($2) AS e
    WHERE e ->> 'connection_id' IS NOT NULL AND e ->> 'user_id' IS NOT NULL
    ON CONFLICT ON CONSTRAINT websocket_client_pkey DO NOTHING;
    GET DIAGNOSTICS restored = ROW_COUNT;
    RETURN restored;
END
$$;

REVOKE ALL ON FUNCTION @extschema@.wsnotify_restore(text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.wsnotify_restore(text, jsonb)
TO wsnotify_bridge;

-- A wsnotify.v1 client resumes from cursor `since`: the messages its user
-- was sent (to the user, to everyone, to the topics this connection is
-- subscribed to by now, to this connection) after it, up to `upto` (the start
-- cursor wsnotify_connect returned; live delivery covers what follows), in
-- commit order. The cursor is the id of a message the client received; if
-- that row is gone (purged: everything before it is gone too) or never
-- existed, a single row of kind 'r' (reset) is returned instead, whose id is
-- the cursor to continue from. Binary messages as in wsnotify_fetch.
CREATE FUNCTION @extschema@.wsnotify_replay(connection_id text, since bigint,
                                            upto bigint)
RETURNS TABLE (id bigint, kind "char", target text, body text,
               is_binary boolean)
LANGUAGE plpgsql STABLE STRICT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- the generic plan's cost estimate on a large outbox would trigger JIT:
-- ~280 ms of compilation per call for a sub-millisecond query
SET jit = off
AS $$
DECLARE
    resumed_user text;
BEGIN
    SELECT c.user_id INTO resumed_user
    FROM @extschema@.websocket_client c WHERE c.connection_id = $1;
    IF resumed_user IS NULL
       OR since > upto
       OR NOT EXISTS (SELECT 1 FROM @extschema@.websocket_message m
                      WHERE m.id = since) THEN
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
        WHERE m.id > since AND m.id <= upto
          AND (m.kind = 'b'
               OR (m.kind = 'u' AND m.target = resumed_user)
               OR (m.kind = 'c' AND m.target = $1)
               OR (m.kind = 't' AND m.target IN (
                       SELECT s.topic FROM @extschema@.websocket_subscription s
                       WHERE s.connection_id = $1)))
        ORDER BY m.id;
END
$$;

REVOKE ALL ON FUNCTION @extschema@.wsnotify_replay(text, bigint, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.wsnotify_replay(text, bigint, bigint)
TO wsnotify_bridge;

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

-- A client asked to subscribe ({"action": "subscribe", "topic": ...}): the
-- $subscribe route decides (a handler returning true allows; anything else,
-- or a RAISE, refuses, with the RAISE's message if it was one);
-- without a $subscribe route only server-side subscriptions exist. Refusals
-- are SQLSTATE P0001, raised on purpose: the bridge shows their message.
CREATE FUNCTION @extschema@.wsnotify_client_subscribe(connection_id text,
                                                      topic text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    conn jsonb;
    verdict jsonb;
    failed_state text;
    failed_message text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM @extschema@.websocket_route r
                   WHERE r.route = '$subscribe') THEN
        RAISE EXCEPTION 'subscriptions are made by the server only'
            USING ERRCODE = 'raise_exception',
                  HINT = 'Register a $subscribe route to let clients subscribe.';
    END IF;
    SELECT jsonb_build_object('connection_id', c.connection_id,
                              'user_id', c.user_id, 'bridge_id', c.bridge_id,
                              'connected_at', c.connected_at,
                              'remote_addr', c.remote_addr,
                              'user_agent', c.user_agent, 'claims', c.claims)
    INTO conn
    FROM @extschema@.websocket_client c WHERE c.connection_id = $1;
    IF conn IS NULL THEN
        RETURN false;
    END IF;
    BEGIN
        verdict := @extschema@.wsnotify_invoke_route('$subscribe', conn,
            jsonb_build_object('action', 'subscribe', 'topic', topic));
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS failed_state = RETURNED_SQLSTATE,
                                failed_message = MESSAGE_TEXT;
        IF failed_state LIKE 'P0%' THEN
            RAISE EXCEPTION '%', failed_message USING ERRCODE = 'raise_exception';
        END IF;
        RAISE EXCEPTION 'subscription refused'
            USING ERRCODE = 'raise_exception',
                  DETAIL = format('The $subscribe handler failed with SQLSTATE %s: %s',
                                  failed_state, failed_message);
    END;
    IF verdict IS DISTINCT FROM 'true'::jsonb THEN
        RAISE EXCEPTION 'subscription to "%" refused', topic
            USING ERRCODE = 'raise_exception';
    END IF;
    RETURN @extschema@.ws_subscribe($1, topic);
END
$$;

-- A client asked to unsubscribe; false when it was not subscribed.
CREATE FUNCTION @extschema@.wsnotify_client_unsubscribe(connection_id text,
                                                        topic text)
RETURNS boolean
LANGUAGE sql VOLATILE STRICT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT @extschema@.ws_unsubscribe($1, $2) $$;

REVOKE ALL ON FUNCTION
    @extschema@.wsnotify_client_subscribe(text, text),
    @extschema@.wsnotify_client_unsubscribe(text, text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    @extschema@.wsnotify_client_subscribe(text, text),
    @extschema@.wsnotify_client_unsubscribe(text, text)
TO wsnotify_bridge;

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
