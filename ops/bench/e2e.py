#!/usr/bin/env python3
"""End to end, as a user runs it: the real binaries, each in a process of
its own with its default flags, timed from the user's action to what the
user sees.

    e2e.py --server URL --bin DIR --bench DIR --work DIR [--fleet-dir DIR]
           [--trash DIR] [--cases b,c,a,d,e] [--agents N] [--timeout S]
           [--verbose]

ops/bench/run.sh starts a fresh nats-server and runs this once per run,
with the venv's python (nats-py). Here:

- images are added with `imagetool --server URL add NAME DIR "" ""`
  (sparse; not timed; `--hash-cache` in the work directory, so the user's
  own cache is left alone);
- `dominator --server URL` runs with its defaults (only `--http` is given,
  on a free port, when its default :6970 is taken; the line says so);
- each machine is `subd --server URL --hostname H --root DIR
  --service-command CMD --http ""`, with no tuning flag (case d adds
  `--rehash-interval 0`, which is the case); CMD appends its arguments to
  `services.log` in the work directory;
- the change is an MDB record published from here, as
  `nats pub dom.mdb.H '{"RequiredImage":"NAME"}'` would, once the
  machine has sent its first state report (and, when it starts on an
  image, is compliant with it and has stopped reading its disk).

Two times are taken from that publish:

- compliant: the first state report on `dom.state.H` saying the machine
  is compliant with the new image (`compliant`, and `image` and
  `desired_image` both the new image), what `domtool status` and the
  dominator's page show;
- files: every path the change touches has the new image's type, size and
  mtime (a symlink: its target). The tree is polled until they all do,
  and the time is the latest ctime among those paths (when the last was
  renamed into place), so the pace of the polling does not count.

Cases (the hosts are `e2e-b`, `e2e-c`, `e2e-a`, `e2e-e-000`...):

  b  debian-minbase deployed to an empty root
  c  synth deployed to an empty root
  a  a machine that held synth before its agent was installed (a copy of
     the tree; the agent measured the disk and hashed the tree once),
     compliant with synth and at rest, moved to synth-1pct
  d  its agent restarted with --rehash-interval 0 (full rehashes back to
     back), and the change published while one runs: synth-1pct to synth
  e  N agents (default 100), each its own process keeping a tree of its
     own (gen_synth.py --preset machine: 1,500 files, 20 MB, copied in
     beforehand), compliant with it and at rest; one MDB record each
     requires the version with 1% of the files changed; the time runs
     from the first publish to the last machine

a's machine is a copy of synth rather than c's deployed tree, so that
the case starts as an agent installed on a running machine does: from a
tree it learned by hashing it, not from files it wrote itself.

A case that does not finish within --timeout (300 s) is recorded as timed
out (complete=false) and the next case runs; getting a machine ready for
a case (the copy hashed, at rest) may take --setup-timeout (900 s).

Prints one line of key=value pairs per case, `case=` first, on stdout;
progress goes to stderr. Everything it starts is stopped when it ends or
is interrupted, and the machines' trees are removed (moved to --trash,
when given, for the caller to remove later).
"""

import asyncio
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from e2e_bus import Bus
from e2e_processes import (Processes, bench_arguments, free_port, http_ok, machine_busy, port_free,
                           read_bytes, say)
from e2e_trees import STOPPING, FileWatch, changed, contents_match, fs_type, tree, watch_files

DOMINATOR_HTTP_DEFAULT = 6970
# An agent reading less than this many bytes a second is at rest: its
# scans find every file in their hash cache. (Scans read at 2% of the
# disk's speed by default, 2 MiB/s where it could not be measured.)
QUIET_BYTES_PER_SECOND = 64 << 10
QUIET_WINDOW = 3.0
# How long the files may lag the compliant report before the check gives up.
FILES_GRACE = 10.0


# ------------------------------------------------------------------ helpers


def percentile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(q * (len(xs) - 1)))))]


def fmt(x):
    return "none" if x is None else f"{x:.3f}"


