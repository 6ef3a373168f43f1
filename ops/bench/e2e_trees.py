"""The machines' trees for ops/bench/e2e.py: what an image puts on a
machine, and whether it is there yet.

The end-to-end benchmark's *files in place* time is when the last path a
change touches has the new image's type, size and mtime (a symlink: its
target). [`watch_files`] polls the trees until that holds, cheaply (each
look starts where the last stopped, since a path found in place stays
so), and then takes the latest ctime among those paths: the moment the
last one was renamed into place, which the pace of the polling does not
change.
"""

import os
import stat
import subprocess
import threading
import time

# How often the machines' trees are looked at.
POLL_INTERVAL = 0.05
# Set when the driver is stopping: the threads polling the trees end.
STOPPING = threading.Event()


class Entry:
    """A non-directory path of an image, as the machine should have it."""

    __slots__ = ("path", "kind", "size", "mtime_ns", "target", "ino")

    def __init__(self, path, st, target=None):
        self.path = path
        self.kind = "symlink" if stat.S_ISLNK(st.st_mode) else "file"
        self.size = st.st_size
        self.mtime_ns = st.st_mtime_ns
        self.target = target
        self.ino = st.st_ino


def tree(root):
    """Every regular file and symlink under `root`, sorted by path."""
    root = os.path.realpath(root)
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]):
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            rel = os.path.relpath(full, root)
            if stat.S_ISLNK(st.st_mode):
                out.append(Entry(rel, st, os.readlink(full)))
            elif stat.S_ISREG(st.st_mode):
                out.append(Entry(rel, st))
    return out


def changed(old, new):
    """The entries of `new` that `old` lacks or holds otherwise. The
    corpora's second versions are hard-linked copies, so a path that kept
    its inode kept its content."""
    before = {e.path: e for e in old}
    out = []
    for e in new:
        o = before.get(e.path)
        if o is None or o.kind != e.kind or o.ino != e.ino or o.target != e.target:
            out.append(e)
    return out


def in_place(root, e):
    """The lstat of `e` on the machine when it is as the image has it."""
    try:
        st = os.lstat(os.path.join(root, e.path))
    except OSError:
        return None
    if e.kind == "symlink":
        if not stat.S_ISLNK(st.st_mode):
            return None
        try:
            return st if os.readlink(os.path.join(root, e.path)) == e.target else None
        except OSError:
            return None
    ok = stat.S_ISREG(st.st_mode) and st.st_size == e.size and st.st_mtime_ns == e.mtime_ns
    return st if ok else None


class FileWatch:
    """One machine's paths to see in place, looked at in order: a path found
    in place stays so, so each look starts where the last one stopped."""

    def __init__(self, host, root, entries):
        self.host, self.root, self.entries = host, root, entries
        self.cursor = 0
        self.seen = None     # when the last path was found in place
        self.landed = None   # the latest ctime among them (wall clock)

    def advance(self):
        while self.cursor < len(self.entries) and in_place(self.root, self.entries[self.cursor]):
            self.cursor += 1
        if self.cursor < len(self.entries):
            return False
        self.seen = time.time()
        latest = 0
        for e in self.entries:
            st = in_place(self.root, e)
            if st is None:  # changed again meanwhile: look once more
                self.cursor = 0
                self.seen = None
                return False
            latest = max(latest, st.st_ctime_ns)
        self.landed = latest / 1e9
        return True

    def missing(self):
        if self.cursor < len(self.entries):
            return self.entries[self.cursor].path
        return None


def watch_files(watches, deadline, stop):
    """Polls every machine until its paths are in place (runs on a thread)."""
    pending = [w for w in watches if w.entries]
    for w in watches:
        if not w.entries:
            w.seen = w.landed = time.time()
    while pending and time.time() < deadline and not (stop.is_set() or STOPPING.is_set()):
        pending = [w for w in pending if not w.advance()]
        if pending:
            time.sleep(POLL_INTERVAL)


def contents_match(root, source, entries):
    """Whether every regular file of `entries` on the machine has the
    content it has in `source` (checked after a case, not timed)."""
    for e in entries:
        if e.kind != "file":
            continue
        with open(os.path.join(root, e.path), "rb") as a, open(os.path.join(source, e.path), "rb") as b:
            while True:
                x, y = a.read(1 << 20), b.read(1 << 20)
                if x != y:
                    return False
                if not x:
                    break
    return True


def fs_type(path):
    out = subprocess.run(["findmnt", "-no", "FSTYPE", "-T", path], capture_output=True, text=True)
    lines = out.stdout.split()
    return lines[0] if lines else "?"
