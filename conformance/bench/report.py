#!/usr/bin/env python3
"""Turn the wrk outputs of conformance/bench/run.sh into docs/performance.md's results table."""
import datetime
import os
import platform
import re
import sys

out, duration, connections, fsync_rate, stored, strace_path = sys.argv[1:7]
startup_ms, idle_rss, loaded_rss, restarted_rss = (int(v) for v in sys.argv[7:11])
json_mbps, json_rate = (float(v) for v in sys.argv[11:13])
fsync_rate = float(fsync_rate)
cores = os.cpu_count()


def wrk(name):
    text = open(f"target/bench/{name}.txt").read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    p50 = re.search(r"\s50%\s+(\S+)", text).group(1)
    p99 = re.search(r"\s99%\s+(\S+)", text).group(1)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return rps, p50, p99, int(errors.group(1)) if errors else 0


def numbers(name):
    """The integers run.sh wrote to target/bench/{name}.txt, or None when that step did not run."""
    path = f"target/bench/{name}.txt"
    return [int(v) for v in open(path).read().split()] if os.path.exists(path) else None


# `musubi import` (rows read, imported, ms, peak RSS MiB, disk MiB, resources) and the imported
# store served afterwards (startup ms, idle RSS KiB, seconds until it settled).
import_run = numbers("import")
large_run = numbers("large") if import_run else None

hello = wrk("hello")
rows = [
    ("create Immunization (durable)", wrk("create"), "fdatasync/s", fsync_rate, 1),
    ("transaction of 50 Immunization creates (durable)", wrk("transaction"), "fdatasync/s (per resource)", fsync_rate, 50),
    ("read Immunization by id (consent decided, AuditEvent committed)", wrk("read"), "hello-world", hello[0], 1),
    ("search Immunization by patient+date", wrk("search"), "hello-world", hello[0], 1),
]
# Scenarios 6 and 7, each on its own line: the PHR app API and the real path with consent and
# routing doing work (a delivery Task per create, a municipality's consent-checked, audited read).
real_path_rows = [
    ("PHR app vitals, a year of daily values per request (365 Observations, `/phr/v1`, 4 connections)", "phr_vitals", "fdatasync/s (per resource)", fsync_rate, 365),
    ("real path: routed create (routine Immunization, delivery Task in the same commit)", "routed_create", "fdatasync/s", fsync_rate, 1),
    ("real path: read as the home municipality (consent decided, AuditEvent committed)", "municipal_read", "hello-world", hello[0], 1),
]
real_path_rows = [(name, wrk(file), *rest) for name, file, *rest in real_path_rows if os.path.exists(f"target/bench/{file}.txt")]
if os.path.exists("target/bench/read-unaudited.txt"):
    # The same read after a restart with `audit.reads = "off"`: what the read audit costs.
    real_path_rows.append(("read Immunization by id, read audit off (`audit.reads = \"off\"`, after the restart)", wrk("read-unaudited"), "hello-world", hello[0], 1))
