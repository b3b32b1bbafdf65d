#!/usr/bin/env bash
# Issue #5: the core's payment latency while a nightly reconciliation batch runs.
# Runs `kora bench` (P2P transfers over HTTP against `kora serve`, fresh database kora_bench_iso)
# alone, then again while `kora recon bench --lines LINES` imports, matches and persists a
# synthetic batch in its own fresh PostgreSQL database on the same server, and prints both p95s.
# The second load starts once the batch's timed part has started, and the script says whether
# the batch was still running when the load ended (the whole window overlapped).
# Usage: scripts/bench-recon-isolation.sh [LINES] [CONCURRENCY] [DURATION_SECONDS] [USERS]
# Env: RECON_NICE (default 19: the batch is a background job, and so are its PostgreSQL
#      backends, reniced too (needs root or the postgres user); 0 to compete as an equal),
#      PORT (8110), WORKERS (2 server processes).
# Needs: PostgreSQL at 127.0.0.1:5432 (user postgres, trust), `make install` done.
set -euo pipefail
cd "$(dirname "$0")/.."
LINES=${1:-1000000}
CONCURRENCY=${2:-48}
DURATION=${3:-30}
USERS=${4:-300}
RECON_NICE=${RECON_NICE:-19}
PORT=${PORT:-8110}
WORKERS=${WORKERS:-2}
PG=postgresql+asyncpg://postgres@127.0.0.1:5432
WORK=$(mktemp -d)
# Risk on, with the bench policy: the synthetic load is allowed, every window still read.
export KORA_RISK_POLICY_FILE=${KORA_RISK_POLICY_FILE:-kora/risk/policies/bench.yaml}
export KORA_DATABASE_URL="$PG/kora_bench_iso" KORA_DEV_SECRETS_FILE="$WORK/secrets.json"
export KORA_LOG_LEVEL=${KORA_LOG_LEVEL:-INFO}
# Registering USERS customers hashes passwords; a cheaper Argon2 cost only shortens that setup.
export KORA_ARGON2_TIME_COST=${KORA_ARGON2_TIME_COST:-1} KORA_ARGON2_MEMORY_KIB=${KORA_ARGON2_MEMORY_KIB:-8192}

psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS kora_bench_iso" -c "CREATE DATABASE kora_bench_iso"
.venv/bin/kora serve --port "$PORT" --workers "$WORKERS" >"$WORK/server.log" 2>&1 &
SERVER=$!
RECON=
cleanup() {
  kill "$SERVER" 2>/dev/null || true
  wait "$SERVER" 2>/dev/null || true
  if [ -n "$RECON" ]; then kill "$RECON" 2>/dev/null || true; wait "$RECON" 2>/dev/null || true; fi
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS kora_bench_iso WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.3; done

bench() {
  .venv/bin/kora bench --url "http://127.0.0.1:$PORT" --concurrency "$CONCURRENCY" --duration "$DURATION" \
    --users "$USERS" --no-verify
}

echo "== $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== 1. kora bench alone (concurrency $CONCURRENCY, ${DURATION}s, $USERS users, $WORKERS server workers)"
bench | tee "$WORK/alone.txt"

echo "== $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== 2. the same while kora recon bench --lines $LINES runs (nice $RECON_NICE, its own database)"
nice -n "$RECON_NICE" .venv/bin/kora recon bench --lines "$LINES" --started-file "$WORK/started" \
  >"$WORK/recon.json" 2>"$WORK/recon.err" &
RECON=$!
until [ -f "$WORK/started" ]; do
  if ! kill -0 "$RECON" 2>/dev/null; then cat "$WORK/recon.err" >&2; echo "the recon batch stopped" >&2; exit 1; fi
  sleep 0.5
done
echo "   batch started at $(cat "$WORK/started")"
# The batch's PostgreSQL backends do much of its work (COPY, index upkeep): same niceness.
BACKENDS=$(psql -h 127.0.0.1 -U postgres -Atc \
  "SELECT pid FROM pg_stat_activity WHERE datname LIKE 'kora_recon_bench_%' AND pid <> pg_backend_pid()")
if [ -n "$BACKENDS" ] && [ "$RECON_NICE" != 0 ]; then
  # shellcheck disable=SC2086
  renice -n "$RECON_NICE" -p $BACKENDS >/dev/null && echo "   reniced the batch's PostgreSQL backends: $(echo $BACKENDS)"
fi
bench | tee "$WORK/during.txt"
if kill -0 "$RECON" 2>/dev/null; then OVERLAP="the batch was still running when the load ended: full overlap"
else OVERLAP="WARNING: the batch ended before the load did (partial overlap; use more LINES or less DURATION)"; fi
wait "$RECON"
RECON=
echo "== $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== recon batch summary"
.venv/bin/python - "$WORK/recon.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"lines {s['lines']}  ok {s['ok']}  seconds {s['seconds']}  lines/s {s['lines_per_second']}")
print(f"window {s['batch_started_at']} .. {s['batch_ended_at']}  memory MiB {s['memory_mib']}")
PY
echo "== result"
echo "   $OVERLAP"
echo "   alone:        $(grep 'latency ms' "$WORK/alone.txt")"
echo "   during batch: $(grep 'latency ms' "$WORK/during.txt")"
echo "   throughput alone / during: $(grep -o '[0-9.]* transfers/s' "$WORK/alone.txt") / $(grep -o '[0-9.]* transfers/s' "$WORK/during.txt")"
