//! The Redis store: the conformance suite against a real `redis-server`, named by
//! `VICTOR_TEST_REDIS` (`redis://127.0.0.1:PORT/DB`; `.ci/run` starts one). Without it the cases
//! say so and pass, unless `VICTOR_REDIS_REQUIRED` is set (as CI sets it).

use std::sync::Arc;

use super::RedisStore;
use crate::store::conformance::{Backend, Nowhere};
use crate::store::{EventSink, SharedStore};

struct Redis;

/// Each fresh store under a prefix of its own, so that cases run side by side on one Redis.
pub(crate) fn fresh_setting(url: &str) -> String {
    format!("{url}?prefix=test-{}", uuid::Uuid::now_v7().simple())
}

impl Backend for Redis {
    type Keep = ();

    fn available() -> bool {
        let here = std::env::var_os("VICTOR_TEST_REDIS").is_some();
        assert!(
            here || std::env::var_os("VICTOR_REDIS_REQUIRED").is_none(),
            "VICTOR_REDIS_REQUIRED is set but VICTOR_TEST_REDIS names no Redis"
        );
        here
    }

    async fn open(nodes: &[&str], sink: Arc<dyn EventSink>) -> (Vec<SharedStore>, ()) {
        let url = std::env::var("VICTOR_TEST_REDIS").unwrap();
        let setting = fresh_setting(&url);
        let mut stores = Vec::new();
        for (n, node) in nodes.iter().enumerate() {
            let sink = if n == 0 {
                sink.clone()
            } else {
                Arc::new(Nowhere) as Arc<dyn EventSink>
            };
            let store = RedisStore::connect(&setting, node, sink).await.unwrap();
            stores.push(Arc::new(store) as SharedStore);
        }
        (stores, ())
    }
}

store_conformance_tests!(Redis);
