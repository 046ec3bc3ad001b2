#!/usr/bin/env bash
# Load benchmark on loopback: builds the release binary, starts Musubi on a fresh data dir and
# measures, in one run, the limits (disk fdatasync rate, HTTP hello-world) and the scenarios
# (durable create, read by id, search, PHR vitals, the routed and consent-checked real path),
# then writes docs/performance.md.
#
#   conformance/bench/run.sh            # 10 s per scenario, writes docs/performance.md
#   conformance/bench/run.sh --smoke    # 1 s per scenario, writes target/bench/performance.md
set -euo pipefail
cd "$(dirname "$0")/../.."

duration=10s
out=docs/performance.md
import_rows=${IMPORT_ROWS:-1000000}
if [ "${1:-}" = "--smoke" ]; then
  duration=1s
  out=target/bench/performance.md
  import_rows=${IMPORT_ROWS:-20000}
fi
connections=32
threads=2

if ! command -v wrk >/dev/null 2>&1; then
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq && $sudo_cmd apt-get install -y -qq wrk >/dev/null
fi

cargo build --release -p gateway
mkdir -p target/bench
data_dir=$(mktemp -d target/bench/data.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
# Every request carries a bearer token (the real path: verified once, then from the cache);
# tokens outlive the run, and rate limits are off so they do not cap what is measured.
export MUSUBI__AUTH__ACCESS_TOKEN_LIFETIME_SECS=7200 MUSUBI__RATE_LIMITS__PER_CLIENT_PER_SECOND=0 \
  MUSUBI__RATE_LIMITS__PER_IP_PER_SECOND=0 MUSUBI__CONSENT__MAX_SEARCH_MATCHES=100000
MUSUBI__LOG__LEVEL=warn target/release/musubi serve --listen "127.0.0.1:$port" --data-dir "$data_dir" &
server=$!
cleanup() { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$data_dir"; }
trap cleanup EXIT
for _ in $(seq 1 100); do curl -sf "$base/healthz" >/dev/null && break; sleep 0.1; done
# The demo clinic's public demo secret (gateway/config/demo.toml).
WRK_TOKEN=$(curl -sf -u demo-clinic:demo-clinic-secret -d grant_type=client_credentials "$base/oauth/token" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
export WRK_TOKEN
auth=(-H "Authorization: Bearer $WRK_TOKEN")

# 1 000 children born 2024-01-10; the Immunizations (5種混合, YJ code in its OID form) are
# spread over them and go through the routine-vaccination checks like a clinic's would.
curl -sf "${auth[@]}" -X POST "$base/fhir" -H 'Content-Type: application/fhir+json' \
  --data-binary @conformance/bench/patients1000.json >/dev/null
imm_id=$(curl -sf "${auth[@]}" -X POST "$base/fhir/Immunization" -H 'Content-Type: application/fhir+json' \
  --data-binary @conformance/bench/immunization.json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')

rps() { awk '/Requests\/sec/ {print int($2)}'; }
p99() { awk '/ 99%/ {print $2}'; }
# wrk's default 2 s timeout would drop slow requests (large transactions) from the count without
# saying so: 30 s keeps every answer in the measurement.
run_wrk() { # name, extra args...
  local name=$1; shift
  wrk -t"${WRK_THREADS:-$threads}" -c"${WRK_CONNECTIONS:-$connections}" -d"$duration" --timeout 30s --latency "$@" > "target/bench/$name.txt"
  echo "$name: $(rps < "target/bench/$name.txt") req/s, p99 $(p99 < "target/bench/$name.txt")" >&2
}

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$server/status"; }
# Idle means idle: the server hands memory back once it has had no request for a while
# (server.release_idle_memory_secs, 2 s in the demo).
sleep 3
idle_rss=$(rss_kib)
echo "== limits" >&2
fsync_rate=$(python3 conformance/bench/fsync_limit.py "$data_dir" 3)
echo "fdatasync/s on the data disk: $fsync_rate" >&2
# JSON parse + serialise of the bench Immunization on one core, with the server's serde_json.
read -r json_mbps json_rate < <(cargo run --release -q -p fhir --example json_limit -- conformance/bench/immunization.json 3)
echo "JSON parse+serialize per core: $json_mbps MB/s, $json_rate bodies/s" >&2
WRK_PATH=/healthz run_wrk hello -s conformance/bench/get_path.lua "$base"

echo "== scenarios" >&2
run_wrk create -s conformance/bench/create_immunization.lua "$base/fhir/Immunization"
# A separate, traced run counts the syncs: strace slows every syscall, so its throughput is not
# the one reported above.
strace_out=target/bench/strace-create.txt
rm -f "$strace_out"
if ! command -v strace >/dev/null 2>&1; then
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get install -y -qq strace >/dev/null 2>&1 || true
fi
if command -v strace >/dev/null 2>&1; then
  strace -f -c -e trace=fsync,fdatasync,sync_file_range -p "$server" -o "$strace_out" &
  tracer=$!
  sleep 0.5
  wrk -t"$threads" -c"$connections" -d"$duration" -s conformance/bench/create_immunization.lua "$base/fhir/Immunization" > target/bench/create-traced.txt
  kill -INT "$tracer"; wait "$tracer" 2>/dev/null || true
fi
BODY_FILE=conformance/bench/transaction50.json run_wrk transaction -s conformance/bench/create_immunization.lua "$base/fhir"
WRK_PATH="/fhir/Immunization/$imm_id" run_wrk read -s conformance/bench/get_path.lua "$base"
WRK_PATH="/fhir/Immunization?patient=Patient/bench-patient-0&date=ge2024-06-03&_count=10&_total=none" \
  run_wrk search -s conformance/bench/get_path.lua "$base"

# Scenario 6: a PHR app sends a year of daily body weights in each request (365 Observations,
# docs/phr-api.md) for a parent's child, with the demo parent's token (authorization code + PKCE).
# The municipality client links the parent's account to bench-patient-0 first.
municipality_token=$(curl -sf -u demo-municipality:demo-municipality-secret -d grant_type=client_credentials "$base/oauth/token" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
curl -sf -H "Authorization: Bearer $municipality_token" -X PUT "$base/fhir/RelatedPerson/bench-parent" \
  -H 'Content-Type: application/fhir+json' --data-binary '{"resourceType": "RelatedPerson", "id": "bench-parent", "active": true,
  "identifier": [{"system": "https://musubi.example.org/fhir/IdSystem/account", "value": "demo-parent"}],
  "patient": {"reference": "Patient/bench-patient-0"}}' >/dev/null
parent_token=$(python3 conformance/bench/parent_token.py "$base")
# Four apps at once: each request takes ~0.5 s of server work, so 32 would only queue.
WRK_TOKEN=$parent_token PHR_PERSON=bench-patient-0 WRK_CONNECTIONS=4 run_wrk phr_vitals -s conformance/bench/phr_vitals.lua "$base"

# Scenario 7: the real path with consent and routing doing work. The 1 000 children get a home
# municipality (千代田区, 131016), so every routine Immunization created for them is routed to it
# (a delivery Task in the create's commit); the municipality then reads one of them (consent
# decided by its legal basis, read AuditEvent committed before the answer).
python3 - conformance/bench/patients1000.json > target/bench/residents1000.json <<'PY'
import json, sys
bundle = json.load(open(sys.argv[1]))
for entry in bundle["entry"]:
    entry["resource"]["address"] = [{"use": "home", "city": "千代田区", "extension": [{
        "url": "https://musubi.example.org/fhir/StructureDefinition/municipality-code", "valueCode": "131016"}]}]
json.dump(bundle, sys.stdout, ensure_ascii=False)
PY
curl -sf "${auth[@]}" -X POST "$base/fhir" -H 'Content-Type: application/fhir+json' \
  --data-binary @target/bench/residents1000.json >/dev/null
python3 - conformance/bench/immunization.json > target/bench/immunization-routine.json <<'PY'
import json, sys
immunization = json.load(open(sys.argv[1]))
immunization["fundingSource"] = {"coding": [{"system": "https://musubi.example.org/fhir/CodeSystem/funding-source", "code": "routine"}]}
json.dump(immunization, sys.stdout, ensure_ascii=False)
PY
BODY_FILE=target/bench/immunization-routine.json SPREAD=1 run_wrk routed_create \
  -s conformance/bench/create_immunization.lua "$base/fhir/Immunization"
routed_id=$(curl -sf "${auth[@]}" -X POST "$base/fhir/Immunization" -H 'Content-Type: application/fhir+json' \
  --data-binary @target/bench/immunization-routine.json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
WRK_TOKEN=$municipality_token WRK_PATH="/fhir/Immunization/$routed_id" run_wrk municipal_read \
  -s conformance/bench/get_path.lua "$base"

# The count goes through the consent check like any search (every match decided before the
# total is given, up to consent.max_search_matches); "more than" that when it refuses.
stored=$(curl -s "${auth[@]}" "$base/fhir/Immunization?_summary=count" | python3 -c '
import json, sys
answer = json.load(sys.stdin)
print(answer["total"] if "total" in answer else "more than 100000")')
loaded_rss=$(rss_kib)

# Municipal CSV import: a generated musubi-vaccination file into a store of its own (the command
# takes the store's lock), mapped, validated and durably written in chunks; rows/s and peak RSS.
echo "== municipal import of $import_rows rows" >&2
python3 conformance/bench/gen_municipal_csv.py "$import_rows" target/bench/import.csv
import_dir=$(mktemp -d target/bench/import.XXXXXX)
python3 - "$import_dir" <<'PY' > target/bench/import.txt
import json, resource, subprocess, sys, os
data = sys.argv[1]
subprocess.run(
    ["target/release/musubi", "import", "--data-dir", data, "--layout", "musubi-vaccination",
     "--municipality", "131016", "--report", "target/bench/import-report.json", "target/bench/import.csv"],
    check=True, stdout=subprocess.DEVNULL, env={**os.environ, "MUSUBI__LOG__LEVEL": "warn"})
report = json.load(open("target/bench/import-report.json"))
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
disk = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(data) for f in fs) // (1 << 20)
print(report["rowsRead"], report["rowsImported"], report["elapsedMs"], peak, disk, report["resourcesCreated"])
PY
echo "import: $(cat target/bench/import.txt) (rows, imported, ms, peak RSS MiB, disk MiB, resources)" >&2

# The imported store (1 200 000 resources in the full run) served as it is: startup to the first
# /healthz answer, idle RSS, then search and read latency on it with the same wrk parameters.
echo "== the imported store: startup, search, read" >&2
large_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
large_base="http://127.0.0.1:$large_port"
started_at=$(date +%s%N)
MUSUBI__LOG__LEVEL=warn target/release/musubi serve --listen "127.0.0.1:$large_port" --data-dir "$import_dir" &
large=$!
until curl -sf "$large_base/healthz" >/dev/null; do sleep 0.01; done
large_startup_ms=$(( ($(date +%s%N) - started_at) / 1000000 ))
sleep 3
large_rss=$(awk '/VmRSS/ {print $2}' "/proc/$large/status")
large_token=$(curl -sf -u demo-clinic:demo-clinic-secret -d grant_type=client_credentials "$large_base/oauth/token" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
# A resident in the middle of the file (宛名番号 as the import's identifier): the search has to
# find their five doses among all the stored ones.
resident=$(printf '%07d' $(( import_rows / 10 )))
large_get() { curl -sf -H "Authorization: Bearer $large_token" "$large_base/fhir/$1"; }
large_patient=$(large_get "Patient?identifier=https://musubi.example.org/fhir/IdSystem/resident-number/131016%7C$resident" \
  | python3 -c 'import json,sys; print("Patient/" + json.load(sys.stdin)["entry"][0]["resource"]["id"])')
large_immunization=$(large_get "Immunization?patient=$large_patient&_count=1" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["entry"][0]["resource"]["id"])')
large_search="/fhir/Immunization?patient=$large_patient&date=ge2020-01-01&_count=10&_total=none"
WRK_TOKEN=$large_token WRK_PATH="$large_search" \
  run_wrk large-search -s conformance/bench/get_path.lua "$large_base"
# One client alone: the latency of a search itself, without 31 others queued beside it.
WRK_TOKEN=$large_token WRK_PATH="$large_search" \
  WRK_THREADS=1 WRK_CONNECTIONS=1 run_wrk large-search-1 -s conformance/bench/get_path.lua "$large_base"
WRK_TOKEN=$large_token WRK_PATH="/fhir/Immunization/$large_immunization" \
  run_wrk large-read -s conformance/bench/get_path.lua "$large_base"
# The same searches once the store has settled: right after an import the store's background
# worker compacts the new tables for minutes, on one of the two cores and on the disk the
# journal syncs to. Settled = that thread used no CPU for 5 s (at most settle_limit_s waited).
settle_limit_s=600; [ "$duration" = 1s ] && settle_limit_s=60
worker_ticks() { # CPU ticks (user + system) of the server's fjall worker thread
  local task
  for task in /proc/"$large"/task/*; do
    if [ "$(cat "$task/comm" 2>/dev/null)" = "fjall:worker" ]; then
      awk '{print $14 + $15}' "$task/stat"; return
    fi
  done
  echo 0
}
settle_started=$(date +%s); last=$(worker_ticks)
while sleep 5; do
  now=$(worker_ticks)
  [ "$now" = "$last" ] && break
  last=$now
  [ $(( $(date +%s) - settle_started )) -ge "$settle_limit_s" ] && break
done
settled_s=$(( $(date +%s) - settle_started ))
echo "store settled after ${settled_s} s (worker CPU ${last} ticks)" >&2
WRK_TOKEN=$large_token WRK_PATH="$large_search" \
  run_wrk large-search-settled -s conformance/bench/get_path.lua "$large_base"
WRK_TOKEN=$large_token WRK_PATH="$large_search" \
  WRK_THREADS=1 WRK_CONNECTIONS=1 run_wrk large-search-1-settled -s conformance/bench/get_path.lua "$large_base"
kill -TERM "$large"; wait "$large" || true
echo "$large_startup_ms $large_rss $settled_s" > target/bench/large.txt
rm -rf "$import_dir"

# Startup with everything the run stored: SIGTERM, start again, time until /healthz answers.
# This start has the read audit off (`audit.reads = "off"`, docs/configuration.md), so the read
# below measures what the audit costs on the same data.
kill -TERM "$server"; wait "$server" || true
started_at=$(date +%s%N)
MUSUBI__AUDIT__READS=off MUSUBI__LOG__LEVEL=warn target/release/musubi serve --listen "127.0.0.1:$port" --data-dir "$data_dir" &
server=$!
until curl -sf "$base/healthz" >/dev/null; do sleep 0.01; done
startup_ms=$(( ($(date +%s%N) - started_at) / 1000000 ))
sleep 3
restarted_rss=$(rss_kib)
echo "startup with $stored Immunizations: ${startup_ms} ms; RSS idle ${idle_rss} KiB, after load ${loaded_rss} KiB, after restart ${restarted_rss} KiB" >&2
WRK_PATH="/fhir/Immunization/$imm_id" run_wrk read-unaudited -s conformance/bench/get_path.lua "$base"

# ---- Peer: Medplum's FHIR router, in memory, same scenarios (conformance/bench/peer/README.md).
# Skipped with NO_PEER=1 or without node; old peer results are removed so they never leak into
# this run's report.
rm -f target/bench/peer-*.txt
if command -v node >/dev/null && [ -z "${NO_PEER:-}" ]; then conformance/bench/peer/run-peer.sh "$duration" target/bench || echo "peer run failed" >&2; fi
# ---- end peer

python3 conformance/bench/report.py "$out" "$duration" "$connections" "$fsync_rate" "$stored" "$strace_out" \
  "$startup_ms" "$idle_rss" "$loaded_rss" "$restarted_rss" "$json_mbps" "$json_rate"
echo "wrote $out" >&2
