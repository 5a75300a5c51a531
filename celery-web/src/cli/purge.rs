//! `site celery purge`.

use std::io::{BufRead, Write};

use super::progress::Progress;
use crate::{Celery, Result};

/// Options of `site celery purge`.
#[derive(Debug, Clone, clap::Args)]
pub struct PurgeArgs {
    /// Comma-separated queues (default: `task_default_queue`).
    #[arg(short = 'Q', long, value_delimiter = ',')]
    pub queues: Vec<String>,
    /// Don't ask for confirmation.
    #[arg(short = 'f', long)]
    pub force: bool,
}

pub(super) async fn run(app: &Celery, args: PurgeArgs) -> Result<i32> {
    let queues = if args.queues.is_empty() {
        vec![app.settings().task_default_queue.clone()]
    } else {
        args.queues
    };
    if !args.force {
        print!(
            "You are about to delete all waiting messages of {} queue(s): {}.\n\
             There is no undo for this operation!\nAre you sure? [y/N] ",
            queues.len(),
            queues.join(", ")
        );
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES") {
            println!("Aborted: nothing was deleted.");
            return Ok(1);
        }
    }
    // One queue at a time, so a long purge (millions of rows on the database broker) shows
    // how far it got.
    let mut progress = Progress::new("purge", "queues", Some(queues.len() as u64));
    let mut removed = 0;
    for queue in &queues {
        removed += app.broker().purge(std::slice::from_ref(queue)).await?;
        progress.inc(1);
    }
    progress.finish(&format!("{removed} messages"));
    println!(
        "Purged {removed} message{} from {} queue{}.",
        if removed == 1 { "" } else { "s" },
        queues.len(),
        if queues.len() == 1 { "" } else { "s" }
    );
    Ok(0)
}
