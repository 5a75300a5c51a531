//! The process pool (`site celery worker --pool process`) with real worker processes and
//! their children, on SQLite, PostgreSQL and Redis: a synchronous endless loop stopped at its
//! hard limit, children replaced after `--max-tasks-per-child` tasks and past
//! `--max-memory-per-child`, and a child killed mid-task (`WorkerLostError`, or the message
//! requeued with `task_reject_on_worker_lost`), and a warm shutdown that lets the running
//! task finish in its child; remote control's terminate stopping a synchronous task in its
//! child (Redis only: the database broker has no remote control).
//!
//! Redis databases used: 4 to 8 (one per scenario).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use celery_web::backend::TaskRecord;
use celery_web::control::Control;
use celery_web::task::State;
use celery_web::{Celery, Settings};
use celery_web_tests::redis_server::{PrivateRedis, TestRedis};
use celery_web_tests::tasks::{leak_megabytes, note_pid, note_pid_and_sleep, spin_forever};
use celery_web_tests::{
    eventually, site_binary, site_config, Database, Process, ScratchDir, TestDb,
};
use example_site::demo::tasks::notices_soft_limit;
use serde_json::{json, Map, Value};

/// A broker and result backend, and site processes pointed at them.
struct Site {
    app: Celery,
    env: Vec<(String, String)>,
    dir: ScratchDir,
    _db: Option<TestDb>,
}

impl Site {
    fn database(kind: Database) -> Option<Site> {
        let db = TestDb::new(kind)?;
        let app = db.app();
        Some(Site {
            app,
            env: db.env(),
            dir: ScratchDir::new(),
            _db: Some(db),
        })
    }

    fn redis(number: u8) -> Option<Site> {
        let redis = TestRedis::shared(number)?;
        let settings = Settings {
            broker_url: redis.url.clone(),
            result_backend: redis.url.clone(),
            ..Settings::default()
        };
        Some(Site {
            app: Celery::from_settings(settings).expect("app"),
            env: vec![
                ("CELERY_BROKER_URL".into(), redis.url.clone()),
                ("CELERY_RESULT_BACKEND".into(), redis.url.clone()),
            ],
            dir: ScratchDir::new(),
            _db: None,
        })
    }

    /// `site celery worker --pool process -c <children> extra...`.
    fn worker(&self, name: &str, children: usize, extra: &[&str], env: &[(&str, &str)]) -> Process {
        let children = children.to_string();
        let hostname = format!("{name}@%h");
        let mut command = Command::new(site_binary());
        command
            .args(["celery", "worker", "-l", "info", "--pool", "process"])
            .args(["-c", &children, "-n", &hostname])
            .args(extra)
            .current_dir(self.dir.path())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(env.iter().copied())
            .env("SITE_CONFIG", site_config())
            .env_remove("RUST_LOG");
        let log = self.dir.path().join(format!("worker-{name}.log"));
        let worker = Process::start(command, log, "the worker");
        worker.wait_for_log("worker ready", Duration::from_secs(60));
        worker
    }

    async fn record(&self, id: &str, limit: Duration) -> TaskRecord {
        self.app
            .backend()
            .expect("results on")
            .wait(id, limit)
            .await
            .expect("backend answers")
            .filter(|r| r.status.is_ready())
            .unwrap_or_else(|| panic!("task {id} not finished within {limit:?}"))
    }

