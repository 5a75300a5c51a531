//! `task_routes`: where each task goes.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

/// Where tasks matching one `task_routes` key go.
///
/// In the config file a route is either a queue name or a table:
///
/// ```toml
/// [celery.task_routes]
/// "proj.tasks.add" = "math"                          # queue only
/// "proj.tasks.report" = { queue = "slow", priority = 3 }
/// "proj.emails.*" = { queue = "mail" }               # glob: `*` matches anything
/// ```
///
/// Quote task names: `proj.tasks.add = "math"` without quotes is a TOML dotted key, which makes
/// nested tables instead of a route.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TaskRoute {
    /// Queue the task is sent to. Defaults to `task_default_queue` when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Message priority, 0 to 9. Defaults to the task's own priority or
    /// `task_default_priority` when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
}

impl TaskRoute {
    /// A route that only names a queue.
    pub fn queue(queue: impl Into<String>) -> TaskRoute {
        TaskRoute {
            queue: Some(queue.into()),
            priority: None,
        }
    }
}

impl<'de> Deserialize<'de> for TaskRoute {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RouteVisitor)
    }
}

struct RouteVisitor;

impl<'de> Visitor<'de> for RouteVisitor {
    type Value = TaskRoute;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a queue name or a table with `queue` and/or `priority`")
    }

    fn visit_str<E: de::Error>(self, queue: &str) -> Result<TaskRoute, E> {
        Ok(TaskRoute::queue(queue))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TaskRoute, A::Error> {
        let mut route = TaskRoute::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "queue" if route.queue.is_some() => {
                    return Err(de::Error::duplicate_field("queue"))
                }
                "priority" if route.priority.is_some() => {
                    return Err(de::Error::duplicate_field("priority"));
                }
                "queue" => route.queue = Some(map.next_value()?),
                "priority" => route.priority = Some(map.next_value()?),
                other => return Err(de::Error::unknown_field(other, &["queue", "priority"])),
            }
        }
        Ok(route)
    }
}

/// Whether `name` matches `pattern`, where `*` matches any run of characters (dots included) and
/// every other character matches itself, as in Celery's glob routes.
pub(super) fn glob_matches(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    let (mut p, mut n) = (0, 0);
    // Where the last `*` was, and the name position it currently stands for the end of.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, n));
            p += 1;
        } else if p < pattern.len() && pattern[p] == name[n] {
            p += 1;
            n += 1;
        } else if let Some((star_p, star_n)) = star {
            p = star_p + 1;
            n = star_n + 1;
            star = Some((star_p, star_n + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_matches("proj.tasks.*", "proj.tasks.add"));
        assert!(glob_matches("proj.*", "proj.tasks.add"));
        assert!(glob_matches("*.add", "proj.tasks.add"));
        assert!(glob_matches("*", "anything"));
        assert!(glob_matches("proj.*.add", "proj.tasks.add"));
        assert!(glob_matches("a*b*c", "aXbYbZc"));
        assert!(glob_matches("exact", "exact"));
        assert!(!glob_matches("proj.tasks.*", "proj.other.add"));
        assert!(!glob_matches("proj.*.add", "proj.tasks.sub"));
        assert!(!glob_matches("exact", "exactly"));
        assert!(!glob_matches("a*c", "ab"));
    }

    #[test]
    fn a_route_is_a_queue_name_or_a_table() {
        let table: toml::Table = r#"
            a = "math"
            b = { queue = "slow", priority = 3 }
            c = { priority = 9 }
        "#
        .parse()
        .unwrap();
        let routes: std::collections::BTreeMap<String, TaskRoute> = table.try_into().unwrap();
        assert_eq!(routes["a"], TaskRoute::queue("math"));
        assert_eq!(
            routes["b"],
            TaskRoute {
                queue: Some("slow".into()),
                priority: Some(3)
            }
        );
        assert_eq!(
            routes["c"],
            TaskRoute {
                queue: None,
                priority: Some(9)
            }
        );
    }

    #[test]
    fn unknown_route_fields_are_refused() {
        let table: toml::Table = r#"a = { queu = "math" }"#.parse().unwrap();
        let error = table
            .try_into::<std::collections::BTreeMap<String, TaskRoute>>()
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown field `queu`"), "{error}");
    }
}
