#!/usr/bin/env bash
# What send_ws costs a writing application, measured with pgbench on a
# throwaway cluster, every variant in the same run so that the ratios hold on
# a noisy machine:
#   - tpcb-like without and with a trigger that calls send_ws (8 and 32 clients)
#   - SELECT send_ws(...) alone versus SELECT pg_notify(...) alone, versus the
#     alternatives considered: an outbox INSERT without NOTIFY, and a
#     transactional pg_logical_emit_message.
# Usage: bench/pgbench_send.sh [seconds per run, default 15]
# Needs wsnotify installed (make install). Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-15}

if [ -z "${PGPORT:-}" ]; then
    exec pg_virtualenv -t -o shared_preload_libraries=wsnotify \
        -o synchronous_commit=off -o max_connections=100 -o wal_level=logical \
        -o shared_buffers=256MB "$0" "$@"
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
SQL
echo 'SELECT send_ws((random() * 1000)::int::text, '"'"'{"x": 1}'"'"');' > "$work/send_ws.sql"
echo 'SELECT pg_notify('"'"'bench'"'"', '"'"'{"x": 1}'"'"');' > "$work/pg_notify.sql"
echo 'INSERT INTO plain_outbox (user_id, body) VALUES ((random() * 1000)::int::text, '"'"'{"x": 1}'"'"');' > "$work/outbox_insert.sql"
echo 'SELECT pg_logical_emit_message(true, '"'"'bench'"'"', '"'"'{"x": 1}'"'"');' > "$work/logical_message.sql"

# Run pgbench and print its tps (excluding connection time).
tps() {
    pgbench -n -T "$secs" -c "$1" -j 2 "${@:2}" 2>/dev/null \
        | sed -n 's/^tps = \([0-9.]*\) .*/\1/p' | head -1 | cut -d. -f1
}

echo "| workload | clients | tps |"
echo "|---|---|---|"
for c in 8 32; do
    echo "| tpcb-like | $c | $(tps $c -b tpcb-like) |"
    psql -qX -c "CREATE TRIGGER history_send_ws AFTER INSERT ON pgbench_history FOR EACH ROW EXECUTE FUNCTION history_send_ws()"
    echo "| tpcb-like + trigger calling send_ws | $c | $(tps $c -b tpcb-like) |"
    psql -qX -c "DROP TRIGGER history_send_ws ON pgbench_history"
    psql -qX -c "TRUNCATE websocket_message" >/dev/null
done
for c in 8 32; do
    for w in send_ws pg_notify outbox_insert logical_message; do
        echo "| SELECT $w alone | $c | $(tps $c -f "$work/$w.sql") |"
    done
    psql -qX -c "TRUNCATE websocket_message, plain_outbox" >/dev/null
done
rm -rf "$work"
