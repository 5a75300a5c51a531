//! Python's `repr` of JSON values, for the fields Celery's events carry as text (`args`,
//! `kwargs`, `result`, `exception`): Flower and `celery events` show them as they are.
//!
//! ```
//! use celery_web::events::{args_repr, py_repr};
//! use serde_json::json;
//!
//! assert_eq!(args_repr(&[json!(3)]), "(3,)");
//! assert_eq!(args_repr(&[json!(2), json!("a")]), "(2, 'a')");
//! assert_eq!(py_repr(&json!({"k": [true, null, 1.5]})), "{'k': [True, None, 1.5]}");
//! assert_eq!(py_repr(&json!("it's")), "\"it's\"");
//! ```

use serde_json::Value;

/// Celery's `resultrepr_maxsize`: longer reprs are cut.
pub(crate) const MAX_REPR: usize = 1024;

/// Python's `repr` of `value` (JSON decoded by Python's `json`).
pub fn py_repr(value: &Value) -> String {
    let mut out = String::new();
    write_repr(value, &mut out);
    out
}

/// Python's `repr` of a tuple of arguments: `()`, `(1,)`, `(1, 2)`.
pub fn args_repr(args: &[Value]) -> String {
    let mut out = String::from("(");
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_repr(arg, &mut out);
    }
    if args.len() == 1 {
        out.push(',');
    }
    out.push(')');
    out
}

/// `text` cut to [`MAX_REPR`] characters (Celery's `saferepr` with `maxlen`), with `...`.
pub(crate) fn truncated(text: String) -> String {
    if text.len() <= MAX_REPR {
        return text;
    }
    let mut cut = MAX_REPR;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...", &text[..cut])
}

fn write_repr(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Number(number) => out.push_str(&number.to_string()),
        Value::String(text) => write_str(text, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_repr(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_str(key, out);
                out.push_str(": ");
                write_repr(item, out);
            }
            out.push('}');
        }
    }
}

/// Python's string repr: single quotes unless the text has one and no double quote.
fn write_str(text: &str, out: &mut String) {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reprs_match_python() {
        assert_eq!(args_repr(&[]), "()");
        assert_eq!(py_repr(&json!("a\nb")), "'a\\nb'");
        assert_eq!(py_repr(&json!("'\"")), "'\\'\"'");
        assert_eq!(py_repr(&json!({})), "{}");
        assert_eq!(truncated("x".repeat(2000)).len(), MAX_REPR + 3);
    }
}
