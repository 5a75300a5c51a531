//! `--pidfile`: the process's id in a file, as Celery writes it; a second `worker` or `beat`
//! with the same file refuses to start while that process is alive. A file left by a process
//! that has died (a crash, `kill -9`) is replaced.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The pid file of this process, removed when dropped (at a normal exit).
#[derive(Debug)]
pub(super) struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Writes this process's id to `path`, unless it names a live process.
    pub(super) fn create(path: &Path) -> Result<PidFile> {
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Ok(pid) = text.trim().parse::<u32>() {
                if pid != std::process::id() && alive(pid) {
                    return Err(Error::Config(format!(
                        "pidfile {} names process {pid}, which is still running: \
                         is another one already running? (remove the file if not)",
                        path.display()
                    )));
                }
            }
            // Stale (dead process, or not a pid): replace it, as Celery does.
            std::fs::remove_file(path)?;
        }
        // create_new: two processes starting at once do not both win.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| Error::Config(format!("pidfile {}: {e}", path.display())))?;
        writeln!(file, "{}", std::process::id())?;
        Ok(PidFile {
            path: path.to_owned(),
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether a process with this id exists: `/proc/<pid>` on Linux (whoever owns it), else
/// `kill -0`, which signals nothing.
fn alive(pid: u32) -> bool {
    if Path::new("/proc/self").exists() {
        return Path::new("/proc").join(pid.to_string()).exists();
    }
    std::process::Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}
