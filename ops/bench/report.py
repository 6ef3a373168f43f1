#!/usr/bin/env python3
"""Render the benchmark measurements (results.tsv from run.sh) as markdown.

Input rows: corpus <TAB> kind <TAB> run <TAB> value <TAB> extra <TAB> cpu <TAB> busy
  kind corpus:    value = regular files, extra = regular-file bytes
  kind sha512sum, ostree, imagetool, readd: value = seconds
       (ostree extra = repo bytes; imagetool/readd extra = summary line;
       cpu = user + system seconds, for imagetool including nats-server;
       busy = CPU seconds the whole machine was busy during the run)
  kind natsstore: value = JetStream store bytes after the run
  kind servercpu-imagetool, servercpu-readd: value = nats-server CPU seconds
  corpus fleet, kind agents, dominator: value = seconds, extra = the driver's
       key=value line (fleet-bench, dominator-bench), cpu and busy as above
Machine facts come from M_* environment variables.
"""

import collections
import os
import re
import statistics
import sys

ADD_TARGET = 0.80     # first add throughput >= 0.8x parallel sha512sum
READD_TARGET = 0.15   # re-add time < 15% of first add time
SCAN_TARGET = 0.90    # agent full scan >= 0.9x parallel sha512sum
FLEET_AGENTS = 1000          # the fleet target's size:
FLEET_TARGET = 10.0          # 1,000 agents compliant in < 10 s
PROJECTION_MACHINES = 100000  # the dominator targets' size:
PROJECTION_TARGET = 10.0     # 100,000 desired states published in < 10 s
PROJECTION_MEMORY = 1e9      # with the dominator's memory < 1 GB


def mb(n):
    return f"{n / 1e6:,.1f} MB"


def median(xs):
    return statistics.median(xs) if xs else None


def cell(secs, nbytes):
    if secs is None:
        return "—"
    rate = nbytes / 1e6 / secs if secs > 0 else float("inf")
    return f"{secs:.2f} s · {rate:,.0f} MB/s"


def verdict(ok):
    return "met" if ok else "missed"


def parse_summary(line):
    up = re.search(r"(\d+) objects? uploaded(?: \(([^)]*)\))?", line)
    have = re.search(r"(\d+) already stored", line)
    return (up.group(1) if up else "?", (up.group(2) or "") if up else "",
            have.group(1) if have else "?")


def fields(line):
    """The key=value pairs of a driver's line."""
    return dict(kv.split("=", 1) for kv in line.split() if "=" in kv)


def fleet_verdict(size, wanted, ok):
    if size != wanted:
        return f"— (the target is for {wanted:,})"
    return verdict(ok)


