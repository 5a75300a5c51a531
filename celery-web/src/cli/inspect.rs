//! `site celery inspect`, `site celery status`: Celery's remote-control queries, answered by
//! every worker on the broker, Python or celery-web (`celery inspect ping -d w1@host
//! --timeout 2 --json`). On a broker without remote control (the database broker),
//! `inspect registered` lists the tasks linked into this binary instead, and says so.

use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::control::Control;
use crate::{Celery, Result};

/// What a node prints when no node answered, and the exit code Celery uses (`EX_UNAVAILABLE`).
pub(super) const NO_REPLY: &str = "Error: No nodes replied within time constraint";
pub(super) const EX_UNAVAILABLE: i32 = 69;

/// Where and how long to ask, and how to print (Celery's options).
#[derive(Debug, Clone, clap::Args)]
pub struct RemoteOptions {
    /// Comma-separated node names to ask (default: every node).
    #[arg(short = 'd', long, value_delimiter = ',')]
    pub destination: Vec<String>,
    /// Seconds to wait for replies.
    #[arg(short = 't', long, default_value_t = 1.0)]
    pub timeout: f64,
    /// Print the replies as one JSON object.
    #[arg(short = 'j', long)]
    pub json: bool,
}

/// Options of `site celery inspect`.
#[derive(Debug, Clone, clap::Args)]
pub struct InspectArgs {
    /// What to ask: ping, stats, active, reserved, scheduled, registered, revoked,
    /// active_queues, conf, query_task, report, clock.
    pub method: String,
    /// The command's arguments (query_task: task ids; conf: `true` to include defaults).
    pub arguments: Vec<String>,
    /// Destination, timeout and output.
    #[command(flatten)]
    pub options: RemoteOptions,
    /// `registered` only: list the tasks linked into this binary (no workers asked).
    #[arg(long)]
    pub local: bool,
}

/// The wire arguments of an inspect command, typed as Celery's CLI types them.
fn inspect_arguments(method: &str, given: &[String]) -> Map<String, Value> {
    let arguments = match method {
        "registered" | "registered_tasks" => json!({"taskinfoitems": given}),
        "query_task" => json!({"ids": given}),
        "conf" => json!({"with_defaults": given.first().is_some_and(|v| v == "true" || v == "1")}),
        "active" => json!({"safe": given.first().is_some_and(|v| v == "true" || v == "1")}),
        _ => json!({}),
    };
    match arguments {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

pub(super) async fn run(app: &Celery, args: InspectArgs) -> Result<i32> {
    let method = match args.method.as_str() {
        "registered_tasks" => "registered",
        other => other,
    };
    let no_remote = app.broker().broadcast().is_none();
    if method == "registered" && (args.local || no_remote) {
        if no_remote && !args.local {
            eprintln!(
                "this broker has no remote control: the tasks linked into this binary \
                 (what its workers run):"
            );
        }
        print_local_registered(app);
        return Ok(0);
    }
    let arguments = inspect_arguments(method, &args.arguments);
    ask(app, method, arguments, &args.options).await
}

/// Sends `method` to the nodes and prints their replies as Celery does; returns the exit code.
pub(super) async fn ask(
    app: &Celery,
    method: &str,
    arguments: Map<String, Value>,
    options: &RemoteOptions,
) -> Result<i32> {
    let control = Control::new(app)?;
    let destination = (!options.destination.is_empty()).then(|| options.destination.clone());
    let timeout = Duration::from_secs_f64(options.timeout.clamp(0.01, 3600.0));
    let replies = control
        .call(method, arguments, destination, timeout)
        .await?;
    print_replies(&replies, options.json);
    Ok(if replies.is_empty() {
        EX_UNAVAILABLE
    } else {
        0
    })
}

/// Celery's output: `->  node: OK` and the reply indented, then `N nodes online.`
pub(super) fn print_replies(replies: &[(String, Value)], as_json: bool) {
    if replies.is_empty() {
        eprintln!("{NO_REPLY}");
        return;
    }
    if as_json {
        let merged: Map<String, Value> = replies.iter().cloned().collect();
        println!("{}", Value::Object(merged));
        return;
    }
    for (node, reply) in replies {
        if let Some(error) = reply.get("error") {
            let text = error
                .as_str()
                .map_or_else(|| error.to_string(), str::to_owned);
            println!("->  {node}: ERROR: {text}");
            continue;
        }
        println!("->  {node}: OK");
        let body = match reply.get("ok") {
            Some(Value::String(text)) if reply.as_object().is_some_and(|o| o.len() == 1) => {
                text.clone()
            }
            _ => match reply {
                Value::Array(items) if items.is_empty() => "- empty -".to_owned(),
                Value::Array(items) if items.iter().all(Value::is_string) => items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|item| format!("* {item}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
                other => serde_json::to_string_pretty(other).unwrap_or_default(),
            },
        };
        for line in body.lines() {
            println!("        {line}");
        }
    }
    let count = replies.len();
    println!(
        "\n{count} node{} online.",
        if count == 1 { "" } else { "s" }
    );
}

/// `site celery status`: a `ping` to every node; the ones that answered.
pub(super) async fn status(app: &Celery, options: RemoteOptions) -> Result<i32> {
    let control = Control::new(app)?;
    let destination = (!options.destination.is_empty()).then(|| options.destination.clone());
    let timeout = Duration::from_secs_f64(options.timeout.clamp(0.01, 3600.0));
    let replies = control
        .call("ping", Map::new(), destination, timeout)
        .await?;
    if replies.is_empty() {
        eprintln!("{NO_REPLY}");
        return Ok(EX_UNAVAILABLE);
    }
    if options.json {
        print_replies(&replies, true);
        return Ok(0);
    }
    for (node, _) in &replies {
        println!("->  {node}: OK");
    }
    let count = replies.len();
    println!(
        "\n{count} node{} online.",
        if count == 1 { "" } else { "s" }
    );
    Ok(0)
}

fn print_local_registered(app: &Celery) {
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
}
