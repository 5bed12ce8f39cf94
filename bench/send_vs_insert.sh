#!/usr/bin/env bash
# Issue 16's target, measured: SELECT send_ws alone against an INSERT of the
# same row alone (a plain table shaped like websocket_message: user, jsonb
# body, timestamp), one statement per transaction, at 8/16/32 clients, with
# synchronous_commit on and off, alternating the two in one run so that the
# ratio holds on a noisy machine; and, while 32 clients send, a sampler of
# pg_stat_activity counting client backends waiting on Lock 'object' (the
# NOTIFY commit lock 1.0 took). Prints a Markdown table.
# Usage: PGHOST=... PGPORT=... bench/send_vs_insert.sh [seconds per run, default 10]
# against a running cluster with wsnotify preloaded and fsync on (without
# PGPORT, a pg_virtualenv throwaway cluster of the system's PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
if [ -z "${PGPORT:-}" ]; then
    exec pg_virtualenv -t -o shared_preload_libraries=wsnotify -o fsync=on \
        -o max_connections=100 -o shared_buffers=256MB "$0" "$@"
fi
work=$(mktemp -d /tmp/wsnotify-bench.XXXXXX)
chmod 755 "$work"
psql -qX -c "CREATE EXTENSION IF NOT EXISTS wsnotify" \
    -c "DROP TABLE IF EXISTS plain_message" \
    -c "CREATE TABLE plain_message (id bigserial PRIMARY KEY, sent_at timestamptz NOT NULL DEFAULT now(), target text, body jsonb)" >/dev/null
echo 'SELECT send_ws((random() * 1000)::int::text, '"'"'{"x": 1}'"'"');' > "$work/send_ws.sql"
echo 'INSERT INTO plain_message (target, body) VALUES ((random() * 1000)::int::text, '"'"'{"x": 1}'"'"');' > "$work/insert.sql"

# tps of one pgbench run (connection time excluded)
tps() {
    PGOPTIONS="-c synchronous_commit=$2" pgbench -n -T "$secs" -c "$1" -j 2 -f "$work/$3.sql" 2>/dev/null \
        | sed -n 's/^tps = \([0-9.]*\) .*/\1/p' | head -1 | cut -d. -f1
}

# samples of client backends waiting on Lock 'object', every 10 ms, while $1 runs
sample_object_waits() {
    local until=$(( $(date +%s) + secs )) n=0 waiting=0 w
    while [ "$(date +%s)" -lt "$until" ]; do
        w=$(psql -qXAt -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND wait_event_type = 'Lock' AND wait_event = 'object'")
        n=$((n + 1)); [ "$w" -gt 0 ] && waiting=$((waiting + 1))
        sleep 0.01
    done
    echo "$waiting of $n"
}

echo "fsync=on, $secs s per run; send_ws and the INSERT alternate"
echo
echo "| synchronous_commit | clients | INSERT tps | send_ws tps | send_ws / INSERT |"
echo "|---|---|---|---|---|"
for sync in on off; do
    for c in 8 16 32; do
        i=$(tps $c $sync insert); s=$(tps $c $sync send_ws)
        echo "| $sync | $c | $i | $s | $(( 100 * s / i ))% |"
        psql -qX -c "TRUNCATE plain_message" -c "SELECT wsnotify_order_barrier()" -c "DELETE FROM websocket_message" >/dev/null
    done
done
echo
sample_object_waits > "$work/waits" &
s=$(tps 32 on send_ws); wait
echo "32 clients sending (synchronous_commit on, $s tps): client backends waiting on Lock 'object' in $(cat "$work/waits") samples"
rm -rf "$work"
