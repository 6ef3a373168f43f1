//! Stream and bucket setup. Tools call [`Bus::ensure_streams`] (or, for
//! image builders, [`Bus::ensure_image_streams`]) before use. It looks
//! first and changes only what is missing or differs, so running it any
//! number of times, from any tool, is safe, and a credential that may
//! only read or write messages (every role but the operator's) works as
//! long as an operator has set the streams up: a missing stream is then a
//! one-line error saying so, and a stream that differs is left as it is
//! with a warning.

use std::time::Duration;

use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::object_store;
use async_nats::jetstream::stream::{Config, DiscardPolicy, Placement, StorageType};

use crate::connect::{Bus, BusError};
use crate::elections::{through_elections, transient};

/// How the streams and the bucket lie on a cluster's servers: how many
/// copies of each, and on servers with which tags. Only `domsetup
/// streams` sets a layout; every other tool leaves the one it finds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    /// Copies of every stream and of the bucket (1, 3 or 5); `None`
    /// keeps what each has (a new one gets 1).
    pub replicas: Option<usize>,
    /// Servers to hold them, by tag (`--placement-tag region:west`);
    /// none keeps the placement each has.
    pub tags: Vec<String>,
}

impl Layout {
    /// `config` as this layout wants it, given the one it has (if any).
    fn apply(&self, mut config: Config, current: Option<&Config>) -> Config {
        match self.replicas {
            Some(n) => config.num_replicas = n,
            None => config.num_replicas = current.map_or(1, |c| c.num_replicas.max(1)),
        }
        config.placement = if self.tags.is_empty() {
            current.and_then(|c| c.placement.clone())
        } else {
            Some(Placement {
                cluster: None,
                tags: self.tags.clone(),
            })
        };
        config
    }
}

/// Where a stream is and how far its copies are behind, as the server
/// tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamPlace {
    pub stream: String,
    pub replicas: usize,
    pub messages: u64,
    /// The server that leads the stream (none on a single server).
    pub leader: Option<String>,
    /// The other copies: server, whether it is current, and how many
    /// operations it is behind.
    pub followers: Vec<(String, bool, u64)>,
}

/// What a stream holds against its limits, as the server tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamUsage {
    pub stream: String,
    pub bytes: u64,
    pub messages: u64,
    /// The stream's limits; `None` for none.
    pub max_bytes: Option<u64>,
    pub max_messages: Option<u64>,
}

/// How long audit events are kept.
pub const EVENTS_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
/// How many bytes of audit events are kept.
pub const EVENTS_MAX_BYTES: i64 = 1 << 30;

impl Bus {
    /// The configuration of every stream of the event contract.
    pub fn stream_configs(&self) -> Vec<Config> {
        let s = &self.subjects;
        let per_subject = |name: String, kind: &str, keep: i64| Config {
            name,
            subjects: vec![s.all(kind)],
            max_messages_per_subject: keep,
            storage: StorageType::File,
            allow_direct: true,
            discard: DiscardPolicy::Old,
            ..Default::default()
        };
        vec![
            per_subject(s.images_stream(), "image", -1),
            per_subject(s.mdb_stream(), "mdb", 16),
            per_subject(s.desired_stream(), "desired", 1),
            per_subject(s.state_stream(), "state", 1),
            per_subject(s.ctl_stream(), "ctl", 16),
            Config {
                max_age: EVENTS_MAX_AGE,
                max_bytes: EVENTS_MAX_BYTES,
                ..per_subject(s.events_stream(), "event", -1)
            },
            // A lease is its holder's last renewal, gone LEASE_TTL later.
            Config {
                max_age: crate::lease::LEASE_TTL,
                ..per_subject(s.lease_stream(), "lease", 1)
            },
        ]
    }

    /// Whether JetStream answers on this connection (in a cluster, once
    /// its leader is elected).
    pub async fn jetstream_ready(&self) -> bool {
        self.js.query_account().await.is_ok()
    }

    /// Makes sure every stream of the event contract and the object bucket
    /// exist as this version wants them.
    pub async fn ensure_streams(&self) -> Result<(), BusError> {
        self.ensure_streams_laid_out(&Layout::default()).await
    }

    /// As [`Bus::ensure_streams`], and lays every stream and the bucket out
    /// as `layout` says. Raising the replicas of streams that hold
    /// messages keeps every message: the server copies them to the new
    /// replicas while the stream goes on serving.
    pub async fn ensure_streams_laid_out(&self, layout: &Layout) -> Result<(), BusError> {
        for config in self.stream_configs() {
            self.ensure_stream(config, layout).await?;
        }
        self.object_bucket_laid_out(layout).await?;
        Ok(())
    }

