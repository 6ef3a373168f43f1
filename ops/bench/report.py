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
  corpus e2e, kind a..e: value = seconds to compliant (the timeout when the
       case timed out), extra = the line of ops/bench/e2e.py
  corpus pipeline, kind adds, copy, tar, ...: value = seconds, extra = the
       line of ops/bench/pipeline.py
  corpus synth, kind rsynccopy, ostreepull: value = seconds (first rsync -a
       of synth, ostree pull-local --untrusted of it), cpu and busy as above
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
STANDBY_TARGET = 5.0         # "takes over within a few seconds"
CLUSTER_RATIO = 1.5          # on a 3-server R3 cluster, within 1.5x of one server
PROJECTION_MACHINES = 100000  # the dominator targets' size:
PROJECTION_TARGET = 10.0     # 100,000 desired states published in < 10 s
PROJECTION_MEMORY = 1e9      # with the dominator's memory < 1 GB
# End to end: (case, what, target in seconds; None for d, judged against a).
E2E_CASES = [
    ("a", "a machine on synth (compliant, at rest) → synth-1pct", 0.5),
    ("b", "debian-minbase, first deploy to an empty root", 3.0),
    ("c", "synth, first deploy to an empty root", 5.0),
    ("d", "case a during a full rehash (synth-1pct → synth)", None),
    ("e", "N agents, one MDB change for all", 5.0),
]
E2E_D_MARGIN = 0.2           # d within 0.2 s of a
E2E_AGENTS = 100             # the target of e is for 100 agents
# The Go Dominator, measured earlier on this machine with its defaults.
GO_DOMINATOR = {"a": "3.9 s files in place, 8.7 s synced", "c": "21–51 s"}


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
    cluster = extra[("fleet", "agents-cluster")][-1:]
    standby = extra[("fleet", "standby")][-1:]
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
    if agents and cluster:
        single, f = float(fields(agents[0])["seconds"]), fields(cluster[0])
        n, secs = int(f["agents"]), float(f["seconds"])
        ratio = secs / single if single else float("inf")
        w(f"| the same on a 3-server cluster, R3 streams | {secs:.2f} s ({ratio:.2f}× one server) "
          f"| < {CLUSTER_RATIO:g}× | {verdict(f.get('complete') == 'true' and ratio < CLUSTER_RATIO)} |")
    if standby:
        f = fields(standby[0])
        w(f"| a standby dominator: active one killed → an MDB change made then published by "
          f"the standby (median of {f['runs'].count(',') + 1}: {f['runs']} s) | {float(f['seconds']):.2f} s "
          f"| < {STANDBY_TARGET:g} s | {verdict(float(f['seconds']) < STANDBY_TARGET)} |")
        if "stopped_seconds" in f:
            w(f"| the same, the active one stopped with SIGTERM (median of "
              f"{f['stopped_runs'].count(',') + 1}: {f['stopped_runs']} s) "
              f"| {float(f['stopped_seconds']):.2f} s | — | |")
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


# The release pipeline's commands (ops/bench/pipeline.py): case, command,
# what it does, and the case it is compared with.
PIPELINE_CASES = [
    ("adds", "`imagetool adds golden.0 golden`",
     "a machine captured through its agent, into an empty bucket", "rsync"),
    ("readds", "`imagetool adds golden.1 golden`", "the same machine again, unchanged", None),
    ("rsync", "`rsync -a golden/ copy/`", "for comparison: copying the machine's tree", None),
    ("add", "`imagetool add`", "the tree, with an empty hash cache", None),
    ("copy", "`imagetool copy OLD NEW`", "a promotion", None),
    ("addi", "`imagetool addi NEW OLD overlay.tar`", "10 new files (10 MiB) laid over", None),
    ("addrep", "`imagetool addrep NEW OLD fixes.tar`", "10 files replaced (10 MiB)", None),
    ("tar", "`imagetool tar NAME out.tar.gz`", "the image as a compressed archive", "gnutar"),
    ("gnutar", "`tar -czf out.tar.gz -C tree .`", "for comparison: GNU tar and gzip", None),
    ("addtar", "`imagetool add NAME out.tar.gz`", "that archive added back (same manifest id)",
     None),
    ("diff", "`imagetool diff NAME tree/`", "the image against its source (hash cache warm)", None),
    ("getfile", "`imagetool get-file-in-image`", "the image's largest file", None),
    ("estimate", "`imagetool estimate-usage NAME`", "the space a machine needs for it", None),
    ("findlatest", "`imagetool find-latest-image web/prod/ -tagsToMatch canary=yes`",
     "among N images", None),
    ("list", "`imagetool list`", "among N images", None),
]
FIND_LATEST_TARGET = 1.0     # "well under a second for 10,000 images"


