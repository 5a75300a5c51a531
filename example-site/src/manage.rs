//! The site's manage command: `example-site [runserver|migrate|celery ...]`.
//!
//! With no subcommand it runs everything a developer needs in one process: migrations, the
//! web server, a worker and beat, on the SQLite file of `config/site.toml`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use celery_web::cli::CeleryCommand;
use celery_web::db::Db;
use celery_web::worker::{Phase, Shutdown, Worker};
use celery_web::{Celery, Settings};
use clap::{Parser, Subcommand};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// The site's command line.
#[derive(Debug, Parser)]
#[command(name = "example-site", about = "The example site's manage command")]
struct Manage {
    /// Config file (default: config/site.toml, else the one shipped with the site).
    #[arg(long, env = "SITE_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Address the web server listens on (default: `[site] bind` of the config file).
    #[arg(long, env = "SITE_BIND", global = true)]
    bind: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the web server only.
    Runserver,
    /// Apply celery-web's and the site's migrations.
    Migrate,
    /// Task queue commands: worker, beat, call, result, purge, inspect, bench.
    #[command(subcommand)]
    Celery(CeleryCommand),
}

/// Runs the manage command; the binary's `main` is just this.
pub fn main() -> ExitCode {
    let cli = Manage::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run(cli));
    // A cold shutdown leaves task bodies behind; sync ones on blocking threads would keep
    // the process alive. Don't wait for them.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match outcome {
        Ok(0) => ExitCode::SUCCESS,
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn config_path(explicit: Option<PathBuf>) -> Option<PathBuf> {
    explicit.or_else(|| {
        [
            PathBuf::from("config/site.toml"),
            Path::new(env!("CARGO_MANIFEST_DIR")).join("config/site.toml"),
        ]
        .into_iter()
        .find(|path| path.exists())
    })
}

/// The `bind` address of the config file's `[site]` table.
fn site_bind(path: Option<&Path>) -> celery_web::Result<String> {
    let default = "127.0.0.1:8000".to_owned();
    let Some(path) = path else { return Ok(default) };
    let text = std::fs::read_to_string(path)?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| celery_web::Error::Config(format!("{}: {e}", path.display())))?;
    Ok(table
        .get("site")
        .and_then(|site| site.get("bind"))
        .and_then(|bind| bind.as_str())
        .map_or(default, str::to_owned))
}

async fn run(cli: Manage) -> celery_web::Result<i32> {
    let config = config_path(cli.config);
    let settings = match &config {
        Some(path) => Settings::from_file(path)?,
        None => Settings::from_env()?,
    };
    let app = Celery::from_settings(settings)?;
    crate::reports::add_periodic_tasks(&app)?;
    app.install();
    let bind = || {
        cli.bind
            .clone()
            .map_or_else(|| site_bind(config.as_deref()), Ok)
    };
    match cli.command {
        None => {
            celery_web::cli::init_logging("info");
            migrate(&app)?;
            dev(app, bind()?).await
        }
        Some(Command::Runserver) => {
            celery_web::cli::init_logging("info");
            http_server(app, &bind()?, true)?.await?;
            Ok(0)
        }
        Some(Command::Migrate) => {
            let applied = migrate_with_progress(&app)?;
            println!("Applied {applied} migration(s).");
            Ok(0)
        }
        Some(Command::Celery(command)) => celery_web::cli::run(&app, command).await,
    }
}

/// Applies celery-web's migrations, then the site's.
pub fn migrate(app: &Celery) -> celery_web::Result<usize> {
    migrate_reporting(app, &mut |_, _| {})
}

/// [`migrate`] with a progress bar on a terminal (plain lines otherwise), for `site migrate`.
fn migrate_with_progress(app: &Celery) -> celery_web::Result<usize> {
    let mut progress: Option<celery_web::cli::Progress> = None;
    let applied = migrate_reporting(app, &mut |done, total| {
        progress
            .get_or_insert_with(|| {
                celery_web::cli::Progress::new("migrate", "migrations", Some(total as u64))
            })
            .set(done as u64);
    })?;
    if let Some(progress) = progress {
        progress.finish(&format!("{applied} migrations"));
    }
    Ok(applied)
}

