//! Matching a message's `args` and `kwargs` to a task function's parameters.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::TaskError;

/// The arguments of one call, as they came off the wire.
///
/// Generated task code takes parameters one by one with [`TaskArgs::take`], then calls
/// [`TaskArgs::finish`]: positional arguments first, then keyword arguments by parameter name
/// (Python callers often send kwargs). A wrong type, a missing argument, a surplus one or a
/// duplicate is a `TypeError` FAILURE that names the parameter, as in Python.
#[derive(Debug, Clone, Default)]
pub struct TaskArgs {
    args: Vec<Value>,
    kwargs: Map<String, Value>,
    task: String,
    taken: usize,
}

impl TaskArgs {
    /// Wraps the arguments of a call to `task`.
    pub fn new(task: &str, args: Vec<Value>, kwargs: Map<String, Value>) -> Self {
        TaskArgs {
            args,
            kwargs,
            task: task.to_owned(),
            taken: 0,
        }
    }

    /// Takes parameter number `index`, called `name`.
    ///
    /// A missing argument is accepted only for types that deserialize from `null`
    /// (`Option<T>`), like a Python parameter defaulting to `None`.
    pub fn take<T: DeserializeOwned>(&mut self, index: usize, name: &str) -> Result<T, TaskError> {
        self.taken = self.taken.max(index + 1);
        let positional = self.args.get_mut(index).map(Value::take);
        let keyword = self.kwargs.remove(name);
        let value = match (positional, keyword) {
            (Some(_), Some(_)) => {
                return Err(self.type_error(format!("got multiple values for argument '{name}'")))
            }
            (Some(value), None) | (None, Some(value)) => value,
            (None, None) => {
                return serde_json::from_value(Value::Null)
                    .map_err(|_| self.type_error(format!("missing required argument '{name}'")))
            }
        };
        serde_json::from_value(value)
            .map_err(|e| self.type_error(format!("argument '{name}': {e}")))
    }

    /// Fails when arguments are left over after every parameter was taken.
    pub fn finish(self) -> Result<(), TaskError> {
        if self.args.len() > self.taken {
            let message = format!(
                "takes {} positional arguments but {} were given",
                self.taken,
                self.args.len()
            );
            return Err(self.type_error(message));
        }
        if let Some(name) = self.kwargs.keys().next() {
            let message = format!("got an unexpected keyword argument '{name}'");
            return Err(self.type_error(message));
        }
        Ok(())
    }

    fn type_error(&self, message: String) -> TaskError {
        TaskError::Failed {
            exc_type: "TypeError".to_owned(),
            message: format!("{}() {message}", self.task),
            traceback: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(positional: Value, keywords: Value) -> TaskArgs {
        TaskArgs::new(
            "t",
            serde_json::from_value(positional).unwrap(),
            serde_json::from_value(keywords).unwrap(),
        )
    }

    fn message(error: TaskError) -> String {
        error.exception().1
    }

    #[test]
    fn positional_then_keyword() {
        let mut a = args(json!([1]), json!({"y": "two"}));
        assert_eq!(a.take::<i64>(0, "x").unwrap(), 1);
        assert_eq!(a.take::<String>(1, "y").unwrap(), "two");
        assert_eq!(a.take::<Option<i64>>(2, "z").unwrap(), None);
        a.finish().unwrap();
    }

    #[test]
    fn wrong_missing_surplus_and_duplicate_arguments_are_type_errors() {
        let mut a = args(json!(["x"]), json!({}));
        assert!(message(a.take::<i64>(0, "n").unwrap_err()).contains("argument 'n'"));
        let mut a = args(json!([]), json!({}));
        assert_eq!(
            message(a.take::<i64>(0, "n").unwrap_err()),
            "t() missing required argument 'n'"
        );
        let mut a = args(json!([1, 2]), json!({}));
        a.take::<i64>(0, "n").unwrap();
        assert_eq!(
            message(a.finish().unwrap_err()),
            "t() takes 1 positional arguments but 2 were given"
        );
        let mut a = args(json!([1]), json!({"n": 1}));
        assert!(message(a.take::<i64>(0, "n").unwrap_err()).contains("multiple values"));
        let a = args(json!([]), json!({"bogus": 1}));
        assert!(message(a.finish().unwrap_err()).contains("unexpected keyword argument 'bogus'"));
    }
}
