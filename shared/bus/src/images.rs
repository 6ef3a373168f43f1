//! Image records on `dom.image.<name>`.
//!
//! A record is published with "expected last subject sequence 0", so a name
//! can be taken once only; deleting publishes a tombstone on the same
//! subject, which keeps the name taken forever.

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage as Publish;
use dom_model::{ImageMessage, ImageName, ImageRecord, Tombstone};
use thiserror::Error;

use crate::connect::{Bus, BusError};

#[derive(Debug, Error)]
pub enum ImageError {
    #[error("image {0} already exists; image names are never reused, pick another")]
    NameTaken(ImageName),
    #[error("image {0} was deleted; image names are never reused, pick another")]
    NameDeleted(ImageName),
    #[error("image {0} does not exist")]
    NotFound(ImageName),
    #[error("image {0} changed meanwhile; try again")]
    Raced(ImageName),
    #[error(
        "image {0} has expired; its objects may be collected, so add it again under a new name"
    )]
    Expired(ImageName),
    #[error("image {name}: the change would make the record invalid: {reason}")]
    Invalid { name: ImageName, reason: String },
    #[error("image {name}: stored record is malformed: {reason}")]
    Malformed { name: String, reason: String },
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// An image message and its sequence number on the stream.
#[derive(Clone, Debug)]
pub struct Stored {
    pub message: ImageMessage,
    pub sequence: u64,
}

