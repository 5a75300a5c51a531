//! `site celery deploy supervisor|systemd`: ready-to-use process manager files for the site's
//! web server, its worker and beat, filled with this binary's path, its working directory and
//! the `CELERY_*`/`SITE_*` environment it was run with.
//!
//! Both formats stop with SIGTERM (the worker's warm shutdown: running tasks finish, unstarted
//! ones go back to the queue) and wait long enough for it before a SIGKILL: one minute, or the
//! longest `task_time_limit` plus 30 seconds when that is longer.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::{Celery, Error, Result};

/// Options of `site celery deploy`.
#[derive(Debug, Clone, clap::Args)]
pub struct DeployArgs {
    /// Which process manager the files are for.
    #[arg(value_enum)]
    pub manager: Manager,
    /// Unix user the processes run as (default: none written; supervisord's or systemd's own).
    #[arg(long)]
    pub user: Option<String>,
    /// Working directory of the processes (default: the current directory).
    #[arg(long)]
    pub workdir: Option<PathBuf>,
    /// Prefix of the program (supervisor) or unit (systemd) names (default: the binary's name).
    #[arg(long)]
    pub name: Option<String>,
    /// Folder for supervisor's log files (default: /var/log/<name>); systemd uses the journal.
    #[arg(long)]
    pub logdir: Option<PathBuf>,
    /// Write the files into this folder instead of printing them.
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
}

/// A process manager `site celery deploy` writes files for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Manager {
    /// One supervisord include file with a program per process and a group of them.
    Supervisor,
    /// One systemd service unit per process.
    Systemd,
}

/// What every generated file needs to know about the site.
#[derive(Debug, Clone)]
struct Site {
    binary: PathBuf,
    workdir: PathBuf,
    name: String,
    user: Option<String>,
    logdir: PathBuf,
    environment: Vec<(String, String)>,
    stop_wait_secs: u64,
}

/// The three long-running processes of a site: (role, arguments after the binary).
const PROCESSES: [(&str, &str); 3] = [
    ("web", "runserver"),
    ("worker", "celery worker"),
    ("beat", "celery beat"),
];