    /// At a remote site, on the leaf node (or small cluster) connected to,
    /// in its own JetStream domain: mirrors of the hub's images stream and
    /// object bucket, which is in the domain `hub`. The site's machines
    /// then read objects there (`--objects-domain SITE`), and each object
    /// crosses the link to the hub once, however many machines need it.
    /// Made if missing; one that exists is left as it is.
    pub async fn ensure_site_mirrors(
        &self,
        hub: &str,
        layout: &Layout,
    ) -> Result<Vec<String>, BusError> {
        use async_nats::jetstream::stream::{External, Source};
        let local = async_nats::jetstream::new(self.client.clone());
        let mut made = Vec::new();
        for name in [self.subjects.images_stream(), self.subjects.object_stream()] {
            let what = format!("$JS.API.STREAM.INFO.{name}");
            if let Ok(Ok(_)) = self.guarded_on(&what, local.get_stream(&name)).await {
                continue;
            }
            let config = Config {
                name: name.clone(),
                storage: StorageType::File,
                allow_direct: true,
                mirror_direct: true,
                // The bucket's metadata messages roll up their subject.
                allow_rollup: true,
                mirror: Some(Source {
                    name: name.clone(),
                    external: Some(External {
                        api_prefix: format!("$JS.{hub}.API"),
                        delivery_prefix: None,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let config = layout.apply(config, None);
            let create = format!("$JS.API.STREAM.CREATE.{name}");
            match self
                .guarded_on(&create, local.create_stream(config))
                .await?
            {
                Ok(_) => made.push(name),
                Err(e) => return Err(self.js_error(format!("mirroring {name} from {hub}: {e}"))),
            }
        }
        Ok(made)
    }

    /// Where each stream of the fleet (the bucket's included) is, in the
    /// order [`Bus::stream_configs`] lists them.
    pub async fn stream_places(&self) -> Result<Vec<StreamPlace>, BusError> {
        let mut names: Vec<String> = self.stream_configs().into_iter().map(|c| c.name).collect();
        names.push(self.subjects.object_stream());
        let mut places = Vec::with_capacity(names.len());
        for name in names {
            let what = self.api(&name, &format!("STREAM.INFO.{name}"));
            let mut stream = match self
                .guarded_on(&what, self.js_for(&name).get_stream(&name))
                .await?
            {
                Ok(stream) => stream,
                Err(e) => return Err(self.js_error(format!("reading stream {name}: {e}"))),
            };
            let info = stream
                .info()
                .await
                .map_err(|e| self.js_error(format!("reading stream {name}: {e}")))?;
            let cluster = info.cluster.clone().unwrap_or_default();
            places.push(StreamPlace {
                stream: name,
                replicas: info.config.num_replicas.max(1),
                messages: info.state.messages,
                leader: cluster.leader,
                followers: cluster
                    .replicas
                    .into_iter()
                    .map(|p| (p.name, p.current && !p.offline, p.lag.unwrap_or(0)))
                    .collect(),
            });
        }
        Ok(places)
    }

    /// What each stream of the fleet (the bucket's included) holds and may
    /// hold, in the order [`Bus::stream_places`] lists them. A stream that
    /// does not exist (the bucket, with objects in S3) is left out.
    pub async fn stream_usage(&self) -> Result<Vec<StreamUsage>, BusError> {
        let mut names: Vec<String> = self.stream_configs().into_iter().map(|c| c.name).collect();
        names.push(self.subjects.object_stream());
        // The server says -1 (or 0) for no limit.
        let limit = |n: i64| u64::try_from(n).ok().filter(|&n| n > 0);
        let mut usage = Vec::with_capacity(names.len());
        for name in names {
            let what = self.api(&name, &format!("STREAM.INFO.{name}"));
            let stream = match self
                .guarded_on(&what, self.js_for(&name).get_stream(&name))
                .await?
            {
                Ok(stream) => stream,
                Err(e) => match e.kind() {
                    GetStreamErrorKind::JetStream(error)
                        if error.error_code()
                            == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND =>
                    {
                        continue
                    }
                    _ => return Err(self.js_error(format!("reading stream {name}: {e}"))),
                },
            };
            let info = stream.cached_info();
            usage.push(StreamUsage {
                stream: name,
                bytes: info.state.bytes,
                messages: info.state.messages,
                max_bytes: limit(info.config.max_bytes),
                max_messages: limit(info.config.max_messages),
            });
        }
        Ok(usage)
    }

    /// Makes sure the image stream and the object bucket exist: all an
    /// image builder needs.
    pub async fn ensure_image_streams(&self) -> Result<(), BusError> {
        let images = self.subjects.images_stream();
        let config = self
            .stream_configs()
            .into_iter()
            .find(|c| c.name == images)
            .expect("the image stream is configured");
        self.ensure_stream(config, &Layout::default()).await?;
        self.object_bucket().await?;
        Ok(())
    }

    /// Looks the stream up; creates it when missing and updates it when
    /// it differs from `wanted` laid out as `layout`, if this credential
    /// may.
    async fn ensure_stream(&self, wanted: Config, layout: &Layout) -> Result<(), BusError> {
        let name = wanted.name.clone();
        let current = self.stream_config(&name).await?;
        let wanted = layout.apply(wanted, current.as_ref());
        match current {
            Some(current) if same_settings(&current, &wanted) => Ok(()),
            Some(_) => self.update_stream(wanted).await,
            None => {
                let create = self.api(&name, &format!("STREAM.CREATE.{name}"));
                match self
                    .guarded_on(&create, self.js_for(&name).create_stream(wanted))
                    .await
                {
                    Ok(Ok(_)) => Ok(()),
                    Err(e) if e.is_permission_denied() => Err(BusError::Missing {
                        what: format!("stream {name}"),
                    }),
                    Err(e) => Err(e),
                    Ok(Err(e)) => Err(self.js_error(format!("creating stream {name}: {e}"))),
                }
            }
        }
    }

    /// Updates a stream's settings, if this credential may; one that may
    /// not is told to ask an operator.
    async fn update_stream(&self, wanted: Config) -> Result<(), BusError> {
        let name = wanted.name.clone();
        let info = self.api(&name, &format!("STREAM.UPDATE.{name}"));
        match self
            .guarded_on(&info, self.js_for(&name).update_stream(wanted))
            .await
        {
            Ok(Ok(_)) => {
                tracing::info!(stream = %name, "updated stream settings");
                Ok(())
            }
            Err(e) if e.is_permission_denied() => {
                tracing::warn!(
                    stream = %name,
                    "stream settings differ from this version's; an operator should run `domsetup streams`"
                );
                Ok(())
            }
            Err(e) => Err(e),
            Ok(Err(e)) => Err(self.js_error(format!("updating stream {name}: {e}"))),
        }
    }

    /// A stream's configuration, or `None` when it does not exist.
    async fn stream_config(&self, name: &str) -> Result<Option<Config>, BusError> {
        let info = self.api(name, &format!("STREAM.INFO.{name}"));
        let read = through_elections(
            &info,
            || self.guarded_on(&info, self.js_for(name).get_stream(name)),
            transient,
        );
        match read.await? {
            Ok(stream) => Ok(Some(stream.cached_info().config.clone())),
            Err(e) => match e.kind() {
                GetStreamErrorKind::JetStream(error)
                    if error.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND =>
                {
                    Ok(None)
                }
                _ => Err(self.js_error(format!("reading stream {name}: {e}"))),
            },
        }
    }

    /// The object bucket; created when missing, if this credential may.
    pub async fn object_bucket(&self) -> Result<object_store::ObjectStore, BusError> {
        self.object_bucket_laid_out(&Layout::default()).await
    }

    /// The object bucket, created when missing and laid out as `layout`.
    async fn object_bucket_laid_out(
        &self,
        layout: &Layout,
    ) -> Result<object_store::ObjectStore, BusError> {
        let bucket = self.subjects.object_bucket();
        let stream = self.subjects.object_stream();
        if let Some(current) = self.stream_config(&stream).await? {
            let wanted = layout.apply(current.clone(), Some(&current));
            if wanted.num_replicas != current.num_replicas.max(1)
                || wanted.placement != current.placement
            {
                // The bucket is a stream: laid out as any other.
                self.update_stream(wanted).await?;
            }
            return self
                .objects_js
                .get_object_store(&bucket)
                .await
                .map_err(|e| self.js_error(format!("opening object bucket {bucket}: {e}")));
        }
        let create = self.api(&stream, &format!("STREAM.CREATE.{stream}"));
        let created = self
            .guarded_on(
                &create,
                self.objects_js.create_object_store(object_store::Config {
                    bucket: bucket.clone(),
                    description: Some("file contents, named by SHA-512".into()),
                    storage: StorageType::File,
                    num_replicas: layout.replicas.unwrap_or(1),
                    placement: (!layout.tags.is_empty()).then(|| Placement {
                        cluster: None,
                        tags: layout.tags.clone(),
                    }),
                    ..Default::default()
                }),
            )
            .await;
        match created {
            Ok(Ok(store)) => Ok(store),
            Err(e) if e.is_permission_denied() => Err(BusError::Missing {
                what: format!("object bucket {bucket}"),
            }),
            Err(e) => Err(e),
            Ok(Err(e)) => Err(self.js_error(format!("setting up object bucket {bucket}: {e}"))),
        }
    }
}

/// Whether a stream already has the settings this version sets (the
/// server fills in the rest).
fn same_settings(current: &Config, wanted: &Config) -> bool {
    // Zero and negative limits both mean "no limit".
    let limit = |n: i64| n.max(0);
    current.subjects == wanted.subjects
        && limit(current.max_messages_per_subject) == limit(wanted.max_messages_per_subject)
        && current.storage == wanted.storage
        && current.allow_direct == wanted.allow_direct
        && current.discard == wanted.discard
        && current.max_age == wanted.max_age
        && limit(current.max_bytes) == limit(wanted.max_bytes)
        && current.num_replicas.max(1) == wanted.num_replicas.max(1)
        && current.placement == wanted.placement
}
