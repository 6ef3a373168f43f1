"""How fast `imagetool find-latest-image` (and `list`) answer on an image
stream holding many images, with no index of their own.

    .tools/bin/python -B ops/bench/find_latest.py [--images 10000] [--runs 5]

Starts a fresh nats-server (JetStream on file storage), lets the real
release `imagetool` make the streams, then publishes IMAGES image records
straight onto `dom.image.<name>` as `imagetool add` would (nats-py; no
objects: neither command reads any), each about 1 kB: names under eight
release prefixes, tags, a build commit, a filter and a trigger, a tenth of
them expired, a tenth deleted afterwards. Then it runs, RUNS times each,
`imagetool find-latest-image` for one prefix with a tag, and `imagetool
list`, and prints each run's wall time (the process from start to exit,
connecting included) and the median. Subjects as in docs/EVENTS.md, with
the default prefix.
"""

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import nats

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PREFIXES = [f"{app}/{stage}/" for app in ("web", "db", "cache", "batch") for stage in ("prod", "qa")]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def record(i, now):
    prefix = PREFIXES[i % len(PREFIXES)]
    name = f"{prefix}{i:06d}"
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 10 * (10_000_000 - i)))
    r = {
        "v": 3,
        "name": name,
        "manifest": f"{i:0128x}",
        "sparse": False,
        "filter": ["/var/log/.*", "/tmp/.*", "/home/.*", "/etc/ssh/ssh_host_.*", "/var/lib/dhcp/.*"],
        "triggers": [{"MatchLines": ["/etc/nginx/.*", "/usr/sbin/nginx"], "Service": "nginx",
                      "DoReload": False, "DoReboot": False, "HighImpact": False, "SortName": ""}],
        "files": 5200 + i % 100,
        "bytes": 170_000_000 + i,
        "inodes": 7000 + i % 100,
        "created": created,
        "creator": "builder@ci.example.com",
        "tags": {"stage": prefix.split("/")[1], "team": prefix.split("/")[0],
                 "canary": "yes" if i % 3 == 0 else "no"},
        "build_commit_id": f"{i * 2654435761 % (1 << 40):010x}",
        "build_git_url": f"https://git.example.com/{prefix.split('/')[0]}.git",
    }
    if i % 10 == 1:
        r["expires"] = "2026-01-01T00:00:00Z"
        r["expires_unix"] = now - 3600
    return name, r


async def fill(url, images, now):
    nc = await nats.connect(url)
    js = nc.jetstream()
    pending = []
    for i in range(images):
        name, r = record(i, now)
        pending.append(js.publish(f"dom.image.{name}", json.dumps(r).encode()))
        if len(pending) == 256:
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)
    pending = []
    for i in range(5, images, 10):
        name, _ = record(i, now)
        tomb = {"v": 1, "name": name, "deleted": True, "deleted_at": "2026-12-07T00:00:00Z", "by": "ops@h"}
        pending.append(js.publish(f"dom.image.{name}", json.dumps(tomb).encode()))
    await asyncio.gather(*pending)
    info = await js.stream_info("DOM_IMAGES")
    await nc.close()
    return info.state.messages, info.state.bytes


def timed(cmd):
    start = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.monotonic() - start
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)}: {out.stderr.strip()}")
    return elapsed, out.stdout


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=10_000)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--imagetool", default=os.path.join(ROOT, "target/release/imagetool"))
    p.add_argument("--nats-server", default=os.environ.get("NATS_SERVER", os.path.join(ROOT, ".tools/bin/nats-server")))
    args = p.parse_args()
    store = tempfile.mkdtemp(prefix="find-latest-bench.")
    port = free_port()
    server = subprocess.Popen([args.nats_server, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", store],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"nats://127.0.0.1:{port}"
        base = [args.imagetool, "--server", url, "--quiet"]
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        timed(base + ["list"])  # makes the streams
        now = int(time.time())
        started = time.monotonic()
        messages, size = asyncio.run(fill(url, args.images, now))
        print(f"{args.images} images published in {time.monotonic() - started:.1f} s: "
              f"{messages} messages, {size / 1e6:.1f} MB in DOM_IMAGES")
        # The newest live web/prod/ image tagged canary=yes: the last i
        # below IMAGES with i % 8 == 0 (web/prod/), i % 3 == 0, not expired
        # or deleted.
        expected = max(i for i in range(args.images)
                       if i % 8 == 0 and i % 3 == 0 and i % 10 not in (1, 5))
        cases = [
            ("find-latest-image web/prod/ -tagsToMatch canary=yes",
             ["find-latest-image", "web/prod/", "-tagsToMatch", "canary=yes"]),
            ("list", ["list"]),
        ]
        for label, cmd in cases:
            times = []
            for _ in range(args.runs):
                elapsed, out = timed(base + cmd)
                times.append(elapsed)
            if cmd[0] == "find-latest-image":
                assert out.strip() == record(expected, now)[0], out
                print(f"  answer: {out.strip()} (checked)")
            else:
                print(f"  listed {len(out.splitlines())} live images")
            runs = ", ".join(f"{t:.3f}" for t in times)
            print(f"{label}: {runs} s; median {statistics.median(times):.3f} s")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(store, ignore_errors=True)


if __name__ == "__main__":
    main()
