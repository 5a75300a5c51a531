//! `site celery control`: Celery's remote-control commands, acted on by every worker on the
//! broker (Python or celery-web): `revoke ID...`, `terminate SIGNAL ID...`,
//! `rate_limit TASK RATE`, `time_limit TASK SOFT HARD`, `add_consumer QUEUE`,
//! `cancel_consumer QUEUE`, `enable_events`, `disable_events`, `heartbeat`, `shutdown`,
//! `pool_grow N`, `pool_shrink N`, `autoscale MAX MIN`.
//!
//! `revoke` also records the revocation in the database when the app has one (workers on
//! the database broker load it with their heartbeat; its result becomes REVOKED).

use serde_json::{json, Map, Value};

use super::inspect::{ask, RemoteOptions};
use crate::{Celery, Error, Result};

/// Options of `site celery control`.
#[derive(Debug, Clone, clap::Args)]
pub struct ControlArgs {
    /// The command (revoke, terminate, rate_limit, time_limit, add_consumer, cancel_consumer,
    /// enable_events, disable_events, heartbeat, shutdown, pool_grow, pool_shrink, autoscale).
    pub method: String,
    /// Its arguments.
    pub arguments: Vec<String>,
    /// Destination, timeout and output.
    #[command(flatten)]
    pub options: RemoteOptions,
}

fn need<'a>(method: &str, given: &'a [String], index: usize, what: &str) -> Result<&'a str> {
    given
        .get(index)
        .map(String::as_str)
        .ok_or_else(|| Error::Config(format!("control {method}: missing {what}")))
}

fn number(method: &str, text: &str) -> Result<f64> {
    text.parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n >= 0.0)
        .ok_or_else(|| Error::Config(format!("control {method}: `{text}` is not a number")))
}

/// The wire arguments of a control command, typed as Celery's CLI types them.
fn control_arguments(method: &str, given: &[String]) -> Result<Map<String, Value>> {
    let arguments = match method {
        "revoke" => {
            need(method, given, 0, "task ids")?;
            json!({"task_id": given})
        }
        "terminate" => {
            let signal = need(method, given, 0, "the signal (SIGTERM)")?;
            need(method, given, 1, "task ids")?;
            json!({"signal": signal, "task_id": &given[1..]})
        }
        "rate_limit" => json!({
            "task_name": need(method, given, 0, "the task name")?,
            "rate_limit": need(method, given, 1, "the rate (10/m)")?,
        }),
        "time_limit" => json!({
            "task_name": need(method, given, 0, "the task name")?,
            "soft": given.get(1).map(|s| number(method, s)).transpose()?,
            "hard": given.get(2).map(|s| number(method, s)).transpose()?,
        }),
        "add_consumer" => json!({
            "queue": need(method, given, 0, "the queue")?,
            "exchange": given.get(1),
            "exchange_type": given.get(2).map_or("direct", String::as_str),
            "routing_key": given.get(3),
        }),
        "cancel_consumer" => json!({"queue": need(method, given, 0, "the queue")?}),
        "pool_grow" | "pool_shrink" => {
            json!({"n": given.first().map(|s| number(method, s)).transpose()?.unwrap_or(1.0) as u64})
        }
        "autoscale" => json!({
            "max": number(method, need(method, given, 0, "max")?)? as u64,
            "min": number(method, need(method, given, 1, "min")?)? as u64,
        }),
        _ => json!({}),
    };
    Ok(match arguments {
        Value::Object(map) => map,
        _ => Map::new(),
    })
}

pub(super) async fn run(app: &Celery, args: ControlArgs) -> Result<i32> {
    let method = args.method.as_str();
    let arguments = control_arguments(method, &args.arguments)?;
    if app.broker().broadcast().is_none() {
        if method != "revoke" {
            return Err(Error::Config(format!(
                "control {method}: this broker has no remote control (it needs Redis or \
                 RabbitMQ); only `control revoke` works here, through the database"
            )));
        }
        for id in &args.arguments {
            crate::control::revoke(app, id).await?;
            println!("revoked {id}");
        }
        return Ok(0);
    }
    let code = ask(app, method, arguments, &args.options).await?;
    // Workers on the database broker (or sharing its tables) read revocations from there.
    if method == "revoke" && app.db().is_some() {
        for id in &args.arguments {
            if let Err(error) = crate::control::revoke(app, id).await {
                eprintln!("(not recorded in the database: {error})");
                break;
            }
        }
    }
    Ok(code)
}
