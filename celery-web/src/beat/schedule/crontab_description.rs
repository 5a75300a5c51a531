//! Crontabs in English, in the style of cron-descriptor (which django-celery-beat's admin uses):
//! `At 07:30 on Monday`, `Every 15 minutes`, `At minute 0 past every 2nd hour`.

use super::crontab::Crontab;
use super::crontab_field::{Field, FieldKind, Part, DAY_NAMES, MONTH_NAMES};

/// How many `HH:MM` times are listed before falling back to describing minute and hour apart.
const MAX_LISTED_TIMES: usize = 6;

impl Crontab {
    /// The crontab in words, with the time zone in parentheses when it is not UTC:
    /// `At 09:00, Monday through Friday (Europe/Oslo)`.
    pub fn describe(&self) -> String {
        let [minute, hour, day_of_week, day_of_month, month_of_year] = self.fields();
        let mut text = time_phrase(minute, hour);
        text += &day_of_month_phrase(day_of_month);
        text += &day_of_week_phrase(day_of_week, !day_of_month.is_every());
        text += &month_phrase(month_of_year);
        if self.timezone() != chrono_tz::UTC {
            text += &format!(" ({})", self.timezone().name());
        }
        text
    }
}

fn singles(field: &Field) -> Option<Vec<u32>> {
    field
        .parts()
        .iter()
        .map(|part| match part {
            Part::Value(value) => Some(*value),
            _ => None,
        })
        .collect()
}

fn every_step(field: &Field) -> Option<u32> {
    match field.parts() {
        [Part::Any { step }] => Some(*step),
        _ => None,
    }
}

fn time_phrase(minute: &Field, hour: &Field) -> String {
    let minutes = singles(minute);
    let hours = singles(hour);
    if let (Some(minutes), Some(hours)) = (&minutes, &hours) {
        if minutes.len() * hours.len() <= MAX_LISTED_TIMES {
            let mut times: Vec<(u32, u32)> = hours
                .iter()
                .flat_map(|&h| minutes.iter().map(move |&m| (h, m)))
                .collect();
            times.sort_unstable();
            times.dedup();
            let times: Vec<String> = times.iter().map(|&(h, m)| clock(h, m)).collect();
            return format!("At {}", join(&times));
        }
    }
    let minute_part = match (every_step(minute), minutes.as_deref()) {
        (Some(1), _) => "Every minute".to_owned(),
        (Some(step), _) => format!("Every {step} minutes"),
        (None, Some([0])) if hour.is_every() => return "Every hour".to_owned(),
        (None, Some([value])) => format!("At minute {value}"),
        (None, Some(values)) => format!("At minutes {}", join(&numbers(values))),
        (None, None) => match minute.parts() {
            [Part::Range {
                start,
                end,
                step: 1,
            }] => format!("Every minute from minute {start} through {end}"),
            [Part::Range { start, end, step }] => {
                format!("Every {step} minutes from minute {start} through {end}")
            }
            _ => format!("At minutes {}", parts_phrase(minute)),
        },
    };
    let hour_part = match (every_step(hour), hours.as_deref()) {
        (Some(1), _) => String::new(),
        (Some(step), _) => format!(" past every {} hour", ordinal(step)),
        (None, Some([value])) => {
            format!(", between {} and {}", clock(*value, 0), clock(*value, 59))
        }
        (None, Some(values)) => format!(" past hours {}", join(&numbers(values))),
        (None, None) => match hour.parts() {
            [Part::Range {
                start,
                end,
                step: 1,
            }] => format!(", between {} and {}", clock(*start, 0), clock(*end, 59)),
            _ => format!(" past hours {}", parts_phrase(hour)),
        },
    };
    minute_part + &hour_part
}

fn day_of_month_phrase(field: &Field) -> String {
    if field.is_every() {
        return String::new();
    }
    match (singles(field), every_step(field)) {
        (Some(days), _) if days.len() == 1 => format!(" on day {} of the month", days[0]),
        (Some(days), _) => format!(" on days {} of the month", join(&numbers(&days))),
        (None, Some(step)) => format!(", every {} day of the month", ordinal(step)),
        (None, None) => format!(", on days {} of the month", parts_phrase(field)),
    }
}

fn day_of_week_phrase(field: &Field, after_day_of_month: bool) -> String {
    if field.is_every() {
        return String::new();
    }
    let (on, comma) = if after_day_of_month {
        (", only on ", ", only ")
    } else {
        (" on ", ", ")
    };
    match (singles(field), every_step(field)) {
        (Some(_), _) => format!("{on}{}", parts_phrase(field)),
        (None, Some(step)) => format!("{comma}every {} day of the week", ordinal(step)),
        (None, None) => format!("{comma}{}", parts_phrase(field)),
    }
}

fn month_phrase(field: &Field) -> String {
    if field.is_every() {
        return String::new();
    }
    match (singles(field), every_step(field)) {
        (Some(_), _) => format!(" in {}", parts_phrase(field)),
        (None, Some(step)) => format!(", every {} month", ordinal(step)),
        (None, None) => format!(", {}", parts_phrase(field)),
    }
}

