#!/usr/bin/env bash
# What send_ws costs a writing application, measured with pgbench on a
# throwaway cluster, every variant in the same run so that the ratios hold on
# a noisy machine:
#   - tpcb-like without and with a trigger that calls send_ws (8 and 32 clients)
#   - tpcb-like with a trigger that calls pg_notify instead (what a web team
#     writes by hand), and with one that does INSERT into an outbox + pg_notify
#   - SELECT send_ws(...) alone versus SELECT pg_notify(...) alone, versus the
#     alternatives considered: an outbox INSERT without NOTIFY, an outbox
#     INSERT with pg_notify, and a transactional pg_logical_emit_message.
# Usage: bench/pgbench_send.sh [seconds per run, default 15] [synchronous_commit, default off]
# fsync stays on: with synchronous_commit on every commit waits for its WAL flush (1.0's
# NOTIFY commit lock was held across it). bench/trigger_cost.py (part of make bench)
# measures the triggers against an INSERT-only floor, synchronous_commit off and on.
# Needs wsnotify installed (make install). Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-15}
sync=${2:-off}

if [ -z "${PGPORT:-}" ]; then
    exec pg_virtualenv -t -o shared_preload_libraries=wsnotify \
        -o synchronous_commit="$sync" -o fsync=on -o max_connections=100 \
        -o wal_level=logical -o shared_buffers=256MB "$0" "$@"
fi

work=$(mktemp -d /tmp/wsnotify-bench.XXXXXX)
chmod 755 "$work"
psql -qX -c "CREATE EXTENSION wsnotify" >/dev/null
pgbench -q -i -s 10 >/dev/null 2>&1
psql -qX >/dev/null <<'SQL'
CREATE TABLE plain_outbox (id bigserial PRIMARY KEY, user_id text, body jsonb);
CREATE FUNCTION history_send_ws() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM send_ws(NEW.aid::text, jsonb_build_object('account', NEW.aid, 'delta', NEW.delta));
    RETURN NEW;
END $$;
CREATE FUNCTION history_pg_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('bench', jsonb_build_object('user', NEW.aid::text, 'account', NEW.aid, 'delta', NEW.delta)::text);
    RETURN NEW;
END $$;
CREATE FUNCTION history_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO plain_outbox (user_id, body)
    VALUES (NEW.aid::text, jsonb_build_object('account', NEW.aid, 'delta', NEW.delta));
    PERFORM pg_notify('bench', '');
    RETURN NEW;
END $$;
SQL
echo 'SELECT send_ws((random() * 1000)::int::text, '"'"'{"x": 1}'"'"');' > "$work/send_ws.sql"
echo 'SELECT pg_notify('"'"'bench'"'"', '"'"'{"x": 1}'"'"');' > "$work/pg_notify.sql"
echo 'INSERT INTO plain_outbox (user_id, body) VALUES ((random() * 1000)::int::text, '"'"'{"x": 1}'"'"');' > "$work/outbox_insert.sql"
echo 'SELECT pg_logical_emit_message(true, '"'"'bench'"'"', '"'"'{"x": 1}'"'"');' > "$work/logical_message.sql"
cat > "$work/outbox_notify.sql" <<'SQL'
BEGIN;
INSERT INTO plain_outbox (user_id, body) VALUES ((random() * 1000)::int::text, '{"x": 1}');
SELECT pg_notify('bench', '');
COMMIT;
SQL

# Run pgbench and print its tps (excluding connection time).
tps() {
    pgbench -n -T "$secs" -c "$1" -j 2 "${@:2}" 2>/dev/null \
        | sed -n 's/^tps = \([0-9.]*\) .*/\1/p' | head -1 | cut -d. -f1
}

echo "synchronous_commit=$sync, fsync=on, $secs s per run"
echo
echo "| workload | clients | tps |"
echo "|---|---|---|"
for c in 8 32; do
    echo "| tpcb-like | $c | $(tps $c -b tpcb-like) |"
    for t in send_ws pg_notify outbox_notify; do
        psql -qX -c "CREATE TRIGGER history_$t AFTER INSERT ON pgbench_history FOR EACH ROW EXECUTE FUNCTION history_$t()"
        echo "| tpcb-like + trigger calling $t | $c | $(tps $c -b tpcb-like) |"
        psql -qX -c "DROP TRIGGER history_$t ON pgbench_history"
    done
    psql -qX -c "TRUNCATE websocket_message, plain_outbox" >/dev/null
done
for c in 8 32; do
    for w in send_ws pg_notify outbox_insert outbox_notify logical_message; do
        echo "| SELECT $w alone | $c | $(tps $c -f "$work/$w.sql") |"
    done
    psql -qX -c "TRUNCATE websocket_message, plain_outbox" >/dev/null
done
rm -rf "$work"
