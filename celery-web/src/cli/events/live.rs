//! `site celery events` without `--dump`: the live terminal monitor, as Celery's curses
//! view. It listens to every event on the broker (Python and celery-web workers alike) and
//! redraws four times a second: the workers with their status, load and counts, then the
//! latest tasks with their states, results or exceptions. `q` or Ctrl-C quits.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Row, Table};
use ratatui::Frame;

use crate::broker::Subscription;
use crate::events::{decode_events, State, TaskState, WorkerState};
use crate::{Error, Result};

/// How often the screen is redrawn.
const REDRAW: Duration = Duration::from_millis(250);

/// The tasks the monitor keeps (the oldest go first).
const KEPT_TASKS: usize = 500;

/// Runs the monitor until `q`, Ctrl-C or `duration` ends it.
pub(super) async fn run(
    mut subscription: Subscription,
    broker: &str,
    duration: Option<Duration>,
) -> Result<i32> {
    if !std::io::stdout().is_terminal() {
        return Err(Error::Config(
            "the live monitor needs a terminal: use `celery events --dump` to print events".into(),
        ));
    }
    let mut terminal = ratatui::try_init()?;
    let started = Instant::now();
    let mut state = State::new(KEPT_TASKS);
    let mut redraw = tokio::time::interval(REDRAW);
    let mut unreadable = 0u64;
    let outcome = loop {
        tokio::select! {
            message = subscription.next() => match message {
                Some(Ok(message)) => match decode_events(&message.envelope) {
                    Ok(events) => events.iter().for_each(|event| state.apply(event)),
                    Err(_) => unreadable += 1,
                },
                Some(Err(_)) => unreadable += 1,
                None => break Ok(0),
            },
            _ = redraw.tick() => {
                if let Err(error) = terminal.draw(|frame| draw(frame, &state, broker, unreadable)) {
                    break Err(error.into());
                }
                if quit_pressed()? || duration.is_some_and(|d| started.elapsed() >= d) {
                    break Ok(0);
                }
            }
        }
    };
    ratatui::restore();
    outcome
}

/// Whether `q`, Esc or Ctrl-C was pressed since the last look (without waiting).
fn quit_pressed() -> Result<bool> {
    while event::poll(Duration::ZERO)? {
        if let Event::Key(key) = event::read()? {
            let ctrl_c =
                key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
            if key.kind == KeyEventKind::Press
                && (ctrl_c || matches!(key.code, KeyCode::Char('q') | KeyCode::Esc))
            {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// One screen: a title line, the workers, the latest tasks.
fn draw(frame: &mut Frame, state: &State, broker: &str, unreadable: u64) {
    let now = Instant::now();
    let workers: Vec<&WorkerState> = state.workers().collect();
    let online = workers.iter().filter(|w| w.is_online(now)).count();
    let worker_rows = u16::try_from(workers.len().clamp(1, 12)).unwrap_or(12);
    let [title, workers_area, tasks_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(worker_rows + 3),
        Constraint::Min(4),
    ])
    .areas(frame.area());
    let mut heading = format!(
        "celery events on {broker}: {online} of {} workers online, {} events",
        workers.len(),
        state.event_count()
    );
    if unreadable > 0 {
        heading.push_str(&format!(", {unreadable} unreadable"));
    }
    heading.push_str(" (q quits)");
    frame.render_widget(Line::from(heading), title);

    let bold = Style::default().add_modifier(Modifier::BOLD);
    let rows = workers.iter().map(|worker| worker_row(worker, now));
    let table = Table::new(
        rows,
        [
            Constraint::Min(24),
            Constraint::Length(8),
            Constraint::Length(7),
            Constraint::Length(10),
            Constraint::Length(17),
            Constraint::Length(18),
            Constraint::Length(8),
        ],
    )
    .header(
        Row::new([
            "Worker",
            "Status",
            "Active",
            "Processed",
            "Load",
            "Software",
            "Heard",
        ])
        .style(bold),
    )
    .block(Block::bordered().title("Workers"));
    frame.render_widget(table, workers_area);

    let rows = state.tasks().map(task_row);
    let table = Table::new(
        rows,
        [
            Constraint::Length(36),
            Constraint::Min(20),
            Constraint::Length(9),
            Constraint::Length(24),
            Constraint::Min(20),
        ],
    )
    .header(Row::new(["Id", "Task", "State", "Worker", "Result"]).style(bold))
    .block(Block::bordered().title("Latest tasks"));
    frame.render_widget(table, tasks_area);
}

fn worker_row(worker: &WorkerState, now: Instant) -> Row<'static> {
    let status = if worker.is_online(now) {
        "online"
    } else {
        "OFFLINE"
    };
    let load = worker
        .loadavg
        .iter()
        .map(|l| format!("{l:.2}"))
        .collect::<Vec<_>>()
        .join(" ");
    let heard = now.saturating_duration_since(worker.last_seen).as_secs();
    Row::new([
        worker.hostname.clone(),
        status.to_owned(),
        worker.active.to_string(),
        worker.processed.to_string(),
        load,
        worker.software.clone(),
        format!("{heard} s ago"),
    ])
}

fn task_row(task: &TaskState) -> Row<'static> {
    let outcome = match (&task.result, &task.exception, task.runtime) {
        (Some(result), _, Some(runtime)) => format!("{result} ({runtime:.3} s)"),
        (Some(result), _, None) => result.clone(),
        (None, Some(exception), _) => exception.clone(),
        _ => task.args.clone(),
    };
    Row::new([
        task.uuid.clone(),
        task.name.clone(),
        task.state.clone(),
        task.worker.clone(),
        outcome,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;
    use serde_json::json;

    #[test]
    fn the_screen_shows_workers_and_tasks() {
        let mut state = State::new(10);
        let events = [
            json!({"type": "worker-heartbeat", "hostname": "py@host", "freq": 2.0,
                   "active": 1, "processed": 41, "loadavg": [0.25, 0.5, 1.0],
                   "sw_ident": "py-celery", "sw_ver": "5.5.3"}),
            json!({"type": "task-received", "uuid": "0b6f3c52-0000-0000-0000-000000000001",
                   "name": "proj.add", "args": "(2, 2)", "hostname": "py@host"}),
            json!({"type": "task-succeeded", "uuid": "0b6f3c52-0000-0000-0000-000000000001",
                   "result": "4", "runtime": 0.012, "hostname": "py@host"}),
            json!({"type": "task-failed", "uuid": "0b6f3c52-0000-0000-0000-000000000002",
                   "exception": "ValueError('nope')", "hostname": "py@host"}),
        ];
        for event in events {
            state.apply(event.as_object().unwrap());
        }
        let mut terminal = Terminal::new(TestBackend::new(140, 20)).unwrap();
        terminal
            .draw(|frame| draw(frame, &state, "redis://127.0.0.1:6379/0", 2))
            .unwrap();
        let screen: String = terminal
            .backend()
            .buffer()
            .content()
            .iter()
            .map(|cell| cell.symbol())
            .collect();
        for expected in [
            "1 of 1 workers online, 4 events, 2 unreadable",
            "py@host",
            "online",
            "0.25 0.50 1.00",
            "py-celery 5.5.3",
            "proj.add",
            "SUCCESS",
            "4 (0.012 s)",
            "FAILURE",
            "ValueError('nope')",
        ] {
            assert!(
                screen.contains(expected),
                "{expected:?} on the screen:\n{screen}"
            );
        }
    }
}