def pipeline_section(w, extra, corpus):
    runs = {case: [fields(line) for line in extra[("pipeline", case)]]
            for case, _, _, _ in PIPELINE_CASES}
    if not any(runs.values()):
        return
    seconds = {case: [float(r["seconds"]) for r in rs] for case, rs in runs.items()}
    w("## Release pipeline commands, as a release engineer runs them\n")
    w("The release `imagetool` and `subd` with their default flags against a fresh "
      "nats-server, each command timed from process start to exit "
      f"(`ops/bench/pipeline.py`), on {corpus}. The capture comes first, into an "
      "empty bucket, from an agent that has made its first scan of a copy of the "
      "corpus; the images have a filter; the hash cache starts empty.\n")
    w("| command | what | time | objects uploaded | against |")
    w("|---|---|---:|---:|---|")
    for case, command, what, peer in PIPELINE_CASES:
        if not runs[case]:
            continue
        last = runs[case][-1]
        if "images" in last:
            what = what.replace("N images", f"{int(last['images']):,} images "
                                f"({int(last['messages']):,} messages)")
            if case == "findlatest":
                ok = median(seconds[case]) < FIND_LATEST_TARGET
                what += f"; target < {FIND_LATEST_TARGET:g} s: {verdict(ok)}"
        if "bytes" in last:
            what += f"; {mb(int(last['bytes']))}"
        against = "—"
        if peer and seconds.get(peer):
            ratio = median(seconds[case]) / median(seconds[peer])
            against = f"{ratio:.2f}× {peer}"
        w(f"| {command} | {what} | {spread(seconds[case])} | {last.get('uploaded', '—')} "
          f"| {against} |")
    w("")


def spread(xs):
    """Median and range of some seconds: `4.20 s (3.90–4.50)`."""
    if not xs:
        return None
    m = median(xs)
    if len(xs) == 1:
        return f"{m:.2f} s"
    return f"{m:.2f} s ({min(xs):.2f}–{max(xs):.2f})"


def e2e_cell(values, timeouts, limit):
    """The results of the runs of one case: the median and range of those
    that finished, and how many timed out."""
    done = spread(values)
    if not timeouts:
        return done or "—"
    out = f"> {limit:g} s (timed out)" if not values else done
    if values or timeouts > 1:
        out += f"; {timeouts} of {timeouts + len(values)} runs timed out"
    return out


