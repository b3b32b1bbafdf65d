#!/usr/bin/env bash
# The mixed benchmark of issue #3 on PostgreSQL: P2P, merchant payments, cash-ins and cash-outs
# (through the provider simulator, two providers: momo and wave) with client retries that reuse
# the Idempotency-Key; then `kora ledger verify`. With --degrade, one provider (momo) is down or
# slow for the whole run, to show that the other lanes keep their throughput and p95 (bulkhead).
#
# Usage: scripts/bench-mixed.sh [--degrade none|outage|slow] [CONCURRENCY] [DURATION_SECONDS] [USERS]
#   --degrade outage   momo answers 503 (its breaker opens: its cash-ins/outs are refused fast)
#   --degrade slow     momo answers after 2 s (its lanes slow down; the others should not)
# Env: WORKERS (server processes, 2), MIX (p2p=40,merchant=20,cash_in=20,cash_out=20),
#      RETRY_SHARE (0.07), SIM_LATENCY_MS ("20 80": the providers' usual answer time, min max).
# Needs: PostgreSQL at 127.0.0.1:5432 (user postgres, trust), `make install` done, curl.
set -euo pipefail
cd "$(dirname "$0")/.."
DEGRADE=none
if [[ "${1:-}" == "--degrade" ]]; then DEGRADE=${2:?none, outage or slow}; shift 2; fi
case "$DEGRADE" in none|outage|slow) ;; *) echo "--degrade: none, outage or slow" >&2; exit 2 ;; esac
CONCURRENCY=${1:-48}
DURATION=${2:-30}
USERS=${3:-500}
WORKERS=${WORKERS:-2}
MIX=${MIX:-p2p=40,merchant=20,cash_in=20,cash_out=20}
RETRY_SHARE=${RETRY_SHARE:-0.07}
read -r LAT_MIN LAT_MAX <<<"${SIM_LATENCY_MS:-20 80}"
PG=postgresql+asyncpg://postgres@127.0.0.1:5432
KORA_PORT=${KORA_PORT:-8100}
SIM_PORT=${SIM_PORT:-8190}
KORA=http://127.0.0.1:$KORA_PORT
SIM=http://127.0.0.1:$SIM_PORT
WORK=$(mktemp -d)
WAVE_SECRET=whsec_bench_$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')

# Risk on, with the bench policy: the synthetic load is allowed, every window still read.
export KORA_RISK_POLICY_FILE=${KORA_RISK_POLICY_FILE:-kora/risk/policies/bench.yaml}
export KORA_DATABASE_URL="$PG/kora_bench_mixed" KORA_DEV_SECRETS_FILE="$WORK/secrets.json"
export KORA_LOG_LEVEL=${KORA_LOG_LEVEL:-WARNING}
# Setup registers USERS customers (two Argon2 hashes each); a cheaper cost only shortens setup.
export KORA_ARGON2_TIME_COST=${KORA_ARGON2_TIME_COST:-1} KORA_ARGON2_MEMORY_KIB=${KORA_ARGON2_MEMORY_KIB:-8192}
export KORA_PROVIDER_MOMO_URL=$SIM KORA_PROVIDER_WAVE_URL=$SIM KORA_PROVIDER_WAVE_WEBHOOK_SECRET=$WAVE_SECRET
export KORA_PUBLIC_BASE_URL=$KORA  # MoMo callbacks come back here

# The simulator: both providers answer in SIM_LATENCY_MS and decide at once; no injected failures
# (the chaos test covers those): this measures Kora, not the providers' misbehaviour.
cat >"$WORK/simulator.json" <<JSON
{"seed": 7, "providers": {
  "momo": {"style": "momo", "latency": {"kind": "uniform", "min_ms": $LAT_MIN, "max_ms": $LAT_MAX},
           "processing": {"kind": "fixed", "min_ms": 0, "max_ms": 0}},
  "wave": {"style": "wave", "latency": {"kind": "uniform", "min_ms": $LAT_MIN, "max_ms": $LAT_MAX},
           "processing": {"kind": "fixed", "min_ms": 0, "max_ms": 0},
           "webhook_url": "$KORA/v1/webhooks/wave", "webhook_secret": "$WAVE_SECRET"}}}
JSON

psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS kora_bench_mixed" -c "CREATE DATABASE kora_bench_mixed"
.venv/bin/kora simulator --port "$SIM_PORT" --config "$WORK/simulator.json" >"$WORK/simulator.log" 2>&1 &
SIMULATOR=$!
.venv/bin/kora serve --port "$KORA_PORT" --workers "$WORKERS" >"$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER $SIMULATOR 2>/dev/null || true; wait $SERVER $SIMULATOR 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -sf "$KORA/readyz" >/dev/null && curl -sf "$SIM/_sim/health" >/dev/null && break
  sleep 0.3
done

ADMIN_PHONE=+22507$(printf '%08d' $((RANDOM * 1000 + RANDOM % 1000)))
ADMIN_PASSWORD=bench-admin-$(head -c 9 /dev/urandom | od -An -tx1 | tr -d ' \n')
.venv/bin/kora admin create --phone-number "$ADMIN_PHONE" --password "$ADMIN_PASSWORD" >/dev/null
export KORA_BENCH_ADMIN_PHONE=$ADMIN_PHONE KORA_BENCH_ADMIN_PASSWORD=$ADMIN_PASSWORD

case "$DEGRADE" in
  outage) curl -sf -X POST "$SIM/_sim/providers/momo/outage" -H 'Content-Type: application/json' \
            -d '{"down": true, "mode": "503"}' >/dev/null ;;
  slow) curl -sf -X PATCH "$SIM/_sim/providers/momo" -H 'Content-Type: application/json' \
          -d '{"latency": {"kind": "fixed", "min_ms": 2000, "max_ms": 2000}}' >/dev/null ;;
esac

echo "== kora bench --scenario mixed --concurrency $CONCURRENCY --duration $DURATION --users $USERS" \
     "(server: $WORKERS workers, PostgreSQL; providers momo+wave ${LAT_MIN}-${LAT_MAX} ms; momo degraded: $DEGRADE)"
# Setup cash-ins go through the sandbox (answers at once); the measured ones through momo and wave.
STATUS=0
.venv/bin/kora bench --scenario mixed --url "$KORA" --concurrency "$CONCURRENCY" --duration "$DURATION" \
  --users "$USERS" --mix "$MIX" --retry-share "$RETRY_SHARE" --providers momo,wave \
  --funding-provider sandbox || STATUS=$?
echo "logs: $WORK (server.log, simulator.log)"
exit $STATUS
