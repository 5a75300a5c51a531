//! Mingle: at start a worker asks its peers `hello` (1 s) and takes their revoked ids and
//! clocks, so a task revoked before it started is skipped here too (Celery's
//! `celery/worker/consumer/mingle.py`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::panel::{Panel, REVOKE_EXPIRES};
use super::Control;
use crate::Celery;

/// How long mingle waits for replies.
const WAIT: Duration = Duration::from_secs(1);

/// Asks the peers for their revocations and merges them into `panel`'s.
pub(crate) async fn mingle(app: &Celery, panel: &Panel) {
    let Ok(control) = Control::new(app) else {
        return;
    };
    tracing::info!("mingle: searching for neighbors");
    let mut arguments = Map::new();
    arguments.insert("from_node".into(), panel.hostname.clone().into());
    arguments.insert("revoked".into(), Value::Object(panel.revoked_with_times()));
    let replies = match control.call("hello", arguments, None, WAIT).await {
        Ok(replies) => replies,
        Err(error) => {
            tracing::warn!(%error, "mingle: could not ask the neighbors");
            return;
        }
    };
    let replies: Vec<(String, Value)> = replies
        .into_iter()
        .filter(|(node, reply)| node != &panel.hostname && reply.is_object())
        .collect();
    if replies.is_empty() {
        tracing::info!("mingle: all alone");
        return;
    }
    let keep = chrono::Duration::from_std(REVOKE_EXPIRES).unwrap_or(chrono::Duration::hours(3));
    let now = Utc::now();
    for (node, reply) in &replies {
        if let Some(clock) = reply.get("clock").and_then(Value::as_u64) {
            panel.clock.adjust(clock);
        }
        let Some(Value::Object(revoked)) = reply.get("revoked") else {
            continue;
        };
        let merged: Vec<(String, DateTime<Utc>)> = revoked
            .iter()
            .filter_map(|(id, at)| {
                let at = at.as_f64().filter(|f| f.is_finite())?;
                let at = DateTime::from_timestamp_micros((at * 1e6) as i64)?;
                Some((id.clone(), at + keep))
            })
            .filter(|(_, expires)| *expires > now)
            .collect();
        tracing::debug!(%node, revoked = merged.len(), "mingle: merged");
        panel.revocations.add(merged);
    }
    let nodes: Vec<&str> = replies.iter().map(|(node, _)| node.as_str()).collect();
    tracing::info!("mingle: sync with {} nodes", nodes.len());
}