def fleet_section(w, times, extra, cpu, other, server):
    agents = extra[("fleet", "agents")][-1:]
    dom = extra[("fleet", "dominator")][-1:]
    if not agents and not dom:
        return
    w("## Fleet (one run each)\n")
    w("Agents: N agents and the dominator in one process, each agent keeping a "
      "small tree of its own; one MDB record per machine requires the user "
      "guide's image, and the time is taken until every agent reports itself "
      "compliant with it. Dominator: alone, in a process of its own, with N "
      "machines in the MDB and made-up state reports compliant with image A; "
      "one MDB record per machine then requires image B, and the time is taken "
      "until the dominator has published N desired states for B. Both may "
      "update the whole fleet at once (rollout cap = N).\n")
    w("| measurement | result | target | |")
    w("|---|---:|---|---|")
    if agents:
        f = fields(agents[0])
        n, secs = int(f["agents"]), float(f["seconds"])
        complete = f.get("complete") == "true"
        result = (f"{secs:.2f} s" if complete
                  else f"{int(f['compliant']):,} of {n:,} after {secs:.0f} s")
        w(f"| {n:,} agents in one process: MDB change → all compliant | {result} "
          f"| < {FLEET_TARGET:.0f} s | "
          f"{fleet_verdict(n, FLEET_AGENTS, complete and secs < FLEET_TARGET)} |")
    if dom:
        f = fields(dom[0])
        n, secs, peak = int(f["machines"]), float(f["seconds"]), int(f["rss_peak"])
        w(f"| dominator, {n:,} machines: image change → all desired states published "
          f"| {secs:.2f} s | < {PROJECTION_TARGET:.0f} s "
          f"| {fleet_verdict(n, PROJECTION_MACHINES, secs < PROJECTION_TARGET)} |")
        w(f"| dominator, {n:,} machines: peak memory (resident) | {mb(peak)} "
          f"| < {PROJECTION_MEMORY / 1e9:g} GB "
          f"| {fleet_verdict(n, PROJECTION_MACHINES, peak < PROJECTION_MEMORY)} |")
    w("")

    def run_cells(kind):
        wall = times[("fleet", kind)]
        used = cpu[("fleet", kind)][-1:]
        srv = server[("fleet", kind)][-1:]
        rest = other[("fleet", kind)][-1:]
        used_cell = "?" if not used or used[0] is None else f"{used[0]:.1f}"
        if srv and used_cell != "?":
            used_cell += f" [{srv[0]:.1f}]"
        rest_cell = "?" if not rest or rest[0] is None else f"{rest[0]:.1f}"
        return f"{used_cell} | {rest_cell}"

    if agents:
        f = fields(agents[0])
        w("Agents, from the first MDB publish: when the first, the median, the "
          "90th-percentile and the last machine reported itself compliant; the "
          "CPU seconds the process (agents, dominator, driver) and the whole "
          "machine used meanwhile; the CPU the agents use at rest, in cores; the "
          "process's peaks. The run's CPU seconds cover the whole run, startup "
          "included, with the nats-server's share in brackets; other CPU is "
          "everything else on the machine meanwhile.\n")
        w("| agents | MDB publishes | first | p50 | p90 | last | CPU: process / machine "
          "| at rest | peak memory | peak threads | peak open files | run CPU s | other CPU s |")
        w("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        w(f"| {int(f['agents']):,} | {float(f['mdb_publish']):.2f} s | {float(f['first']):.2f} s "
          f"| {float(f['p50']):.2f} s | {float(f['p90']):.2f} s | {float(f['seconds']):.2f} s "
          f"| {float(f['cpu']):.1f} / {float(f['machine_cpu']):.1f} s "
          f"| {float(f['idle_cpu']):.2f} | {mb(int(f['rss_peak']))} | {int(f['threads_peak']):,} "
          f"| {int(f['files_peak']):,} | {run_cells('agents')} |")
        w(f"\nScans: {f['scan_threads']} thread(s) each, {int(f['scan_interval_ms']) / 1000:g} s "
          f"apart; image `{f['image']}`: {f['image_files']} files, {f['image_inodes']} inodes; "
          f"the machines' trees and state directories on {f.get('machines_fs', 'the disk')}.\n")
    if dom:
        f = fields(dom[0])
        w("Dominator: how long the MDB publishes of the change took, and how much "
          "longer the last desired state took; the dominator's CPU seconds "
          "meanwhile; its start (replaying the streams and publishing a desired "
          "state for A to every machine) and its resident memory: at rest after "
          "the start, at its peak during the start and during the change.\n")
        w("| machines | MDB publishes | after the last | dominator CPU | start "
          "| at rest | peak, start | peak, change | run CPU s | other CPU s |")
        w("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        w(f"| {int(f['machines']):,} | {float(f['mdb_publish']):.2f} s "
          f"| {float(f['after_mdb']):.2f} s | {float(f['cpu']):.1f} s "
          f"| {float(f['startup']):.2f} s | {mb(int(f['rss_idle']))} "
          f"| {mb(int(f['rss_startup_peak']))} | {mb(int(f['rss_change_peak']))} "
          f"| {run_cells('dominator')} |")
        w("")
    w("Driver lines:\n")
    w("```")
    for line in agents + dom:
        w(line)
    w("```\n")


