#!/usr/bin/env bash
# The SMART JS client (fhirclient) against a running Musubi: seeds two families through the API,
# installs the pinned npm packages when needed, then runs smart_launch_test.js (a standalone
# launch for a parent, PKCE, refresh, and another family's child refused). See README.md.
#
#   conformance/clients/smart-js/run.sh BASE_URL
#
# BASE_URL is the server root (http://127.0.0.1:8080, no /fhir). Every other input has a default
# that matches the built-in demo configuration (gateway/config/demo.toml):
#   MUSUBI_CLIENT_ID=demo-phr-app  MUSUBI_REDIRECT_URI=http://127.0.0.1:8123/callback
#   MUSUBI_USERNAME=demo-parent    MUSUBI_PASSWORD=demo-parent-password
#   MUSUBI_OTHER_USERNAME=smartjs-other-parent (needs no account: only its RelatedPerson is made)
#   MUSUBI_PATIENT=smartjs-child-a MUSUBI_OTHER_PATIENT=smartjs-child-b
#   MUSUBI_SEED_CLIENT_ID=demo-municipality MUSUBI_SEED_CLIENT_SECRET=demo-municipality-secret
#     (a client_credentials client with system/ write scopes for Patient, RelatedPerson and
#      Immunization)
#   MUSUBI_CA_FILE (optional) the server's CA (PEM) when BASE_URL is https; given to curl, and to
#     Node through NODE_EXTRA_CA_CERTS (joined with any bundle that variable already names).
#   MUSUBI_SCOPE, MUSUBI_REFRESH_WITH_CLIENT_ID (optional) passed to smart_launch_test.js as is.
# Needs bash, curl and node/npm (Node 20 or later). Exits non-zero on the first failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

fail() {
    echo "smart-js: FAILED: $*" >&2
    exit 1
}

[[ $# -eq 1 ]] || fail "usage: $0 BASE_URL (the server root, e.g. http://127.0.0.1:8080)"
base="${1%/}"
base="${base%/fhir}"
for tool in curl node npm; do
    command -v "$tool" >/dev/null || fail "$tool is not installed"
done

export MUSUBI_BASE="$base"
export MUSUBI_CLIENT_ID="${MUSUBI_CLIENT_ID:-demo-phr-app}"
export MUSUBI_REDIRECT_URI="${MUSUBI_REDIRECT_URI:-http://127.0.0.1:8123/callback}"
export MUSUBI_USERNAME="${MUSUBI_USERNAME:-demo-parent}"
export MUSUBI_PASSWORD="${MUSUBI_PASSWORD:-demo-parent-password}"
export MUSUBI_PATIENT="${MUSUBI_PATIENT:-smartjs-child-a}"
export MUSUBI_OTHER_PATIENT="${MUSUBI_OTHER_PATIENT:-smartjs-child-b}"
other_username="${MUSUBI_OTHER_USERNAME:-smartjs-other-parent}"
seed_id="${MUSUBI_SEED_CLIENT_ID:-demo-municipality}"
seed_secret="${MUSUBI_SEED_CLIENT_SECRET:-demo-municipality-secret}"
curl_tls=()
if [[ -n "${MUSUBI_CA_FILE:-}" ]]; then
    [[ -r "$MUSUBI_CA_FILE" ]] || fail "MUSUBI_CA_FILE $MUSUBI_CA_FILE is not readable"
    curl_tls=(--cacert "$MUSUBI_CA_FILE")
    # Node reads one extra-CA file: the server's CA, plus any bundle already named there.
    bundle="$(mktemp)"
    trap 'rm -f "$bundle"' EXIT
    cat "$MUSUBI_CA_FILE" >"$bundle"
    if [[ -n "${NODE_EXTRA_CA_CERTS:-}" && -r "$NODE_EXTRA_CA_CERTS" ]]; then
        cat "$NODE_EXTRA_CA_CERTS" >>"$bundle"
    fi
    export NODE_EXTRA_CA_CERTS="$bundle"
fi

# ---- 1. A system token for seeding (client_credentials, client_secret_basic).
token_json="$(curl -sS "${curl_tls[@]}" --max-time 30 -u "$seed_id:$seed_secret" \
    -d grant_type=client_credentials "$base/oauth/token")" ||
    fail "no answer from $base/oauth/token (is the server running?)"
token="$(node -e 'const t = JSON.parse(process.argv[1]).access_token; if (!t) process.exit(1); console.log(t)' \
    "$token_json" 2>/dev/null)" || fail "client $seed_id got no token: $token_json"

# ---- 2. Two families, written with PUT so a second run finds the same state.
put() {
    local path="$1" body="$2" out status
    out="$(mktemp)"
    status="$(curl -sS "${curl_tls[@]}" --max-time 30 -o "$out" -w '%{http_code}' -X PUT \
        -H "Authorization: Bearer $token" -H 'Content-Type: application/fhir+json' \
        -H 'Accept: application/fhir+json' --data-binary "$body" "$base/fhir/$path")" || {
        rm -f "$out"
        fail "PUT $path: no answer"
    }
    if [[ "$status" != 200 && "$status" != 201 ]]; then
        local text
        text="$(head -c 600 "$out")"
        rm -f "$out"
        fail "PUT $path answered $status: $text"
    fi
    rm -f "$out"
    echo "seeded $path ($status)"
}

family() {
    local child="$1" account="$2" name="$3" birth="$4" vaccinated="$5"
    put "Patient/$child" "{\"resourceType\":\"Patient\",\"id\":\"$child\",\"name\":[{\"text\":\"$name\"}],\"gender\":\"female\",\"birthDate\":\"$birth\"}"
    put "RelatedPerson/rp-$child" "{\"resourceType\":\"RelatedPerson\",\"id\":\"rp-$child\",\"active\":true,\"identifier\":[{\"system\":\"https://musubi.example.org/fhir/IdSystem/account\",\"value\":\"$account\"}],\"patient\":{\"reference\":\"Patient/$child\"},\"relationship\":[{\"coding\":[{\"system\":\"http://terminology.hl7.org/CodeSystem/v3-RoleCode\",\"code\":\"MTH\"}]}]}"
    put "Immunization/imm-$child-bcg" "{\"resourceType\":\"Immunization\",\"id\":\"imm-$child-bcg\",\"status\":\"completed\",\"vaccineCode\":{\"coding\":[{\"system\":\"https://musubi.example.org/fhir/CodeSystem/vaccine-type\",\"code\":\"bcg\",\"display\":\"BCG\"}]},\"patient\":{\"reference\":\"Patient/$child\"},\"occurrenceDateTime\":\"$vaccinated\",\"primarySource\":true}"
}

family "$MUSUBI_PATIENT" "$MUSUBI_USERNAME" "結 はな" 2024-04-02 2024-09-10
family "$MUSUBI_OTHER_PATIENT" "$other_username" "別 ゆい" 2024-05-20 2024-10-15

# ---- 3. The pinned packages (npm ci when node_modules is missing or older than the lock file).
if [[ ! -d "$here/node_modules/fhirclient" || "$here/package-lock.json" -nt "$here/node_modules/.package-lock.json" ]]; then
    echo "installing the pinned npm packages (npm ci)"
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error) || fail "npm ci"
fi

# ---- 4. The launch.
echo "fhirclient $(node -p 'require(process.argv[1] + "/node_modules/fhirclient/package.json").version' "$here") against $MUSUBI_BASE/fhir as $MUSUBI_USERNAME"
node "$here/smart_launch_test.js" || fail "the SMART JS client checks (see the FAIL line above)"
