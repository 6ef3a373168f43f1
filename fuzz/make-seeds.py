#!/usr/bin/env python3
"""Writes the fuzz targets' seed inputs into fuzz/seeds/<target>/.

Small valid inputs of each format, plus a few hostile ones the decoders must
refuse, so every fuzzer starts from meaningful input rather than noise. The
output is checked in; run this again after changing a format.
"""

import gzip
import hashlib
import io
import json
import pathlib
import shutil
import tarfile

FUZZ = pathlib.Path(__file__).resolve().parent
EXAMPLES = FUZZ.parent / "ops" / "examples"
SEEDS = FUZZ / "seeds"


def oid(data: bytes) -> str:
    return hashlib.sha512(data).hexdigest()


def write(target: str, name: str, data) -> None:
    d = SEEDS / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, (dict, list)):
        data = json.dumps(data, separators=(",", ":")).encode()
    elif isinstance(data, str):
        data = data.encode()
    (d / name).write_bytes(data)


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def tar(members, fmt=tarfile.GNU_FORMAT) -> bytes:
    """members: (TarInfo fields, content bytes or None)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as t:
        for fields, content in members:
            fields = dict(fields)
            info = tarfile.TarInfo(fields.pop("name"))
            info.mtime = 1764000000
            for k, v in fields.items():
                setattr(info, k, v)
            if content is not None:
                info.size = len(content)
                t.addfile(info, io.BytesIO(content))
            else:
                t.addfile(info)
    # Drop tarfile's padding to a 10 KiB record: two zero blocks end an
    # archive, and smaller seeds fuzz faster.
    data = out.getvalue().rstrip(b"\0")
    data += b"\0" * (-len(data) % 512)
    return data + b"\0" * 1024


HOSTNAME = b"web1\n"
SSHD_CONFIG = b"PermitRootLogin no\n"
TRIGGERS = json.loads((EXAMPLES / "triggers").read_text())
FILTER_LINES = (EXAMPLES / "filter").read_text().splitlines()


def manifest_seeds() -> None:
    manifest = {
        "v": 1,
        "entries": [
            {"path": "/", "t": "dir", "mode": 0o755, "uid": 0, "gid": 0},
            {"path": "/dev", "t": "dir", "mode": 0o755, "uid": 0, "gid": 0},
            {"path": "/dev/fifo", "t": "fifo", "mode": 0o600, "uid": 0, "gid": 0, "mtime": 1764000000},
            {"path": "/dev/null", "t": "char", "mode": 0o666, "uid": 0, "gid": 0, "mtime": 1764000000, "rdev": 259},
            {"path": "/dev/sda", "t": "block", "mode": 0o660, "uid": 0, "gid": 6, "mtime": 1764000000, "mtime_ns": 5, "rdev": 2048},
            {"path": "/etc", "t": "dir", "mode": 0o755, "uid": 0, "gid": 0},
            {"path": "/etc/hostname", "t": "file", "mode": 0o644, "uid": 0, "gid": 0, "mtime": 1764000000, "size": len(HOSTNAME), "object": oid(HOSTNAME)},
            {"path": "/etc/hostname.link", "t": "link", "target": "/etc/hostname"},
            {"path": "/etc/localtime", "t": "symlink", "uid": 0, "gid": 0, "target": "../usr/share/zoneinfo/UTC"},
            {"path": "/etc/ssh", "t": "dir", "mode": 0o755, "uid": 0, "gid": 0},
            {"path": "/etc/ssh/sshd_config", "t": "file", "mode": 0o600, "uid": 0, "gid": 0, "mtime": 1764000000, "mtime_ns": 123, "size": len(SSHD_CONFIG), "object": oid(SSHD_CONFIG)},
            {"path": "/tmp", "t": "dir", "mode": 0o1777, "uid": 0, "gid": 0},
        ],
    }
    text = json.dumps(manifest, separators=(",", ":")).encode()
    # The target tries the bytes as they are and gzip-compressed, so plain
    # JSON seeds reach the validation behind the gzip layer.
    write("manifest", "small.json", text)
    write("manifest", "small.json.gz", gz(text))
    write("manifest", "root-only.json", {"v": 1, "entries": [manifest["entries"][0]]})
    escaping = dict(manifest, entries=manifest["entries"][:1] + [
        {"path": "/up", "t": "symlink", "uid": 0, "gid": 0, "target": "../../etc/shadow"},
    ])
    write("manifest", "escaping-symlink.json", escaping)


def tar_seeds() -> None:
    ok = [
        ({"name": ".", "type": tarfile.DIRTYPE, "mode": 0o755}, None),
        ({"name": "etc", "type": tarfile.DIRTYPE, "mode": 0o755}, None),
        ({"name": "etc/hostname", "mode": 0o644}, HOSTNAME),
        ({"name": "etc/hostname.link", "type": tarfile.LNKTYPE, "linkname": "etc/hostname"}, None),
        ({"name": "etc/localtime", "type": tarfile.SYMTYPE, "linkname": "../usr/share/zoneinfo/UTC"}, None),
        ({"name": "etc/ssh", "type": tarfile.DIRTYPE, "mode": 0o755}, None),
        ({"name": "etc/ssh/sshd_config", "mode": 0o4600, "uid": 1000, "gid": 1000}, SSHD_CONFIG),
        ({"name": "dev", "type": tarfile.DIRTYPE, "mode": 0o755}, None),
        ({"name": "dev/null", "type": tarfile.CHRTYPE, "mode": 0o666, "devmajor": 1, "devminor": 3}, None),
        ({"name": "dev/sda", "type": tarfile.BLKTYPE, "mode": 0o660, "devmajor": 8, "devminor": 0}, None),
        ({"name": "dev/fifo", "type": tarfile.FIFOTYPE, "mode": 0o600}, None),
        ({"name": "tmp", "type": tarfile.DIRTYPE, "mode": 0o1777}, None),
        ({"name": "tmp/filtered", "mode": 0o644}, b"left out\n"),
    ]
    small = tar(ok)
    write("tar", "small.tar", small)
    write("tar", "small.tar.gz", gz(small))
    long_name = "etc/" + "d" * 120 + "/" + "f" * 120
    write("tar", "pax.tar", tar([
        ({"name": "etc", "type": tarfile.DIRTYPE, "mode": 0o755}, None),
        ({"name": "etc/" + "d" * 120, "type": tarfile.DIRTYPE, "mode": 0o755}, None),
        ({"name": long_name, "mode": 0o644, "uid": 4_000_000}, b"x"),
    ], fmt=tarfile.PAX_FORMAT))
    write("tar", "gnu-longname.tar", tar([
        ({"name": "etc", "type": tarfile.DIRTYPE, "mode": 0o755}, None),
        ({"name": "etc/" + "d" * 120, "type": tarfile.DIRTYPE, "mode": 0o755}, None),
        ({"name": long_name, "mode": 0o644}, b"y"),
    ]))
    # Hostile archives: each must be refused.
    write("tar", "dotdot.tar", tar([({"name": "../escape", "mode": 0o644}, b"no\n")]))
    write("tar", "absolute.tar", tar([({"name": "/etc/passwd", "mode": 0o644}, b"no\n")]))
    write("tar", "escaping-symlink.tar", tar([
        ({"name": "up", "type": tarfile.SYMTYPE, "linkname": "../../etc/shadow"}, None),
    ]))
    write("tar", "escaping-hardlink.tar", tar([
        ({"name": "up", "type": tarfile.LNKTYPE, "linkname": "../etc/shadow"}, None),
    ]))
    write("tar", "hardlink-to-filtered.tar", tar([
        ({"name": "tmp", "type": tarfile.DIRTYPE, "mode": 0o1777}, None),
        ({"name": "tmp/x", "mode": 0o644}, b"x"),
        ({"name": "x", "type": tarfile.LNKTYPE, "linkname": "tmp/x"}, None),
    ]))


def filter_triggers_seeds() -> None:
    write("filter", "example", (EXAMPLES / "filter").read_bytes())
    write("filter", "inverted", "# only /etc is owned\n!\n/etc/.*\n")
    write("filter", "unicode", "/home/[[:alpha:]]+/\\.cache\n/srv/é.*\n")
    write("triggers", "example", (EXAMPLES / "triggers").read_bytes())
    write("triggers", "sshd", (EXAMPLES / "triggers.sshd").read_bytes())
    write("triggers", "full", [
        {"MatchLines": ["/etc/ssh/.*"], "Service": "sshd2", "SortName": "a10", "HighImpact": True},
        {"MatchLines": ["/boot/.*"], "Service": "kernel", "DoReboot": True, "SortName": "a9"},
        {"MatchLines": [], "Service": "none"},
    ])
    write("triggers", "null", "null")


def mdb_seeds() -> None:
    record = {
        "Hostname": "web1.example.com",
        "RequiredImage": "web/prod/2026-11-26",
        "PlannedImage": "web/prod/2026-11-27",
        "DisableUpdates": False,
        "Tags": {"DisableSafetyCheck": "true"},
        "IpAddress": "10.0.0.1",
    }
    write("mdb_record", "full", "web1.example.com\n" + json.dumps(record))
    write("mdb_record", "no-hostname", 'web2\n{"requiredimage":"sparse.0"}')
    write("mdb_record", "remove", "web3\n")
    write("mdb_file", "array", [record, {"Hostname": "web2", "RequiredImage": "sparse.0"}])
    write("mdb_file", "machines", {"Machines": [{"hostname": "db1", "requiredImage": "db.1", "Tags": {}}]})
    write("mdb_file", "empty", "[]")


def message_seeds() -> None:
    manifest_id = oid(b"manifest")
    triggers = json.loads((EXAMPLES / "triggers.sshd").read_text())
    write("desired_state", "normal", {
        "v": 1, "host": "web1", "image": "image.0", "manifest": manifest_id,
        "sparse": False, "filter": FILTER_LINES, "triggers": TRIGGERS,
        "planned": {"image": "image.1", "manifest": oid(b"next")},
        "updates_allowed": True, "high_impact_granted": True,
        "config": {"scan_speed_percent": 50, "fetch_rate": 1048576},
        "issued": "2026-11-26T12:00:00Z",
    })
    write("desired_state", "sparse", {
        "v": 1, "host": "web2", "image": "sparse.1", "manifest": manifest_id,
        "sparse": True, "triggers": triggers,
    })
    write("state_report", "report", {
        "v": 1, "host": "web1", "generation": 7,
        "scan": {"started": "2026-11-26T12:00:00Z", "duration_ms": 1200, "files": 10,
                 "bytes": 4096, "full_scans": 3, "inodes": 20},
        "image": "image.0", "desired_image": "image.1", "compliant": False,
        "deviations": 2, "would_delete": 1, "fetching": True, "updating": False,
        "last_update": {"image": "image.0", "started": "2026-11-26T11:00:00Z",
                        "duration_ms": 30, "ok": False, "error": "disk full",
                        "trigger_failures": ["sshd: exit 1"], "transition_ms": 20,
                        "changed": 3, "fetched_objects": 2, "fetched_bytes": 100},
        "high_impact": {"image": "image.1", "services": ["kernel"]},
        "object_cache_bytes": 100, "free_bytes": 1 << 30,
        "agent_version": "0.1.0", "uptime_s": 60, "error": "refused",
    })
    write("state_report", "event", {
        "v": 1, "host": "web1", "kind": "update", "time": "2026-11-26T12:00:00Z",
        "image": "image.0", "message": "updated",
        "details": {"changed": 3, "ok": True, "ratio": 0.5, "list": [1, "a", None]},
    })
    write("image_message", "record", {
        "v": 1, "name": "image.0", "manifest": manifest_id, "sparse": False,
        "filter": FILTER_LINES, "triggers": TRIGGERS, "files": 2, "bytes": 24,
        "inodes": 12, "created": "2026-11-26T12:00:00Z", "creator": "ops@build1",
        "expires": "2026-11-27T12:00:00Z", "expires_unix": 1764244800,
    })
    write("image_message", "sparse", {
        "v": 1, "name": "sparse.0", "manifest": manifest_id, "sparse": True,
        "files": 0, "bytes": 0, "inodes": 1, "created": "2026-11-26T12:00:00Z",
        "creator": "ops@build1",
    })
    write("image_message", "tombstone", {
        "v": 1, "name": "image.0", "deleted": True,
        "deleted_at": "2026-11-26T13:00:00Z", "by": "ops@build1",
    })


def main() -> None:
    if SEEDS.exists():
        shutil.rmtree(SEEDS)
    manifest_seeds()
    tar_seeds()
    filter_triggers_seeds()
    mdb_seeds()
    message_seeds()


if __name__ == "__main__":
    main()
