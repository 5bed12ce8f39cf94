#!/usr/bin/env bash
# What one sending transaction costs its backend, without the noise of
# concurrency: one session commits 20,000 transactions in a PL/pgSQL loop
# (COMMIT inside DO) for each kind of transaction, three times, and prints the
# microseconds per transaction. synchronous_commit is off so that no commit
# waits for the disk: this is CPU, not I/O.
#   nothing          PERFORM 1; COMMIT
#   pg_notify        PERFORM pg_notify(...); COMMIT           (writes no WAL)
#   insert           INSERT INTO a table with a bigserial key; COMMIT
#   send_ws          PERFORM send_ws(...); COMMIT
#   insert+notify    the INSERT and the pg_notify; COMMIT     (a hand-written outbox)
# Usage: bench/send_micro.sh   (needs wsnotify installed: make install)
set -euo pipefail
if [ -z "${PGPORT:-}" ]; then
    exec pg_virtualenv -t -o shared_preload_libraries=wsnotify -o fsync=on \
        -o synchronous_commit=off "$0" "$@"
fi
n=20000
psql -qX -c "CREATE EXTENSION wsnotify" \
    -c "CREATE TABLE plain_outbox (id bigserial PRIMARY KEY, body jsonb)" >/dev/null
declare -A body=(
    [nothing]="PERFORM 1"
    [pg_notify]="PERFORM pg_notify('bench', '{\"x\": 1}')"
    [insert]="INSERT INTO plain_outbox (body) VALUES ('{\"x\": 1}')"
    [send_ws]="PERFORM send_ws('u1', '{\"x\": 1}')"
    [insert+notify]="INSERT INTO plain_outbox (body) VALUES ('{\"x\": 1}'); PERFORM pg_notify('bench', '{\"x\": 1}')"
)
echo "| transaction | us per transaction, 3 runs |"
echo "|---|---|"
for kind in nothing pg_notify insert send_ws insert+notify; do
    runs=""
    for run in 1 2 3; do
        ms=$(psql -qX -c '\timing on' \
                -c "DO \$\$ BEGIN FOR i IN 1..$n LOOP ${body[$kind]}; COMMIT; END LOOP; END \$\$" \
             | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p')
        runs="$runs $(awk -v ms="$ms" -v n=$n 'BEGIN { printf "%.1f", ms * 1000 / n }')"
        psql -qX -c "TRUNCATE plain_outbox, websocket_message" >/dev/null
    done
    echo "| $kind |$runs |"
done