    fn file(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

macro_rules! everywhere {
    ($scenario:ident, $redis_db:expr) => {
        mod $scenario {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                if let Some(site) = Site::database(Database::Sqlite) {
                    super::$scenario(&site).await;
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(site) = Site::database(Database::Postgres) {
                    super::$scenario(&site).await;
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                if let Some(site) = Site::redis($redis_db) {
                    super::$scenario(&site).await;
                }
            }
        }
    };
}

/// Children of `parent` (from `/proc`).
fn children_of(parent: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces, so read after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            children.push(pid);
        }
    }
    children
}

/// Resident memory of `pid` now (`VmRSS`), KiB; 0 once it is gone.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

async fn a_sync_endless_loop_stops_at_its_hard_limit(site: &Site) {
    let worker = site.worker("hard", 1, &[], &[]);
    let first_children = children_of(worker.child.id());
    assert_eq!(first_children.len(), 1, "one child: {first_children:?}");
    let clock = Instant::now();
    let spinning = spin_forever::s()
        .time_limit(1.0)
        .apply_async_on(&site.app)
        .await
        .unwrap();
    let record = site.record(spinning.id(), Duration::from_secs(20)).await;
    assert_eq!(record.status, State::Failure);
    assert_eq!(
        record.result,
        Some(json!({
            "exc_type": "TimeLimitExceeded",
            "exc_message": [1],
            "exc_module": "billiard.exceptions",
        }))
    );
    assert_eq!(record.traceback, None);
    assert!(
        clock.elapsed() < Duration::from_secs(10),
        "{:?}",
        clock.elapsed()
    );
    // The only slot is free again, in a new child.
    let path = site.file("after.txt");
    let next = note_pid::s(path, 1)
        .apply_async_on(&site.app)
        .await
        .unwrap();
    let pid = next.get(Duration::from_secs(30)).await.unwrap();
    assert!(!first_children.contains(&pid), "{pid} is the killed child");
    assert_ne!(pid, worker.child.id());
    assert!(
        !Path::new(&format!("/proc/{}", first_children[0])).exists()
            || std::fs::read_to_string(format!("/proc/{}/stat", first_children[0]))
                .is_ok_and(|s| s.contains(") Z")),
        "the timed-out child still runs"
    );
    // The soft limit still reaches a task in a child (an async one, on the child's runtime).
    let soft = notices_soft_limit::s(5.0)
        .apply_async_on(&site.app)
        .await
        .unwrap();
    assert!(soft.get(Duration::from_secs(10)).await.unwrap());
}
everywhere!(a_sync_endless_loop_stops_at_its_hard_limit, 4);

async fn children_are_replaced_after_max_tasks(site: &Site) {
    let worker = site.worker("max-tasks", 2, &["--max-tasks-per-child", "10"], &[]);
    let path = site.file("runs.txt");
    let mut results = Vec::new();
    for n in 0..100u64 {
        results.push(
            note_pid::s(path.clone(), n)
                .apply_async_on(&site.app)
                .await
                .unwrap(),
        );
    }
    let mut by_pid: BTreeMap<u32, usize> = BTreeMap::new();
    for result in &results {
        let pid = result.get(Duration::from_secs(120)).await.unwrap();
        *by_pid.entry(pid).or_default() += 1;
    }
    // Every task ran once (the file has one line per run).
    let lines = std::fs::read_to_string(&path).unwrap();
    let runs: Vec<u64> = lines
        .lines()
        .map(|l| l.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(runs.len(), 100, "{lines}");
    assert_eq!(runs.iter().collect::<HashSet<_>>().len(), 100);
    // No child ran more than 10; ten generations (a couple more if the last ones were cut
    // short by the end of the run).
    assert!(by_pid.values().all(|n| *n <= 10), "{by_pid:?}");
    assert!((10..=12).contains(&by_pid.len()), "{by_pid:?}");
    assert!(
        by_pid.values().filter(|n| **n == 10).count() >= 8,
        "{by_pid:?}"
    );
    assert!(!by_pid.contains_key(&worker.child.id()));
}
everywhere!(children_are_replaced_after_max_tasks, 5);

async fn leaking_children_are_replaced_past_max_memory(site: &Site) {
    let worker = site.worker("max-memory", 2, &["--max-memory-per-child", "51200"], &[]);
    let mut results = Vec::new();
    for _ in 0..500 {
        results.push(
            leak_megabytes::s(1)
                .apply_async_on(&site.app)
                .await
                .unwrap(),
        );
    }
    let mut pids = HashSet::new();
    let mut largest_total = 0;
    for result in &results {
        pids.insert(result.get(Duration::from_secs(180)).await.unwrap());
        let parent = worker.child.id();
        let total: u64 =
            rss_kib(parent) + children_of(parent).into_iter().map(rss_kib).sum::<u64>();
        largest_total = largest_total.max(total);
    }
    // Unbounded, the two children would hold 500 MB between them.
    assert!(
        largest_total < 250 * 1024,
        "total resident {largest_total} KiB"
    );
    assert!(
        pids.len() >= 500 / 50,
        "{} children for 500 MB leaked",
        pids.len()
    );
    println!(
        "largest total resident: {largest_total} KiB over {} children",
        pids.len()
    );
}
everywhere!(leaking_children_are_replaced_past_max_memory, 6);

/// Waits for the task's first run to write its pid, then kills that child with SIGKILL.
fn kill_the_child_running(path: &str) -> u32 {
    let pid: u32 = eventually(Duration::from_secs(30), "the task to start", || {
        std::fs::read_to_string(path).ok()?.trim().parse().ok()
    });
    let status = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    pid
}

async fn a_child_killed_mid_task_is_a_worker_lost_error(site: &Site) {
    let _worker = site.worker("lost", 2, &[], &[]);
    let path = site.file("pid.txt");
    let result = note_pid_and_sleep::s(path.clone(), 60.0)
        .apply_async_on(&site.app)
        .await
        .unwrap();
    let killed = kill_the_child_running(&path);
    let record = site.record(result.id(), Duration::from_secs(20)).await;
    assert_eq!(record.status, State::Failure);
    assert_eq!(
        record.result,
        Some(json!({
            "exc_type": "WorkerLostError",
            "exc_message": ["Worker exited prematurely: signal 9 (SIGKILL) Job: 1."],
            "exc_module": "billiard.exceptions",
        }))
    );
    // The pool goes on, in the other child and a replacement.
    let runs = site.file("runs.txt");
    for n in 0..4 {
        let pid = note_pid::s(runs.clone(), n)
            .apply_async_on(&site.app)
            .await
            .unwrap()
            .get(Duration::from_secs(30))
            .await
            .unwrap();
        assert_ne!(pid, killed);
    }

    // With task_reject_on_worker_lost the message goes back to the queue and runs again.
    drop(_worker);
    let _worker = site.worker(
        "requeue",
        2,
        &[],
        &[("CELERY_TASK_REJECT_ON_WORKER_LOST", "true")],
    );
    let path = site.file("pid-requeued.txt");
    let result = note_pid_and_sleep::s(path.clone(), 60.0)
        .apply_async_on(&site.app)
        .await
        .unwrap();
    kill_the_child_running(&path);
    assert_eq!(result.get(Duration::from_secs(30)).await.unwrap(), "again");
}
everywhere!(a_child_killed_mid_task_is_a_worker_lost_error, 7);

async fn a_warm_shutdown_finishes_the_running_task_in_its_child(site: &Site) {
    let mut worker = site.worker("warm", 2, &[], &[]);
    let children = children_of(worker.child.id());
    assert_eq!(children.len(), 2, "{children:?}");
    let path = site.file("pid.txt");
    let result = note_pid_and_sleep::s(path.clone(), 2.0)
        .apply_async_on(&site.app)
        .await
        .unwrap();
    eventually(Duration::from_secs(30), "the task to start", || {
        std::fs::read_to_string(&path).ok()
    });
    worker.signal("TERM");
    let status = worker
        .wait_exit(Duration::from_secs(30))
        .expect("the worker stops after its task");
    assert!(status.success(), "{status}: {}", worker.log());
    assert_eq!(result.get(Duration::from_secs(10)).await.unwrap(), "slept");
    for child in children {
        let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.contains(") Z"),
            "child {child} runs on"
        );
    }
}
everywhere!(a_warm_shutdown_finishes_the_running_task_in_its_child, 8);

/// Remote control's `revoke` with `terminate` stops a synchronous task in its child (on
/// Redis, whose broker broadcasts): REVOKED, the child replaced, and the only slot runs the
/// next task; `stats` lists the children before and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_sync_task_frees_its_child() {
    let Some(redis) = PrivateRedis::start() else {
        return;
    };
    let url = redis.url();
    let settings = Settings {
        broker_url: url.clone(),
        result_backend: url.clone(),
        ..Settings::default()
    };
    let site = Site {
        app: Celery::from_settings(settings).expect("app"),
        env: vec![
            ("CELERY_BROKER_URL".into(), url.clone()),
            ("CELERY_RESULT_BACKEND".into(), url),
        ],
        dir: ScratchDir::new(),
        _db: None,
    };
    let worker = site.worker("terminate", 1, &[], &[]);
    let first_children = children_of(worker.child.id());
    assert_eq!(first_children.len(), 1, "one child: {first_children:?}");
    let spinning = spin_forever::s().apply_async_on(&site.app).await.unwrap();
    let id = spinning.id().to_owned();
    let control = Control::new(&site.app).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let replies = control
            .call("active", Map::new(), None, Duration::from_millis(500))
            .await
            .unwrap();
        if replies
            .iter()
            .any(|(_, reply)| reply.to_string().contains(&id))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{id} never became active: {replies:?}"
        );
    }
    // `stats` shows the pool's child (Celery's `pool.processes`, with tasks and memory).
    let stats = control
        .call("stats", Map::new(), None, Duration::from_secs(2))
        .await
        .unwrap();
    let pool = &stats.first().expect("a stats reply").1["pool"];
    assert_eq!(pool["processes"], json!(first_children), "{pool}");
    assert_eq!(
        pool["children"][0]["pid"],
        json!(first_children[0]),
        "{pool}"
    );
    let arguments = json!({"task_id": id, "terminate": true, "signal": "SIGTERM"});
    let Value::Object(arguments) = arguments else {
        unreachable!()
    };
    control.cast("revoke", arguments, None).await.unwrap();
    let record = site.record(&id, Duration::from_secs(20)).await;
    assert_eq!(record.status, State::Revoked, "{record:?}");
    let path = site.file("after-terminate.txt");
    let next = note_pid::s(path, 1)
        .apply_async_on(&site.app)
        .await
        .unwrap();
    let pid = next.get(Duration::from_secs(30)).await.unwrap();
    assert!(
        !first_children.contains(&pid),
        "{pid} is the terminated child"
    );
    let old = first_children[0];
    eventually(Duration::from_secs(5), "the terminated child gone", || {
        let stat = std::fs::read_to_string(format!("/proc/{old}/stat")).ok();
        stat.is_none_or(|s| s.contains(") Z")).then_some(())
    });
    drop(worker);
    drop(redis);
}
