//! Reading a file-system tree into a [`Manifest`](dom_model::Manifest), as
//! fast as the machine allows: `imagetool add` scans an image's source with
//! it, and `subd` scans the machine it keeps on its image.
//!
//! - [`walk`]: the parallel walk. Reading directories, stat-ing entries and
//!   hashing files share one pool of threads, so hashing starts with the
//!   first file found and a cold metadata cache is read with many requests
//!   in flight. Hashed content can be handed to a sink as it is read (so an
//!   upload overlaps the scan without reading files twice).
//! - [`tree`]: turns what the walk found into a manifest (hard links
//!   grouped by inode).
//! - [`cache`]: remembers the SHA-512 of inodes that have not changed since
//!   they were hashed (same device, inode, size, mtime and ctime), so a
//!   rescan of an unchanged tree reads no file contents.
//! - [`rate`]: a byte-rate limit shared by the hashing threads.

pub mod cache;
pub mod rate;
pub mod tree;
pub mod walk;

pub use cache::HashCache;
pub use rate::RateLimit;
pub use tree::{scan_tree, TreeScan};
pub use walk::{Content, Counters, Found, ObjectSink, ScanError, ScanOptions};
