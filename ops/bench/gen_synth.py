#!/usr/bin/env python3
"""Deterministic synthetic file tree for benchmarks (stdlib only).

    gen_synth.py generate OUT   # ~40,000 files, ~1 GB, see PARAMS
    gen_synth.py mutate DIR     # replace 1% of the files with changed copies
    gen_synth.py --preset machine generate OUT
                                # a smaller tree of the same shape (PRESETS):
                                # one machine of the end-to-end fleet

The same PARAMS always give byte-identical trees (content, modes, mtimes),
so results are comparable across machines and runs.

Shape of the tree:
  * file sizes are log-normal (median ~4 KiB), a few percent are empty, and
    a handful of large files are 10-50 MB;
  * ~20% of the files repeat the content of another file (duplicates);
  * ~40% of the small files are text-like (base64 lines, compressible), the
    rest random bytes;
  * nested directories of varying depth (up to 12), file counts per
    directory skewed toward a few busy directories;
  * ~10% of files are executable, a few hundred symlinks.
"""

import argparse
import base64
import json
import math
import os
import random
import sys

PARAMS = {
    "version": 2,
    "seed": 20261126,
    "files": 40_000,
    "target_bytes": 1_000_000_000,
    "large_files": 10,
    "large_min": 10_000_000,
    "large_max": 50_000_000,
    "small_median": 4096,
    "small_sigma": 1.7,
    "small_max": 4 * 1024 * 1024,
    "empty_fraction": 0.02,
    "duplicate_fraction": 0.20,
    "text_fraction": 0.40,
    "exec_fraction": 0.10,
    "dirs": 1_500,
    "max_depth": 12,
    "symlinks": 300,
    "mutate_fraction": 0.01,
}

# Smaller trees of the same shape. `machine`: 1,500 files, 20 MB, what each
# of the end-to-end benchmark's hundred agents keeps (ops/bench/e2e.py).
PRESETS = {
    "machine": {
        **PARAMS,
        "files": 1_500,
        "target_bytes": 20_000_000,
        "large_files": 2,
        "large_min": 1_000_000,
        "large_max": 4_000_000,
        "small_max": 1024 * 1024,
        "dirs": 80,
        "max_depth": 8,
        "symlinks": 12,
    },
}

WORDS = (
    "lib share src pkg data cache conf local include bin doc man python3 "
    "site-packages modules assets static templates vendor build dist tests "
    "fixtures locale icons fonts plugins drivers firmware certs keys config "
    "schema migrations http api core util common net crypto io"
).split()
EXTS = "so py txt conf json html css js png gz h c rs md xml yaml dat bin".split()
BASE_MTIME = 1_700_000_000
CHUNK = 4 * 1024 * 1024


