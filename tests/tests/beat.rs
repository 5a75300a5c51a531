//! Beat on real databases: edits picked up while it runs, one_off, start_time, expires,
//! disabled rows, catch-up after downtime, the `periodic_task_name` header, settings and code
//! definitions, and three beat processes firing every slot exactly once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use celery_web::beat::schedule::{Clocked, Interval, Period, Schedule};
use celery_web::beat::{Beat, BeatStore, PeriodicTask, PeriodicTaskDefinition, Source};
use celery_web::protocol::{Envelope, Message};
use celery_web::task::Signature;
use celery_web::worker::{Shutdown, Worker};
use celery_web::Celery;
use celery_web_tests::{eventually, Database, Process, TestDb};
use chrono::{DateTime, SubsecRound, Utc};
use serde_json::json;

/// A migrated database, its app, and an in-process beat that stops with the guard.
struct Harness {
    app: Celery,
    store: BeatStore,
    _db: TestDb,
    shutdown: Shutdown,
    beat: Option<tokio::task::JoinHandle<celery_web::Result<celery_web::beat::BeatStats>>>,
}

impl Harness {
    fn new(kind: Database) -> Option<Harness> {
        let db = TestDb::new(kind)?;
        let app = db.app();
        let store = BeatStore::for_app(&app).expect("beat store");
        Some(Harness {
            app,
            store,
            _db: db,
            shutdown: Shutdown::new(),
            beat: None,
        })
    }

    fn start_beat(&mut self) {
        let beat = Beat::new(&self.app).expect("beat").ident("test-beat");
        self.beat = Some(tokio::spawn(beat.run(self.shutdown.clone())));
    }

    async fn stop(mut self) {
        self.shutdown.warm();
        if let Some(beat) = self.beat.take() {
            beat.await.expect("beat task").expect("beat ran");
        }
    }

    fn save(&self, definition: &PeriodicTaskDefinition) -> i64 {
        self.store
            .save(definition, Source::Database)
            .expect("periodic task saved")
    }

    fn task(&self, name: &str) -> PeriodicTask {
        self.store
            .get(name)
            .expect("store answers")
            .expect("row exists")
            .expect("row decodes")
    }

    /// Messages waiting in `queue`, decoded, oldest first.
    fn queued(&self, queue: &str) -> Vec<Message> {
        queued(&self.app, queue)
    }
}

fn queued(app: &Celery, queue: &str) -> Vec<Message> {
    use celery_web::db::schema::celery_message::dsl as m;
    use diesel::prelude::*;
    let load = || -> celery_web::Result<Vec<String>> {
        Ok(celery_web::db::with_connection!(
            app.db().expect("db"),
            |conn| {
                m::celery_message
                    .filter(m::queue.eq(queue))
                    .order(m::id)
                    .select(m::payload)
                    .load(conn)?
            }
        ))
    };
    load()
        .expect("messages load")
        .iter()
        .map(|payload| {
            let envelope = Envelope::decode(payload.as_bytes()).expect("envelope");
            Message::from_envelope(&envelope).expect("message")
        })
        .collect()
}

/// Sets a column of the periodic task `id` the way an admin's SQL would.
fn set_time(app: &Celery, id: i64, column: &str, when: DateTime<Utc>) {
    use diesel::prelude::*;
    let statement = format!(
        "UPDATE celery_periodic_task SET {column} = '{}' WHERE id = {id}",
        when.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f")
    );
    let run = || -> celery_web::Result<usize> {
        Ok(celery_web::db::with_connection!(
            app.db().expect("db"),
            |conn| diesel::sql_query(&statement).execute(conn)?
        ))
    };
    assert_eq!(run().expect("update runs"), 1, "{statement}");
}

fn every(seconds: i64) -> Schedule {
    Schedule::Interval(Interval::new(seconds, Period::Seconds).expect("interval"))
}

fn definition(name: &str, schedule: Schedule, queue: &str) -> PeriodicTaskDefinition {
    PeriodicTaskDefinition::new(
        name,
        schedule,
        Signature::new(example_site::demo::tasks::add::name())
            .arg(1)
            .arg(2)
            .queue(queue),
    )
}

