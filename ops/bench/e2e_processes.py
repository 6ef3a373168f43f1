"""The processes ops/bench/e2e.py starts, and what it reads about them and
the machine from /proc.

Each binary runs in a session of its own (a Ctrl-C in the terminal goes to
the driver, which stops them in order) and gets SIGTERM should the driver
die without stopping it.
"""

import argparse
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request


def say(*args):
    print("e2e:", *args, file=sys.stderr, flush=True)


def bench_arguments(doc, binaries, work):
    """The command line every driver shares: the server, the binaries
    (`binaries` names them), the corpora and a directory for `work`."""
    ap = argparse.ArgumentParser(description=doc,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", required=True, help="nats://HOST:PORT of a fresh server")
    ap.add_argument("--bin", required=True, help=f"where {binaries} are")
    ap.add_argument("--bench", required=True, help="the corpora (.bench)")
    ap.add_argument("--work", required=True, help=f"a directory for {work}")
    return ap


def _die_with_parent():
    # PR_SET_PDEATHSIG: a child outliving a killed driver gets SIGTERM.
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


class Processes:
    """Everything the driver started, by name; stopped in reverse order."""

    def __init__(self, logs):
        self.logs = logs
        self.procs = {}

    def start(self, name, argv):
        with open(os.path.join(self.logs, f"{name}.log"), "ab") as log:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_die_with_parent,
                env={**os.environ, "NO_COLOR": "1"})
        self.procs[name] = proc
        return proc

    def stop(self, names=None, limit=15.0):
        names = list(self.procs) if names is None else names
        procs = [(n, self.procs.pop(n)) for n in reversed(names) if n in self.procs]
        for _, p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + limit
        for name, p in procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                say(f"{name} did not stop in {limit:.0f} s; killing it")
                p.kill()
                p.wait()

    def alive(self, name):
        p = self.procs.get(name)
        return p is not None and p.poll() is None

    def pid(self, name):
        return self.procs[name].pid


def read_bytes(pids):
    """Bytes the processes have read so far (rchar)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/io") as f:
                for line in f:
                    if line.startswith("rchar:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def machine_busy():
    """CPU seconds all CPUs have been busy since boot."""
    hz = os.sysconf("SC_CLK_TCK")
    with open("/proc/stat") as f:
        v = f.readline().split()
    return sum(int(v[i]) for i in (1, 2, 3, 6, 7, 8)) / hz


def port_free(port):
    s = socket.socket()
    try:
        s.bind(("", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http_ok(url):
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200
    except Exception:
        return False