pub(super) fn run(app: &Celery, args: DeployArgs) -> Result<i32> {
    let binary = std::env::current_exe()?;
    let name = match args.name {
        Some(name) => name,
        None => binary
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("site")
            .to_owned(),
    };
    let workdir = match args.workdir {
        Some(dir) => dir,
        None => std::env::current_dir()?,
    };
    let mut environment: Vec<(String, String)> = std::env::vars()
        // CELERY_WEB_* are celery-web's own tooling variables (tests, benches), not settings.
        .filter(|(key, _)| {
            (key.starts_with("CELERY_") && !key.starts_with("CELERY_WEB_"))
                || key.starts_with("SITE_")
        })
        .collect();
    environment.sort();
    let longest_task = app.settings().task_time_limit.unwrap_or(0.0).max(0.0);
    let site = Site {
        binary,
        logdir: args
            .logdir
            .unwrap_or_else(|| Path::new("/var/log").join(&name)),
        workdir,
        name,
        user: args.user,
        environment,
        stop_wait_secs: stop_wait_secs(longest_task),
    };
    let files = match args.manager {
        Manager::Supervisor => vec![(format!("{}.conf", site.name), supervisor(&site)?)],
        Manager::Systemd => PROCESSES
            .iter()
            .map(|(role, command)| {
                Ok((
                    format!("{}-{role}.service", site.name),
                    systemd(&site, role, command)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?,
    };
    match args.output {
        Some(folder) => {
            std::fs::create_dir_all(&folder)?;
            for (file, text) in files {
                let path = folder.join(file);
                std::fs::write(&path, text)?;
                println!("{}", path.display());
            }
        }
        None => {
            for (index, (file, text)) in files.iter().enumerate() {
                if index > 0 {
                    println!();
                }
                println!("# ---- {file}");
                print!("{text}");
            }
        }
    }
    Ok(0)
}

/// Seconds a process manager waits after SIGTERM before SIGKILL: a minute, or the longest
/// task's hard time limit and 30 seconds more.
fn stop_wait_secs(task_time_limit: f64) -> u64 {
    // The limit is a number of seconds from the settings file; ceil keeps a fraction's worth.
    let limit = if task_time_limit.is_finite() {
        task_time_limit.ceil().min(86_400.0) as u64
    } else {
        0
    };
    (limit + 30).max(60)
}

/// Quotes a word for a supervisor `command=` or systemd `ExecStart=` line when it needs it;
/// `%` is doubled (both expand `%` sequences: supervisor's `%(name)s`, systemd's specifiers),
/// so `amqp://h/%2f` stays itself.
fn quoted(word: &str) -> Result<String> {
    if word.contains(['\n', '"', '\\']) {
        return Err(Error::Config(format!(
            "cannot write {word:?} into a process manager file (newline, quote or backslash)"
        )));
    }
    let word = word.replace('%', "%%");
    Ok(if word.contains(' ') {
        format!("\"{word}\"")
    } else {
        word
    })
}

fn supervisor(site: &Site) -> Result<String> {
    let mut text = String::new();
    let binary = quoted(&site.binary.to_string_lossy())?;
    let environment = site
        .environment
        .iter()
        .map(|(key, value)| Ok(format!("{key}=\"{}\"", quoted(value)?.trim_matches('"'))))
        .collect::<Result<Vec<_>>>()?
        .join(",");
    let mut programs = Vec::new();
    for (role, command) in PROCESSES {
        let program = format!("{}-{role}", site.name);
        let _ = writeln!(text, "[program:{program}]");
        let _ = writeln!(text, "command={binary} {command}");
        let _ = writeln!(text, "directory={}", site.workdir.display());
        if let Some(user) = &site.user {
            let _ = writeln!(text, "user={user}");
        }
        if !environment.is_empty() {
            let _ = writeln!(text, "environment={environment}");
        }
        text.push_str("autostart=true\nautorestart=true\nstartsecs=10\n");
        // SIGTERM is the warm shutdown; the wait covers the longest task.
        let _ = writeln!(
            text,
            "stopsignal=TERM\nstopwaitsecs={}",
            site.stop_wait_secs
        );
        // The signal reaches the whole process group (a worker's children included).
        text.push_str("stopasgroup=true\nkillasgroup=true\n");
        let _ = writeln!(
            text,
            "redirect_stderr=true\nstdout_logfile={}\n",
            site.logdir.join(format!("{role}.log")).display()
        );
        programs.push(program);
    }
    let _ = writeln!(
        text,
        "[group:{}]\nprograms={}",
        site.name,
        programs.join(",")
    );
    Ok(text)
}

fn systemd(site: &Site, role: &str, command: &str) -> Result<String> {
    let mut text = String::new();
    let _ = writeln!(text, "[Unit]");
    let _ = writeln!(text, "Description={} {role}", site.name);
    text.push_str("After=network-online.target\nWants=network-online.target\n\n[Service]\n");
    text.push_str("Type=simple\n");
    if let Some(user) = &site.user {
        let _ = writeln!(text, "User={user}");
    }
    let _ = writeln!(text, "WorkingDirectory={}", site.workdir.display());
    for (key, value) in &site.environment {
        let _ = writeln!(
            text,
            "Environment=\"{key}={}\"",
            quoted(value)?.trim_matches('"')
        );
    }
    let _ = writeln!(
        text,
        "ExecStart={} {command}",
        quoted(&site.binary.to_string_lossy())?
    );
    text.push_str("Restart=always\nRestartSec=2\n");
    // SIGTERM to the main process (the warm shutdown), SIGKILL to all after the timeout.
    let _ = writeln!(
        text,
        "KillSignal=SIGTERM\nKillMode=mixed\nTimeoutStopSec={}",
        site.stop_wait_secs
    );
    text.push_str("\n[Install]\nWantedBy=multi-user.target\n");
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> Site {
        Site {
            binary: PathBuf::from("/srv/my site/bin/site"),
            workdir: PathBuf::from("/srv/site"),
            name: "site".into(),
            user: Some("www".into()),
            logdir: PathBuf::from("/var/log/site"),
            environment: vec![("CELERY_BROKER_URL".into(), "redis://r:6379/0".into())],
            stop_wait_secs: 60,
        }
    }

    #[test]
    fn stop_wait_covers_the_longest_task() {
        assert_eq!(stop_wait_secs(0.0), 60);
        assert_eq!(stop_wait_secs(29.5), 60);
        assert_eq!(stop_wait_secs(300.2), 331);
        assert_eq!(stop_wait_secs(f64::INFINITY), 60);
    }

    #[test]
    fn supervisor_has_a_program_per_process_and_a_group() {
        let text = supervisor(&site()).unwrap();
        for program in ["site-web", "site-worker", "site-beat"] {
            assert!(text.contains(&format!("[program:{program}]")), "{text}");
        }
        assert!(text.contains("command=\"/srv/my site/bin/site\" celery worker\n"));
        assert!(text.contains("environment=CELERY_BROKER_URL=\"redis://r:6379/0\"\n"));
        assert!(text.contains("stopsignal=TERM\nstopwaitsecs=60\n"));
        assert!(text.contains("user=www\n"));
        assert!(text.contains("[group:site]\nprograms=site-web,site-worker,site-beat\n"));
    }

    #[test]
    fn systemd_unit_restarts_and_stops_warmly() {
        let text = systemd(&site(), "beat", "celery beat").unwrap();
        assert!(text.contains("ExecStart=\"/srv/my site/bin/site\" celery beat\n"));
        assert!(text.contains("Environment=\"CELERY_BROKER_URL=redis://r:6379/0\"\n"));
        for line in ["Restart=always", "KillSignal=SIGTERM", "KillMode=mixed"] {
            assert!(text.contains(line), "{text}");
        }
    }

    #[test]
    fn refuses_words_it_cannot_quote() {
        let mut bad = site();
        bad.environment = vec![("CELERY_X".into(), "a\"b".into())];
        assert!(supervisor(&bad).is_err());
        assert!(systemd(&bad, "web", "runserver").is_err());
    }
}
