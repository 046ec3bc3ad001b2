#!/usr/bin/env bash
# Runs Musubi's four bench scenarios (create, transaction, read, search) against the peer:
# Medplum's FHIR router over its in-memory repository (conformance/bench/peer/server.mjs).
#
#   conformance/bench/peer/run-peer.sh DURATION OUTDIR     # e.g. 1s target/bench
#
# Writes OUTDIR/peer-{create,transaction,read,search}.txt (wrk output) and OUTDIR/peer-info.txt
# (versions, mode). Same wrk parameters, scripts and request order as conformance/bench/run.sh.
# PEER_VALIDATE=1 makes the peer validate every write (see server.mjs).
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 DURATION OUTDIR" >&2
  exit 2
fi
duration=$1
outdir=$2
cd "$(dirname "$0")/../../.."
peer_dir=conformance/bench/peer
connections=32
threads=2

command -v wrk >/dev/null 2>&1 || { echo "wrk is not installed (conformance/bench/run.sh installs it)" >&2; exit 1; }
if [ ! -d "$peer_dir/node_modules" ]; then
  (cd "$peer_dir" && npm ci --no-audit --no-fund >&2)
fi
mkdir -p "$outdir"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
node "$peer_dir/server.mjs" "$port" &
peer=$!
# SIGKILL: the peer may be busy with queued searches and holds nothing worth a clean shutdown.
cleanup() { kill -KILL "$peer" 2>/dev/null || true; wait "$peer" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 1 100); do curl -sf "$base/healthz" >/dev/null && break; sleep 0.1; done
curl -sf "$base/healthz" >/dev/null || { echo "peer did not start" >&2; exit 1; }

# The same 1 000 Patients as run.sh. Medplum refuses a transaction with more than 50 update
# (PUT) entries ("Transaction contains more update operations than allowed"), so the Bundle
# is posted as 20 transactions of 50 entries each; the stored Patients are the same.
python3 - "$base" conformance/bench/patients1000.json <<'PY'
import json, sys, urllib.request
base, path = sys.argv[1:3]
bundle = json.load(open(path, encoding="utf-8"))
entries = bundle["entry"]
for start in range(0, len(entries), 50):
    body = json.dumps({**bundle, "entry": entries[start:start + 50]}, ensure_ascii=False).encode()
    request = urllib.request.Request(f"{base}/fhir", data=body, method="POST",
                                     headers={"Content-Type": "application/fhir+json"})
    with urllib.request.urlopen(request) as response:
        result = json.load(response)
    bad = [e["response"]["status"] for e in result["entry"] if not e["response"]["status"].startswith("2")]
    if bad:
        sys.exit(f"patient load failed at entry {start}: {bad[:3]}")
PY
imm_id=$(curl -sf -X POST "$base/fhir/Immunization" -H 'Content-Type: application/fhir+json' \
  --data-binary @conformance/bench/immunization.json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')

medplum_version=$(node -p "require('./$peer_dir/node_modules/@medplum/fhir-router/package.json').version")
printf 'medplum %s\nnode %s\nvalidate %s\n' "$medplum_version" "$(node --version)" "${PEER_VALIDATE:-0}" > "$outdir/peer-info.txt"

run_wrk() { # name, extra args...
  local name=$1; shift
  wrk -t"$threads" -c"$connections" -d"$duration" --latency "$@" > "$outdir/peer-$name.txt"
  echo "peer $name: $(awk '/Requests\/sec/ {print int($2)}' "$outdir/peer-$name.txt") req/s, p99 $(awk '/ 99%/ {print $2}' "$outdir/peer-$name.txt")" >&2
}

echo "== peer scenarios (Medplum $medplum_version, in memory)" >&2
run_wrk create -s conformance/bench/create_immunization.lua "$base/fhir/Immunization"
BODY_FILE=conformance/bench/transaction50.json run_wrk transaction -s conformance/bench/create_immunization.lua "$base/fhir"
WRK_PATH="/fhir/Immunization/$imm_id" run_wrk read -s conformance/bench/get_path.lua "$base"
# Counted before the search run: the in-memory search is a linear scan that evaluates the search
# parameters' FHIRPath on every stored Immunization, so a search can take seconds to minutes;
# the requests still queued when wrk stops are dropped by killing the peer right after it.
stored=$(curl -sf "$base/fhir/Immunization?_count=0" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])')
printf 'stored %s\nrss_kib %s\n' "$stored" "$(awk '/VmRSS/ {print $2}' "/proc/$peer/status")" >> "$outdir/peer-info.txt"
WRK_PATH="/fhir/Immunization?patient=Patient/bench-patient-0&date=ge2024-06-03&_count=10&_total=none" \
  run_wrk search -s conformance/bench/get_path.lua "$base"
