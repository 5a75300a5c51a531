//! One field of a crontab (`*/15`, `1-5`, `mon-fri`, ...), parsed with Celery's rules.
//!
//! Celery's `crontab_parser` accepts, separated by commas: `*`, `*/step`, a number, `a-b` and
//! `a-b/step`. A range whose end is below its start wraps around (`fri-mon` is Friday, Saturday,
//! Sunday, Monday; hour `22-2` is 22, 23, 0, 1, 2), exactly as Celery does. Unlike Celery, a
//! value outside the field's range is an error here even when it comes from a name, and names
//! are only accepted in the fields they belong to (days in `day_of_week`, months in
//! `month_of_year`).

use super::ScheduleError;

/// Three-letter day names, Sunday first (Celery: `0 = Sunday`).
pub(super) const DAY_NAMES: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// Month names, January first (`1 = January`).
pub(super) const MONTH_NAMES: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// Which of the five fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FieldKind {
    Minute,
    Hour,
    DayOfWeek,
    DayOfMonth,
    MonthOfYear,
}

impl FieldKind {
    /// The field's name as in Celery's `crontab()` arguments.
    pub(super) fn name(self) -> &'static str {
        match self {
            FieldKind::Minute => "minute",
            FieldKind::Hour => "hour",
            FieldKind::DayOfWeek => "day_of_week",
            FieldKind::DayOfMonth => "day_of_month",
            FieldKind::MonthOfYear => "month_of_year",
        }
    }

    /// Smallest allowed value.
    pub(super) fn min(self) -> u32 {
        match self {
            FieldKind::Minute | FieldKind::Hour | FieldKind::DayOfWeek => 0,
            FieldKind::DayOfMonth | FieldKind::MonthOfYear => 1,
        }
    }

    /// Largest allowed value.
    pub(super) fn max(self) -> u32 {
        match self {
            FieldKind::Minute => 59,
            FieldKind::Hour => 23,
            FieldKind::DayOfWeek => 6,
            FieldKind::DayOfMonth => 31,
            FieldKind::MonthOfYear => 12,
        }
    }

    /// What `*` means, for messages.
    fn every(self) -> &'static str {
        match self {
            FieldKind::Minute => "every minute",
            FieldKind::Hour => "every hour",
            FieldKind::DayOfWeek => "every day of the week",
            FieldKind::DayOfMonth => "every day of the month",
            FieldKind::MonthOfYear => "every month",
        }
    }

    /// The allowed range, for messages.
    fn allowed(self) -> String {
        match self {
            FieldKind::DayOfWeek => "0-6 (0 = Sunday; use 0 or sun for Sunday)".to_owned(),
            FieldKind::MonthOfYear => "1-12 (or jan-dec)".to_owned(),
            _ => format!("{}-{}", self.min(), self.max()),
        }
    }

    /// The value of a name (`mon`, `Monday`, `jan`, `January`), if this field has names.
    fn value_of_name(self, text: &str) -> Option<u32> {
        let names: &[&str] = match self {
            FieldKind::DayOfWeek => &DAY_NAMES,
            FieldKind::MonthOfYear => &MONTH_NAMES,
            _ => return None,
        };
        let lower = text.to_ascii_lowercase();
        let index = names.iter().position(|name| {
            let name = name.to_ascii_lowercase();
            lower == name || (lower.len() == 3 && name.starts_with(&lower))
        })?;
        let index = u32::try_from(index).ok()?;
        Some(index + self.min())
    }

    fn error(self, message: impl Into<String>) -> ScheduleError {
        ScheduleError::new(self.name(), message)
    }
}

/// One comma-separated item of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    /// `*` (step 1) or `*/step`.
    Any { step: u32 },
    /// One value.
    Value(u32),
    /// `start-end` or `start-end/step`; `end < start` wraps around.
    Range { start: u32, end: u32, step: u32 },
}

/// A parsed field: the text as written, its items, and the set of values it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Field {
    kind: FieldKind,
    text: String,
    parts: Vec<Part>,
    /// Bit `v` is set when value `v` matches.
    mask: u64,
}

