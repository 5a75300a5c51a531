//! The result backend conformance suite.

use std::time::Duration;

use serde_json::json;

use crate::backend::{ResultBackend, TaskRecord};
use crate::task::State;

/// Runs every result-backend behaviour celery-web relies on against `backend`.
/// Panics on the first failure.
pub async fn exercise_backend(backend: &dyn ResultBackend) {
    let id = || uuid::Uuid::new_v4().to_string();

    // Unknown is PENDING (None).
    assert_eq!(backend.fetch(&id()).await.unwrap(), None);

    // A full record round-trips.
    let task = id();
    let mut started = TaskRecord::new(&task, State::Started);
    started.task_name = Some("suite.add".into());
    started.args = Some(json!([2, 3]));
    started.kwargs = Some(json!({"z": "<script>"}));
    started.worker = Some("w1@host".into());
    started.queue = Some("math".into());
    started.periodic_task_name = Some("nightly".into());
    started.date_started = Some(chrono::Utc::now());
    backend.store(&[started.clone()]).await.unwrap();
    let read = backend.fetch(&task).await.unwrap().expect("stored");
    assert_eq!(read.status, State::Started);
    assert_eq!(read.args, started.args);
    assert_eq!(read.kwargs, started.kwargs);
    assert_eq!(read.periodic_task_name.as_deref(), Some("nightly"));
    assert!(read.date_started.is_some() && read.date_done.is_none());

    // The final state updates the row and keeps date_started.
    let mut done = TaskRecord::new(&task, State::Success);
    done.result = Some(json!(5));
    backend.store(&[done]).await.unwrap();
    let read = backend.fetch(&task).await.unwrap().expect("stored");
    assert_eq!(read.status, State::Success);
    assert_eq!(read.result, Some(json!(5)));
    assert!(read.date_started.is_some(), "date_started kept");
    assert!(read.date_done.is_some(), "ready records have date_done");

    // SUCCESS is final: a late duplicate does not overwrite it.
    let mut late = TaskRecord::new(&task, State::Failure);
    late.result = Some(TaskRecord::exception("ValueError", "late"));
    backend.store(&[late]).await.unwrap();
    assert_eq!(
        backend.fetch(&task).await.unwrap().unwrap().status,
        State::Success
    );

    // Failures keep their exception and traceback.
    let failed = id();
    let mut record = TaskRecord::new(&failed, State::Failure);
    record.result = Some(TaskRecord::exception("ValueError", "bad input"));
    record.traceback = Some("Traceback: here".into());
    backend.store(&[record]).await.unwrap();
    let read = backend.fetch(&failed).await.unwrap().unwrap();
    assert_eq!(
        read.exception_parts(),
        ("ValueError".to_owned(), "bad input".to_owned())
    );
    assert_eq!(read.traceback.as_deref(), Some("Traceback: here"));

    // A batch of many records in one call.
    let many: Vec<TaskRecord> = (0..200)
        .map(|n| {
            let mut r = TaskRecord::new(&id(), State::Success);
            r.result = Some(json!(n));
            r
        })
        .collect();
    backend.store(&many).await.unwrap();
    let last = backend.fetch(&many[199].task_id).await.unwrap().unwrap();
    assert_eq!(last.result, Some(json!(199)));

    // One batch may carry several states of one task: the last one counts, SUCCESS stays.
    let batched = id();
    let mut first = TaskRecord::new(&batched, State::Started);
    first.date_started = Some(chrono::Utc::now());
    let mut second = TaskRecord::new(&batched, State::Success);
    second.result = Some(json!("done"));
    let third = TaskRecord::new(&batched, State::Failure);
    backend.store(&[first, second, third]).await.unwrap();
    let read = backend.fetch(&batched).await.unwrap().unwrap();
    assert_eq!(read.status, State::Success);
    assert_eq!(read.result, Some(json!("done")));
    assert!(
        read.date_started.is_some(),
        "date_started from the STARTED record"
    );

    // wait returns as soon as the task is ready, and gives up after its timeout.
    let waited = id();
    let clock = std::time::Instant::now();
    let none = backend
        .wait(&waited, Duration::from_millis(300))
        .await
        .unwrap();
    assert!(none.is_none() && clock.elapsed() >= Duration::from_millis(250));
    backend
        .store(&[TaskRecord::new(&waited, State::Revoked)])
        .await
        .unwrap();
    let ready = backend
        .wait(&waited, Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ready.status, State::Revoked);

    // forget deletes.
    backend.forget(&task).await.unwrap();
    assert_eq!(backend.fetch(&task).await.unwrap(), None);

    // Expiry removes ready records older than the cut-off, not newer ones, not unready ones.
    let pending = id();
    backend
        .store(&[TaskRecord::new(&pending, State::Started)])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let cut = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let fresh = id();
    backend
        .store(&[TaskRecord::new(&fresh, State::Success)])
        .await
        .unwrap();
    let removed = backend.delete_expired(cut).await.unwrap();
    assert!(removed >= 202, "old ready records removed (got {removed})");
    assert!(backend.fetch(&failed).await.unwrap().is_none());
    assert!(
        backend.fetch(&fresh).await.unwrap().is_some(),
        "newer record kept"
    );
    assert!(
        backend.fetch(&pending).await.unwrap().is_some(),
        "unready record kept"
    );

    // The reporting variant tells the running total, ending at what it returns.
    let older: Vec<String> = (0..3).map(|_| id()).collect();
    let records: Vec<TaskRecord> = older
        .iter()
        .map(|task| TaskRecord::new(task, State::Success))
        .collect();
    backend.store(&records).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let cut = chrono::Utc::now();
    let reports = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = reports.clone();
    let removed = backend
        .delete_expired_reporting(
            cut,
            std::sync::Arc::new(move |total| seen.lock().unwrap().push(total)),
        )
        .await
        .unwrap();
    assert!(removed >= 3, "the three older records (got {removed})");
    let reports = reports.lock().unwrap().clone();
    assert_eq!(reports.last(), Some(&removed), "reports: {reports:?}");
    assert!(
        reports.windows(2).all(|pair| pair[0] <= pair[1]),
        "a running total: {reports:?}"
    );
    assert!(backend.fetch(&older[0]).await.unwrap().is_none());
    assert!(backend.fetch(&pending).await.unwrap().is_some());
}
