//! Eager mode (`task_always_eager`): tasks run where they are sent, for the site's own tests.

use std::time::Duration;

use celery_web::task::{Signature, State};
use celery_web::{Celery, Error, Settings};
use example_site::demo::tasks::{add, always_fails, explode, flaky};

fn eager_app(propagates: bool) -> Celery {
    let settings = Settings {
        broker_url: "memory://".to_owned(),
        result_backend: "disabled".to_owned(),
        task_always_eager: true,
        task_eager_propagates: propagates,
        ..Settings::default()
    };
    Celery::from_settings(settings).expect("app")
}

#[tokio::test]
async fn tasks_run_when_sent() {
    let app = eager_app(false);
    let result = add::s(2, 3).apply_async_on(&app).await.unwrap();
    assert_eq!(result.state().await.unwrap(), State::Success);
    assert_eq!(result.get(Duration::ZERO).await.unwrap(), 5);

    // Retries run again at once, countdown or not.
    let retried = flaky::s(2).apply_async_on(&app).await.unwrap();
    assert_eq!(retried.get(Duration::ZERO).await.unwrap(), 2);

    let exhausted = always_fails::s("x".into())
        .apply_async_on(&app)
        .await
        .unwrap();
    let record = exhausted.info().await.unwrap().unwrap();
    assert_eq!(record.status, State::Failure);
    assert_eq!(record.exception_parts().0, "MaxRetriesExceededError");
    assert_eq!(record.retries, 2);

    let panicked = explode::s("no".into()).apply_async_on(&app).await.unwrap();
    assert!(matches!(
        panicked.get(Duration::ZERO).await,
        Err(Error::TaskFailed { ref exc_type, .. }) if exc_type == "Panic"
    ));
}

#[tokio::test]
async fn propagates_failures_when_asked() {
    let app = eager_app(true);
    let error = explode::s("boom".into())
        .apply_async_on(&app)
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::TaskFailed { ref exc_message, .. } if exc_message == "boom"),
        "{error}"
    );
    let unknown = Signature::new("nowhere.task")
        .apply_async_on(&app)
        .await
        .unwrap_err();
    assert!(unknown.to_string().contains("not registered"), "{unknown}");
}

/// `task_store_eager_result`: eager outcomes also land in the result backend, where a page that
/// reads results by id finds them; without it, the backend never hears of them.
#[tokio::test]
async fn stores_eager_results_when_asked() {
    let app = |store: bool| {
        let settings = Settings {
            broker_url: "memory://".to_owned(),
            result_backend: "memory://".to_owned(),
            task_always_eager: true,
            task_store_eager_result: store,
            ..Settings::default()
        };
        Celery::from_settings(settings).expect("app")
    };

    let storing = app(true);
    let sent = add::s(2, 3).apply_async_on(&storing).await.unwrap();
    // A fresh handle by id reads the backend, not the eager record.
    let stored = storing.async_result::<i64>(sent.id());
    assert_eq!(stored.state().await.unwrap(), State::Success);
    assert_eq!(stored.get(Duration::ZERO).await.unwrap(), 5);
    let record = stored.info().await.unwrap().unwrap();
    assert_eq!(
        record.task_name.as_deref(),
        Some("example_site.demo.tasks.add")
    );
    let failed = explode::s("stored".into())
        .apply_async_on(&storing)
        .await
        .unwrap();
    let record = storing
        .async_result::<i64>(failed.id())
        .info()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status, State::Failure);
    let ignored = add::s(1, 1)
        .ignore_result(true)
        .apply_async_on(&storing)
        .await
        .unwrap();
    let unknown = storing.async_result::<i64>(ignored.id());
    assert_eq!(unknown.state().await.unwrap(), State::Pending);

    let keeping = app(false);
    let sent = add::s(2, 3).apply_async_on(&keeping).await.unwrap();
    assert_eq!(sent.state().await.unwrap(), State::Success);
    let by_id = keeping.async_result::<i64>(sent.id());
    assert_eq!(by_id.state().await.unwrap(), State::Pending);
}