syncs = ""
if os.path.exists(strace_path):
    text = open(strace_path).read()
    counts = {m.group(2): int(m.group(1)) for m in re.finditer(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", text, re.M)}
    traced = open("target/bench/create-traced.txt").read()
    creates = int(re.search(r"(\d+) requests in", traced).group(1))
    durable_syncs = counts.get("fdatasync", 0) + counts.get("fsync", 0)
    syncs = (
        f"In a second, traced create run (`strace -f -c`, which slows every syscall) the server made {counts.get('fdatasync', 0)} fdatasync and "
        f"{counts.get('fsync', 0)} fsync calls for about {creates:.0f} acknowledged creates: "
        f"{creates / max(durable_syncs, 1):.1f} creates per durable sync (group commit: one journal "
        "fdatasync per group of concurrent commits; the fsyncs are new journal and table files, "
        "docs/adr/0003-storage-engine.md)."
    )

lines = [
    f"Run on {datetime.date.today()} ({platform.machine()}, {os.cpu_count()} cores), wrk -c{connections} -t2 -d{duration}, "
    f"{stored} Immunizations stored at the end.",
    "",
    f"Limits measured in the same run: **{fsync_rate:.0f} fdatasync/s** on the data disk "
    f"(`fsync_limit.py`), **{hello[0]:.0f} req/s** HTTP hello-world on the same stack, "
    f"**{json_mbps:.0f} MB/s** JSON parse + serialise of the bench Immunization per core "
    f"({json_rate:.0f} bodies/s per core, {json_rate * cores:.0f}/s on {cores} cores; `fhir/examples/json_limit.rs`).",
    "",
    "| scenario | req/s | p50 | p99 | non-2xx | limit | limit value | ratio to limit | ratio to JSON ceiling |",
    "|---|---|---|---|---|---|---|---|---|",
    f"| hello-world (`/healthz`, same stack) | {hello[0]:.0f} | {hello[1]} | {hello[2]} | {hello[3]} | – | – | – | – |",
]
for name, (rps, p50, p99, errors), limit_name, limit, resources_per_request in rows + real_path_rows:
    ratio = rps * resources_per_request / limit
    # Writes parse and serialise every body; reads serve stored bytes and parse none.
    json_ratio = f"{rps * resources_per_request / (json_rate * cores):.3f}" if limit_name.startswith("fdatasync") else "–"
    lines.append(
        f"| {name} | {rps:.0f} | {p50} | {p99} | {errors} | {limit_name} | {limit:.0f} | {ratio:.2f} | {json_ratio} |"
    )
lines.append("")
transaction_rps = rows[1][1][0]
lines.append(
    f"The transaction scenario commits {transaction_rps * 50:.0f} resources/s (50 per Bundle, each Bundle atomic). "
    f"Startup with the {stored} stored Immunizations: {startup_ms} ms to the first `/healthz` answer. "
    f"RSS: {idle_rss / 1024:.1f} MiB idle after start, {loaded_rss / 1024:.1f} MiB after the load, "
    f"{restarted_rss / 1024:.1f} MiB after the restart."
)
if os.path.exists("target/bench/phr_vitals.txt"):
    lines.append(
        f"The PHR vitals scenario stores {wrk('phr_vitals')[0] * 365:.0f} Observations/s "
        "(365 per request, each request one atomic commit with its AuditEvents)."
    )
if import_run:
    rows_read, imported, ms, peak, disk, resources = import_run
    lines.append(
        f"Municipal CSV import (`musubi import`, musubi-vaccination layout, generated file): {rows_read} rows "
        f"({imported} imported, {resources} resources created) in {ms / 1000:.1f} s = **{rows_read * 1000 / max(ms, 1):.0f} rows/s** "
        f"({resources * 1000 / max(ms, 1):.0f} resources/s), every row mapped, validated and durably written in atomic chunks; "
        f"peak RSS {peak} MiB; {disk} MiB on disk afterwards."
    )
if large_run:
    large_startup_ms, large_rss, settled_s = large_run
    resources = import_run[5]
    search, read = wrk("large-search"), wrk("large-read")
    alone = wrk("large-search-1") if os.path.exists("target/bench/large-search-1.txt") else None
    lines += [
        "",
        f"**The imported store served as it is** ({resources} resources): startup {large_startup_ms} ms to the first "
        f"`/healthz` answer, RSS {large_rss / 1024:.1f} MiB idle after start.",
        "",
        "| scenario on the imported store | req/s | p50 | p99 | non-2xx |",
        "|---|---|---|---|---|",
        f"| search Immunization by patient+date | {search[0]:.0f} | {search[1]} | {search[2]} | {search[3]} |",
        f"| read Immunization by id | {read[0]:.0f} | {read[1]} | {read[2]} | {read[3]} |",
    ]
    if alone:
        lines.append(
            f"| search Immunization by patient+date, one client alone (1 connection) | {alone[0]:.0f} | {alone[1]} | {alone[2]} | {alone[3]} |"
        )
    settled, settled_alone = wrk("large-search-settled"), wrk("large-search-1-settled")
    lines += [
        f"| the search again once the store settled ({settled_s} s until its background worker idled) | {settled[0]:.0f} | {settled[1]} | {settled[2]} | {settled[3]} |",
        f"| the same, one client alone | {settled_alone[0]:.0f} | {settled_alone[1]} | {settled_alone[2]} | {settled_alone[3]} |",
    ]
lines.append("")
if syncs:
    lines.append(syncs)
    lines.append("")

# Peer written by conformance/bench/peer/run-peer.sh in the same run (skipped with NO_PEER=1 or
# without node): the same four scenarios against Medplum's FHIR router and in-memory repository.
peer_names = ["create", "transaction", "read", "search"]
if all(os.path.exists(f"target/bench/peer-{name}.txt") for name in peer_names):
    info = {}
    if os.path.exists("target/bench/peer-info.txt"):
        info = dict(line.split(" ", 1) for line in open("target/bench/peer-info.txt").read().splitlines() if " " in line)
    lines += [
        f"**Musubi / peer.** Peer: Medplum {info.get('medplum', '?')} `@medplum/fhir-router` with its `MemoryRepository`, "
        f"Node {info.get('node', '?')}, one process, same wrk parameters, scripts and order "
        f"({info.get('stored', '?')} Immunizations held before its search run, RSS then "
        f"{int(info.get('rss_kib', 0)) / 1024:.0f} MiB; conformance/bench/peer/README.md).",
        "",
        "| scenario | Musubi req/s | peer req/s | peer non-2xx | peer timeouts | Musubi / peer |",
        "|---|---|---|---|---|---|",
    ]
    for (name, (rps, _p50, _p99, _errors), *_rest), peer_name in zip(rows, peer_names):
        peer_rps, _pp50, _pp99, peer_errors = wrk(f"peer-{peer_name}")
        timeouts = re.search(r"timeout (\d+)", open(f"target/bench/peer-{peer_name}.txt").read())
        ratio = f"{rps / peer_rps:.2f}" if peer_rps > 0 else "– (peer finished no request)"
        lines.append(
            f"| {name} | {rps:.0f} | {peer_rps:.0f} | {peer_errors} | {int(timeouts.group(1)) if timeouts else 0} | {ratio} |"
        )
    validated = "validates each write with Medplum's validator" if info.get("validate") == "1" else "does no validation on write"
    lines += [
        "",
        "The peer keeps its data in memory (nothing is written to disk, everything is lost on exit) and "
        f"{validated}, while Musubi validates, runs the routine-vaccination rules and acknowledges a write "
        f"only once it is durable (fdatasync). Both share the machine's {os.cpu_count()} cores: Musubi with one HTTP worker "
        "thread per core, the peer as one Node process (one JavaScript thread). "
        "The peer's search is a linear scan that evaluates FHIRPath on every stored Immunization.",
        "",
    ]



def millis(latency):
    """wrk's latency text (`266.00us`, `60.42ms`, `1.15s`) in milliseconds."""
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", latency).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


# The targets for this 2-core machine, each against what this run measured.
def verdict(met):
    return "met" if met else "**not met**"


create_rps, read_rps = rows[0][1][0], rows[2][1][0]
peer_create = wrk("peer-create")[0] if os.path.exists("target/bench/peer-create.txt") else 0
targets = [
    ("durable create ≥ 3 000/s", f"{create_rps:.0f}/s", create_rps >= 3000),
    ("durable create ≥ 5× the peer", f"{create_rps / peer_create:.2f}×" if peer_create else "no peer run", peer_create and create_rps >= 5 * peer_create),
    ("read ≥ 20 000/s (read audit on)", f"{read_rps:.0f}/s", read_rps >= 20000),
    ("read ≥ 50 % of hello-world", f"{read_rps / hello[0]:.0%}", read_rps >= 0.5 * hello[0]),
]
if os.path.exists("target/bench/read-unaudited.txt"):
    unaudited = wrk("read-unaudited")[0]
    targets += [
        ("read ≥ 20 000/s, read audit off", f"{unaudited:.0f}/s", unaudited >= 20000),
        ("read ≥ 50 % of hello-world, read audit off", f"{unaudited / hello[0]:.0%}", unaudited >= 0.5 * hello[0]),
    ]
targets += [
    ("idle RSS < 50 MiB", f"{idle_rss / 1024:.1f} MiB after start and the bench children", idle_rss < 50 * 1024),
]
if large_run:
    large_startup_ms, large_rss, settled_s = large_run
    rows_read, imported, ms, peak, disk, resources = import_run
    search_p99 = millis(wrk("large-search")[2])
    targets += [
        (f"search p99 < 20 ms on {resources} stored resources, 32 clients", f"{search_p99:.1f} ms", search_p99 < 20),
    ]
    if os.path.exists("target/bench/large-search-1.txt"):
        alone_p99 = millis(wrk("large-search-1")[2])
        targets.append((f"the same search, one client alone", f"{alone_p99:.1f} ms", alone_p99 < 20))
    settled_p99 = millis(wrk("large-search-settled")[2])
    settled_alone_p99 = millis(wrk("large-search-1-settled")[2])
    targets += [
        ("the same search, 32 clients, once the store settled", f"{settled_p99:.1f} ms", settled_p99 < 20),
        ("the same search, one client, once the store settled", f"{settled_alone_p99:.1f} ms", settled_alone_p99 < 20),
    ]
    rate = rows_read * 1000 / max(ms, 1)
    targets += [
        ("CSV import ≥ 50 000 rows/s", f"{rate:.0f} rows/s", rate >= 50000),
        ("CSV import < 200 MiB RSS", f"{peak} MiB peak", peak < 200),
        (f"startup < 1 s with {resources} resources stored", f"{large_startup_ms} ms", large_startup_ms < 1000),
        ("idle RSS < 50 MiB with them", f"{large_rss / 1024:.1f} MiB", large_rss < 50 * 1024),
    ]
lines += ["**Targets** (docs/performance.md explains each miss):", "", "| target | this run | |", "|---|---|---|"]
lines += [f"| {name} | {value} | {verdict(met)} |" for name, value, met in targets]
lines.append("")

marker_start = "<!-- bench:start -->"
marker_end = "<!-- bench:end -->"
block = marker_start + "\n" + "\n".join(lines) + marker_end
if os.path.exists(out):
    existing = open(out).read()
    if marker_start in existing:
        before = existing.split(marker_start)[0]
        after = existing.split(marker_end, 1)[1]
        open(out, "w").write(before + block + after)
        sys.exit(0)
os.makedirs(os.path.dirname(out), exist_ok=True)
open(out, "w").write("# Performance\n\n" + block + "\n")