impl Bus {
    /// Publishes a new image record. Fails with [`ImageError::NameTaken`]
    /// (or `NameDeleted`) when the name has ever been used.
    pub async fn publish_image(&self, record: &ImageRecord) -> Result<u64, ImageError> {
        let subject = self.subjects.image(record.name.as_str());
        let payload = ImageMessage::Record(record.clone()).encode();
        let publish = Publish::build()
            .payload(payload.into())
            .expected_last_subject_sequence(0);
        let result = self
            .guarded_on(&subject, async {
                self.js.send_publish(subject.clone(), publish).await?.await
            })
            .await?;
        match result {
            Ok(ack) => Ok(ack.sequence),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                match self.image(&record.name).await {
                    Ok(Some(Stored {
                        message: ImageMessage::Deleted(_),
                        ..
                    })) => Err(ImageError::NameDeleted(record.name.clone())),
                    _ => Err(ImageError::NameTaken(record.name.clone())),
                }
            }
            Err(e) => Err(self
                .js_error(format!("publishing image {}: {e}", record.name))
                .into()),
        }
    }

    /// The latest message on an image's subject, if any.
    pub async fn image(&self, name: &ImageName) -> Result<Option<Stored>, ImageError> {
        let what = format!("reading image {name}");
        let stream = self.subjects.images_stream();
        let subject = self.subjects.image(name.as_str());
        let Some(msg) = self.last_on(&stream, subject, &what).await? else {
            return Ok(None);
        };
        let message = ImageMessage::decode(&msg.payload).map_err(|e| ImageError::Malformed {
            name: name.to_string(),
            reason: e.to_string(),
        })?;
        if message.name() != name {
            return Err(ImageError::Malformed {
                name: name.to_string(),
                reason: format!("it names image {}", message.name()),
            });
        }
        Ok(Some(Stored {
            message,
            sequence: msg.sequence,
        }))
    }

    /// The record of a live (not deleted) image.
    pub async fn image_record(&self, name: &ImageName) -> Result<ImageRecord, ImageError> {
        match self.image(name).await? {
            Some(Stored {
                message: ImageMessage::Record(record),
                ..
            }) => Ok(record),
            Some(_) => Err(ImageError::NameDeleted(name.clone())),
            None => Err(ImageError::NotFound(name.clone())),
        }
    }

    /// The latest message of every image subject, in name order. Messages
    /// that do not decode, or whose subject and name disagree, are skipped
    /// with a warning: anyone allowed to publish could have put them there.
    pub async fn images(&self) -> Result<Vec<Stored>, ImageError> {
        let latest = self
            .last_of_each(&self.subjects.images_stream(), &self.subjects.images())
            .await?;
        let mut out = Vec::new();
        for msg in latest {
            let subject_name = self.subjects.image_name(&msg.subject).unwrap_or("");
            match ImageMessage::decode(&msg.payload) {
                Ok(message) if message.name().as_str() == subject_name => out.push(Stored {
                    message,
                    sequence: msg.sequence,
                }),
                Ok(message) => tracing::warn!(
                    subject = %msg.subject,
                    named = %message.name(),
                    "skipping image record whose name does not match its subject"
                ),
                Err(e) => {
                    tracing::warn!(subject = %msg.subject, error = %e, "skipping malformed image record")
                }
            }
        }
        out.sort_by(|a, b| a.message.name().cmp(b.message.name()));
        Ok(out)
    }

    /// Publishes a live image's record again with `expires` (RFC 3339 and
    /// Unix seconds; `None`: never) in place of its expiry; the rest of
    /// the record is unchanged, and the stream keeps the earlier one. An
    /// image that has expired at `now` is refused.
    pub async fn change_image_expiry(
        &self,
        name: &ImageName,
        expires: Option<(String, i64)>,
        now: i64,
    ) -> Result<ImageRecord, ImageError> {
        self.change_image(name, now, |record| {
            (record.expires, record.expires_unix) = expires.unzip();
        })
        .await
    }

    /// Publishes a live image's record again with `set` added to its tags
    /// (replacing a tag of the same key) and the keys in `remove` taken
    /// away; the rest of the record is unchanged, and the stream keeps the
    /// earlier one. An image that has expired at `now` is refused.
    pub async fn change_image_tags(
        &self,
        name: &ImageName,
        set: &[(String, String)],
        remove: &[String],
        now: i64,
    ) -> Result<ImageRecord, ImageError> {
        self.change_image(name, now, |record| {
            let tags = &mut record.metadata.tags;
            for key in remove {
                tags.remove(key);
            }
            for (key, value) in set {
                tags.insert(key.clone(), value.clone());
            }
        })
        .await
    }

    /// Publishes a live image's record again, changed by `edit` (which
    /// may touch only what [`ImageRecord::with_changeable_of`] lets
    /// change: expiry and metadata), with the schema version it then
    /// needs. Deleted, unknown and (at `now`) expired images are refused;
    /// a record published meanwhile makes it [`ImageError::Raced`].
    async fn change_image(
        &self,
        name: &ImageName,
        now: i64,
        edit: impl FnOnce(&mut ImageRecord),
    ) -> Result<ImageRecord, ImageError> {
        let (mut record, sequence) = match self.image(name).await? {
            Some(Stored {
                message: ImageMessage::Record(record),
                sequence,
            }) => (record, sequence),
            Some(_) => return Err(ImageError::NameDeleted(name.clone())),
            None => return Err(ImageError::NotFound(name.clone())),
        };
        if record.is_expired(now) {
            return Err(ImageError::Expired(name.clone()));
        }
        let before = record.clone();
        edit(&mut record);
        record.v = record.schema_version();
        record
            .metadata
            .validate()
            .map_err(|reason| ImageError::Invalid {
                name: name.clone(),
                reason,
            })?;
        debug_assert_eq!(before.with_changeable_of(&record), record);
        self.replace_image(name, ImageMessage::Record(record.clone()), sequence)
            .await?;
        Ok(record)
    }

    /// Publishes `message` on image `name`'s subject if `sequence` is
    /// still the last message there.
    async fn replace_image(
        &self,
        name: &ImageName,
        message: ImageMessage,
        sequence: u64,
    ) -> Result<(), ImageError> {
        let publish = Publish::build()
            .payload(message.encode().into())
            .expected_last_subject_sequence(sequence);
        let subject = self.subjects.image(name.as_str());
        let result = self
            .guarded_on(&subject, async {
                self.js.send_publish(subject.clone(), publish).await?.await
            })
            .await?;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                Err(ImageError::Raced(name.clone()))
            }
            Err(e) => Err(self.js_error(format!("changing image {name}: {e}")).into()),
        }
    }

    /// Replaces a live image's record with a tombstone. The name stays
    /// taken.
    pub async fn delete_image(&self, tombstone: &Tombstone) -> Result<(), ImageError> {
        let name = &tombstone.name;
        let stored = match self.image(name).await? {
            Some(
                stored @ Stored {
                    message: ImageMessage::Record(_),
                    ..
                },
            ) => stored,
            Some(_) => return Err(ImageError::NameDeleted(name.clone())),
            None => return Err(ImageError::NotFound(name.clone())),
        };
        self.replace_image(
            name,
            ImageMessage::Deleted(tombstone.clone()),
            stored.sequence,
        )
        .await
    }
}