macro_rules! on_both_databases {
    ($scenario:ident) => {
        mod $scenario {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                if let Some(harness) = Harness::new(Database::Sqlite) {
                    super::$scenario(harness).await;
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(harness) = Harness::new(Database::Postgres) {
                    super::$scenario(harness).await;
                }
            }
        }
    };
}

on_both_databases!(edits_are_picked_up_while_beat_runs);
async fn edits_are_picked_up_while_beat_runs(mut h: Harness) {
    h.start_beat();
    // Inserted while beat runs: fires about a second later.
    let mut ticking = definition("ticking", every(1), "edits");
    h.save(&ticking);
    let first = Instant::now();
    eventually(Duration::from_secs(4), "the new row fires", || {
        (!h.queued("edits").is_empty()).then_some(())
    });
    assert!(
        first.elapsed() < Duration::from_secs(3),
        "{:?}",
        first.elapsed()
    );
    // Edited: the next messages carry the new arguments.
    ticking.args = vec![json!(40), json!(2)];
    h.save(&ticking);
    eventually(Duration::from_secs(4), "the edit is picked up", || {
        h.queued("edits")
            .last()
            .filter(|m| m.args == vec![json!(40), json!(2)])
            .map(drop)
    });
    // Disabled: nothing more is sent.
    let id = h.task("ticking").id;
    assert!(h.store.set_enabled(id, false).expect("disable"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after_disable = h.queued("edits").len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        h.queued("edits").len(),
        after_disable,
        "a disabled task fired"
    );
    assert_eq!(
        h.task("ticking").last_run_at,
        None,
        "disabling clears last_run_at"
    );
    // Enabled again, then deleted: beat drops it without restarting.
    assert!(h.store.set_enabled(id, true).expect("enable"));
    eventually(Duration::from_secs(4), "the re-enabled task fires", || {
        (h.queued("edits").len() > after_disable).then_some(())
    });
    assert!(h.store.delete("ticking").expect("delete"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after_delete = h.queued("edits").len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        h.queued("edits").len(),
        after_delete,
        "a deleted task fired"
    );
    for message in h.queued("edits") {
        assert_eq!(message.extra_header("periodic_task_name"), Some("ticking"));
    }
    h.stop().await;
}

on_both_databases!(one_off_start_time_expires_and_disabled);
async fn one_off_start_time_expires_and_disabled(mut h: Harness) {
    let now = Utc::now().trunc_subsecs(0);
    // A clocked one-off two seconds from now.
    h.save(&definition(
        "once",
        Schedule::Clocked(Clocked::new(now + chrono::Duration::seconds(2))),
        "once",
    ));
    // An every-second task that must not start before start_time.
    let start = now + chrono::Duration::seconds(3);
    let mut later = definition("later", every(1), "later");
    later.start_time = Some(start);
    h.save(&later);
    // An every-second task that expires after about 2 seconds.
    let mut expiring = definition("expiring", every(1), "expiring");
    expiring.start_time = Some(now);
    let id = h.save(&expiring);
    set_time(
        &h.app,
        id,
        "expires",
        now + chrono::Duration::milliseconds(2500),
    );
    // Disabled from the start.
    let off = h.save(&definition("off", every(1), "off"));
    h.store.set_enabled(off, false).expect("disable");
    h.start_beat();
    tokio::time::sleep(Duration::from_secs(6)).await;

    let once = h.queued("once");
    assert_eq!(once.len(), 1, "a one-off task fires once");
    let row = h.task("once");
    assert!(!row.enabled, "a one-off task is disabled after its firing");
    assert_eq!(row.total_run_count, 1);

    let firings = h.store.firings(h.task("later").id).expect("firings");
    assert!(!firings.is_empty(), "the start_time task fired");
    assert_eq!(firings[0].scheduled_at, start, "first firing at start_time");
    assert!(firings.iter().all(|f| f.fired_at >= start), "{firings:?}");

    let expired = h.task("expiring");
    let sent = h.queued("expiring").len();
    assert!((2..=4).contains(&sent), "expiring task sent {sent} times");
    eventually(
        Duration::from_secs(3),
        "the expired task is disabled",
        || (!h.task("expiring").enabled).then_some(()),
    );
    assert!(expired.total_run_count >= 2);

    assert!(h.queued("off").is_empty(), "a disabled task fired");
    h.stop().await;
}

on_both_databases!(catches_up_once_after_downtime);
async fn catches_up_once_after_downtime(mut h: Harness) {
    let id = h.save(&definition("every 10s", every(10), "catch-up"));
    // As if beat had been down for an hour: 360 slots missed.
    set_time(
        &h.app,
        id,
        "last_run_at",
        Utc::now() - chrono::Duration::hours(1),
    );
    h.start_beat();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        h.queued("catch-up").len(),
        1,
        "one catch-up firing, not one per slot"
    );
    let row = h.task("every 10s");
    let last = row.last_run_at.expect("last_run_at");
    assert!(Utc::now() - last < chrono::Duration::seconds(5), "{last}");
    let next = row.next_firing().expect("next");
    assert!(next > Utc::now(), "the next slot is in the future: {next}");
    h.stop().await;
}

on_both_databases!(settings_and_code_definitions_are_synced);
async fn settings_and_code_definitions_are_synced(h: Harness) {
    let settings_entries: toml::Table = toml::from_str(
        r#"
        [seconds]
        task = "example_site.demo.tasks.add"
        schedule = 10.0
        args = [1, 2]
        [text]
        task = "example_site.demo.tasks.add"
        schedule = "10s"
        options = { queue = "math", priority = 5, expires = 30 }
        [hourly]
        task = "example_site.demo.tasks.add"
        schedule = { every = 1, period = "hours" }
        kwargs = { x = 1, y = 2 }
        [mondays]
        task = "example_site.reports.tasks.generate_report"
        schedule = "crontab(minute='30', hour='7', day_of_week='mon')"
        "#,
    )
    .expect("toml");
    let mut settings = h.app.settings().clone();
    settings.beat_schedule = settings_entries.clone().into_iter().collect();
    let app = Celery::from_settings(settings.clone()).expect("app");
    app.add_periodic_task(
        "from code",
        every(60),
        Signature::new("tasks.add").arg(1).arg(1),
    );
    Beat::new(&app)
        .expect("beat")
        .sync_definitions()
        .await
        .expect("sync");

    let rows: BTreeMap<String, PeriodicTask> = h
        .store
        .load()
        .expect("load")
        .into_iter()
        .map(|row| row.expect("decodes"))
        .map(|task| (task.definition.name.clone(), task))
        .collect();
    assert_eq!(
        rows.keys().map(String::as_str).collect::<Vec<_>>(),
        ["from code", "hourly", "mondays", "seconds", "text"]
    );
    assert_eq!(rows["seconds"].source, Source::Settings);
    assert_eq!(rows["from code"].source, Source::Code);
    assert_eq!(rows["seconds"].definition.schedule, every(10));
    assert_eq!(rows["text"].definition.schedule, every(10));
    assert_eq!(rows["text"].definition.queue.as_deref(), Some("math"));
    assert_eq!(rows["text"].definition.priority, Some(5));
    assert_eq!(rows["text"].definition.expire_seconds, Some(30));
    assert_eq!(rows["hourly"].definition.kwargs["x"], json!(1));
    assert_eq!(
        rows["mondays"].definition.schedule.describe(),
        "At 07:30 on Monday"
    );
    assert_eq!(rows["seconds"].definition.args, vec![json!(1), json!(2)]);

    // Syncing again changes nothing; dropping an entry deletes its row, and only its row.
    let mut fewer = settings.clone();
    fewer.beat_schedule.remove("hourly");
    let app = Celery::from_settings(fewer).expect("app");
    let unchanged_before = h.task("seconds").date_changed;
    Beat::new(&app)
        .expect("beat")
        .sync_definitions()
        .await
        .expect("sync");
    assert!(
        h.store.get("hourly").expect("get").is_none(),
        "removed entry deleted"
    );
    assert_eq!(
        h.task("seconds").date_changed,
        unchanged_before,
        "unchanged row rewritten"
    );
    assert!(
        h.store.get("from code").expect("get").is_none(),
        "code rows go when the code no longer adds them"
    );

    // A bad entry fails at startup, naming the entry and the key.
    let mut bad = settings.clone();
    bad.beat_schedule.insert(
        "broken".into(),
        toml::from_str::<toml::Value>(
            "task = \"x\"\nschedule = { crontab = { minute = \"0\", day_of_week = \"7\" } }",
        )
        .expect("toml"),
    );
    let error = Celery::from_settings(bad)
        .expect_err("a bad schedule is refused")
        .to_string();
    assert!(error.contains("\"broken\""), "{error}");
    assert!(error.contains("day_of_week"), "{error}");
}

on_both_databases!(periodic_task_name_reaches_the_result);
async fn periodic_task_name_reaches_the_result(mut h: Harness) {
    h.save(&definition("adder", every(1), "celery"));
    let worker = tokio::spawn(
        Worker::new(&h.app)
            .queues(["celery"])
            .concurrency(2)
            .run(h.shutdown.clone()),
    );
    h.start_beat();
    let store = h.store.clone();
    let backend = h.app.backend().expect("results").clone();
    let record = eventually(Duration::from_secs(8), "a result from beat", || {
        let firing = store
            .firings(h.task("adder").id)
            .expect("firings")
            .into_iter()
            .next()?;
        let record = futures_lite(backend.fetch(&firing.task_id))?;
        record.status.is_ready().then_some(record)
    });
    assert_eq!(record.periodic_task_name.as_deref(), Some("adder"));
    assert_eq!(record.result, Some(json!(3)));
    h.stop().await;
    worker.await.expect("worker task").expect("worker ran");
}

/// Runs a backend future to completion from inside `eventually` (a blocking poll loop).
fn futures_lite<F, T>(future: F) -> Option<T>
where
    F: std::future::Future<Output = celery_web::Result<Option<T>>>,
{
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(future))
        .expect("backend answers")
}

