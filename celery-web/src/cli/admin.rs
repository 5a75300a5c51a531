//! `site celery admin`: helpers for the admin pages' settings.

use std::io::BufRead;

use crate::{Error, Result};

/// Options of `site celery admin`.
#[derive(Debug, Clone, clap::Args)]
pub struct AdminArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: AdminAction,
}

/// What `admin` can do.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum AdminAction {
    /// Print an Argon2 hash of a password (read from the first line of stdin) for the
    /// `admin_users` setting: `echo -n 's3cret' | site celery admin hash-password`.
    HashPassword,
}

pub(super) fn run(args: AdminArgs) -> Result<i32> {
    match args.action {
        AdminAction::HashPassword => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            let password = line.trim_end_matches(['\r', '\n']);
            if password.is_empty() {
                return Err(Error::Config(
                    "hash-password: give the password on stdin, for example \
                     `echo -n 's3cret' | site celery admin hash-password`"
                        .to_owned(),
                ));
            }
            println!("{}", crate::admin::hash_password(password));
            Ok(0)
        }
    }
}
