//! Chords on the database backend: the publisher inserts the `celery_chordcounter` row, each
//! header task decrements it in the transaction that stores its result, and exactly one of
//! two worker processes sends the body. On SQLite and PostgreSQL.

use std::time::Duration;

use celery_web::canvas::{chain, chord, group};
use celery_web::task::{Signature, State};
use celery_web_tests::{Database, TestDb};
use diesel::prelude::*;

const WAIT: Duration = Duration::from_secs(60);

fn add(x: i64, y: i64) -> Signature<i64> {
    Signature::with_output("interop.rust.add").arg(x).arg(y)
}

async fn chords_on(kind: Database) {
    let Some(db) = TestDb::new(kind) else { return };
    let app = db.app();
    let workers = [
        db.spawn_worker("one", &["-c", "8"]),
        db.spawn_worker("two", &["-c", "8"]),
    ];
    for worker in &workers {
        worker.wait_for_log("worker ready", Duration::from_secs(30));
    }

    // A chain of three: add(1, 2) | add(3) | add(4) (sync tasks), then an immutable link.
    let ten = chain(add(1, 2))
        .then(Signature::<i64>::with_output("interop.rust.add").arg(3))
        .then(Signature::<i64>::with_output("interop.rust.add").arg(4))
        .apply_async_on(&app)
        .await
        .unwrap();
    assert_eq!(ten.get(WAIT).await.unwrap(), 10);

    // A chord of 100 whose body (an async task) gets every result, in order.
    let header = group((0..100).map(|i| add(i, i)).collect());
    let body = Signature::<i64>::with_output("interop.rust.total");
    let result = chord(header, body.clone())
        .apply_async_on(&app)
        .await
        .unwrap();
    assert_eq!(
        result.get(WAIT).await.unwrap(),
        (0..100).map(|i| 2 * i).sum::<i64>()
    );
    let body_id = result.id().to_owned();

    // A chord of 100 with one failing member: the body fails with Celery's ChordError.
    let mut members: Vec<_> = (0..100).map(|i| add(i, i)).collect();
    members[42] = Signature::with_output("interop.rust.fail").arg("boom");
    let result = chord(group(members), body)
        .apply_async_on(&app)
        .await
        .unwrap();
    assert!(result.get(WAIT).await.is_err());
    let record = result
        .info()
        .await
        .unwrap()
        .expect("the body's FAILURE is stored");
    assert_eq!(record.status, State::Failure);
    let error = record.result.unwrap();
    assert_eq!(error["exc_type"], "ChordError", "{error}");
    assert_eq!(error["exc_module"], "celery.exceptions", "{error}");
    let message = error["exc_message"][0].as_str().unwrap();
    assert!(
        message.starts_with("Dependency ") && message.contains("('invalid digit found in string')"),
        "{message}"
    );

    // Each body ran exactly once (one result row each, no counter left behind).
    let (rows, counters) = count_rows(&db.url);
    assert_eq!(
        counters, 0,
        "every chord counter is deleted once its body is sent"
    );
    // chain: 3, chord 1: 101, chord 2: 100 header rows + the body's FAILURE.
    assert_eq!(rows, 3 + 101 + 101);
    // The body ran on one worker, once.
    let runs = workers
        .iter()
        .flat_map(|w| {
            w.log()
                .lines()
                .filter(|l| l.contains(&body_id) && l.contains("succeeded"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .count();
    assert_eq!(runs, 1, "the chord body ran {runs} times");
}

fn count_rows(url: &str) -> (i64, i64) {
    let sql_rows = "SELECT COUNT(*) AS n FROM celery_taskresult";
    let sql_counters = "SELECT COUNT(*) AS n FROM celery_chordcounter";
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let count = |conn: &mut dyn FnMut(&str) -> i64| (conn(sql_rows), conn(sql_counters));
    if url.starts_with("postgres") {
        let mut conn = diesel::PgConnection::establish(url).unwrap();
        count(&mut |sql| {
            diesel::sql_query(sql)
                .get_result::<Count>(&mut conn)
                .unwrap()
                .n
        })
    } else {
        let path = url.trim_start_matches("sqlite://");
        let mut conn = diesel::SqliteConnection::establish(path).unwrap();
        count(&mut |sql| {
            diesel::sql_query(sql)
                .get_result::<Count>(&mut conn)
                .unwrap()
                .n
        })
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn chords_on_sqlite() {
    chords_on(Database::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn chords_on_postgres() {
    chords_on(Database::Postgres).await;
}