def content(seed, n, text):
    """n bytes of deterministic content; text-like content compresses ~25%."""
    rng = random.Random(seed)
    if not text:
        return rng.randbytes(n)
    raw = base64.encodebytes(rng.randbytes(n * 3 // 4 + 3))
    return raw[:n]


def write_file(path, seed, size, text):
    with open(path, "wb") as f:
        if size <= CHUNK:
            f.write(content(seed, size, text))
        else:
            rng = random.Random(seed)
            left = size
            while left:
                n = min(CHUNK, left)
                f.write(rng.randbytes(n))
                left -= n


def plan(p):
    rng = random.Random(p["seed"])

    # Directory tree: each new directory hangs off an existing one.
    dirs = [""]
    depth = [0]
    for i in range(1, p["dirs"]):
        while True:
            # Bias toward recently made directories, which gives deep chains
            # as well as wide shallow levels.
            parent = int(len(dirs) * (1 - rng.random() ** 3)) % len(dirs)
            if rng.random() < 0.3:
                parent = rng.randrange(min(len(dirs), 20))
            if depth[parent] < p["max_depth"]:
                break
        name = f"{rng.choice(WORDS)}{i}"
        dirs.append(f"{dirs[parent]}/{name}" if dirs[parent] else name)
        depth.append(depth[parent] + 1)

    n = p["files"]
    files = []  # dicts: path, size, source (index of unique file), text, mode, mtime
    for i in range(n):
        d = dirs[int(len(dirs) * rng.random() ** 2)]
        name = f"{rng.choice(WORDS)}-{i}.{rng.choice(EXTS)}"
        files.append({
            "path": f"{d}/{name}" if d else name,
            "mode": 0o755 if rng.random() < p["exec_fraction"] else 0o644,
            "mtime": BASE_MTIME + rng.randrange(10_000_000),
            "text": rng.random() < p["text_fraction"],
        })

    # Sizes: a few large files, the rest log-normal (some empty).
    large = set(rng.sample(range(n), p["large_files"]))
    mu = math.log(p["small_median"])
    raw = []
    for i in range(n):
        if i in large:
            raw.append(float(rng.randrange(p["large_min"], p["large_max"])))
        elif rng.random() < p["empty_fraction"]:
            raw.append(0.0)
        else:
            raw.append(min(rng.lognormvariate(mu, p["small_sigma"]), p["small_max"]))

    # Duplicates: a fifth of the small files copy an earlier small file.
    small = [i for i in range(n) if i not in large]
    dup_of = {}
    for i in rng.sample(small, int(len(small) * p["duplicate_fraction"])):
        dup_of[i] = None
    uniques = [i for i in small if i not in dup_of]
    for i in sorted(dup_of):
        dup_of[i] = rng.choice(uniques)
    copies = {i: 1 for i in uniques}
    for src in dup_of.values():
        copies[src] += 1

    # Scale the small unique files so the whole tree is about target_bytes.
    large_bytes = sum(raw[i] for i in large)
    weighted = sum(raw[i] * copies[i] for i in uniques)
    k = max(0.0, (p["target_bytes"] - large_bytes) / weighted)
    for i in range(n):
        if i in large:
            files[i]["size"] = int(raw[i])
        elif i in dup_of:
            continue
        else:
            files[i]["size"] = min(int(raw[i] * k), p["small_max"]) if raw[i] else 0
        files[i]["seed"] = f"{p['seed']}:{i}"
    for i, src in dup_of.items():
        files[i]["size"] = files[src]["size"]
        files[i]["seed"] = files[src]["seed"]
        files[i]["text"] = files[src]["text"]

    symlinks = []
    for j in range(p["symlinks"]):
        f = files[rng.randrange(n)]
        d = dirs[rng.randrange(len(dirs))]
        name = f"link-{j}"
        symlinks.append((f"{d}/{name}" if d else name, "/" + f["path"]))
    return dirs, files, symlinks


def generate(out, p):
    if os.path.exists(out):
        sys.exit(f"{out} exists; remove it first")
    dirs, files, symlinks = plan(p)
    os.makedirs(out)
    for d in dirs[1:]:
        os.makedirs(os.path.join(out, d), exist_ok=True)
    total = 0
    for f in files:
        path = os.path.join(out, f["path"])
        write_file(path, f["seed"], f["size"], f["text"])
        os.chmod(path, f["mode"])
        os.utime(path, (f["mtime"], f["mtime"]))
        total += f["size"]
    for path, target in symlinks:
        os.symlink(target, os.path.join(out, path))
        os.utime(os.path.join(out, path), (BASE_MTIME, BASE_MTIME), follow_symlinks=False)
    for d in dirs:
        os.utime(os.path.join(out, d), (BASE_MTIME, BASE_MTIME))
    uniq = len({f["seed"] for f in files})
    uniq_bytes = sum({f["seed"]: f["size"] for f in files}.values())
    print(json.dumps({
        "tree": out, "files": len(files), "bytes": total,
        "unique_contents": uniq, "unique_bytes": uniq_bytes,
        "dirs": len(dirs), "symlinks": len(symlinks),
    }))


def regular_files(root):
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if os.path.isfile(path) and not os.path.islink(path):
                out.append(path)
    return out


def mutate(root, p):
    rng = random.Random(p["seed"] + 1)
    files = regular_files(root)
    chosen = rng.sample(files, max(1, round(len(files) * p["mutate_fraction"])))
    changed_bytes = 0
    for path in chosen:
        # As package managers and build tools do: write the new version
        # beside the old one and rename it over, so a hard-linked copy of
        # the tree keeps the original content.
        st = os.stat(path)
        with open(path, "rb") as f:
            data = bytearray(f.read())
        fresh = rng.randbytes(min(st.st_size, 4096) or 64)
        if st.st_size:
            at = rng.randrange(st.st_size - len(fresh) + 1)
            data[at:at + len(fresh)] = fresh
        else:
            data = bytearray(fresh)
        tmp = path + ".new"
        with open(tmp, "wb") as f:
            f.write(data)
        os.chmod(tmp, st.st_mode & 0o7777)
        os.utime(tmp, (st.st_mtime + 1, st.st_mtime + 1))
        os.rename(tmp, path)
        changed_bytes += max(st.st_size, len(fresh))
    print(json.dumps({
        "tree": root, "files": len(files), "changed_files": len(chosen),
        "changed_files_bytes": changed_bytes,
    }))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS),
                    help="a smaller tree of the same shape instead of PARAMS")
    ap.add_argument("command", choices=["generate", "mutate", "params"])
    ap.add_argument("dir", nargs="?")
    args = ap.parse_args()
    params = PRESETS[args.preset] if args.preset else PARAMS
    if args.command == "params":
        print(json.dumps(params, sort_keys=True))
    elif not args.dir:
        ap.error("DIR is required")
    elif args.command == "generate":
        generate(args.dir, params)
    else:
        mutate(args.dir, params)


if __name__ == "__main__":
    main()