def main(path):
    corpora = []
    info = {}
    times = collections.defaultdict(list)
    extra = collections.defaultdict(list)
    cpu = collections.defaultdict(list)
    other = collections.defaultdict(list)
    server = collections.defaultdict(list)
    for line in open(path):
        corpus, kind, run, value, rest, used, busy = line.rstrip("\n").split("\t", 6)
        if kind == "corpus":
            corpora.append(corpus)
            info[corpus] = (int(value), int(rest))
        elif kind == "natsstore":
            extra[(corpus, kind)].append(int(value))
        elif kind.startswith("servercpu-"):
            server[(corpus, kind.split("-", 1)[1])].append(float(value))
        else:
            times[(corpus, kind)].append(float(value))
            cpu[(corpus, kind)].append(float(used) if used else None)
            other[(corpus, kind)].append(
                max(0.0, float(busy) - float(used)) if used and busy else None)
            if rest:
                extra[(corpus, kind)].append(rest)

    runs = os.environ.get("RUNS", "?")
    env = os.environ.get
    out = []
    w = out.append
    w("## Machine\n")
    w("| | |")
    w("|---|---|")
    for label, key in [("CPU", "M_CPU"), ("cores", "M_CORES"), ("memory", "M_MEM"),
                       ("kernel", "M_KERNEL"), ("disk", "M_DISK"),
                       ("nats-server", "M_NATS"), ("ostree", "M_OSTREE"),
                       ("sha512sum", "M_COREUTILS"), ("rustc", "M_RUSTC"),
                       ("imagetool revision", "M_REV"), ("date", "M_DATE")]:
        w(f"| {label} | {env(key) or '?'} |")
    w("")

    w(f"## First add (warm page cache, median of {runs} runs)\n")
    w("Throughput is regular-file bytes (10^6 B = 1 MB) per second of wall time.\n")
    w("| corpus | files | size | sha512sum -P2 | ostree commit (bare-user) "
      f"| imagetool add | add vs sha512sum (target ≥ {ADD_TARGET:.2f}×) |")
    w("|---|---:|---:|---:|---:|---:|---|")
    for c in corpora:
        files, nbytes = info[c]
        sha = median(times[(c, "sha512sum")])
        ost = median(times[(c, "ostree")])
        add = median(times[(c, "imagetool")])
        if sha and add:
            ratio = sha / add
            rel = f"{ratio:.2f}× ({verdict(ratio >= ADD_TARGET)})"
        else:
            rel = "—"
        w(f"| {c} | {files:,} | {mb(nbytes)} | {cell(sha, nbytes)} | {cell(ost, nbytes)} "
          f"| {cell(add, nbytes)} | {rel} |")
    w("")

    scanned = [c for c in corpora if times[(c, "scan")]]
    if scanned:
        w(f"## Agent scan (median of {runs} runs)\n")
        w("One full scan as subd does it when it rehashes everything: every "
          "regular file read and hashed (SHA-512), no hash cache. Then one scan "
          "limited to a configured byte rate.\n")
        w(f"| corpus | sha512sum -P2 | subd full scan | scan vs sha512sum (target ≥ {SCAN_TARGET:.2f}×) "
          "| rate limit | achieved | within 10% |")
        w("|---|---:|---:|---|---:|---:|---|")
        for c in scanned:
            nbytes = info[c][1]
            sha = median(times[(c, "sha512sum")])
            scan = median(times[(c, "scan")])
            rel = f"{sha / scan:.2f}× ({verdict(sha / scan >= SCAN_TARGET)})" if sha else "—"
            limit = times[(c, "scanrate")]
            if limit:
                want_rate = float(extra[(c, "scanrate")][-1])
                got = limit[-1]
                ok = abs(got - want_rate) <= 0.1 * want_rate
                rate_cells = f"{want_rate / 1e6:.0f} MB/s | {got / 1e6:.1f} MB/s | {verdict(ok)}"
            else:
                rate_cells = "— | — | —"
            w(f"| {c} | {cell(sha, nbytes)} | {cell(scan, nbytes)} | {rel} | {rate_cells} |")
        w("")

    if times[("synth", "converge")]:
        w(f"## Converging a machine (median of {runs} runs)\n")
        w("A machine holding `synth` converges to the `synth-1pct` image. The agent "
          "has been running (its hash cache knows the tree): scan, plan, fetch the "
          "changed objects, update. rsync compares every byte of both trees "
          "(`rsync -a --delete --checksum synth-1pct/ machine/`). Fetch: every "
          "object of `synth` from the bucket into an empty object cache. Window: "
          "an update changing 1,000 files, the time its services are down.\n")
        conv = median(times[("synth", "converge")])
        rs = median(times[("synth", "rsync")])
        fetch = median(times[("synth", "fetch")])
        fetch_bytes = float(extra[("synth", "fetch")][-1]) if extra[("synth", "fetch")] else 0
        window = median(times[("synth", "window")])
        transition = median([float(t) for t in extra[("synth", "window")]]) if extra[("synth", "window")] else None
        verdict_rs = verdict(conv < rs) if rs else "—"
        w("| subd converge | rsync --checksum | converge vs rsync (target: faster) "
          "| fetch all of synth | 1,000-file update: tree changed in (target < 50 ms) | stop to start |")
        w("|---:|---:|---|---:|---:|---:|")
        w(f"| {conv:.2f} s | {rs:.2f} s | {rs / conv:.1f}× faster ({verdict_rs}) "
          f"| {fetch:.2f} s · {fetch_bytes / fetch / 1e6:.0f} MB/s "
          f"| {window * 1000:.1f} ms ({verdict(window < 0.050)}) "
          f"| {transition * 1000:.1f} ms |" if transition is not None else "| — |")
        steps = extra[("synth", "converge")][-1:]
        if steps:
            w("\nSteps of the last converge run (seconds): `" + steps[0] + "`\n")

    readd = [c for c in corpora if times[(c, "readd")]]
    if readd:
        w(f"## Re-add after a 1% change (median of {runs} runs)\n")
        w("`synth-1pct` is added under a new name into the server that already "
          "holds `synth`: first with the hash cache the first add filled, then "
          "again with `--no-hash-cache` (every byte read and hashed).\n")
        w("| corpus | first add | re-add | re-add / first add "
          f"(target < {READD_TARGET:.0%}) | objects uploaded | already stored "
          "| re-add, no cache |")
        w("|---|---:|---:|---|---:|---:|---:|")
        for c in readd:
            first = median(times[(c, "imagetool")])
            again = median(times[(c, "readd")])
            cold = median(times[(c, "readdcold")])
            ratio = again / first
            up, upbytes, have = parse_summary(extra[(c, "readd")][-1])
            up = f"{up} ({upbytes})" if upbytes else up
            cold = f"{cold:.2f} s ({cold / first:.0%})" if cold else "—"
            w(f"| {c} → {c}-1pct | {first:.2f} s | {again:.2f} s "
              f"| {ratio:.1%} ({verdict(ratio < READD_TARGET)}) | {up} | {have} | {cold} |")
        w("")

    if any(extra[(c, "ostree")] or extra[(c, "natsstore")] for c in corpora):
        w("## Space used after the first add\n")
        w("| corpus | regular files | ostree repo (bare-user) | JetStream store |")
        w("|---|---:|---:|---:|")
        for c in corpora:
            o = extra[(c, "ostree")]
            n = extra[(c, "natsstore")]
            w(f"| {c} | {mb(info[c][1])} | {mb(int(o[-1])) if o else '—'} "
              f"| {mb(n[0]) if n else '—'} |")
        w("")
        w("The JetStream store of the synth row also holds the synth-1pct re-add.\n")

    fleet_section(w, times, extra, cpu, other, server)

    w("## Every run\n")
    w("Wall-clock seconds of each run, in order; the CPU seconds (user + "
      "system) the run used, for imagetool including the nats-server (whose "
      "share is in brackets); and the "
      "CPU seconds used meanwhile by everything else on the machine (kernel "
      "write-back included). A large last column means the run competed "
      "for the CPUs.\n")
    w("| corpus | measurement | wall s | CPU s | other CPU s |")
    w("|---|---|---|---|---|")
    names = {"sha512sum": "sha512sum -P2", "ostree": "ostree commit",
             "imagetool": "imagetool add (first)", "readd": "imagetool re-add (1%)",
             "readdcold": "imagetool re-add (1%), no cache",
             "scan": "subd full scan", "converge": "subd converge synth → synth-1pct",
             "rsync": "rsync --checksum synth → synth-1pct"}
    for c in corpora:
        for kind, label in names.items():
            if times[(c, kind)]:
                walls = ", ".join(f"{t:.2f}" for t in times[(c, kind)])
                srv = server[(c, kind)] or [None] * len(cpu[(c, kind)])
                cpus = ", ".join(
                    "?" if u is None else f"{u:.2f}" + ("" if v is None else f" [{v:.2f}]")
                    for u, v in zip(cpu[(c, kind)], srv))
                rest = ", ".join("?" if u is None else f"{u:.2f}" for u in other[(c, kind)])
                w(f"| {c} | {label} | {walls} | {cpus} | {rest} |")
    summaries = [(c, k, s) for c in corpora for k in ("imagetool", "readd", "readdcold")
                 for s in extra[(c, k)][-1:]]
    if summaries:
        w("\nimagetool summary lines (last run):\n")
        w("```")
        for _, _, s in summaries:
            w(s)
        w("```")
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1])