def e2e_section(w, times, extra):
    runs = {case: [fields(line) for line in extra[("e2e", case)]] for case, _, _ in E2E_CASES}
    if not any(runs.values()):
        return

    def measure(case, key):
        """The runs' values of `key`, and how many runs have none (timed
        out: the files may be in place in a run whose report was not)."""
        done = [r for r in runs[case] if r.get(key, "none") not in ("none", "")]
        values = [float(r[key]) for r in done]
        return values, len(runs[case]) - len(done)

    w("## End to end, as a user runs it\n")
    w("nats-server, `imagetool`, `dominator` and every `subd` in processes of their own, "
      "with their default flags (`ops/bench/e2e.py`). The change is an MDB record "
      "published from outside (`dom.mdb.HOST {\"RequiredImage\": \"NAME\"}`) once the "
      "machine has reported (and, when it is on an image, is compliant with it and has "
      "stopped reading its disk). *Compliant*: from the publish to the first state report "
      "on `dom.state.HOST` saying compliant with the new image (`image` and "
      "`desired_image` both the new image). *Files in place*: to the moment the last "
      "path the change touches had the new image's size and mtime (its ctime), found by "
      "polling the tree. A case gets "
      f"{_first(runs, 'timeout', '300')} s. Images are sparse; their adds are not timed.\n")
    w("| case | what | target | compliant | files in place | target met (compliant / files) "
      "| Go Dominator (its defaults, this machine) |")
    w("|---|---|---|---:|---:|---|---|")
    a_comp, _ = measure("a", "compliant")
    a_files, _ = measure("a", "files")
    for case, what, target in E2E_CASES:
        if not runs[case]:
            continue
        limit = float(runs[case][-1].get("timeout", 300))
        comp, comp_out = measure(case, "compliant")
        files, files_out = measure(case, "files")
        if case == "e":
            n = int(runs[case][-1].get("agents", E2E_AGENTS))
            what = what.replace("N agents", f"{n:,} agents in separate processes")
        if target is None:
            target_cell = f"within {E2E_D_MARGIN:g} s of a"

            def ok(xs, out, base):
                if out or not xs or not base:
                    return "missed" if out or not xs else "—"
                gap = median(xs) - median(base)
                return f"{verdict(gap <= E2E_D_MARGIN)} ({gap:+.2f} s)"
            met = f"{ok(comp, comp_out, a_comp)} / {ok(files, files_out, a_files)}"
        else:
            target_cell = f"< {target:g} s"

            def ok(xs, out):
                return verdict(not out and bool(xs) and median(xs) < target)
            met = f"{ok(comp, comp_out)} / {ok(files, files_out)}"
            if case == "e" and n != E2E_AGENTS:
                met = f"— (the target is for {E2E_AGENTS})"
        w(f"| {case} | {what} | {target_cell} | {e2e_cell(comp, comp_out, limit)} "
          f"| {e2e_cell(files, files_out, limit)} | {met} | {GO_DOMINATOR.get(case, '—')} |")
    w("")

    comparisons = [
        ("a", "`rsync -a --delete --checksum synth-1pct/ machine/` into a copy of synth",
         times[("synth", "rsync")]),
        ("c", "`rsync -a synth/ empty/`: a first copy", times[("synth", "rsynccopy")]),
        ("c", "`ostree pull-local --untrusted` from a repository holding synth into a fresh "
         "one (bare-user, ostree's defaults): every object copied and verified again",
         times[("synth", "ostreepull")]),
    ]
    if any(t for _, _, t in comparisons):
        w("Without an agent, for comparison (median and range of the runs):\n")
        w("| case | what | time |")
        w("|---|---|---:|")
        for case, what, ts in comparisons:
            if ts:
                w(f"| {case} | {what} | {spread(ts)} |")
        w("")

    last = {case: rs[-1] for case, rs in runs.items() if rs}
    notes = []
    http = _first(runs, "dominator_http", "default")
    notes.append("the dominator with its defaults (`--max-concurrent 10`)"
                 + ("" if http == "default" else
                    f", serving on `{http}` because its default port was taken"))
    notes.append("each agent with its default flags and `--http \"\"` (no status page), "
                 "its service command a script that logs its arguments")
    if "d" in last:
        notes.append("case d's agent with `--rehash-interval 0` (one full rehash after "
                     "another), restarted on the machine of a, and the change published "
                     "while it read "
                     f"{int(last['d'].get('read_rate_before', 0)) / 1e6:.1f} MB/s")
    if "e" in last:
        notes.append(f"case e's machines (each its own copy of a 1,500-file, 20 MB tree) on "
                     f"{last['e'].get('machine_fs', '?')}, the others' on "
                     f"{last.get('a', last.get('b', {})).get('machine_fs', '?')}")
    speeds = {case: r.get("media_speed") for case, r in last.items() if r.get("media_speed")}
    if speeds:
        notes.append("the disk speed each agent's 2% is of: " + ", ".join(
            f"{c}: " + ("the default, 100 MiB/s (too little to measure)" if v == "default"
                        else f"{int(v) / 1e6:,.0f} MB/s (measured)")
            for c, v in sorted(speeds.items())))
    w("Settings: " + "; ".join(notes) + ".\n")
    w("Driver lines (last run):\n")
    w("```")
    for case, _, _ in E2E_CASES:
        if case in last:
            w(" ".join(f"{k}={v}" for k, v in last[case].items()))
    w("```\n")


def _first(runs, key, default):
    for rs in runs.values():
        for r in rs:
            if key in r:
                return r[key]
    return default


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
    pipeline_section(w, extra, os.environ.get("M_PIPELINE_CORPUS", "debian-minbase"))
    e2e_section(w, times, extra)

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
             "rsync": "rsync --checksum synth → synth-1pct",
             "rsynccopy": "rsync -a synth into an empty directory",
             "ostreepull": "ostree pull-local --untrusted of synth"}
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
