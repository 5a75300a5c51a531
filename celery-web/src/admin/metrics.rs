//! `/metrics` in Prometheus' text format: stored results by task and state, task runtimes
//! over the last hour, queue depths, and workers online.

use std::fmt::Write;

use actix_web::{web, HttpResponse};
use chrono::{TimeDelta, Utc};

use super::error::AdminError;
use super::{queues, workers, Mounted};
use crate::monitor;

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(metrics));
}

/// A label value with `\`, `"` and newlines escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

async fn metrics(mounted: web::Data<Mounted>) -> Result<HttpResponse, AdminError> {
    let mut out = String::new();
    let hour_ago = Utc::now() - TimeDelta::hours(1);
    let by_state = monitor::counts_by_name_and_state(mounted.db(), hour_ago).await?;
    out.push_str(
        "# HELP celery_web_task_results_last_hour Task results written in the last hour, by task and state.\n\
         # TYPE celery_web_task_results_last_hour gauge\n",
    );
    for count in &by_state {
        let _ = writeln!(
            out,
            "celery_web_task_results_last_hour{{task=\"{}\",state=\"{}\"}} {}",
            label(&count.task_name),
            label(&count.status),
            count.count
        );
    }

    let histograms = monitor::runtime_histograms(mounted.db(), hour_ago).await?;
    out.push_str(
        "# HELP celery_web_task_runtime_seconds Runtime of tasks that finished in the last hour.\n\
         # TYPE celery_web_task_runtime_seconds histogram\n",
    );
    for histogram in &histograms {
        let task = label(&histogram.task_name);
        for (le, count) in &histogram.buckets {
            let le = if le.is_infinite() {
                "+Inf".to_owned()
            } else {
                le.to_string()
            };
            let _ = writeln!(
                out,
                "celery_web_task_runtime_seconds_bucket{{task=\"{task}\",le=\"{le}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "celery_web_task_runtime_seconds_sum{{task=\"{task}\"}} {}\n\
             celery_web_task_runtime_seconds_count{{task=\"{task}\"}} {}",
            histogram.sum_seconds, histogram.count
        );
    }

    out.push_str(
        "# HELP celery_web_queue_messages Messages in a queue: waiting, scheduled (eta) or in flight.\n\
         # TYPE celery_web_queue_messages gauge\n",
    );
    let views = workers::views(&mounted).await?;
    match queues::stats(&mounted, &views).await {
        Ok(stats) => {
            for queue in &stats {
                let name = label(&queue.name);
                for (state, count) in [
                    ("waiting", Some(queue.waiting)),
                    ("scheduled", queue.scheduled),
                    ("in_flight", queue.in_flight),
                ] {
                    // A count the broker cannot tell is left out, not reported as 0.
                    let Some(count) = count else { continue };
                    let _ = writeln!(
                        out,
                        "celery_web_queue_messages{{queue=\"{name}\",state=\"{state}\"}} {count}"
                    );
                }
            }
        }
        Err(error) => tracing::warn!(%error, "metrics: queue depths unavailable"),
    }

    let _ = write!(
        out,
        "# HELP celery_web_workers_online Workers whose last heartbeat is under 10 seconds old.\n\
         # TYPE celery_web_workers_online gauge\n\
         celery_web_workers_online {}\n\
         # HELP celery_web_worker_active_tasks Tasks each online worker is running.\n\
         # TYPE celery_web_worker_active_tasks gauge\n",
        views.iter().filter(|w| w.online).count()
    );
    for worker in views.iter().filter(|w| w.online) {
        let _ = writeln!(
            out,
            "celery_web_worker_active_tasks{{worker=\"{}\"}} {}",
            label(&worker.info.hostname),
            worker.info.active
        );
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(out))
}

#[cfg(test)]
mod tests {
    #[test]
    fn label_values_are_escaped() {
        assert_eq!(super::label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
