#!/usr/bin/env bash
# Reproduce the event pipeline numbers in docs/performance.md, on this machine:
#  1. relay throughput: 50,000 signed events written to the outbox, then published by one
#     `kora relay` batch loop to JetStream (`kora events bench-relay`);
#  2. end-to-end lag under a steady payment load: `kora serve` (2 workers, relay and consumers
#     NOT in process), one `kora relay`, one `kora worker` per consumer, `kora bench` P2P load,
#     then the commit → effect lag percentiles from each worker's histogram.
# Usage: scripts/bench-events.sh [EVENTS] [CONCURRENCY] [DURATION_SECONDS]
# Needs: PostgreSQL at 127.0.0.1:5432 (user postgres, trust), NATS with JetStream at 127.0.0.1:4222.
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${1:-50000}
CONCURRENCY=${2:-16}
DURATION=${3:-30}
PG=postgresql+asyncpg://postgres@127.0.0.1:5432
WORK=$(mktemp -d)
KORA=.venv/bin/kora
# Risk on, with the bench policy: the synthetic load is allowed, every window still read.
export KORA_RISK_POLICY_FILE=${KORA_RISK_POLICY_FILE:-kora/risk/policies/bench.yaml}
export KORA_DEV_SECRETS_FILE="$WORK/secrets.json" KORA_LOG_LEVEL=WARNING KORA_EVENTS_BUS=nats
export KORA_ARGON2_TIME_COST=1 KORA_ARGON2_MEMORY_KIB=8192
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

fresh_db() {
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1"
  KORA_DATABASE_URL="$PG/$1" $KORA db upgrade >/dev/null
}

echo "== 1. relay throughput: $EVENTS events, outbox (PostgreSQL) -> JetStream"
fresh_db kora_bench_relay
export KORA_DATABASE_URL="$PG/kora_bench_relay" KORA_NATS_NAMESPACE=benchrelay \
  KORA_NATS_STREAM=BENCH_RELAY KORA_NATS_DLQ_STREAM=BENCH_RELAY_DLQ
$KORA events setup >/dev/null
$KORA events bench-relay --events "$EVENTS" --batch 1000

echo "== 2. end-to-end lag: kora bench --concurrency $CONCURRENCY --duration $DURATION (P2P), relay + 3 workers on JetStream"
fresh_db kora_bench_e2e
export KORA_DATABASE_URL="$PG/kora_bench_e2e" KORA_NATS_NAMESPACE=benche2e \
  KORA_NATS_STREAM=BENCH_E2E KORA_NATS_DLQ_STREAM=BENCH_E2E_DLQ KORA_EVENTS_IN_PROCESS=false
$KORA events setup >/dev/null
$KORA serve --port 8101 --workers 2 --no-migrate >"$WORK/server.log" 2>&1 & PIDS+=($!)
$KORA relay >"$WORK/relay.log" 2>&1 & PIDS+=($!)
port=9401
for consumer in notifications kpi recon-feed; do
  $KORA worker --consumer "$consumer" --metrics-port "$port" >"$WORK/worker-$consumer.log" 2>&1 & PIDS+=($!)
  port=$((port + 1))
done
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:8101/readyz >/dev/null && break; sleep 0.3; done
$KORA bench --url http://127.0.0.1:8101 --concurrency "$CONCURRENCY" --duration "$DURATION" --users 300 --no-verify
sleep 5  # let the last events through
port=9401
for consumer in notifications kpi recon-feed; do
  $KORA events lag-report --metrics-url "http://127.0.0.1:$port/metrics"
  port=$((port + 1))
done
$KORA events status
$KORA ledger verify >/dev/null && echo "ledger verify: ok"
