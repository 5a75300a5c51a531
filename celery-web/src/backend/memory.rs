//! Results kept in the process (`memory://`), for tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};

use super::{ResultBackend, TaskRecord};
use crate::task::{BoxFuture, State};
use crate::Result;

/// The `memory://` result backend.
#[derive(Debug, Clone, Default)]
pub struct MemoryBackend {
    records: Arc<Mutex<HashMap<String, TaskRecord>>>,
}

impl MemoryBackend {
    fn records(&self) -> MutexGuard<'_, HashMap<String, TaskRecord>> {
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl ResultBackend for MemoryBackend {
    fn store<'a>(&'a self, records: &'a [TaskRecord]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let now = Utc::now();
            let mut stored = self.records();
            for record in records {
                let mut record = record.clone();
                if let Some(old) = stored.get(&record.task_id) {
                    if old.status == State::Success {
                        continue;
                    }
                    record.date_created = old.date_created;
                    record.date_started = record.date_started.or(old.date_started);
                }
                record.date_created.get_or_insert(now);
                record.date_done = Some(record.date_done.unwrap_or(now));
                stored.insert(record.task_id.clone(), record);
            }
            Ok(())
        })
    }

    fn fetch<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, Result<Option<TaskRecord>>> {
        Box::pin(async move {
            Ok(self.records().get(task_id).cloned().map(|mut record| {
                if !record.status.is_ready() {
                    record.date_done = None;
                }
                record
            }))
        })
    }

    fn forget<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.records().remove(task_id);
            Ok(())
        })
    }

    fn delete_expired<'a>(&'a self, before: DateTime<Utc>) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let mut stored = self.records();
            let count = stored.len();
            stored.retain(|_, r| !(r.status.is_ready() && r.date_done.is_some_and(|d| d < before)));
            Ok((count - stored.len()) as u64)
        })
    }
}
