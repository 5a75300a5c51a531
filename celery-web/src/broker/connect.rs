//! Opening the broker that `broker_url` names: the one place that turns a [`BrokerKind`] into a
//! driver.

use std::sync::Arc;

#[cfg(feature = "redis")]
use super::redis;
use super::{database, memory, Broker};
use crate::db::Db;
use crate::settings::BrokerKind;
use crate::{Result, Settings};

/// Opens the broker `broker_url` names ([`Settings::broker_kind`]); a database broker shares
/// `db` when given (its tables must be migrated). The drivers read what concerns them: the
/// visibility timeout, `broker_transport_options` (the Redis broker's `eta_parking`), the
/// queue declarations (AMQP).
pub fn connect(settings: &Settings, db: Option<&Db>) -> Result<Arc<dyn Broker>> {
    let visibility_timeout = settings.visibility_timeout();
    match &settings.broker_kind()? {
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
                .with_transport_options(&settings.broker_transport_options)?;
            Ok(Arc::new(broker))
        }
        #[cfg(not(feature = "redis"))]
        BrokerKind::Redis { .. } => Err(crate::settings::feature_missing("broker_url", "redis")),
        #[cfg(feature = "amqp")]
        BrokerKind::Amqp { url } => Ok(Arc::new(super::amqp::AmqpBroker::new(
            url,
            super::amqp::Topology::from_settings(settings),
        )?)),
        #[cfg(not(feature = "amqp"))]
        BrokerKind::Amqp { .. } => Err(crate::settings::feature_missing("broker_url", "amqp")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(broker_url: &str) -> Result<Arc<dyn Broker>> {
        let settings = Settings {
            broker_url: broker_url.to_owned(),
            broker_visibility_timeout: 30,
            ..Settings::default()
        };
        connect(&settings, None)
    }

    #[test]
    fn memory_and_database_brokers_open() {
        let broker = open("memory://").unwrap();
        let leases = broker.leases().expect("memory leases");
        assert_eq!(
            leases.visibility_timeout(),
            std::time::Duration::from_secs(30)
        );
        let dir = std::env::temp_dir().join(format!("celery-web-connect-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let broker = open(&format!(
            "sqlite://{}",
            dir.join("broker.sqlite3").display()
        ))
        .unwrap();
        assert!(broker.transactional().is_some(), "the database broker");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(feature = "amqp")]
    #[test]
    fn amqp_opens_without_connecting() {
        let broker = open("amqp://guest:guest@localhost//").unwrap();
        assert!(broker.delays_eta());
        assert!(
            broker.leases().is_none(),
            "unacked messages stay with the connection"
        );
    }

    #[cfg(not(feature = "amqp"))]
    #[test]
    fn amqp_names_the_missing_feature() {
        let Err(crate::Error::Config(message)) = open("amqp://guest:guest@localhost//") else {
            panic!("amqp is not built in");
        };
        assert!(message.contains("`amqp` feature"), "{message}");
    }
}