class Machine:
    """A machine of the benchmark: its host name and the root its agent keeps."""

    def __init__(self, host, root):
        self.host, self.root = host, root


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = args.work
        self.logs = os.path.join(self.work, "logs")
        self.roots = os.path.join(self.work, "machines")
        self.fleet_dir = args.fleet_dir or os.path.join(self.work, "fleet")
        self.procs = Processes(self.logs)
        self.bus = Bus()
        self.images = {}
        self.dominator_http = "default"
        self.service = os.path.join(self.work, "bin", "service")
        self.cases = set(args.cases.split(","))

    # ------------------------------------------------------------- setup

    def prepare(self):
        for d in (self.logs, self.roots, os.path.dirname(self.service)):
            os.makedirs(d, exist_ok=True)
        with open(self.service, "w") as f:
            f.write(f'#!/bin/sh\necho "$*" >> "{self.work}/services.log"\n')
        os.chmod(self.service, 0o755)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    def binary(self, name):
        return os.path.join(self.args.bin, name)

    def add_image(self, name, source):
        started = time.monotonic()
        out = subprocess.run(
            [self.binary("imagetool"), "--server", self.args.server, "add", name, source, "", "",
             "--hash-cache", os.path.join(self.work, "hash-cache")],
            capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"imagetool add {name} failed: {out.stderr.strip() or out.stdout.strip()}")
        self.images[name] = time.monotonic() - started
        say(f"added {name} in {self.images[name]:.1f} s")

    async def start_dominator(self):
        argv = [self.binary("dominator"), "--server", self.args.server]
        port = DOMINATOR_HTTP_DEFAULT
        if not port_free(port):
            port = free_port()
            argv += ["--http", f"127.0.0.1:{port}"]
            self.dominator_http = f"127.0.0.1:{port}"
            say(f"port {DOMINATOR_HTTP_DEFAULT} is taken: the dominator serves on 127.0.0.1:{port}")
        if self.args.verbose:
            argv.append("-v")
        self.procs.start("dominator", argv)
        deadline = time.monotonic() + 60
        while not await asyncio.to_thread(http_ok, f"http://127.0.0.1:{port}/healthz"):
            if not self.procs.alive("dominator") or time.monotonic() > deadline:
                raise SystemExit(f"the dominator did not become ready (log: {self.logs}/dominator.log)")
            await asyncio.sleep(0.1)

    def start_agent(self, m, extra=()):
        argv = [self.binary("subd"), "--server", self.args.server, "--hostname", m.host,
                "--root", m.root, "--service-command", self.service, "--http", "", *extra]
        if self.args.verbose:
            argv.append("-v")
        self.procs.start(m.host, argv)

    async def wait_first_reports(self, machines, timeout):
        hosts = [m.host for m in machines]
        ok = await self.bus.until(lambda: all(h in self.bus.first for h in hosts),
                                  time.time() + timeout)
        if not ok:
            late = [h for h in hosts if h not in self.bus.first]
            raise RuntimeError(f"no state report from {len(late)} agent(s), e.g. {late[0]}")

    async def settle(self, machines, limit):
        """Waits until the agents have stopped reading their disks; returns
        how long that took."""
        pids = [self.procs.pid(m.host) for m in machines]
        started = time.monotonic()
        before = read_bytes(pids)
        while time.monotonic() - started < limit:
            await asyncio.sleep(QUIET_WINDOW)
            now = read_bytes(pids)
            if now - before < QUIET_BYTES_PER_SECOND * QUIET_WINDOW * len(pids):
                return time.monotonic() - started
            before = now
        raise RuntimeError(f"the agents were still reading their disks after {limit:.0f} s")

    async def on_image(self, machines, image, limit):
        """Moves the machines to `image` (not timed) and waits until they
        report themselves compliant with it and are at rest."""
        hosts = [m.host for m in machines]
        self.bus.expect(hosts, image)
        start = await self.bus.require(hosts, image)
        if not await self.bus.until(lambda: all(h in self.bus.compliant for h in hosts),
                                    start + limit):
            late = [h for h in hosts if h not in self.bus.compliant]
            raise RuntimeError(f"{len(late)} machine(s) not compliant with {image} after {limit:.0f} s")
        await self.settle(machines, limit)

    # ------------------------------------------------------------- a change

    async def change(self, machines, image, entries, timeout):
        """Publishes the MDB records moving `machines` to `image` and times
        the state reports and the files. `entries`: host -> the paths to
        see in place."""
        hosts = [m.host for m in machines]
        watches = [FileWatch(m.host, m.root, entries[m.host]) for m in machines]
        self.bus.expect(hosts, image)
        os.sync()
        busy = machine_busy()
        stop = threading.Event()
        start = await self.bus.require(hosts, image)
        deadline = start + timeout
        files = asyncio.get_running_loop().run_in_executor(
            None, watch_files, watches, deadline, stop)
        complete = await self.bus.until(lambda: all(h in self.bus.compliant for h in hosts),
                                        deadline)
        try:
            grace = min(deadline, time.time() + FILES_GRACE) if complete else deadline
            await asyncio.wait_for(asyncio.shield(files), max(0.0, grace - time.time()))
        except asyncio.TimeoutError:
            pass
        finally:
            stop.set()
            await files
        busy = machine_busy() - busy
        out = {
            "start": start,
            "complete": complete,
            "compliant": {h: self.bus.compliant[h][0] - start for h in hosts if h in self.bus.compliant},
            "reports": {h: self.bus.compliant[h][1] for h in hosts if h in self.bus.compliant},
            "desired": {h: self.bus.desired[h] - start for h in hosts if h in self.bus.desired},
            "files": {w.host: max(0.0, w.landed - start) for w in watches if w.landed is not None},
            "files_seen": {w.host: w.seen - start for w in watches if w.seen is not None},
            "missing": [w.missing() for w in watches if w.landed is None],
            "busy_cpu": busy,
        }
        return out

    def line(self, case, result, timeout, **extra):
        """The case's key=value line."""
        compliant = list(result["compliant"].values())
        files = list(result["files"].values())
        complete = result["complete"]
        seconds = max(compliant) if complete else timeout
        fields = {
            "case": case,
            "seconds": f"{seconds:.3f}",
            "complete": "true" if complete else "false",
            "compliant": fmt(max(compliant)) if complete else "none",
            "files": fmt(max(files)) if files and not result["missing"] else "none",
            "files_seen": fmt(max(result["files_seen"].values())) if files and not result["missing"] else "none",
            "desired": fmt(max(result["desired"].values())) if result["desired"] else "none",
            "timeout": f"{timeout:g}",
        }
        if result["missing"]:
            fields["files_missing"] = result["missing"][0]
        reports = list(result["reports"].values())
        if len(reports) == 1:
            last = reports[0].get("last_update") or {}
            scan = reports[0].get("scan") or {}
            fields.update({
                "update_ms": last.get("duration_ms", "none"),
                "update_changed": last.get("changed", "none"),
                "fetched_objects": last.get("fetched_objects", "none"),
                "fetched_bytes": last.get("fetched_bytes", "none"),
                "scan_ms": scan.get("duration_ms", "none"),
                "full_scans": scan.get("full_scans", 0),
            })
        fields["busy_cpu"] = f"{result['busy_cpu']:.2f}"
        fields.update(extra)
        return " ".join(f"{k}={v}" for k, v in fields.items())

    def emit(self, line):
        print(line, flush=True)
        say(line)

    def media_speed(self, m):
        try:
            with open(os.path.join(m.root, ".subd", "media-speed")) as f:
                return f.read().strip()
        except OSError:
            return "default"

    # ------------------------------------------------------------- the cases

    async def empty_root_case(self, case, m, image, source, extra=()):
        """An agent on an empty root; its first image is deployed."""
        os.makedirs(m.root)
        self.start_agent(m, extra)
        await self.wait_first_reports([m], 60)
        entries = tree(source)
        result = await self.change([m], image, {m.host: entries}, self.args.timeout)
        return result, entries

    async def case_b(self):
        m = Machine("e2e-b", os.path.join(self.roots, "b"))
        result, entries = await self.empty_root_case(
            "b", m, "e2e.debian-minbase", self.corpus("debian-minbase"))
        self.emit(self.line("b", result, self.args.timeout, host=m.host, image="e2e.debian-minbase",
                            paths=len(entries), agents=1, machine_fs=fs_type(m.root),
                            media_speed=self.media_speed(m), rehash_interval="default",
                            dominator_http=self.dominator_http))
        self.procs.stop([m.host])

    async def case_c(self):
        m = Machine("e2e-c", os.path.join(self.roots, "c"))
        result, entries = await self.empty_root_case("c", m, "e2e.synth", self.corpus("synth"))
        self.emit(self.line("c", result, self.args.timeout, host=m.host, image="e2e.synth",
                            paths=len(entries), agents=1, machine_fs=fs_type(m.root),
                            media_speed=self.media_speed(m), rehash_interval="default",
                            dominator_http=self.dominator_http))
        self.procs.stop([m.host])

    async def machine_a(self):
        """Cases a and d, on a machine that held synth before its agent was
        installed: a copy of the tree, whose agent measured the disk."""
        m = Machine("e2e-a", os.path.join(self.roots, "a"))
        synth, synth_1pct = self.corpus("synth"), self.corpus("synth-1pct")
        say("a: copying synth into the machine; its agent hashes it once (not timed)")
        subprocess.run(["cp", "-a", synth, m.root], check=True)
        os.sync()
        self.start_agent(m)
        await self.wait_first_reports([m], 60)
        prepared = time.monotonic()
        await self.on_image([m], "e2e.synth", self.args.setup_timeout)
        ready = time.monotonic() - prepared
        old, new = tree(synth), tree(synth_1pct)
        forward, back = changed(old, new), changed(new, old)

        result = await self.change([m], "e2e.synth-1pct", {m.host: forward}, self.args.timeout)
        content = contents_match(m.root, synth_1pct, forward) if result["complete"] else "unchecked"
        if "a" in self.cases:
            self.emit(self.line("a", result, self.args.timeout, host=m.host, image="e2e.synth-1pct",
                                paths=len(forward), agents=1, machine_fs=fs_type(m.root),
                                media_speed=self.media_speed(m), rehash_interval="default",
                                ready_after=f"{ready:.1f}", content_ok=str(content).lower(),
                                dominator_http=self.dominator_http))
        if "d" not in self.cases:
            return
        if not result["complete"]:
            await self.bus.until(lambda: m.host in self.bus.compliant,
                                 result["start"] + self.args.setup_timeout)

        # d: a fresh agent that rehashes back to back.
        self.procs.stop([m.host])
        self.bus.forget([m.host])
        self.bus.expect([m.host], "e2e.synth-1pct")
        self.start_agent(m, ["--rehash-interval", "0"])
        await self.wait_first_reports([m], 60)
        if not await self.bus.until(lambda: m.host in self.bus.compliant,
                                    time.time() + self.args.setup_timeout):
            raise RuntimeError("the restarted agent of case d never reported itself compliant")
        pid = self.procs.pid(m.host)
        before, t = read_bytes([pid]), time.monotonic()
        await asyncio.sleep(2.0)
        rate = (read_bytes([pid]) - before) / (time.monotonic() - t)
        full_before = (self.bus.reports[m.host][1].get("scan") or {}).get("full_scans", 0)
        result = await self.change([m], "e2e.synth", {m.host: back}, self.args.timeout)
        content = contents_match(m.root, synth, back) if result["complete"] else "unchecked"
        self.emit(self.line("d", result, self.args.timeout, host=m.host, image="e2e.synth",
                            paths=len(back), agents=1, machine_fs=fs_type(m.root),
                            media_speed=self.media_speed(m), rehash_interval="0",
                            read_rate_before=int(rate), full_scans_before=full_before,
                            content_ok=str(content).lower(),
                            dominator_http=self.dominator_http))
        self.procs.stop([m.host])

    async def case_e(self, v1, v2):
        n = self.args.agents
        machines = [Machine(f"e2e-e-{i:03d}", os.path.join(self.fleet_dir, f"{i:03d}"))
                    for i in range(n)]
        os.makedirs(self.fleet_dir, exist_ok=True)
        say(f"e: copying the tree into {n} machines under {self.fleet_dir}")
        for m in machines:
            subprocess.run(["cp", "-a", v1, m.root], check=True)
        for m in machines:
            self.start_agent(m)
        await self.wait_first_reports(machines, 120)
        say(f"e: {n} agents reported; moving them onto e2e.machine (not timed)")
        await self.on_image(machines, "e2e.machine", self.args.setup_timeout)
        entries = changed(tree(v1), tree(v2))
        result = await self.change(machines, "e2e.machine-1pct",
                                   {m.host: entries for m in machines}, self.args.timeout)
        times = list(result["compliant"].values())
        extra = {}
        if times:
            extra = {"first": fmt(min(times)), "p50": fmt(statistics.median(times)),
                     "p90": fmt(percentile(times, 0.9))}
        self.emit(self.line("e", result, self.args.timeout, agents=n,
                            compliant_count=len(times), image="e2e.machine-1pct",
                            paths=len(entries), machine_fs=fs_type(self.fleet_dir),
                            media_speed=self.media_speed(machines[0]),
                            rehash_interval="default", max_concurrent="default",
                            dominator_http=self.dominator_http, **extra))
        self.procs.stop([m.host for m in machines], limit=30)

    def corpus(self, name):
        path = os.path.realpath(os.path.join(self.args.bench, name))
        if not os.path.isdir(path):
            raise SystemExit(f"corpus {name} is missing: {path} (ops/bench/corpora.sh makes it)")
        return path

    def machine_trees(self):
        """The two versions of the fleet's machine tree, made here."""
        trees = os.path.join(self.work, "trees")
        v1, v2 = os.path.join(trees, "machine"), os.path.join(trees, "machine-1pct")
        gen = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen_synth.py")
        os.makedirs(trees, exist_ok=True)
        run = lambda *a: subprocess.run([sys.executable, gen, "--preset", "machine", *a],
                                        check=True, stdout=subprocess.DEVNULL)
        run("generate", v1)
        subprocess.run(["cp", "-al", v1, v2], check=True)
        run("mutate", v2)
        return v1, v2

    async def run(self):
        self.prepare()
        await self.bus.connect(self.args.server)
        await self.start_dominator()
        if "b" in self.cases:
            self.add_image("e2e.debian-minbase", self.corpus("debian-minbase"))
        if {"a", "c", "d"} & self.cases:
            self.add_image("e2e.synth", self.corpus("synth"))
            self.add_image("e2e.synth-1pct", self.corpus("synth-1pct"))
        if "e" in self.cases:
            v1, v2 = self.machine_trees()
            self.add_image("e2e.machine", v1)
            self.add_image("e2e.machine-1pct", v2)
        steps = [("b", self.case_b, ()), ("c", self.case_c, ()), ("a", self.machine_a, ())]
        if "e" in self.cases:
            steps.append(("e", self.case_e, (v1, v2)))
        for name, step, args in steps:
            if name not in self.cases and not (name == "a" and "d" in self.cases):
                continue
            try:
                await step(*args)
            except RuntimeError as e:
                say(f"case {name}: {e}")
                print(f"case={name} seconds={self.args.timeout:g} complete=false error={json.dumps(str(e))}",
                      flush=True)
            self.procs.stop([n for n in list(self.procs.procs) if n != "dominator"])

    def cleanup(self):
        self.procs.stop()
        for path in (self.roots, self.fleet_dir, os.path.join(self.work, "trees")):
            if not os.path.exists(path):
                continue
            if self.args.trash and not path.startswith("/dev/shm/"):
                os.makedirs(self.args.trash, exist_ok=True)
                os.rename(path, tempfile.mkdtemp(dir=self.args.trash) + "/" + os.path.basename(path))
            else:
                shutil.rmtree(path, ignore_errors=True)


def main():
    ap = bench_arguments(__doc__, "imagetool, dominator and subd", "logs and machines")
    ap.add_argument("--fleet-dir", help="where case e's machines live (default: under --work)")
    ap.add_argument("--trash", help="move the trees here at the end instead of removing them")
    ap.add_argument("--cases", default="b,c,a,d,e")
    ap.add_argument("--agents", type=int, default=100)
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds a case may take")
    ap.add_argument("--setup-timeout", type=float, default=900.0,
                    help="seconds a machine may take to get ready for a case")
    ap.add_argument("--verbose", action="store_true", help="run the dominator and agents with -v")
    args = ap.parse_args()
    args.work = os.path.abspath(args.work)
    if args.fleet_dir:
        args.fleet_dir = os.path.abspath(args.fleet_dir)
    os.makedirs(args.work, exist_ok=True)
    bench = Bench(args)

    def stop(signum, _frame):
        STOPPING.set()
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        if signal.getsignal(sig) != signal.SIG_IGN:
            signal.signal(sig, stop)

    async def go():
        try:
            await bench.run()
        finally:
            await bench.bus.close()

    try:
        asyncio.run(go())
    finally:
        STOPPING.set()
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        bench.cleanup()


if __name__ == "__main__":
    main()
