//! `site celery control`.

use crate::{Celery, Result};

/// Options of `site celery control`.
#[derive(Debug, Clone, clap::Args)]
pub struct ControlArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: Control,
}

/// What `control` can do.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Control {
    /// Revoke tasks: workers skip them (marked REVOKED) and, on the database broker, their
    /// waiting messages are deleted. A task already running is not stopped.
    Revoke {
        /// Task ids.
        #[arg(required = true)]
        task_ids: Vec<String>,
    },
}

pub(super) async fn run(app: &Celery, args: ControlArgs) -> Result<i32> {
    match args.action {
        Control::Revoke { task_ids } => {
            for id in &task_ids {
                crate::control::revoke(app, id).await?;
                println!("revoked {id}");
            }
            Ok(0)
        }
    }
}
