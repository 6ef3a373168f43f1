"""A release pipeline's imagetool commands, as a release engineer runs
them: the real release binaries, their default flags, timed from process
start to exit, against a fresh nats-server.

    ops/bench/pipeline.py --server URL --bin target/release --bench .bench
        --work DIR [--corpus debian-minbase] [--images 10000]

Run by ops/bench/run.sh (BENCH_TOOLS containing `pipeline`) once per run.
Each case prints one line, `case=NAME seconds=S ...`:

  adds       the corpus captured from a machine holding a copy of it,
             through its agent (subd with its default flags and `--http
             ""`), after its first scan; the bucket is empty
  readds     the same capture again, nothing new to upload
  rsync      for comparison, `rsync -a` of that machine into an empty
             directory: the usual way to copy a golden machine
  add        the corpus added as a normal image (the hash cache, in a
             directory of the run's own, starts empty; the capture has
             stored most objects already)
  copy       the image promoted under another name (no object uploaded)
  addi       a 10-file archive (10 MiB, new content) laid over the image
  addrep     10 of the image's files replaced by an archive (new content)
  tar        the image written as a .tar.gz
  gnutar     for comparison, `tar -czf` of the directory (GNU tar, gzip)
  addtar     the image's .tar.gz added back (its manifest id is checked against
             the image's)
  diff       the image against the directory it was added from
  getfile    get-file-in-image of the image's largest file
  estimate   estimate-usage of the image
  findlatest find-latest-image of one prefix with a tag, on a stream
             holding IMAGES more images (ops/bench/find_latest.py's), a
             tenth expired and a tenth deleted
  list       `list` on that stream

Each line has `uploaded=` (objects the command reported uploading) where
the command uploads. Nothing is left running: the agent is stopped at the
end, and the work directory is the caller's to remove.
"""

import asyncio
import json
import os
import random
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import time

import nats

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import find_latest  # noqa: E402
from e2e_processes import Processes, bench_arguments  # noqa: E402

OVERLAY_FILES = 10
OVERLAY_BYTES = 1 << 20


def say(*args):
    print("pipeline:", *args, file=sys.stderr, flush=True)


