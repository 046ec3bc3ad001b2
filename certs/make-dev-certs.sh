#!/usr/bin/env bash
# Development certificates for Musubi: a local CA, a server certificate for localhost/127.0.0.1
# and one client certificate per demo system client. Output goes to certs/dev/ (gitignored);
# never use these outside development and tests.
#
#   certs/make-dev-certs.sh [OUT_DIR] [CLIENT_NAME...]
set -euo pipefail
cd "$(dirname "$0")"
out=${1:-dev}
shift || true
clients=("$@")
[ ${#clients[@]} -gt 0 ] || clients=(clinic-emr medical-association municipality-13104)
days=30
mkdir -p "$out"
umask 077

if [ ! -f "$out/ca.key" ]; then
  openssl ecparam -name prime256v1 -genkey -noout -out "$out/ca.key"
  openssl req -x509 -new -key "$out/ca.key" -sha256 -days "$days" \
    -subj "/C=JP/O=Musubi Development CA/CN=Musubi Dev Root" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$out/ca.crt"
fi

issue() { # name, subject, extensions
  local name=$1 subject=$2 ext=$3
  openssl ecparam -name prime256v1 -genkey -noout -out "$out/$name.key"
  openssl req -new -key "$out/$name.key" -subj "$subject" -out "$out/$name.csr"
  printf '%b' "$ext" > "$out/$name.ext"
  openssl x509 -req -in "$out/$name.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial \
    -sha256 -days "$days" -extfile "$out/$name.ext" -out "$out/$name.crt" 2>/dev/null
  rm -f "$out/$name.csr" "$out/$name.ext"
  openssl verify -CAfile "$out/ca.crt" "$out/$name.crt" >/dev/null
  echo "issued $out/$name.crt ($(openssl x509 -in "$out/$name.crt" -noout -subject))"
}

issue server "/C=JP/O=Musubi/CN=localhost" \
  "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n"
for client in "${clients[@]}"; do
  issue "client-$client" "/C=JP/O=Musubi Demo/OU=system-client/CN=$client" \
    "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
done
