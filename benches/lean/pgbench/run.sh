#!/usr/bin/env bash
# Issue 23 §3 at the server alone: chronicle's append statement beside its parts and the
# ceilings, driven by pgbench (a C client, so the client's CPU is not what is measured).
#
#   bash benches/lean/pgbench/run.sh        # 3 rounds × 6 statements × 12 s (about 5 min)
#
# Environment: CHRONICLE_PG_URL (postgres://postgres@127.0.0.1:5432/test), SECS (12),
# ROUNDS (3), CLIENTS (8). Each round runs every statement in turn on emptied tables (so
# the machine's drift hits them all), each client on 200 accounts of its own. Prints each
# run's transactions/s and WAL bytes per transaction (pg_current_wal_lsn differences after
# a CHECKPOINT, so full-page images count, and other sessions' WAL too on a shared server),
# then the medians. Everything happens in the scratch schema `pgbench_lean`, dropped at
# the end.
set -euo pipefail
cd "$(dirname "$0")"
BASE="${CHRONICLE_PG_URL:-postgres://postgres@127.0.0.1:5432/test}"
SECS="${SECS:-12}"
ROUNDS="${ROUNDS:-3}"
CLIENTS="${CLIENTS:-8}"
SCHEMA=pgbench_lean
URL="$BASE?options=-csearch_path%3D$SCHEMA"
STATEMENTS="append append_function append_no_stream_write insert_events insert_events_key insert_minimal"

psql -q -v ON_ERROR_STOP=1 "$BASE" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" -c "CREATE SCHEMA $SCHEMA"
trap 'psql -q "$BASE" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE"' EXIT
for migration in ../../../migrations/postgres/*.sql; do
    (echo "SET search_path = $SCHEMA;"; cat "$migration") | psql -q -v ON_ERROR_STOP=1 "$BASE" >/dev/null
done
psql -q -v ON_ERROR_STOP=1 "$URL" -f setup.sql >/dev/null

results=$(mktemp)
for round in $(seq 1 "$ROUNDS"); do
    for statement in $STATEMENTS; do
        psql -q -v ON_ERROR_STOP=1 "$URL" \
            -c "TRUNCATE events, streams, events_key, minimal" \
            -c "INSERT INTO streams (stream_id, category) \
                SELECT 'acc-' || c || '-' || a, 'acc' \
                FROM generate_series(0, $CLIENTS - 1) c, generate_series(1, 200) a" \
            -c "CHECKPOINT" >/dev/null
        before=$(psql -qtA "$URL" -c "SELECT pg_current_wal_lsn()")
        out=$(pgbench -n -M prepared -c "$CLIENTS" -j 2 -T "$SECS" -f "$statement.sql" "$URL" 2>&1)
        after=$(psql -qtA "$URL" -c "SELECT pg_current_wal_lsn()")
        tps=$(grep -oP 'tps = \K[0-9]+' <<<"$out" | head -n 1)
        count=$(grep -oP 'actually processed: \K[0-9]+' <<<"$out")
        wal=$(psql -qtA "$URL" -c "SELECT round(pg_wal_lsn_diff('$after', '$before') / greatest($count, 1))")
        echo "round $round  $statement  $tps tx/s  $wal B WAL/tx" | tee -a "$results"
    done
done
echo "medians:"
for statement in $STATEMENTS; do
    median=$(awk -v s="$statement" '$3 == s { print $4 }' "$results" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
    echo "  $statement  $median tx/s"
done
rm -f "$results"