/// The items of a field joined as a list: `Monday through Friday and Sunday`,
/// `every 5th from 1 through 30`.
fn parts_phrase(field: &Field) -> String {
    let kind = field.kind();
    let items: Vec<String> = field
        .parts()
        .iter()
        .map(|part| match *part {
            Part::Any { step: 1 } => "every value".to_owned(),
            Part::Any { step } => format!("every {}", ordinal(step)),
            Part::Value(value) => value_name(kind, value),
            Part::Range {
                start,
                end,
                step: 1,
            } => format!(
                "{} through {}",
                value_name(kind, start),
                value_name(kind, end)
            ),
            Part::Range { start, end, step } => format!(
                "every {} from {} through {}",
                ordinal(step),
                value_name(kind, start),
                value_name(kind, end)
            ),
        })
        .collect();
    join(&items)
}

fn value_name(kind: FieldKind, value: u32) -> String {
    let index = usize::try_from(value).unwrap_or(usize::MAX);
    let name = match kind {
        FieldKind::DayOfWeek => DAY_NAMES.get(index),
        FieldKind::MonthOfYear => index.checked_sub(1).and_then(|i| MONTH_NAMES.get(i)),
        _ => None,
    };
    name.map_or_else(|| value.to_string(), |name| (*name).to_owned())
}

fn clock(hour: u32, minute: u32) -> String {
    format!("{hour:02}:{minute:02}")
}

fn numbers(values: &[u32]) -> Vec<String> {
    values.iter().map(u32::to_string).collect()
}

/// `a`, `a and b`, `a, b and c`.
fn join(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [only] => only.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// `1st`, `2nd`, `3rd`, `4th`, `11th`, `21st`.
fn ordinal(number: u32) -> String {
    let suffix = match (number % 10, number % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{number}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn describe(line: &str) -> String {
        Crontab::parse(line, chrono_tz::UTC).unwrap().describe()
    }

    #[test]
    fn common_expressions() {
        let cases = [
            ("* * * * *", "Every minute"),
            ("*/15 * * * *", "Every 15 minutes"),
            ("0 * * * *", "Every hour"),
            ("5 * * * *", "At minute 5"),
            ("0 */2 * * *", "At minute 0 past every 2nd hour"),
            ("30 7 * * mon", "At 07:30 on Monday"),
            ("30 7 * * 1", "At 07:30 on Monday"),
            ("0 4 1 * *", "At 04:00 on day 1 of the month"),
            ("0 9 * * mon-fri", "At 09:00, Monday through Friday"),
            ("0 9 * * 1-5", "At 09:00, Monday through Friday"),
            ("0 0 * * 0", "At 00:00 on Sunday"),
            ("0,30 9,17 * * *", "At 09:00, 09:30, 17:00 and 17:30"),
            (
                "*/15 9-17 * * *",
                "Every 15 minutes, between 09:00 and 17:59",
            ),
            ("*/10 9 * * *", "Every 10 minutes, between 09:00 and 09:59"),
            ("1-30/5 * * * *", "Every 5 minutes from minute 1 through 30"),
            ("0-10 * * * *", "Every minute from minute 0 through 10"),
            ("0-10,30 * * * *", "At minutes 0 through 10 and 30"),
            (
                "*/20 1,2 1,15 */2 1-5",
                "Every 20 minutes past hours 1 and 2 on days 1 and 15 of the month, only Monday \
                 through Friday, every 2nd month",
            ),
            ("0 0 1 1 *", "At 00:00 on day 1 of the month in January"),
            ("0 0 1,15 * *", "At 00:00 on days 1 and 15 of the month"),
            ("0 0 */2 * *", "At 00:00, every 2nd day of the month"),
            ("0 12 * jan,jul *", "At 12:00 in January and July"),
            ("0 12 * */3 *", "At 12:00, every 3rd month"),
            ("0 12 * 6-8 *", "At 12:00, June through August"),
            (
                "0 9 13 * fri",
                "At 09:00 on day 13 of the month, only on Friday",
            ),
            ("0 9 * * sat,sun", "At 09:00 on Saturday and Sunday"),
            ("0 9 * * fri-mon", "At 09:00, Friday through Monday"),
            ("0 9 * * */2", "At 09:00, every 2nd day of the week"),
            (
                "0,15,30,45 0,6,12,18 * * *",
                "At minutes 0, 15, 30 and 45 past hours 0, 6, 12 and 18",
            ),
            (
                "0 22-2/2 * * *",
                "At minute 0 past hours every 2nd from 22 through 2",
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(describe(line), expected, "{line}");
        }
    }

    #[test]
    fn names_the_zone_when_not_utc() {
        let crontab = Crontab::parse("30 7 * * mon", chrono_tz::Europe::Oslo).unwrap();
        assert_eq!(crontab.describe(), "At 07:30 on Monday (Europe/Oslo)");
    }

    #[test]
    fn ordinals() {
        let cases = [
            (1, "1st"),
            (2, "2nd"),
            (3, "3rd"),
            (4, "4th"),
            (11, "11th"),
            (12, "12th"),
            (13, "13th"),
            (21, "21st"),
            (22, "22nd"),
            (111, "111th"),
        ];
        for (number, expected) in cases {
            assert_eq!(ordinal(number), expected);
        }
    }
}
