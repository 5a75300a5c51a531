//! `site celery inspect`.

use crate::{Celery, Result};

/// Options of `site celery inspect`.
#[derive(Debug, Clone, clap::Args)]
pub struct InspectArgs {
    /// What to inspect.
    #[command(subcommand)]
    pub what: Inspect,
}

/// What `inspect` can show.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Inspect {
    /// Tasks linked into this binary, with their options.
    Registered,
}

pub(super) fn run(app: &Celery, args: InspectArgs) -> Result<i32> {
    match args.what {
        Inspect::Registered => {
            for name in app.registry().names() {
                let task = app
                    .registry()
                    .get(name)
                    .expect("listed names are registered");
                let mut notes = Vec::new();
                if let Some(queue) = task.options.queue {
                    notes.push(format!("queue={queue}"));
                }
                if let Some(limit) = task.options.rate_limit {
                    notes.push(format!("rate_limit={limit}"));
                }
                if let Some(limit) = task.options.time_limit {
                    notes.push(format!("time_limit={limit}"));
                }
                if notes.is_empty() {
                    println!("  * {name}");
                } else {
                    println!("  * {name} [{}]", notes.join(" "));
                }
            }
            Ok(0)
        }
    }
}
