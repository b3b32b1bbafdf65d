#!/usr/bin/env bash
# Reproduce docs/performance.md: Kora's P2P benchmark against PostgreSQL on this machine, then
# pgbench (TPC-B, same client count) on the same server in the same sitting.
# Usage: scripts/bench-postgres.sh [CONCURRENCY] [DURATION_SECONDS] [USERS]
# RELAY=1 with KORA_EVENTS_IN_PROCESS=false: the deployed topology on this one machine — the API
# alone plus a separate `kora relay` process publishing its outbox during the load.
# Needs: PostgreSQL at 127.0.0.1:5432 (user postgres, trust), `make install` done, pgbench.
set -euo pipefail
cd "$(dirname "$0")/.."
CONCURRENCY=${1:-48}
DURATION=${2:-30}
USERS=${3:-1000}
PG=postgresql+asyncpg://postgres@127.0.0.1:5432
WORK=$(mktemp -d)
export KORA_DATABASE_URL="$PG/kora_bench" KORA_DEV_SECRETS_FILE="$WORK/secrets.json"
export KORA_LOG_LEVEL=${KORA_LOG_LEVEL:-INFO}
# The risk engine is on (as in production) with the bench policy: the synthetic load is allowed,
# every window is still read and every payment reserved. KORA_RISK_ENABLED=false measures without it.
export KORA_RISK_POLICY_FILE=${KORA_RISK_POLICY_FILE:-kora/risk/policies/bench.yaml}
# The setup registers USERS customers (two Argon2 hashes each); a cheaper Argon2 cost only
# shortens that setup: transfers never hash a password.
export KORA_ARGON2_TIME_COST=${KORA_ARGON2_TIME_COST:-1} KORA_ARGON2_MEMORY_KIB=${KORA_ARGON2_MEMORY_KIB:-8192}
WORKERS=${WORKERS:-2}

psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS kora_bench" -c "CREATE DATABASE kora_bench"
.venv/bin/kora serve --port 8100 --workers "$WORKERS" >"$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:8100/readyz >/dev/null && break; sleep 0.3; done
RELAY_PID=""
if [ "${RELAY:-0}" = "1" ]; then
  .venv/bin/kora relay >"$WORK/relay.log" 2>&1 &
  RELAY_PID=$!
  trap 'kill $SERVER $RELAY_PID 2>/dev/null || true; wait $SERVER $RELAY_PID 2>/dev/null || true' EXIT
  echo "== with a separate kora relay process (pid $RELAY_PID)"
fi

echo "== kora bench --concurrency $CONCURRENCY --duration $DURATION --users $USERS (server: $WORKERS workers, PostgreSQL)"
.venv/bin/kora bench --url http://127.0.0.1:8100 --concurrency "$CONCURRENCY" --duration "$DURATION" --users "$USERS"

if [ -n "$RELAY_PID" ]; then
  backlog=$(psql -h 127.0.0.1 -U postgres -d kora_bench -tAc "SELECT count(*) FROM event_outbox WHERE published_at IS NULL")
  echo "outbox events not yet published when the load ended: $backlog"
  kill "$RELAY_PID"; wait "$RELAY_PID" 2>/dev/null || true
fi
if [ "${KORA_RISK_ENABLED:-true}" != "false" ]; then
  # What the risk assessment added to each payment, inside its transaction, as one API worker
  # measured it (its /metrics; every worker sees the same load).
  echo "== risk assessment inside the payment's transaction (kora_risk_assessment_duration_seconds, one worker)"
  # the transfers only (the setup's funding cash-ins are assessed too)
  curl -sf http://127.0.0.1:8100/metrics | .venv/bin/python scripts/histogram_quantiles.py kora_risk_assessment_duration_seconds payment_type=p2p
fi
kill $SERVER; wait $SERVER 2>/dev/null || true
echo "== pgbench TPC-B, $CONCURRENCY clients, ${DURATION}s (scale 10)"
psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS pgbench_kora" -c "CREATE DATABASE pgbench_kora"
pgbench -h 127.0.0.1 -U postgres -i -s 10 -q pgbench_kora >/dev/null 2>&1
pgbench -h 127.0.0.1 -U postgres -c "$CONCURRENCY" -j 2 -T "$DURATION" pgbench_kora 2>&1 | grep -E "tps|latency average|number of transactions actually"
psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS pgbench_kora"
