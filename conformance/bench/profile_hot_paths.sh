#!/usr/bin/env bash
# Focused measurements of the two slowest scenarios of run.sh, for profiling one binary
# against another under the same conditions (docs/performance.md):
#
#   conformance/bench/profile_hot_paths.sh transaction BINARY [DOSES_PER_CHILD] [DURATION]
#       Fresh data dir, the 1 000 bench children, then DOSES_PER_CHILD (default 200)
#       sequential 50-entry transaction Bundles (transaction50.json: one dose for each of
#       bench-patient-0…49), then wrk -c32 -t2 for DURATION (default 10s) on that Bundle.
#       Prints the preload rate and the wrk rate (Bundles/s).
#   conformance/bench/profile_hot_paths.sh create BINARY [DURATION]
#       Fresh data dir, the 1 000 bench children, then wrk -c32 -t2 for DURATION (default
#       10s) POSTing immunization.json spread over the children, as run.sh's create scenario.
#       Prints creates/s and the server's CPU per create.
#   conformance/bench/profile_hot_paths.sh read BINARY [DURATION]
#       Fresh data dir, the 1 000 bench children and one Immunization, then wrk -c32 -t2 for
#       DURATION (default 10s) on GET /fhir/Immunization/{id} as the demo clinic (consent-checked,
#       read audit as configured: set MUSUBI__AUDIT__READS=off or MUSUBI__CONSENT__ENFORCE=false
#       for the A/B). Prints req/s and the server's CPU per read (steadier than req/s when
#       other work shares the cores). With WITH_HELLO=1, then the same on GET /healthz (the
#       hello-world of run.sh), for the read's ratio to the stack's ceiling.
#   conformance/bench/profile_hot_paths.sh import BINARY ROWS
#       `BINARY import` of a generated musubi-vaccination file of ROWS rows into a fresh
#       store; prints rows/s and peak RSS (MiB).
#
# Set PERF_RECORD=1 to run the measured part under `perf record --call-graph dwarf`
# (perf-*.data in target/bench/hot/).
set -euo pipefail
cd "$(dirname "$0")/../.."
scenario=$1
binary=$(realpath "$2")
work=target/bench/hot
mkdir -p "$work"

