//! Canvas across languages on Redis: Python Celery 5.5 builds chains, links, link_errors and
//! chords whose tasks run on a celery-web worker; the worker sends the follow-ups and joins
//! the chords the way Celery's does, and Python reads the outcome. Uses a private
//! `redis-server` (every shared test database is taken).

use std::time::Duration;

use celery_web::canvas::{chain, chord, group};
use celery_web::task::Signature;
use celery_web_tests::redis_server::{python_celery_available, PrivateRedis, RedisSite};
use serde_json::{json, Value};

#[test]
fn a_python_canvas_runs_on_a_rust_worker() {
    let Some(redis) = PrivateRedis::start() else {
        return;
    };
    if !python_celery_available() {
        return;
    }
    let site = RedisSite::new(&redis.url(), 60);
    let worker = site.spawn_worker("rs", &["-c", "8"]);
    worker.wait_for_log("worker ready", Duration::from_secs(30));
    let errbacks = site.dir.path().join("errbacks.txt");
    let output = site.interop(&["canvas", "--path", errbacks.to_str().unwrap()]);
    let out: Value = serde_json::from_str(&output).unwrap_or_else(|e| panic!("{output}: {e}"));

    // chain(add(1, 2), add(3), add(4)): the result is prepended at each link.
    assert_eq!(
        out["chain"],
        json!({"status": "SUCCESS", "result": 10}),
        "{out}"
    );
    assert_eq!(
        out["chain_parent_status"],
        json!(["SUCCESS", "SUCCESS"]),
        "{out}"
    );
    let ids = out["chain_ids"].as_array().unwrap();
    // The last link's meta names its parent, as Celery's does (no root_id in the meta).
    assert_eq!(
        out["chain_last_meta"],
        json!({"parent_id": ids[1]}),
        "{out}"
    );
    // An immutable link keeps its own arguments.
    assert_eq!(
        out["immutable"],
        json!({"status": "SUCCESS", "result": 30}),
        "{out}"
    );
    // link: the callback gets the result.
    assert_eq!(
        out["link"],
        json!({"status": "SUCCESS", "result": 4}),
        "{out}"
    );
    assert_eq!(
        out["link_callback"],
        json!({"status": "SUCCESS", "result": 14}),
        "{out}"
    );
    // link_error: the errback is called with the failed task's id (old-style convention).
    assert_eq!(out["link_error"]["status"], "FAILURE", "{out}");
    let failed_id = out["link_error_id"].as_str().unwrap().to_owned();
    celery_web_tests::eventually(Duration::from_secs(20), "the errback ran", || {
        (std::fs::read_to_string(&errbacks)
            .unwrap_or_default()
            .trim()
            == failed_id)
            .then_some(())
    });
    // A failed link fails the rest of the chain (its FAILURE is stored for each).
    assert_eq!(out["chain_failed"]["status"], "FAILURE", "{out}");
    assert_eq!(
        out["chain_failed_links"],
        json!(["FAILURE", "FAILURE"]),
        "{out}"
    );
    // A chord of 10: the body gets the header's results in order.
    assert_eq!(
        out["chord"],
        json!({"status": "SUCCESS", "result": 90}),
        "{out}"
    );
    // A chord of 100 with one failing member: the body fails with Celery's ChordError.
    assert_eq!(out["chord_failed"]["status"], "FAILURE", "{out}");
    let meta = &out["chord_failed_meta"];
    assert_eq!(meta["exc_type"], "ChordError", "{out}");
    assert_eq!(meta["exc_module"], "celery.exceptions", "{out}");
    let message = meta["exc_message"][0].as_str().unwrap();
    assert!(
        message.starts_with("Dependency ")
            && message.ends_with("('invalid digit found in string')"),
        "{message}"
    );
    // Both chords fired: their join keys are gone.
    assert_eq!(out["chord_leftover_keys"], json!([]), "{out}");
    drop(worker);
}