class Pipeline:
    def __init__(self, args):
        self.args = args
        self.work = os.path.abspath(args.work)
        self.source = os.path.realpath(os.path.join(args.bench, args.corpus))
        self.env = {**os.environ, "NO_COLOR": "1",
                    "XDG_CACHE_HOME": os.path.join(self.work, "cache")}
        self.env.pop("IMAGETOOL_HASH_CACHE", None)
        os.makedirs(os.path.join(self.work, "logs"), exist_ok=True)
        self.procs = Processes(os.path.join(self.work, "logs"))

    def imagetool(self, *argv):
        """Runs imagetool with the default flags but --server; returns
        (seconds, stdout)."""
        cmd = [os.path.join(self.args.bin, "imagetool"), "--server", self.args.server, *argv]
        os.sync()  # the last command's write-back is not this one's
        start = time.monotonic()
        out = subprocess.run(cmd, capture_output=True, text=True, env=self.env)
        elapsed = time.monotonic() - start
        if out.returncode != 0:
            raise SystemExit(f"imagetool {' '.join(argv)}: exit {out.returncode}: "
                             f"{out.stderr.strip()}")
        return elapsed, out.stdout

    def report(self, case, seconds, out=None, **extra):
        fields = {"case": case, "seconds": f"{seconds:.3f}"}
        if out is not None:
            m = re.search(r"(\d+) objects uploaded", out)
            fields["uploaded"] = m.group(1) if m else "?"
        fields.update(extra)
        print(" ".join(f"{k}={v}" for k, v in fields.items()), flush=True)

    def manifest(self, name):
        """The manifest id in the image's record, read off its stream."""
        async def last():
            nc = await nats.connect(self.args.server)
            try:
                msg = await nc.jetstream().get_last_msg("DOM_IMAGES", f"dom.image.{name}")
                return json.loads(msg.data)["manifest"]
            finally:
                await nc.close()
        return asyncio.run(last())

    def archive(self, path, members):
        """Writes an uncompressed archive of (path, bytes) regular files."""
        with tarfile.open(path, "w") as tar:
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = 0o644
                info.mtime = int(time.time())
                tar.addfile(info, _Reader(data))

    def largest_files(self, n):
        """The n largest regular files the filter keeps in the image, hard
        links left out (addrep replaces a path, not an inode)."""
        with open(self.args.filter) as f:
            skip = [re.compile(line.strip()) for line in f if line.strip()]
        sizes = []
        for top, _, files in os.walk(self.source):
            for f in files:
                p = os.path.join(top, f)
                rel = os.path.relpath(p, self.source)
                if any(r.match("/" + rel) for r in skip):
                    continue
                st = os.lstat(p)
                if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
                    sizes.append((st.st_size, rel))
        sizes.sort(reverse=True)
        return [p for _, p in sizes[:n]]

    def run(self):
        # The capture first, while the bucket holds nothing: every object
        # comes from the machine.
        asyncio.run(self.capture())

        name = f"bench/qa/{self.args.corpus}"
        seconds, out = self.imagetool("add", name, self.source, self.args.filter, "")
        self.report("add", seconds, out)

        seconds, out = self.imagetool("copy", name, f"bench/prod/{self.args.corpus}")
        self.report("copy", seconds, out)

        rng = random.Random(20)
        overlay = os.path.join(self.work, "overlay.tar")
        self.archive(overlay, [(f"opt/release/file{i}", rng.randbytes(OVERLAY_BYTES))
                               for i in range(OVERLAY_FILES)])
        seconds, out = self.imagetool("addi", f"{name}.overlay", name, overlay,
                                      self.args.filter, "")
        self.report("addi", seconds, out, files=OVERLAY_FILES)

        replaced = self.largest_files(OVERLAY_FILES)
        fixes = os.path.join(self.work, "fixes.tar")
        self.archive(fixes, [(p, rng.randbytes(OVERLAY_BYTES)) for p in replaced])
        seconds, out = self.imagetool("addrep", f"{name}.fixed", name, fixes)
        self.report("addrep", seconds, out, files=OVERLAY_FILES)

        packed = os.path.join(self.work, "image.tar.gz")
        seconds, _ = self.imagetool("tar", name, packed)
        self.report("tar", seconds, bytes=os.path.getsize(packed))
        gnu = os.path.join(self.work, "gnu.tar.gz")
        seconds = self.timed(["tar", "-czf", gnu, "-C", self.source, "."])
        self.report("gnutar", seconds, bytes=os.path.getsize(gnu))
        os.remove(gnu)
        seconds, out = self.imagetool("add", f"{name}.from-tar", packed, self.args.filter, "")
        same = self.manifest(f"{name}.from-tar") == self.manifest(name)
        if not same:
            raise SystemExit("the image added back from its .tar.gz has another manifest id")
        self.report("addtar", seconds, out, same_manifest=same)
        os.remove(packed)

        seconds, out = self.imagetool("diff", name, self.source)
        if out.strip():
            raise SystemExit(f"diff of the image against its source printed: {out[:200]}")
        self.report("diff", seconds)

        target = os.path.join(self.work, "largest")
        seconds, _ = self.imagetool("get-file-in-image", name, "/" + replaced[0], target)
        self.report("getfile", seconds, bytes=os.path.getsize(target))
        os.remove(target)

        seconds, _ = self.imagetool("estimate-usage", name)
        self.report("estimate", seconds)

        seconds_fill, messages = asyncio.run(self.fill())
        say(f"{self.args.images} image records published in {seconds_fill:.1f} s")
        expected = max(i for i in range(self.args.images)
                       if i % 8 == 0 and i % 3 == 0 and i % 10 not in (1, 5))
        seconds, out = self.imagetool("find-latest-image", "web/prod/", "-tagsToMatch", "canary=yes")
        if out.strip() != find_latest.record(expected, self.now)[0]:
            raise SystemExit(f"find-latest-image answered {out.strip()!r}")
        self.report("findlatest", seconds, images=self.args.images, messages=messages)
        seconds, out = self.imagetool("list")
        self.report("list", seconds, listed=len(out.splitlines()), images=self.args.images,
                    messages=messages)

    def timed(self, cmd):
        os.sync()
        start = time.monotonic()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        return time.monotonic() - start

    async def capture(self):
        machine = os.path.join(self.work, "golden")
        subprocess.run(["cp", "-a", self.source, machine], check=True)
        service = os.path.join(self.work, "service-command")
        with open(service, "w") as f:
            f.write("#!/bin/sh\nexit 0\n")
        os.chmod(service, 0o755)
        nc = await nats.connect(self.args.server)
        scanned = asyncio.Event()

        async def state(msg):
            try:
                if json.loads(msg.data).get("generation", 0) > 0:
                    scanned.set()
            except ValueError:
                pass
        await nc.subscribe("dom.state.golden", cb=state)
        await nc.flush()
        self.procs.start("golden", [os.path.join(self.args.bin, "subd"),
                                    "--server", self.args.server, "--hostname", "golden",
                                    "--root", machine, "--service-command", service,
                                    "--http", ""])
        try:
            await asyncio.wait_for(scanned.wait(), 300)
            await nc.close()
            seconds, out = await asyncio.to_thread(self.imagetool, "adds", "golden.0", "golden")
            self.report("adds", seconds, out)
            seconds, out = await asyncio.to_thread(self.imagetool, "adds", "golden.1", "golden")
            self.report("readds", seconds, out)
            copy = os.path.join(self.work, "rsync-copy")
            seconds = await asyncio.to_thread(self.timed, ["rsync", "-a", machine + "/", copy + "/"])
            self.report("rsync", seconds)
            shutil.rmtree(copy, ignore_errors=True)
        finally:
            self.procs.stop()
            shutil.rmtree(machine, ignore_errors=True)

    async def fill(self):
        self.now = int(time.time())
        start = time.monotonic()
        messages, _ = await find_latest.fill(self.args.server, self.args.images, self.now)
        return time.monotonic() - start, messages


class _Reader:
    def __init__(self, data):
        self.data, self.at = data, 0

    def read(self, n=-1):
        n = len(self.data) - self.at if n < 0 else n
        chunk = self.data[self.at:self.at + n]
        self.at += len(chunk)
        return chunk


def main():
    ap = bench_arguments(__doc__, "imagetool and subd", "the run's files")
    ap.add_argument("--corpus", default="debian-minbase")
    ap.add_argument("--filter", default=os.path.join(os.path.dirname(__file__), "pipeline.filter"),
                    help="the images' filter file")
    ap.add_argument("--images", type=int, default=10_000)
    Pipeline(ap.parse_args()).run()


if __name__ == "__main__":
    main()
