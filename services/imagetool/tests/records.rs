//! What the server holds, read past imagetool: image records as JSON,
//! the image stream's message count, the objects in the bucket; and
//! records published raw, as a tool of another version (or anyone allowed
//! to publish) would.

use serde_json::Value;

use crate::common::NatsServer;

fn block_on<T>(work: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Runtime::new().unwrap().block_on(work)
}

async fn js(server: &NatsServer) -> async_nats::jetstream::Context {
    async_nats::jetstream::new(async_nats::connect(server.url()).await.unwrap())
}

/// The last message on `dom.image.<name>`, as JSON.
pub fn record_json(server: &NatsServer, name: &str) -> Value {
    block_on(async {
        let stream = js(server).await.get_stream("DOM_IMAGES").await.unwrap();
        let message = stream
            .get_last_raw_message_by_subject(&format!("dom.image.{name}"))
            .await
            .unwrap();
        serde_json::from_slice(&message.payload).unwrap()
    })
}

/// How many messages the image stream holds.
pub fn image_messages(server: &NatsServer) -> u64 {
    block_on(async {
        let mut stream = js(server).await.get_stream("DOM_IMAGES").await.unwrap();
        stream.info().await.unwrap().state.messages
    })
}

/// The ids of the objects in the bucket, as the store lists them.
pub fn objects(server: &NatsServer) -> Vec<String> {
    use dom_store::ContentStore;
    block_on(async {
        let bus = dom_tests::bus::connect(server).await;
        let store = dom_store::NatsStore::open(&bus).await.unwrap();
        let mut ids: Vec<String> = store
            .ids()
            .await
            .unwrap()
            .iter()
            .map(|id| id.to_hex())
            .collect();
        ids.sort();
        ids
    })
}

/// Publishes `payload` on `dom.image.<name>` as it is.
pub fn publish_raw(server: &NatsServer, name: &str, payload: &Value) {
    block_on(async {
        js(server)
            .await
            .publish(format!("dom.image.{name}"), payload.to_string().into())
            .await
            .unwrap()
            .await
            .unwrap();
    })
}

/// A first-schema record (v1: no health check, no metadata) of `name`,
/// made at `created`, naming a manifest that need not exist.
pub fn v1_record(name: &str, created: &str) -> Value {
    serde_json::json!({
        "v": 1,
        "name": name,
        "manifest": dom_model::ObjectId::of(name.as_bytes()).to_hex(),
        "sparse": true,
        "triggers": [],
        "files": 0,
        "bytes": 0,
        "inodes": 1,
        "created": created,
        "creator": "builder@ci",
    })
}
