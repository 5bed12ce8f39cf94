-- Presence: join when a user's first connection subscribes to a presence
-- topic, leave after wsnotify.presence_debounce once their last one is gone,
-- nothing at all for a reconnect blip; $disconnect for reaped connections.
CREATE EXTENSION wsnotify;
SELECT ws_topic_presence('room:1');
INSERT INTO websocket_client (connection_id, user_id, bridge_id)
VALUES ('a1', 'alice', 'b1'), ('a2', 'alice', 'b1'), ('b1c', 'bob', 'b1');

-- First connection of alice: join. Second: nothing. Bob: join.
SELECT ws_subscribe('a1', 'room:1');
SELECT ws_subscribe('a2', 'room:1');
SELECT ws_subscribe('b1c', 'room:1');
-- A topic without presence: no frames.
SELECT ws_subscribe('a1', 'quiet');
SELECT wsnotify_order_barrier() AS ordered \gset
SELECT body FROM websocket_message ORDER BY id;

-- One of alice's connections leaves: she is still there, nothing pending.
SELECT wsnotify_disconnect('a1');
SELECT count(*) AS pending FROM websocket_presence_leaving;
-- Her last one leaves: a leave is pending, not yet sent.
SELECT wsnotify_disconnect('a2');
SELECT topic, user_id FROM websocket_presence_leaving;
SELECT wsnotify_publish_leaves() AS leaves_sent_early;

-- She comes back within the debounce: no leave, no second join.
INSERT INTO websocket_client (connection_id, user_id, bridge_id) VALUES ('a3', 'alice', 'b1');
SELECT ws_subscribe('a3', 'room:1');
SELECT count(*) AS pending FROM websocket_presence_leaving;

-- She leaves for good: after the debounce, the heartbeat sends the leave.
SELECT wsnotify_disconnect('a3');
UPDATE websocket_presence_leaving SET left_at = now() - interval '1 minute';
SELECT wsnotify_heartbeat('b1', interval '1 minute') AS reaped;
SELECT count(*) AS pending FROM websocket_presence_leaving;
SELECT wsnotify_order_barrier() AS ordered \gset
SELECT body FROM websocket_message WHERE body ->> 'presence' IS NOT NULL ORDER BY id;
SELECT * FROM ws_presence('room:1');

-- A bridge killed with its connections: reaping runs $disconnect for each
-- row, and its users' presence ends like any other departure.
CREATE TABLE departures (connection_id text);
CREATE FUNCTION record_departure(connection jsonb, message jsonb) RETURNS jsonb
LANGUAGE sql AS $$
    INSERT INTO departures VALUES (connection ->> 'connection_id');
    SELECT NULL::jsonb
$$;
SELECT ws_route('$disconnect', 'record_departure(jsonb,jsonb)');
SELECT * FROM wsnotify_bridge_start('dead');
INSERT INTO websocket_client (connection_id, user_id, bridge_id)
VALUES ('d1', 'dave', 'dead'), ('d2', 'dave', 'dead');
SELECT ws_subscribe('d1', 'room:1');
UPDATE websocket_bridge SET heartbeat_at = now() - interval '1 hour' WHERE bridge_id = 'dead';
SELECT wsnotify_heartbeat('b1', interval '1 minute') AS reaped;
SELECT connection_id FROM departures ORDER BY 1;
SELECT topic, user_id FROM websocket_presence_leaving;

DROP TABLE departures;
DROP FUNCTION record_departure(jsonb, jsonb);
DROP EXTENSION wsnotify;
