//! Opening the broker that `broker_url` names: the one place that turns a [`BrokerKind`] into a
//! driver.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "redis")]
use super::redis;
use super::{database, memory, Broker};
use crate::db::Db;
use crate::settings::BrokerKind;
use crate::{Error, Result};

/// Opens the broker `kind` names (from [`Settings::broker_kind`](crate::Settings::broker_kind));
/// a database broker shares `db` when given (its tables must be migrated). `transport_options`
/// are `broker_transport_options` (the Redis broker reads `eta_parking`).
pub fn connect(
    kind: &BrokerKind,
    db: Option<&Db>,
    visibility_timeout: Duration,
    transport_options: &BTreeMap<String, toml::Value>,
) -> Result<Arc<dyn Broker>> {
    match kind {
        BrokerKind::Memory => Ok(Arc::new(memory::MemoryBroker::new(visibility_timeout))),
        BrokerKind::Database { url, .. } => {
            let db = match db {
                Some(db) => db.clone(),
                None => Db::connect(url, 8)?,
            };
            let broker = database::DatabaseBroker::new(db, visibility_timeout).listening(url);
            Ok(Arc::new(broker))
        }
        #[cfg(feature = "redis")]
        BrokerKind::Redis { url } => {
            let broker = redis::RedisBroker::new(url, visibility_timeout)?
                .with_transport_options(transport_options)?;
            Ok(Arc::new(broker))
        }
        #[cfg(not(feature = "redis"))]
        BrokerKind::Redis { .. } => {
            let _ = transport_options;
            Err(crate::settings::feature_missing("broker_url", "redis"))
        }
        BrokerKind::Amqp { .. } => Err(Error::Config(
            "setting `broker_url`: the amqp broker is not built yet; use sqlite://, \
             postgres://, redis:// or memory://"
                .to_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(kind: &BrokerKind) -> Result<Arc<dyn Broker>> {
        connect(kind, None, Duration::from_secs(30), &BTreeMap::new())
    }

    #[test]
    fn memory_and_database_brokers_open() {
        let broker = open(&BrokerKind::Memory).unwrap();
        let leases = broker.leases().expect("memory leases");
        assert_eq!(leases.visibility_timeout(), Duration::from_secs(30));
        let dir = std::env::temp_dir().join(format!("celery-web-connect-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("broker.sqlite3").display());
        let kind = crate::Settings {
            broker_url: url,
            ..crate::Settings::default()
        }
        .broker_kind()
        .unwrap();
        let broker = open(&kind).unwrap();
        assert!(broker.transactional().is_some(), "the database broker");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn amqp_says_it_is_not_built_yet() {
        let kind = BrokerKind::Amqp {
            url: "amqp://guest:guest@localhost//".into(),
        };
        let Err(Error::Config(message)) = open(&kind) else {
            panic!("amqp is not available");
        };
        assert!(
            message.contains("broker_url") && message.contains("the amqp broker is not built yet"),
            "{message}"
        );
    }
}
