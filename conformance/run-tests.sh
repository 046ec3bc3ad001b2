#!/usr/bin/env bash
# Every test of Musubi, in one command (README "Testing"; CI runs exactly this):
#   1. formatting, 2. clippy, 3. the unit and integration tests,
#   4. the official FHIR R4 examples through the API (report: docs/conformance.md),
#   5. the real server binary driven by a third-party client (fhirpy), then a clean shutdown on
#      SIGTERM and a restart that must still hold the data,
#   7. the authorization server over HTTPS with mutual TLS, driven by real OAuth client libraries
#      (Authlib, requests-oauthlib) and the SMART JS client (fhirclient),
#   8. a one-second smoke run of the load benchmark (conformance/bench/run.sh --smoke).
# Works from any directory. Needs cargo, python3 (with venv) and npm; see conformance/README.md.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$PWD"

section() { printf '\n===== %s =====\n' "$*"; }
fail() {
    echo "run-tests: FAILED: $*" >&2
    exit 1
}

server_pid=""
server_log=""
data_dir=""
cleanup() {
    local status=$?
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        sleep 1
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    if [[ $status -ne 0 && -n "$server_log" && -s "$server_log" ]]; then
        echo "--- last lines of the server log ($server_log)" >&2
        tail -n 40 "$server_log" >&2 || true
    fi
    [[ -n "$data_dir" ]] && rm -rf "$data_dir"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# HTTP status of a GET, 000 when nothing answers; python3 rather than curl, which a minimal
# machine may lack.
http_status() { # url [CA file]
    python3 - "$@" <<'EOF'
import sys, urllib.request, urllib.error
import ssl
context = ssl.create_default_context(cafile=sys.argv[2]) if len(sys.argv) > 2 else None
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5, context=context) as r:
        print(r.status)
except urllib.error.HTTPError as e:
    print(e.code)
except Exception:
    print("000")
EOF
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

start_server() { # [extra musubi serve arguments]
    "$root/target/debug/musubi" serve --listen "127.0.0.1:$port" --data-dir "$data_dir" "$@" >>"$server_log" 2>&1 &
    server_pid=$!
    local i
    for i in $(seq 1 150); do
        if [[ "$(http_status "${scheme:-http}://127.0.0.1:$port/healthz" ${ca_file:+"$ca_file"})" == 200 ]]; then
            echo "server up on 127.0.0.1:$port (pid $server_pid)"
            return 0
        fi
        kill -0 "$server_pid" 2>/dev/null || fail "the server exited while starting (log: $server_log)"
        sleep 0.2
    done
    fail "the server did not answer /healthz within 30 s"
}

# A clean shutdown is part of the contract: SIGTERM must drain, flush the store and exit 0.
stop_server() {
    kill -TERM "$server_pid"
    local i
    for i in $(seq 1 150); do
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.2
    done
    kill -0 "$server_pid" 2>/dev/null && fail "the server did not stop within 30 s of SIGTERM"
    local rc=0
    wait "$server_pid" || rc=$?
    server_pid=""
    [[ $rc -eq 0 ]] || fail "the server exited with status $rc after SIGTERM, expected 0"
    echo "server stopped cleanly (exit 0)"
}

section "1/8 formatting (cargo fmt --check)"
cargo fmt --all -- --check

section "2/8 lints (cargo clippy -D warnings)"
cargo clippy --workspace --all-targets -- -D warnings

section "3/8 unit and integration tests (cargo test)"
cargo test --workspace

section "4/8 official FHIR R4 examples through the API"
examples_dir="$(conformance/fetch-examples.sh)"
echo "examples: $examples_dir"
# Absolute, because cargo runs the test binary from the test crate's directory.
FHIR_R4_EXAMPLES_DIR="$examples_dir" MUSUBI_CONFORMANCE_REPORT="$root/docs/conformance.md" \
    cargo test -p musubi-tests --test api -- --ignored --nocapture
echo "report: docs/conformance.md"

section "5/8 the musubi binary with a real client (fhirpy)"
cargo build -p gateway
venv="conformance/.venv"
requirements="conformance/clients/requirements.txt"
if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
fi
# Reinstall only when the requirements change, to keep repeated runs fast.
stamp="$venv/.requirements.installed"
if ! cmp -s "$requirements" "$stamp"; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$stamp"
fi

data_dir="$(mktemp -d "${TMPDIR:-/tmp}/musubi-conformance.XXXXXX")"
server_log="$data_dir.log"
: >"$server_log"
port="$(free_port)"
start_server
client_out="$data_dir.client.txt"
"$venv/bin/python" conformance/clients/fhirpy_client_test.py "http://127.0.0.1:$port/fhir" | tee "$client_out"
patient_id="$(sed -n 's/^PATIENT_ID=//p' "$client_out" | tail -n 1)"
rm -f "$client_out"
[[ -n "$patient_id" ]] || fail "the client test printed no PATIENT_ID"

section "6/8 clean shutdown and restart on the same data"
stop_server
start_server
"$venv/bin/python" - "http://127.0.0.1:$port/fhir/Patient/$patient_id" <<'EOF'
import base64, json, sys, urllib.parse, urllib.request
root = sys.argv[1].split("/fhir/")[0]
# The demo clinic's public demo secret (gateway/config/demo.toml).
basic = base64.b64encode(b"demo-clinic:demo-clinic-secret").decode()
token_request = urllib.request.Request(f"{root}/oauth/token", data=b"grant_type=client_credentials",
                                       headers={"Authorization": f"Basic {basic}"})
with urllib.request.urlopen(token_request, timeout=10) as r:
    token = json.load(r)["access_token"]
request = urllib.request.Request(sys.argv[1], headers={"Accept": "application/fhir+json", "Authorization": f"Bearer {token}"})
with urllib.request.urlopen(request, timeout=10) as r:
    patient = json.load(r)
text = patient["name"][0]["text"]
if text != "山田\u3000太郎" or patient["meta"]["versionId"] != "2":
    sys.exit(f"after restart Patient has name {text!r}, version {patient['meta']['versionId']}")
print(f"after restart: Patient/{patient['id']} version {patient['meta']['versionId']}, name {text}")
EOF
stop_server
rm -f "$server_log"
server_log=""

section "7/8 OAuth and SMART clients over HTTPS with mutual TLS"
tls_dir="$data_dir.tls"
mkdir -p "$tls_dir"
certs/make-dev-certs.sh "$tls_dir/certs" clinic-emr
"$venv/bin/python" conformance/clients/oauth_e2e_test.py prepare "$tls_dir"
server_log="$data_dir.tls.log"
: >"$server_log"
port="$(free_port)"
scheme=https ca_file="$tls_dir/certs/ca.crt" \
MUSUBI__TLS__ENABLED=true MUSUBI__TLS__CERT_FILE="$tls_dir/certs/server.crt" \
MUSUBI__TLS__KEY_FILE="$tls_dir/certs/server.key" MUSUBI__TLS__CLIENT_CA_FILE="$tls_dir/certs/ca.crt" \
MUSUBI__TLS__CLIENT_CERTIFICATES=optional start_server --config "$tls_dir/musubi.toml"
"$venv/bin/python" conformance/clients/oauth_e2e_test.py run "https://127.0.0.1:$port" "$tls_dir"
if [[ -x conformance/clients/smart-js/run.sh ]]; then
    MUSUBI_CA_FILE="$tls_dir/certs/ca.crt" conformance/clients/smart-js/run.sh "https://127.0.0.1:$port"
fi
stop_server
rm -rf "$tls_dir" "$server_log"
server_log=""

section "8/8 load benchmark smoke (the harness runs; numbers are not asserted)"
if command -v wrk >/dev/null 2>&1; then
    conformance/bench/run.sh --smoke
else
    echo "skipped: wrk is not installed (apt-get install wrk); .ci/run installs it"
fi

section "all checks passed"