/// celery-web builds the canvas; Python workers run its tasks (and join the chords with
/// Celery's own code, from the `.s` size this side wrote); a chord's header runs on both.
#[tokio::test(flavor = "multi_thread")]
async fn a_rust_canvas_runs_on_python_workers() {
    let Some(redis) = PrivateRedis::start() else {
        return;
    };
    if !python_celery_available() {
        return;
    }
    let site = RedisSite::new(&redis.url(), 60);
    let app = site.app();
    let python = site.spawn_python_worker("py", "celery", 8);
    let rust = site.spawn_worker("rs", &["-Q", "rs", "-c", "8"]);
    python.wait_for_log("ready.", Duration::from_secs(30));
    rust.wait_for_log("worker ready", Duration::from_secs(30));
    let wait = Duration::from_secs(60);
    let py = |name: &str| Signature::<i64>::with_output(format!("interop.py.{name}"));

    let ten = chain(py("add").arg(1).arg(2))
        .then(py("add").arg(3))
        .then(py("add").arg(4))
        .apply_async_on(&app)
        .await
        .unwrap();
    assert_eq!(ten.get(wait).await.unwrap(), 10);

    let thirty = chain(py("add").arg(1).arg(2))
        .then(py("add").arg(10).arg(20).immutable())
        .apply_async_on(&app)
        .await
        .unwrap();
    assert_eq!(thirty.get(wait).await.unwrap(), 30);

    let callback = py("add").arg(100).task_id("callback-1");
    py("add")
        .arg(1)
        .arg(1)
        .link(&callback)
        .apply_async_on(&app)
        .await
        .unwrap();
    let called = app.async_result::<i64>("callback-1");
    assert_eq!(called.get(wait).await.unwrap(), 102);

    let errbacks = site.dir.path().join("errbacks.txt");
    let errback = Signature::new("interop.py.note_failure").arg(errbacks.to_str().unwrap());
    let failed = Signature::<i64>::with_output("interop.py.fail")
        .arg("no")
        .link_error(&errback)
        .apply_async_on(&app)
        .await
        .unwrap();
    assert!(failed.get(wait).await.is_err());
    let failed_id = failed.id().to_owned();
    // A new-style Python errback: the Python worker calls it in-process with the request.
    let expected = format!("{failed_id} ValueError");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(&errbacks)
        .unwrap_or_default()
        .trim()
        != expected
    {
        let log = site.dir.path().join("python-py.log");
        assert!(
            std::time::Instant::now() < deadline,
            "the Python errback did not run: {:?}\n{}",
            std::fs::read_to_string(&errbacks),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A chord joined by Python's worker.
    let header = group((0..10).map(|i| py("add").arg(i).arg(i)).collect());
    let body = chord(header, py("total"))
        .apply_async_on(&app)
        .await
        .unwrap();
    assert_eq!(body.get(wait).await.unwrap(), 90);

    // A chord whose header runs on both workers (even members on the Rust one); whichever
    // stores the last part sends the body once.
    let members = (0..40)
        .map(|i| {
            if i % 2 == 0 {
                Signature::<i64>::with_output("interop.rust.add")
                    .arg(i)
                    .arg(1)
                    .queue("rs")
            } else {
                py("add").arg(i).arg(1)
            }
        })
        .collect();
    let body = chord(group(members), py("total"))
        .apply_async_on(&app)
        .await
        .unwrap();
    assert_eq!(
        body.get(wait).await.unwrap(),
        (0..40).map(|i| i + 1).sum::<i64>()
    );

    // A member fails on the Python side: the body gets Celery's ChordError.
    let mut members: Vec<_> = (0..20).map(|i| py("add").arg(i).arg(i)).collect();
    members[7] = Signature::<i64>::with_output("interop.py.fail").arg("boom");
    let body = chord(group(members), py("total"))
        .apply_async_on(&app)
        .await
        .unwrap();
    assert!(body.get(wait).await.is_err());
    let record = body
        .info()
        .await
        .unwrap()
        .expect("the body's FAILURE is stored");
    assert_eq!(record.status, celery_web::task::State::Failure);
    let result = record.result.unwrap();
    assert_eq!(result["exc_type"], "ChordError", "{result}");
    let message = result["exc_message"][0].as_str().unwrap();
    assert!(message.ends_with("raised ValueError('boom')"), "{message}");
    drop((python, rust));
}
