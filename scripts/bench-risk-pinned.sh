#!/usr/bin/env bash
# What the risk engine adds to one transfer: one API worker pinned to CPU 1, the load generator
# (one client) to CPU 0, PostgreSQL unpinned; prints the transfer latencies and the server's own
# histogram of the assessment inside the transfers' transactions. Run it with and without
# KORA_RISK_ENABLED=false and compare (docs/performance.md). Needs `make install`, PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
PG=postgresql+asyncpg://postgres@127.0.0.1:5432
WORK=$(mktemp -d)
export KORA_DATABASE_URL="$PG/kora_bench" KORA_DEV_SECRETS_FILE="$WORK/secrets.json" KORA_LOG_LEVEL=WARNING
export KORA_RISK_POLICY_FILE=kora/risk/policies/bench.yaml KORA_EVENTS_IN_PROCESS=false
export KORA_ARGON2_TIME_COST=1 KORA_ARGON2_MEMORY_KIB=8192
psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS kora_bench" -c "CREATE DATABASE kora_bench" 2>/dev/null
DURATION=${1:-20}
taskset -c 1 .venv/bin/kora serve --port 8100 --workers 1 >"$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:8100/readyz >/dev/null && break; sleep 0.3; done
taskset -c 0 .venv/bin/kora bench --url http://127.0.0.1:8100 --concurrency 1 --duration "$DURATION" --users 200 | grep -E "throughput|latency ms|errors"
if [ "${KORA_RISK_ENABLED:-true}" != "false" ]; then
  curl -sf http://127.0.0.1:8100/metrics | .venv/bin/python scripts/histogram_quantiles.py kora_risk_assessment_duration_seconds payment_type=p2p
fi
