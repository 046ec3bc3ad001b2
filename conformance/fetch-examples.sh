#!/usr/bin/env bash
# Fetches the official FHIR R4 examples (hl7.fhir.r4.examples@4.0.1) from the npm registry, the
# only registry reachable from developer machines and CI, and unpacks them into
# conformance/.cache/r4-examples/package/. Prints that directory. Does nothing when already there.
set -euo pipefail

PACKAGE="hl7.fhir.r4.examples"
VERSION="4.0.1"
EXPECTED_JSON_FILES=5307

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="$root/conformance/.cache"
target="$cache/r4-examples"
done_marker="$target/.complete"

if [[ -f "$done_marker" ]]; then
    echo "$target/package"
    exit 0
fi

mkdir -p "$cache"
# Unpack into a scratch directory and move it in place at the end, so an interrupted run never
# leaves a half-filled directory that a later run would mistake for a complete one.
scratch="$(mktemp -d "$cache/fetch.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT

tarball="$cache/$PACKAGE-$VERSION.tgz"
if [[ ! -s "$tarball" ]]; then
    echo "fetch-examples: downloading $PACKAGE@$VERSION from the npm registry" >&2
    (cd "$scratch" && npm pack --silent "$PACKAGE@$VERSION" >/dev/null)
    mv "$scratch/$PACKAGE-$VERSION.tgz" "$tarball"
fi

mkdir -p "$scratch/r4-examples"
tar -xzf "$tarball" -C "$scratch/r4-examples"

count="$(find "$scratch/r4-examples/package" -maxdepth 1 -name '*.json' ! -name 'package.json' ! -name '.index.json' | wc -l)"
if (( count < EXPECTED_JSON_FILES - 5 )); then
    echo "fetch-examples: expected about $EXPECTED_JSON_FILES example files, found $count; tarball $tarball looks wrong" >&2
    exit 1
fi

rm -rf "$target"
mv "$scratch/r4-examples" "$target"
touch "$done_marker"
echo "$target/package"
