//! Tasks only the integration tests need. They live here, not in the example site, because
//! one writes to any file its arguments name. The test package's `site` binary links them.

use std::io::Write;
use std::time::Duration;

use celery_web::prelude::*;

/// Appends `line` to the file at `path`, then sleeps `seconds`: shows how often and how long
/// a task ran, across processes.
#[task(acks_late)]
pub async fn mark_and_sleep(path: String, line: String, seconds: f64) -> TaskResult<String> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    file.write_all(format!("{line}\n").as_bytes())?;
    drop(file);
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    Ok(line)
}

/// Appends `n pid` (the process that ran it) to the file at `path` and returns its pid: the
/// process-pool tests tell children apart by it, and count runs in the file.
#[task]
pub fn note_pid(path: String, n: u64) -> TaskResult<u32> {
    let pid = std::process::id();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    // One write call per line (`writeln!` on an unbuffered file writes each piece apart, so
    // two processes appending at once would interleave them).
    file.write_all(format!("{n} {pid}\n").as_bytes())?;
    Ok(pid)
}

/// Spins forever: a synchronous body that only a process pool's hard time limit can stop.
#[task]
pub fn spin_forever() -> TaskResult<u64> {
    let mut turns = 0u64;
    loop {
        turns = std::hint::black_box(turns.wrapping_add(1));
    }
}

/// Leaks `megabytes` MB that it writes to (so they are resident), then returns its pid.
#[task]
pub fn leak_megabytes(megabytes: u64) -> TaskResult<u32> {
    let size = usize::try_from(megabytes).unwrap_or(0) << 20;
    std::mem::forget(std::hint::black_box(vec![1u8; size]));
    Ok(std::process::id())
}

/// The first run writes its pid to `path` and sleeps `seconds` (the test kills it); a later
/// run (the message came back) finds the file and returns `"again"` at once.
#[task(acks_late)]
pub fn note_pid_and_sleep(path: String, seconds: f64) -> TaskResult<String> {
    if std::path::Path::new(&path).exists() {
        return Ok("again".to_owned());
    }
    std::fs::write(&path, std::process::id().to_string())?;
    std::thread::sleep(Duration::from_secs_f64(seconds));
    Ok("slept".to_owned())
}

/// Called by the `site` binary so the linker keeps this module, and with it the tasks'
/// registrations.
pub fn link() {}
