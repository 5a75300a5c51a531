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
