//! A terminal program run for real: a private tmux server (its own socket) runs one command
//! in a detached session of a fixed size, and [`Tmux::screen`] reads what it shows, as a
//! person would see it. The server is killed when the [`Tmux`] is dropped.

use std::process::{Command, Stdio};

use crate::skip;

/// One command running under a private tmux server.
#[derive(Debug)]
pub struct Tmux {
    socket: String,
}

/// `text` quoted for a POSIX shell.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

impl Tmux {
    /// Runs `command` (its program, arguments, environment and working directory) in a
    /// `width` × `height` terminal; `None` (after [`skip`]) when tmux is not installed.
    pub fn run(command: &Command, width: u16, height: u16) -> Option<Tmux> {
        let installed = Command::new("tmux")
            .arg("-V")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !installed {
            skip("tmux (apt-get install tmux)");
            return None;
        }
        let socket = format!("celery-web-test-{}", uuid::Uuid::new_v4().simple());
        let mut line: Vec<String> = vec![quoted(&command.get_program().to_string_lossy())];
        line.extend(command.get_args().map(|a| quoted(&a.to_string_lossy())));
        let mut tmux = Command::new("tmux");
        tmux.args(["-L", &socket, "-f", "/dev/null", "new-session", "-d"])
            .args(["-x", &width.to_string(), "-y", &height.to_string()])
            .arg(line.join(" "));
        // The server starts with this environment; the session's command inherits it.
        for (key, value) in command.get_envs() {
            match value {
                Some(value) => tmux.env(key, value),
                None => tmux.env_remove(key),
            };
        }
        if let Some(dir) = command.get_current_dir() {
            tmux.current_dir(dir);
        }
        let status = tmux.status().expect("tmux runs");
        assert!(status.success(), "tmux new-session failed: {status}");
        Some(Tmux { socket })
    }

    /// What the terminal shows now, one line per row.
    pub fn screen(&self) -> String {
        let output = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p"])
            .output()
            .expect("tmux runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Types `keys` (tmux key names, for example `q` or `C-c`).
    pub fn send_keys(&self, keys: &str) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", keys])
            .status();
    }

    /// Whether the session's command is still running (the session ends with it).
    pub fn is_running(&self) -> bool {
        Command::new("tmux")
            .args(["-L", &self.socket, "has-session"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .stderr(Stdio::null())
            .status();
    }
}