/// Applies celery-web's migrations, then the site's, one at a time; `applied(done, total)`
/// is called after each.
fn migrate_reporting(
    app: &Celery,
    applied: &mut dyn FnMut(usize, usize),
) -> celery_web::Result<usize> {
    let failed = |e: Box<dyn std::error::Error + Send + Sync>| {
        let error = celery_web::db::DatabaseError::new(celery_web::db::DatabaseErrorKind::Other, e);
        celery_web::Error::Database(error.context("site migration failed"))
    };
    // The site's migrations, pending and then run one by one, on either database.
    macro_rules! site_migrations {
        ($conn:expr, $source:expr, $each:expr) => {{
            let conn = &mut *$conn;
            let pending = conn.pending_migrations($source).map_err(failed)?;
            for migration in &pending {
                conn.run_migration(migration.as_ref()).map_err(failed)?;
                $each();
            }
            pending.len()
        }};
    }
    let site_pending = match app.db() {
        Some(Db::Sqlite(pool)) => pool
            .get()?
            .pending_migrations(SQLITE_MIGRATIONS)
            .map_err(failed)?
            .len(),
        Some(Db::Postgres(pool)) => pool
            .get()?
            .pending_migrations(POSTGRES_MIGRATIONS)
            .map_err(failed)?
            .len(),
        None => 0,
    };
    let total = app.pending_migrations()? + site_pending;
    let mut done = 0;
    let mut each = || {
        done += 1;
        applied(done, total);
    };
    let mut count = app.migrate_each(&mut each)?;
    count += match app.db() {
        Some(Db::Sqlite(pool)) => site_migrations!(pool.get()?, SQLITE_MIGRATIONS, each),
        Some(Db::Postgres(pool)) => site_migrations!(pool.get()?, POSTGRES_MIGRATIONS, each),
        None => 0,
    };
    Ok(count)
}

/// The site's HTTP server on `bind`. With `own_signals` false, Ctrl-C and SIGTERM are left to
/// the caller (dev mode shares them with the worker).
fn http_server(app: Celery, bind: &str, own_signals: bool) -> celery_web::Result<Server> {
    tracing::info!("listening on http://{bind}/");
    let admin = celery_web::admin::Admin::new(app.clone())?;
    let data = web::Data::new(app);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .service(admin.mount("/admin/celery"))
            .configure(crate::web::configure)
    })
    .bind(bind)?;
    let server = if own_signals {
        server
    } else {
        server.disable_signals()
    };
    Ok(server.run())
}

/// Web server and worker in one process. The first Ctrl-C or SIGTERM stops the server and
/// lets the worker finish its running tasks; a second one stops the worker at once.
async fn dev(app: Celery, bind: String) -> celery_web::Result<i32> {
    // The server binds first: a taken port fails before the worker claims anything.
    let server = http_server(app.clone(), &bind, false)?;
    let stop = server.handle();
    let server = tokio::spawn(server);
    let shutdown = Shutdown::new();
    shutdown.on_signals()?;
    let queues = app.known_queues();
    let mut worker = tokio::spawn(
        Worker::new(&app)
            .queues(queues)
            .beat(true)
            .run(shutdown.clone()),
    );
    let crashed = tokio::select! {
        () = shutdown.reached(Phase::Warm) => None,
        // The worker stopped on its own: it could not start.
        ended = &mut worker => Some(ended),
    };
    // Graceful at the first signal; at once on the second.
    tokio::select! {
        () = stop.stop(true) => {}
        () = shutdown.reached(Phase::Cold) => stop.stop(false).await,
    }
    let ended = match crashed {
        Some(ended) => ended,
        None => worker.await,
    };
    let crashed = |name: &'static str| {
        move |e: tokio::task::JoinError| celery_web::Error::Service {
            name,
            reason: format!("it crashed: {e}"),
        }
    };
    ended.map_err(crashed("worker"))??;
    server.await.map_err(crashed("web server"))??;
    Ok(0)
}