impl Field {
    /// Parses `text` as a `kind` field.
    pub(super) fn parse(kind: FieldKind, text: &str) -> Result<Field, ScheduleError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(kind.error(format!("the field is empty; use * for {}", kind.every())));
        }
        let mut parts = Vec::new();
        let mut mask = 0u64;
        for item in text.split(',') {
            let item = item.trim();
            if item.is_empty() {
                return Err(kind.error(format!(
                    "{text:?} has an empty item between commas; write values like 1,5 or 1-5"
                )));
            }
            let part = parse_part(kind, item)?;
            for value in part_values(kind, part) {
                mask |= 1 << value;
            }
            parts.push(part);
        }
        Ok(Field {
            kind,
            text: text.to_owned(),
            parts,
            mask,
        })
    }

    /// The field as written (trimmed).
    pub(super) fn text(&self) -> &str {
        &self.text
    }

    /// Which field this is.
    pub(super) fn kind(&self) -> FieldKind {
        self.kind
    }

    /// The comma-separated items.
    pub(super) fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// Whether `value` matches.
    pub(super) fn matches(&self, value: u32) -> bool {
        value < 64 && self.mask & (1 << value) != 0
    }

    /// The matching values, ascending.
    pub(super) fn values(&self) -> impl Iterator<Item = u32> + '_ {
        (self.kind.min()..=self.kind.max()).filter(|&value| self.matches(value))
    }

    /// Whether the field is exactly `*` (matches everything with step 1).
    pub(super) fn is_every(&self) -> bool {
        self.parts == [Part::Any { step: 1 }]
    }
}

fn parse_part(kind: FieldKind, item: &str) -> Result<Part, ScheduleError> {
    let (base, step) = match item.split_once('/') {
        Some((base, step)) => (base.trim(), Some(parse_step(kind, item, step.trim())?)),
        None => (item, None),
    };
    if base == "*" {
        return Ok(Part::Any {
            step: step.unwrap_or(1),
        });
    }
    if let Some((start, end)) = base.split_once('-') {
        if start.trim().is_empty() {
            return Err(kind.error(format!(
                "{item:?}: negative numbers are not allowed; use {}",
                kind.allowed()
            )));
        }
        let start = parse_value(kind, item, start.trim())?;
        let end = parse_value(kind, item, end.trim())?;
        return Ok(Part::Range {
            start,
            end,
            step: step.unwrap_or(1),
        });
    }
    let value = parse_value(kind, item, base)?;
    match step {
        None => Ok(Part::Value(value)),
        Some(step) => Err(kind.error(format!(
            "{item:?}: a step needs a range or *; write {value}-{}/{step} or */{step}",
            kind.max()
        ))),
    }
}

fn parse_step(kind: FieldKind, item: &str, step: &str) -> Result<u32, ScheduleError> {
    match step.parse::<u32>() {
        Ok(0) => Err(kind.error(format!(
            "{item:?} has a step of 0; the step must be at least 1"
        ))),
        Ok(step) => Ok(step),
        Err(_) => Err(kind.error(format!(
            "{item:?}: the step {step:?} is not a positive whole number"
        ))),
    }
}

fn parse_value(kind: FieldKind, item: &str, text: &str) -> Result<u32, ScheduleError> {
    let value = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse::<u32>().unwrap_or(u32::MAX)
    } else if let Some(value) = kind.value_of_name(text) {
        value
    } else {
        let expected = match kind {
            FieldKind::DayOfWeek => {
                "a day of the week; use 0-6 (0 = Sunday) or sun, mon, tue, wed, thu, fri, sat"
            }
            FieldKind::MonthOfYear => "a month; use 1-12 or jan, feb, mar, ..., dec",
            _ => "a number",
        };
        let shown = if text == item {
            format!("{text:?}")
        } else {
            format!("{text:?} in {item:?}")
        };
        return Err(kind.error(format!(
            "{shown} is not {expected} (items look like 5, 1-30, */15, 1-30/5, separated by commas)"
        )));
    };
    if value < kind.min() || value > kind.max() {
        let shown = if value == u32::MAX {
            text.to_owned()
        } else {
            value.to_string()
        };
        return Err(kind.error(format!("{shown} is out of range {}", kind.allowed())));
    }
    Ok(value)
}