/// How long the three-beat soak runs (`CELERY_WEB_BEAT_SOAK_SECONDS` to run longer).
fn soak_seconds() -> u64 {
    std::env::var("CELERY_WEB_BEAT_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120)
}

fn spawn_beat(db: &TestDb, name: &str) -> Process {
    let log = db.dir.path().join(format!("beat-{name}.log"));
    Process::start(db.site(&["celery", "beat", "-l", "info"]), log, "beat")
}

/// Three beat processes on one database, every-second and every-three-seconds schedules:
/// every slot is enqueued exactly once (counted in the broker), none is missed, even while
/// one beat is killed with SIGKILL and started again.
fn three_beats_fire_each_slot_once(kind: Database) {
    let Some(db) = TestDb::new(kind) else {
        return;
    };
    let app = db.app();
    let store = BeatStore::for_app(&app).expect("store");
    let start = (Utc::now() + chrono::Duration::seconds(3)).trunc_subsecs(0);
    let mut ids = BTreeMap::new();
    for (name, seconds) in [("every 1s", 1), ("every 3s", 3), ("every 1s again", 1)] {
        let mut definition = definition(name, every(seconds), "soak");
        definition.start_time = Some(start);
        ids.insert(
            name,
            (
                store.save(&definition, Source::Database).expect("saved"),
                seconds,
            ),
        );
    }
    let mut beats: Vec<Process> = (0..3).map(|n| spawn_beat(&db, &n.to_string())).collect();
    let seconds = soak_seconds();
    std::thread::sleep(Duration::from_secs(seconds / 3));
    beats[0].signal("KILL");
    beats[0].wait_exit(Duration::from_secs(5));
    beats[0] = spawn_beat(&db, "0-again");
    std::thread::sleep(Duration::from_secs(seconds - seconds / 3));
    for beat in &beats {
        beat.signal("TERM");
    }
    for beat in &mut beats {
        assert!(
            beat.wait_exit(Duration::from_secs(10)).is_some(),
            "beat stops on SIGTERM"
        );
    }
    let end = Utc::now();
    let messages = queued(&app, "soak");
    for (name, (id, every_seconds)) in ids {
        let firings = store.firings(id).expect("firings");
        let sent: Vec<&Message> = messages
            .iter()
            .filter(|m| m.extra_header("periodic_task_name") == Some(name))
            .collect();
        assert_eq!(sent.len(), firings.len(), "{name}: one message per firing");
        let mut task_ids: Vec<&str> = sent.iter().map(|m| m.id()).collect();
        task_ids.sort_unstable();
        task_ids.dedup();
        assert_eq!(task_ids.len(), sent.len(), "{name}: a message sent twice");
        // Slots from start_time on, none twice and none closer than the interval (a stale
        // beat firing a slot of its own would be); a stall of all beats longer than
        // CATCH_UP_AFTER may realign the slots once, by design.
        assert_eq!(
            firings.first().map(|f| f.scheduled_at),
            Some(start),
            "{name}"
        );
        for pair in firings.windows(2) {
            let gap = pair[1].scheduled_at - pair[0].scheduled_at;
            assert!(
                gap >= chrono::Duration::seconds(every_seconds),
                "{name}: slots {} and {} are closer than the interval",
                pair[0].scheduled_at,
                pair[1].scheduled_at
            );
        }
        let expected = (end - start).num_seconds() / every_seconds;
        let fired = i64::try_from(firings.len()).expect("count");
        assert!(
            (expected - 3..=expected + 1).contains(&fired),
            "{name}: {fired} firings, expected about {expected}"
        );
    }
}

#[test]
fn three_beats_fire_each_slot_once_sqlite() {
    three_beats_fire_each_slot_once(Database::Sqlite);
}

#[test]
fn three_beats_fire_each_slot_once_postgres() {
    three_beats_fire_each_slot_once(Database::Postgres);
}

#[test]
fn beat_list_prints_schedules_in_words() {
    let Some(db) = TestDb::new(Database::Sqlite) else {
        return;
    };
    db.run_site(&["migrate"]);
    let out = db.run_site(&["celery", "beat", "--list"]);
    assert!(out.contains("add every 30 seconds"), "{out}");
    assert!(out.contains("every 30 seconds"), "{out}");
    assert!(out.contains("weekly sales report"), "{out}");
    assert!(out.contains("At 07:00 on Monday"), "{out}");
    assert!(out.contains("next:"), "{out}");
}

on_both_databases!(the_change_marker_moves_on_edits_not_on_firings);
async fn the_change_marker_moves_on_edits_not_on_firings(h: Harness) {
    let id = h.save(&definition("marked", every(1), "marker"));
    let task = h.task("marked");
    let slot = task.next_firing().expect("due");
    let before = h.store.version().expect("version");
    let message = h
        .app
        .message_for(&task.signature(Utc::now()))
        .expect("message");
    let fired = h
        .store
        .fire(&task, slot, Utc::now(), &message, "test", true)
        .expect("fire");
    assert_eq!(fired, celery_web::beat::Fired::Claimed { enqueued: true });
    assert_eq!(
        h.store.version().expect("version"),
        before,
        "a firing is not an edit"
    );
    // The same slot again, or the stale row again: taken.
    let again = h
        .store
        .fire(&task, slot, Utc::now(), &message, "test", true)
        .expect("fire");
    assert_eq!(again, celery_web::beat::Fired::Taken);
    let later = slot + chrono::Duration::seconds(1);
    let stale = h
        .store
        .fire(&task, later, Utc::now(), &message, "test", true)
        .expect("fire");
    assert_eq!(
        stale,
        celery_web::beat::Fired::Taken,
        "a stale row must not fire"
    );
    assert_eq!(h.queued("marker").len(), 1);
    // An edit of last_run_at with SQL (not beat's bookkeeping) is noticed.
    set_time(&h.app, id, "last_run_at", Utc::now());
    assert!(
        h.store.version().expect("version") > before,
        "an SQL edit moves the marker"
    );
}

/// With a broker that is not the beat's database, the firing key is claimed first and the
/// message published after; still once per slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_then_publishes_with_another_broker() {
    let Some(db) = TestDb::new(Database::Sqlite) else {
        return;
    };
    let settings = celery_web::Settings {
        broker_url: "memory://".to_owned(),
        database_url: Some(db.url.clone()),
        result_backend: "db".to_owned(),
        ..celery_web::Settings::default()
    };
    let app = Celery::from_settings(settings).expect("app");
    app.migrate().expect("migrations");
    let store = BeatStore::for_app(&app).expect("store");
    let id = store
        .save(
            &definition("elsewhere", every(1), "elsewhere"),
            Source::Database,
        )
        .expect("saved");
    let shutdown = Shutdown::new();
    let beats: Vec<_> = (0..2)
        .map(|n| {
            let beat = Beat::new(&app).expect("beat").ident(format!("b{n}"));
            tokio::spawn(beat.run(shutdown.clone()))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(4500)).await;
    shutdown.warm();
    for beat in beats {
        beat.await.expect("beat task").expect("beat ran");
    }
    let firings = store.firings(id).expect("firings");
    assert!(firings.len() >= 3, "{firings:?}");
    let request = celery_web::broker::FetchRequest {
        queues: vec!["elsewhere".into()],
        limit: 100,
        wait: Duration::from_millis(100),
        consumer: "test".into(),
        stop: None,
    };
    let delivered = app.broker().fetch(&request).await.expect("fetch");
    assert_eq!(
        delivered.len(),
        firings.len(),
        "one published message per firing"
    );
}

/// SQLite stores anything in any column: a row whose start_time is not a time is reported,
/// and the other rows still fire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_row_does_not_stop_the_others() {
    let Some(mut h) = Harness::new(Database::Sqlite) else {
        return;
    };
    let broken = h.save(&definition("broken", every(1), "broken"));
    h.save(&definition("healthy", every(1), "healthy"));
    {
        use diesel::prelude::*;
        let statement =
            format!("UPDATE celery_periodic_task SET start_time = 'soon' WHERE id = {broken}");
        let run = || -> celery_web::Result<usize> {
            Ok(celery_web::db::with_connection!(
                h.app.db().expect("db"),
                |conn| diesel::sql_query(&statement).execute(conn)?
            ))
        };
        run().expect("update");
    }
    let loaded = h.store.load().expect("load");
    let bad = loaded
        .iter()
        .find_map(|row| row.as_ref().err())
        .expect("the broken row is reported");
    assert_eq!(bad.name, "broken");
    assert!(loaded
        .iter()
        .any(|row| row.as_ref().is_ok_and(|t| t.definition.name == "healthy")));
    h.start_beat();
    eventually(Duration::from_secs(5), "the healthy task fires", || {
        (!h.queued("healthy").is_empty()).then_some(())
    });
    assert!(h.queued("broken").is_empty());
    h.stop().await;
}

/// `site celery worker -B` runs beat in the worker process: a periodic task fires and the
/// same worker runs it, its result row naming the periodic task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_with_dash_b_fires_and_runs_periodic_tasks() {
    let Some(db) = TestDb::new(Database::Sqlite) else {
        return;
    };
    let app = db.app();
    let store = BeatStore::for_app(&app).expect("store");
    let id = store
        .save(
            &definition("every second", every(1), "celery"),
            Source::Database,
        )
        .expect("saved");
    let worker = db.spawn_worker("dash-b", &["-B"]);
    worker.wait_for_log(
        "beat: sending due task every second",
        Duration::from_secs(15),
    );
    let backend = app.backend().expect("results").clone();
    let record = eventually(
        Duration::from_secs(10),
        "a result of the periodic task",
        || {
            let firing = store.firings(id).expect("firings").into_iter().next()?;
            let record = futures_lite(backend.fetch(&firing.task_id))?;
            record.status.is_ready().then_some(record)
        },
    );
    assert_eq!(record.periodic_task_name.as_deref(), Some("every second"));
    assert_eq!(record.result, Some(json!(3)));
    worker.signal("TERM");
}