# Starts BINARY on a fresh data dir with the 1 000 bench children; sets server, base, token, auth.
start_server() {
  data_dir=$(mktemp -d "$work/data.XXXXXX")
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  base="http://127.0.0.1:$port"
  # Rate limits off: this measures the server, not the limiter.
  MUSUBI__LOG__LEVEL=warn MUSUBI__RATE_LIMITS__PER_CLIENT_PER_SECOND=0 \
    MUSUBI__RATE_LIMITS__PER_IP_PER_SECOND=0 MUSUBI__AUTH__ACCESS_TOKEN_LIFETIME_SECS=7200 \
    "$binary" serve --listen "127.0.0.1:$port" --data-dir "$data_dir" 2>"$work/server.log" &
  server=$!
  cleanup() { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$data_dir"; }
  trap cleanup EXIT
  for _ in $(seq 1 100); do curl -sf "$base/healthz" >/dev/null && break; sleep 0.1; done
  token=$(curl -sf -u demo-clinic:demo-clinic-secret -d grant_type=client_credentials "$base/oauth/token" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  auth=(-H "Authorization: Bearer $token")
  curl -sf "${auth[@]}" -X POST "$base/fhir" -H 'Content-Type: application/fhir+json' \
    --data-binary @conformance/bench/patients1000.json >/dev/null
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$server/stat"; }
start_recording() { # name
  if [ -n "${PERF_RECORD:-}" ]; then
    perf record -F 199 --call-graph dwarf,16384 -p "$server" -o "$work/perf-$1.data" 2>/dev/null &
    recorder=$!
    sleep 0.3
  fi
}
stop_recording() {
  if [ -n "${PERF_RECORD:-}" ]; then kill -INT "$recorder"; wait "$recorder" || true; fi
}
# Runs COMMAND (its output in $work/NAME.txt; under perf with PERF_RECORD=1) and sets
# used_ticks to the server's CPU ticks meanwhile:  measure NAME COMMAND...
measure() {
  local name=$1 before
  shift
  start_recording "$name"
  before=$(cpu_ticks)
  "$@" > "$work/$name.txt"
  used_ticks=$(( $(cpu_ticks) - before ))
  stop_recording
}
# Prints wrk's rate, latencies and non-2xx answers from FILE, and the server's CPU per request
# (steadier than the rate when other work shares the cores):
#   report NAME RATE_UNIT CPU_SCALE CPU_UNIT CPU_TICKS FILE [SUFFIX]
report() {
  awk -v name="$1" -v unit="$2" -v scale="$3" -v cpu_unit="$4" -v cpu="$5" -v hz="$(getconf CLK_TCK)" -v suffix="${7:-}" '
    /requests in/ {n = $1}
    /Requests\/sec/ {rate = $2}
    / 50%| 99%/ {lat = lat " p" $1 " " $2}
    /Non-2xx/ {bad = " " $0}
    END {printf "%s: %s %s (%d in the run),%s%s; server CPU %.1f %s%s\n", name, rate, unit, n, lat, bad, scale * cpu / hz / n, cpu_unit, suffix}' \
    "$6"
}

case "$scenario" in
transaction)
  doses=${3:-200}
  duration=${4:-10s}
  start_server
  started=$(date +%s%N)
  for _ in $(seq 1 "$doses"); do
    curl -sf "${auth[@]}" -X POST "$base/fhir" -H 'Content-Type: application/fhir+json' \
      --data-binary @conformance/bench/transaction50.json >/dev/null
  done
  ms=$(( ($(date +%s%N) - started) / 1000000 ))
  echo "preload: $doses sequential Bundles in $ms ms"
  measure transaction env WRK_TOKEN="$token" BODY_FILE=conformance/bench/transaction50.json \
    wrk -t2 -c32 -d"$duration" --timeout 60s --latency -s conformance/bench/create_immunization.lua "$base/fhir"
  report transaction Bundles/s 1000 "ms per Bundle" "$used_ticks" "$work/transaction.txt"
  ;;
create)
  duration=${3:-10s}
  start_server
  measure create env WRK_TOKEN="$token" wrk -t2 -c32 -d"$duration" --timeout 30s --latency \
    -s conformance/bench/create_immunization.lua "$base/fhir/Immunization"
  report create creates/s 1e6 "us per create" "$used_ticks" "$work/create.txt"
  ;;
read)
  duration=${3:-10s}
  start_server
  imm_id=$(curl -sf "${auth[@]}" -X POST "$base/fhir/Immunization" -H 'Content-Type: application/fhir+json' \
    --data-binary @conformance/bench/immunization.json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  measure read env WRK_TOKEN="$token" WRK_PATH="/fhir/Immunization/$imm_id" \
    wrk -t2 -c32 -d"$duration" --timeout 30s --latency -s conformance/bench/get_path.lua "$base"
  rss_kib=$(awk '/VmRSS/ {print $2}' "/proc/$server/status")
  report read req/s 1e6 "us per read" "$used_ticks" "$work/read.txt" "; RSS $((rss_kib / 1024)) MiB"
  # The ceiling on the same stack right after, for the read's ratio to it.
  if [ -n "${WITH_HELLO:-}" ]; then
    measure hello env WRK_PATH=/healthz \
      wrk -t2 -c32 -d"$duration" --timeout 30s --latency -s conformance/bench/get_path.lua "$base"
    report hello req/s 1e6 "us per request" "$used_ticks" "$work/hello.txt"
  fi
  ;;
import)
  rows=$3
  csv="$work/import-$rows.csv"
  [ -f "$csv" ] || python3 conformance/bench/gen_municipal_csv.py "$rows" "$csv"
  data_dir=$(mktemp -d "$work/import.XXXXXX")
  trap 'rm -rf "$data_dir"' EXIT
  prefix=()
  [ -n "${PERF_RECORD:-}" ] && prefix=(perf record -F 299 --call-graph dwarf,32768 -o "$work/perf-import.data" --)
  python3 - "$data_dir" "$csv" "$binary" "${prefix[@]}" <<'PY'
import json, resource, subprocess, sys, os
data, csv, binary, prefix = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
report_path = os.path.join(data, "..", os.path.basename(data) + "-report.json")
subprocess.run(
    prefix + [binary, "import", "--data-dir", data, "--layout", "musubi-vaccination",
     "--municipality", "131016", "--report", report_path, csv],
    check=True, stdout=subprocess.DEVNULL, env={**os.environ, "MUSUBI__LOG__LEVEL": "warn"})
report = json.load(open(report_path))
os.remove(report_path)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
peak = usage.ru_maxrss // 1024
cpu = usage.ru_utime + usage.ru_stime
disk = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(data) for f in fs) // (1 << 20)
rate = report["rowsRead"] * 1000 // max(report["elapsedMs"], 1)
print(f"import: {report['rowsRead']} rows ({report['rowsImported']} imported, "
      f"{report['rowsRejected']} rejected, {report['resourcesCreated']} resources) in "
      f"{report['elapsedMs']} ms = {rate} rows/s; CPU {cpu:.1f} s "
      f"({1e6 * cpu / max(report['rowsRead'], 1):.1f} µs per row); peak RSS {peak} MiB; {disk} MiB on disk")
PY
  ;;
*)
  echo "usage: $0 transaction|create|read|import BINARY ..." >&2
  exit 2
  ;;
esac