/// The values of one item, in the order Celery lists them (wrapped ranges run past the maximum
/// back to the minimum); the step then keeps every `step`-th of them.
fn part_values(kind: FieldKind, part: Part) -> Vec<u32> {
    let (all, step): (Vec<u32>, u32) = match part {
        Part::Any { step } => ((kind.min()..=kind.max()).collect(), step),
        Part::Value(value) => (vec![value], 1),
        Part::Range { start, end, step } if start <= end => ((start..=end).collect(), step),
        Part::Range { start, end, step } => {
            ((start..=kind.max()).chain(kind.min()..=end).collect(), step)
        }
    };
    let step = usize::try_from(step).unwrap_or(usize::MAX);
    all.into_iter().step_by(step).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(kind: FieldKind, text: &str) -> Vec<u32> {
        Field::parse(kind, text).unwrap().values().collect()
    }

    fn error(kind: FieldKind, text: &str) -> String {
        Field::parse(kind, text).unwrap_err().to_string()
    }

    #[test]
    fn stars_lists_ranges_and_steps() {
        use FieldKind::*;
        assert_eq!(values(Minute, "*").len(), 60);
        assert_eq!(values(Minute, "*/15"), [0, 15, 30, 45]);
        assert_eq!(values(Minute, "1,5, 7"), [1, 5, 7]);
        assert_eq!(values(Minute, "1-30/5"), [1, 6, 11, 16, 21, 26]);
        assert_eq!(values(Hour, "9-17"), (9..=17).collect::<Vec<_>>());
        assert_eq!(values(DayOfMonth, "*/10"), [1, 11, 21, 31]);
        assert_eq!(values(MonthOfYear, "*/3"), [1, 4, 7, 10]);
        assert_eq!(values(DayOfWeek, "*/2"), [0, 2, 4, 6]);
        assert_eq!(values(Minute, "5-5"), [5]);
        assert_eq!(values(Minute, " 1 - 3 , */ 25 "), [0, 1, 2, 3, 25, 50]);
    }

    #[test]
    fn names_in_their_own_fields() {
        use FieldKind::*;
        assert_eq!(values(DayOfWeek, "mon-fri"), [1, 2, 3, 4, 5]);
        assert_eq!(values(DayOfWeek, "SUN,Saturday"), [0, 6]);
        assert_eq!(values(DayOfWeek, "sun"), [0]);
        assert_eq!(values(MonthOfYear, "jan,Jul-sep"), [1, 7, 8, 9]);
        assert_eq!(values(MonthOfYear, "december"), [12]);
        assert!(Field::parse(Minute, "mon").is_err());
    }

    #[test]
    fn reversed_ranges_wrap_around_as_in_celery() {
        use FieldKind::*;
        assert_eq!(values(DayOfWeek, "fri-mon"), [0, 1, 5, 6]);
        assert_eq!(values(Hour, "22-2"), [0, 1, 2, 22, 23]);
        // Celery steps over the wrapped list in order: [22, 23, 0, 1, 2][::2].
        assert_eq!(values(Hour, "22-2/2"), [0, 2, 22]);
        let five_to_one: Vec<u32> = (0..=1).chain(5..=59).collect();
        assert_eq!(values(Minute, "5-1"), five_to_one);
        assert_eq!(values(DayOfMonth, "30-2"), [1, 2, 30, 31]);
        assert_eq!(values(MonthOfYear, "nov-feb"), [1, 2, 11, 12]);
    }

    #[test]
    fn exact_error_messages() {
        use FieldKind::*;
        let cases = [
            (
                DayOfWeek,
                "7",
                "day_of_week: 7 is out of range 0-6 (0 = Sunday; use 0 or sun for Sunday)",
            ),
            (
                DayOfWeek,
                "1-7",
                "day_of_week: 7 is out of range 0-6 (0 = Sunday; use 0 or sun for Sunday)",
            ),
            (Minute, "60", "minute: 60 is out of range 0-59"),
            (Hour, "24", "hour: 24 is out of range 0-23"),
            (DayOfMonth, "0", "day_of_month: 0 is out of range 1-31"),
            (
                MonthOfYear,
                "13",
                "month_of_year: 13 is out of range 1-12 (or jan-dec)",
            ),
            (
                Minute,
                "99999999999999",
                "minute: 99999999999999 is out of range 0-59",
            ),
            (
                Minute,
                "*/0",
                "minute: \"*/0\" has a step of 0; the step must be at least 1",
            ),
            (
                Minute,
                "*/x",
                "minute: \"*/x\": the step \"x\" is not a positive whole number",
            ),
            (
                Minute,
                "5/15",
                "minute: \"5/15\": a step needs a range or *; write 5-59/15 or */15",
            ),
            (
                Minute,
                "",
                "minute: the field is empty; use * for every minute",
            ),
            (Hour, "  ", "hour: the field is empty; use * for every hour"),
            (
                Minute,
                "1,,2",
                "minute: \"1,,2\" has an empty item between commas; write values like 1,5 or 1-5",
            ),
            (
                Minute,
                "abc",
                "minute: \"abc\" is not a number (items look like 5, 1-30, */15, 1-30/5, \
                 separated by commas)",
            ),
            (
                Hour,
                "1-x",
                "hour: \"x\" in \"1-x\" is not a number (items look like 5, 1-30, */15, \
                 1-30/5, separated by commas)",
            ),
            (
                DayOfWeek,
                "funday",
                "day_of_week: \"funday\" is not a day of the week; use 0-6 (0 = Sunday) or \
                 sun, mon, tue, wed, thu, fri, sat (items look like 5, 1-30, */15, 1-30/5, \
                 separated by commas)",
            ),
            (
                MonthOfYear,
                "smarch",
                "month_of_year: \"smarch\" is not a month; use 1-12 or jan, feb, mar, ..., dec \
                 (items look like 5, 1-30, */15, 1-30/5, separated by commas)",
            ),
            (
                Minute,
                "-5",
                "minute: \"-5\": negative numbers are not allowed; use 0-59",
            ),
        ];
        for (kind, text, expected) in cases {
            assert_eq!(error(kind, text), expected, "{text:?}");
        }
    }
}
