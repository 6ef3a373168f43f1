//! Helpers shared by imagetool's tests: run the real binary against a
//! fixture nats-server, and build source trees and tar archives.

use std::path::{Path, PathBuf};
use std::process::Command;

pub use dom_tests::{NatsServer, Run};

/// The imagetool command with `args`, in `cwd`, not yet run.
pub fn imagetool_command(cwd: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_imagetool"));
    command
        .args(args)
        .current_dir(cwd)
        .env_remove("DOM_SERVER")
        .env_remove("IMAGETOOL_HASH_CACHE")
        // The default hash cache, kept away from the user's own.
        .env(
            "XDG_CACHE_HOME",
            std::env::temp_dir().join(format!("imagetool-tests-{}", std::process::id())),
        );
    command
}

/// Runs imagetool with `args`, in `cwd`.
pub fn imagetool_in(cwd: &Path, args: &[&str]) -> Run {
    Run::from(
        imagetool_command(cwd, args)
            .output()
            .expect("run imagetool"),
    )
}

/// The imagetool command against `server` with the modern `--server`
/// flag, not yet run.
pub fn imagetool_on(server: &NatsServer, args: &[&str]) -> Command {
    let url = server.url();
    let mut all = vec!["--server", url.as_str(), "--quiet"];
    all.extend_from_slice(args);
    imagetool_command(Path::new("."), &all)
}

/// Runs imagetool against `server` with the modern `--server` flag.
pub fn imagetool(server: &NatsServer, args: &[&str]) -> Run {
    Run::from(imagetool_on(server, args).output().expect("run imagetool"))
}

/// The project's example files (user-guide tree, filter, triggers).
pub fn examples() -> PathBuf {
    dom_tests::repo_root().join("ops/examples")
}

/// A server holding image `kept`, and `gone`, deleted; both of the
/// user guide's tree.
pub fn kept_and_gone() -> NatsServer {
    let server = NatsServer::start().unwrap();
    let tree = examples().join("path");
    let tree = tree.to_str().unwrap();
    imagetool(&server, &["add", "kept", tree, "", ""]).ok();
    imagetool(&server, &["add", "gone", tree, "", ""]).ok();
    imagetool(&server, &["delete", "gone"]).ok();
    server
}

/// Names of the images `list` prints.
pub fn listed(server: &NatsServer) -> Vec<String> {
    imagetool(server, &["list"])
        .ok()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Writes a file, creating parents.
pub fn write(root: &Path, rel: &str, content: &[u8]) -> PathBuf {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, content).unwrap();
    path
}

/// A tar archive with one entry whose raw name, type and link name are
/// given as is, bypassing the tar crate's own path checks, as a hostile
/// archive would.
pub fn hostile_tar(name: &str, kind: tar::EntryType, link: Option<&str>) -> Vec<u8> {
    let mut header = tar::Header::new_old();
    {
        let old = header.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(link) = link {
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
    }
    header.set_entry_type(kind);
    header.set_mode(0o644);
    header.set_size(if kind == tar::EntryType::Regular {
        3
    } else {
        0
    });
    header.set_mtime(1);
    header.set_uid(0);
    header.set_gid(0);
    header.set_cksum();
    let mut out = header.as_bytes().to_vec();
    if kind == tar::EntryType::Regular {
        let mut block = [0u8; 512];
        block[..3].copy_from_slice(b"bad");
        out.extend_from_slice(&block);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// The record of image `name` as the bus holds it.
pub fn record(server: &NatsServer, name: &str) -> dom_model::ImageRecord {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let bus = dom_tests::connect(server).await;
        bus.image_record(&dom_model::ImageName::parse(name).unwrap())
            .await
            .unwrap()
    })
}

/// How many objects the fleet's bucket holds.
pub fn stored_objects(server: &NatsServer) -> usize {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let bus = dom_tests::connect(server).await;
        let store = dom_store::NatsStore::open(&bus).await.unwrap();
        dom_store::ContentStore::ids(&store).await.unwrap().len()
    })
}

/// One entry of a test archive.
pub enum TarEntry<'a> {
    Dir(&'a str, u32),
    File(&'a str, &'a [u8]),
    HardLink(&'a str, &'a str),
}

/// Writes an archive of `entries` (root-owned, mode 0644 files, mtime
/// 1764000000) at `dir/name`.
pub fn tar_of(dir: &Path, name: &str, entries: &[TarEntry]) -> PathBuf {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_764_000_000);
        header.set_size(0);
        match entry {
            TarEntry::Dir(path, mode) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(*mode);
                builder
                    .append_data(&mut header, path, std::io::empty())
                    .unwrap();
            }
            TarEntry::File(path, content) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                header.set_size(content.len() as u64);
                builder.append_data(&mut header, path, *content).unwrap();
            }
            TarEntry::HardLink(path, target) => {
                header.set_entry_type(tar::EntryType::Link);
                header.set_mode(0o644);
                builder.append_link(&mut header, path, target).unwrap();
            }
        }
    }
    let bytes = builder.into_inner().unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}
