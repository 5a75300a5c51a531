//! Progress of long commands (`purge`, `expire-results`, `bench`, a site's `migrate`) on
//! stderr: a bar on a terminal, plain lines otherwise.
//!
//! Plain lines are for logs, CI and pipes: no escape codes, no carriage returns, at most one
//! line a second while the work goes on and one when it ends:
//!
//! ```text
//! purge: 1/3 queues (33%)
//! purge: 3/3 queues (100%)
//! purge: done in 0.2 s: 1200 messages
//! ```
//!
//! A bar is drawn only when stderr is a terminal, `CI` is unset (or `false`/`0`) and `TERM`
//! is not `dumb`. Standard output is left alone, so what a command prints there (bench's JSON)
//! stays parseable.

use std::io::{self, IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often plain lines are written while work goes on.
const LINE_EVERY: Duration = Duration::from_secs(1);

/// A progress report of one piece of work, for `site celery` commands and a site's own long
/// commands (the example site's `migrate`): create it with the total, [`Progress::inc`] or
/// [`Progress::set`] as work gets done, [`Progress::finish`] with a summary.
pub struct Progress {
    /// Names the work at the start of every line: `purge`, `bench enqueue`.
    label: String,
    /// What is counted, plural: `queues`, `tasks`.
    unit: &'static str,
    /// How many there are, when known.
    total: Option<u64>,
    done: u64,
    started: Instant,
    output: Output,
}

/// Where progress goes.
enum Output {
    Bar(ProgressBar),
    Lines {
        out: Box<dyn Write + Send>,
        /// When the last line was written (`None`: none yet).
        last: Option<Instant>,
        every: Duration,
    },
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("label", &self.label)
            .field("done", &self.done)
            .field("total", &self.total)
            .field("bar", &matches!(self.output, Output::Bar(_)))
            .finish()
    }
}

/// Whether to draw a bar: on a terminal, outside CI, with a terminal that can draw one.
pub fn wants_bar(is_terminal: bool, ci: Option<&str>, term: Option<&str>) -> bool {
    let in_ci = ci.is_some_and(|value| {
        let value = value.trim();
        !(value.is_empty() || value == "0" || value.eq_ignore_ascii_case("false"))
    });
    is_terminal && !in_ci && term != Some("dumb")
}

impl Progress {
    /// Progress of `label` over `total` `unit` (`None`: unknown, counted as it goes) on
    /// stderr, as a bar or plain lines (see the module's documentation).
    pub fn new(label: &str, unit: &'static str, total: Option<u64>) -> Progress {
        let bar = wants_bar(
            io::stderr().is_terminal(),
            std::env::var("CI").ok().as_deref(),
            std::env::var("TERM").ok().as_deref(),
        );
        if !bar {
            return Progress::lines(label, unit, total, Box::new(io::stderr()), LINE_EVERY);
        }
        let bar = match total {
            Some(total) => ProgressBar::new(total).with_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed}, {eta} left)",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{prefix} {spinner} {pos} {msg} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        let bar = bar.with_prefix(label.to_owned()).with_message(unit);
        bar.enable_steady_tick(Duration::from_millis(120));
        Progress {
            label: label.to_owned(),
            unit,
            total,
            done: 0,
            started: Instant::now(),
            output: Output::Bar(bar),
        }
    }

    /// Plain lines to `out`, at most one per `every` while work goes on.
    pub fn lines(
        label: &str,
        unit: &'static str,
        total: Option<u64>,
        out: Box<dyn Write + Send>,
        every: Duration,
    ) -> Progress {
        Progress {
            label: label.to_owned(),
            unit,
            total,
            done: 0,
            started: Instant::now(),
            output: Output::Lines {
                out,
                last: None,
                every,
            },
        }
    }

    /// `n` more done.
    pub fn inc(&mut self, n: u64) {
        self.set(self.done.saturating_add(n));
    }

    /// `done` so far in all.
    pub fn set(&mut self, done: u64) {
        self.done = done;
        let line = self.line();
        match &mut self.output {
            Output::Bar(bar) => bar.set_position(done),
            Output::Lines { out, last, every } => {
                let finished = self.total.is_some_and(|total| done >= total);
                if finished || last.is_none_or(|at| at.elapsed() >= *every) {
                    // Progress is a courtesy: a closed stderr does not stop the work.
                    let _ = writeln!(out, "{line}");
                    *last = Some(Instant::now());
                }
            }
        }
    }

    /// Ends the report with `summary` (`1200 messages`).
    pub fn finish(mut self, summary: &str) {
        let elapsed = self.started.elapsed().as_secs_f64();
        let line = format!("{}: done in {elapsed:.1} s: {summary}", self.label);
        match &mut self.output {
            Output::Bar(bar) => {
                bar.finish_and_clear();
                eprintln!("{line}");
            }
            Output::Lines { out, .. } => {
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
        }
    }

    /// `label: 3/10 unit (30%)`, or `label: 3 unit` when the total is unknown.
    fn line(&self) -> String {
        match self.total {
            Some(total) => {
                let percent = (self.done.min(total) * 100)
                    .checked_div(total)
                    .unwrap_or(100);
                format!(
                    "{}: {}/{total} {} ({percent}%)",
                    self.label, self.done, self.unit
                )
            }
            None => format!("{}: {} {}", self.label, self.done, self.unit),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A writer whose bytes the test reads back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn bars_only_on_a_terminal_outside_ci() {
        assert!(wants_bar(true, None, Some("xterm-256color")));
        assert!(wants_bar(true, Some("false"), None));
        assert!(wants_bar(true, Some("0"), None));
        assert!(!wants_bar(false, None, Some("xterm")));
        assert!(!wants_bar(true, Some("true"), Some("xterm")));
        assert!(!wants_bar(true, Some("1"), Some("xterm")));
        assert!(!wants_bar(true, None, Some("dumb")));
    }

    #[test]
    fn plain_lines_are_throttled_and_have_no_escape_codes() {
        let out = Captured::default();
        let mut progress = Progress::lines(
            "bench enqueue",
            "tasks",
            Some(1_000),
            Box::new(out.clone()),
            Duration::from_secs(3600),
        );
        for _ in 0..1_000 {
            progress.inc(1);
        }
        progress.finish("1000 tasks");
        let text = out.text();
        let lines: Vec<&str> = text.lines().collect();
        // The first update, the last one (the total reached) and the summary; nothing between.
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[0], "bench enqueue: 1/1000 tasks (0%)");
        assert_eq!(lines[1], "bench enqueue: 1000/1000 tasks (100%)");
        assert!(
            lines[2].starts_with("bench enqueue: done in ") && lines[2].ends_with(" s: 1000 tasks"),
            "{text}"
        );
        assert!(
            !text.contains('\x1b') && !text.contains('\r'),
            "escape codes: {text:?}"
        );
    }

    #[test]
    fn unknown_totals_count_as_they_go() {
        let out = Captured::default();
        let mut progress = Progress::lines(
            "results expire",
            "results",
            None,
            Box::new(out.clone()),
            Duration::ZERO,
        );
        progress.inc(500);
        progress.inc(20);
        progress.finish("520 results deleted");
        let text = out.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[..2],
            ["results expire: 500 results", "results expire: 520 results"]
        );
        assert!(lines[2].ends_with(": 520 results deleted"), "{text}");
    }
}
