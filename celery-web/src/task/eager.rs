//! Eager mode (`task_always_eager`): a sent task runs at once in the sender's process, as
//! Celery does for tests. Retries run again at once (their countdown is ignored); the
//! outcome stays in the returned [`AsyncResult`](super::AsyncResult), not in the backend.

use std::time::Duration;

use serde_json::Value;

use super::{State, TaskArgs, TaskContext};
use crate::backend::TaskRecord;
use crate::protocol::Message;
use crate::worker::outcome::{execute, failure, Verdict};
use crate::{Celery, Error, Result};

/// Runs `message`'s task here and returns its final record.
pub(crate) async fn apply(app: &Celery, message: &Message) -> Result<TaskRecord> {
    let task = app.registry().get(message.task()).cloned().ok_or_else(|| {
        Error::Registry(format!(
            "task `{}` is not registered in this binary; with task_always_eager a task runs \
             where it is sent",
            message.task()
        ))
    })?;
    let (hard, soft) = message.headers.timelimit;
    let hard = hard.or(task.options.time_limit).filter(|s| *s > 0.0);
    let soft = soft.or(task.options.soft_time_limit).filter(|s| *s > 0.0);
    let mut retries = message.headers.retries;
    loop {
        let context = TaskContext::new(
            message.id(),
            &task.name,
            retries,
            "eager",
            message.eta(),
            message.extra_header("periodic_task_name"),
            soft.map(Duration::from_secs_f64),
        );
        let args = TaskArgs::new(&task.name, message.args.clone(), message.kwargs.clone());
        let verdict = execute(task.runner, context, args, hard, None)
            .await
            .verdict(&task.options);
        let mut record = TaskRecord::new(message.id(), State::Success);
        record.task_name = Some(task.name.clone());
        record.args = Some(Value::Array(message.args.clone()));
        record.kwargs = Some(Value::Object(message.kwargs.clone()));
        record.retries = retries;
        return Ok(match verdict {
            Verdict::Success(value) => {
                record.result = Some(value);
                record
            }
            Verdict::Ignore => record,
            Verdict::Retry(retry) if retries < retry.max_retries => {
                retries += 1;
                continue;
            }
            Verdict::Retry(retry) => failure(record, retry.exhausted(&task.name, message)),
            Verdict::Failure(exception) => failure(record, exception),
        });
    }
}
