//! Property tests of crontab firings against a minute-by-minute reference, and the settings
//! forms of `Schedule::from_setting`.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Offset, TimeDelta, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

use super::*;

// ---------------------------------------------------------------------------------------------
// Crontab against a brute-force reference
// ---------------------------------------------------------------------------------------------

/// The zones the property tests run in: two with 1-hour DST, one with a 30-minute DST shift,
/// one without DST (since 1991) and UTC.
const ZONES: [Tz; 5] = [
    chrono_tz::Europe::Oslo,
    chrono_tz::America::New_York,
    chrono_tz::Australia::Lord_Howe,
    chrono_tz::Asia::Shanghai,
    chrono_tz::UTC,
];

/// How far the reference walks from each start, in minutes (3 days).
const HORIZON_MINUTES: i64 = 3 * 24 * 60;

/// Random cases per zone.
const CASES_PER_ZONE: usize = 120;

/// How many successive firings are compared from each point a case asks from.
const FIRINGS_PER_PROBE: usize = 40;

/// Bounds and names of one field, for the generator and the reference (independent of the
/// parser under test).
struct FieldSpec {
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// Chance of a plain `*`, to keep schedules firing often enough to test.
    star_chance: f64,
}

const MINUTE: FieldSpec = FieldSpec {
    min: 0,
    max: 59,
    names: &[],
    star_chance: 0.15,
};
const HOUR: FieldSpec = FieldSpec {
    min: 0,
    max: 23,
    names: &[],
    star_chance: 0.2,
};
const DAY_OF_WEEK: FieldSpec = FieldSpec {
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    star_chance: 0.5,
};
const DAY_OF_MONTH: FieldSpec = FieldSpec {
    min: 1,
    max: 31,
    names: &[],
    star_chance: 0.7,
};
const MONTH_OF_YEAR: FieldSpec = FieldSpec {
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
    star_chance: 0.8,
};

/// A value as written: a number, or sometimes its name in random case.
fn written(rng: &mut fastrand::Rng, spec: &FieldSpec, value: u32) -> String {
    if !spec.names.is_empty() && rng.bool() {
        let name = spec.names[(value - spec.min) as usize];
        match rng.u8(0..3) {
            0 => name.to_owned(),
            1 => name.to_uppercase(),
            _ => {
                let mut chars = name.chars();
                let first = chars.next().unwrap().to_ascii_uppercase();
                format!("{first}{}", chars.as_str())
            }
        }
    } else {
        value.to_string()
    }
}

/// A random field and the set of values it means (computed here, following Celery's rules, not
/// by the parser under test).
fn random_field(rng: &mut fastrand::Rng, spec: &FieldSpec) -> (String, BTreeSet<u32>) {
    if rng.f64() < spec.star_chance {
        return ("*".to_owned(), (spec.min..=spec.max).collect());
    }
    let items = if rng.f64() < 0.6 { 1 } else { rng.usize(2..=3) };
    let mut texts = Vec::new();
    let mut values = BTreeSet::new();
    let span = spec.max - spec.min + 1;
    for _ in 0..items {
        let value = |rng: &mut fastrand::Rng| rng.u32(spec.min..=spec.max);
        match rng.u8(0..5) {
            0 => {
                let step = rng.u32(1..=span / 2 + 1);
                texts.push(format!("*/{step}"));
                values.extend((spec.min..=spec.max).step_by(step as usize));
            }
            1 => {
                let v = value(rng);
                texts.push(written(rng, spec, v));
                values.insert(v);
            }
            kind => {
                let (start, end) = (value(rng), value(rng));
                let step = if kind == 4 { rng.u32(1..=4) } else { 1 };
                let listed: Vec<u32> = if start <= end {
                    (start..=end).collect()
                } else {
                    (start..=spec.max).chain(spec.min..=end).collect()
                };
                values.extend(listed.into_iter().step_by(step as usize));
                let range = format!("{}-{}", written(rng, spec, start), written(rng, spec, end));
                texts.push(if step == 1 {
                    range
                } else {
                    format!("{range}/{step}")
                });
            }
        }
    }
    (texts.join(","), values)
}

/// The reference: a crontab as five sets of values.
struct Expected {
    minute: BTreeSet<u32>,
    hour: BTreeSet<u32>,
    day_of_week: BTreeSet<u32>,
    day_of_month: BTreeSet<u32>,
    month_of_year: BTreeSet<u32>,
    timezone: Tz,
}

impl Expected {
    fn matches(&self, local: chrono::NaiveDateTime) -> bool {
        self.minute.contains(&local.minute())
            && self.hour.contains(&local.hour())
            && self
                .day_of_week
                .contains(&local.weekday().num_days_from_sunday())
            && self.day_of_month.contains(&local.day())
            && self.month_of_year.contains(&local.month())
    }

    fn offset_minutes(&self, at: DateTime<Utc>) -> i64 {
        i64::from(
            self.timezone
                .offset_from_utc_datetime(&at.naive_utc())
                .fix()
                .local_minus_utc(),
        ) / 60
    }

    /// Whether the local time at `at` was already shown earlier (clocks went back), found by
    /// checking whether the offset `delta` minutes earlier was `delta` minutes larger.
    fn repeats_an_earlier_local_time(&self, at: DateTime<Utc>) -> bool {
        let offset = self.offset_minutes(at);
        [30, 60, 90, 120]
            .into_iter()
            .any(|delta| self.offset_minutes(at - TimeDelta::minutes(delta)) == offset + delta)
    }

    /// Whether the local time at `at` will be shown again later (clocks go back).
    fn happens_again_later(&self, at: DateTime<Utc>) -> bool {
        let offset = self.offset_minutes(at);
        [30, 60, 90, 120]
            .into_iter()
            .any(|delta| self.offset_minutes(at + TimeDelta::minutes(delta)) == offset - delta)
    }

    /// Every firing in `(after, after + HORIZON_MINUTES]`, walking UTC minute by minute.
    fn firings(&self, after: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let first =
            after.with_second(0).unwrap().with_nanosecond(0).unwrap() + TimeDelta::minutes(1);
        let mut found = Vec::new();
        for step in 0..HORIZON_MINUTES {
            let at = first + TimeDelta::minutes(step);
            if at > after + TimeDelta::minutes(HORIZON_MINUTES) {
                break;
            }
            let local = at.with_timezone(&self.timezone).naive_local();
            if self.matches(local) && !self.repeats_an_earlier_local_time(at) {
                found.push(at);
            }
        }
        found
    }

    fn some_date_exists(&self) -> bool {
        self.month_of_year.iter().any(|&month| {
            let longest = match month {
                2 => 29,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            self.day_of_month.iter().any(|&day| day <= longest)
        })
    }
}

/// The DST transitions of `timezone` in `year` (instants where the offset changes), found by
/// bisection between daily samples.
fn transitions(timezone: Tz, year: i32) -> Vec<DateTime<Utc>> {
    let offset = |at: DateTime<Utc>| timezone.offset_from_utc_datetime(&at.naive_utc()).fix();
    let mut found = Vec::new();
    let mut day = Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0).unwrap();
    while day.year() == year {
        let next = day + TimeDelta::days(1);
        if offset(day) != offset(next) {
            // Bisect over whole minutes: the offset at `low` is the old one, at `high` the new.
            let (mut low, mut high) = (0i64, 24 * 60);
            while high - low > 1 {
                let middle = (low + high) / 2;
                if offset(day + TimeDelta::minutes(middle)) == offset(day) {
                    low = middle;
                } else {
                    high = middle;
                }
            }
            let high = day + TimeDelta::minutes(high);
            found.push(high);
        }
        day = next;
    }
    found
}

/// A random start in 2024-2030; `true` when it was put just before a DST transition.
fn random_start(rng: &mut fastrand::Rng, timezone: Tz) -> (DateTime<Utc>, bool) {
    let year = rng.i32(2024..=2030);
    let near_transitions = transitions(timezone, year);
    if !near_transitions.is_empty() && rng.f64() < 0.6 {
        // Within two days before a transition, so the walk crosses it.
        let transition = near_transitions[rng.usize(..near_transitions.len())];
        let start = transition - TimeDelta::seconds(rng.i64(0..2 * 24 * 3600));
        (start, true)
    } else {
        let start = Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0).unwrap();
        (
            start + TimeDelta::seconds(rng.i64(0..365 * 24 * 3600)),
            false,
        )
    }
}

/// Hour fields around the local hours DST changes touch (01:00-03:00 in all three DST zones
/// tested), with their values.
const TRANSITION_HOURS: &[(&str, &[u32])] = &[
    ("1", &[1]),
    ("2", &[2]),
    ("1,2", &[1, 2]),
    ("1-3", &[1, 2, 3]),
    ("0-2/2", &[0, 2]),
    ("2,3", &[2, 3]),
];

/// What a run of [`check_random_crontabs`] covered.
struct Coverage {
    /// Firings compared with the reference.
    compared: usize,
    /// Of those, within three hours of a DST transition.
    near_a_transition: usize,
    /// Of those, at a local time that happens twice (clocks went back).
    ambiguous: usize,
}

/// Checks random crontabs in `timezone` against the reference.
fn check_random_crontabs(timezone: Tz, seed: u64) -> Coverage {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut checked = 0;
    let mut compared = 0;
    let mut near_a_transition = 0;
    let mut ambiguous = 0;
    while checked < CASES_PER_ZONE {
        let (after, near) = random_start(&mut rng, timezone);
        let (minute, minute_values) = random_field(&mut rng, &MINUTE);
        let (hour, hour_values) = if near && rng.bool() {
            let (text, values) = TRANSITION_HOURS[rng.usize(..TRANSITION_HOURS.len())];
            (text.to_owned(), values.iter().copied().collect())
        } else {
            random_field(&mut rng, &HOUR)
        };
        let (day_of_week, day_of_week_values) = random_field(&mut rng, &DAY_OF_WEEK);
        let (day_of_month, day_of_month_values) = random_field(&mut rng, &DAY_OF_MONTH);
        let (month_of_year, month_values) = random_field(&mut rng, &MONTH_OF_YEAR);
        let expected = Expected {
            minute: minute_values,
            hour: hour_values,
            day_of_week: day_of_week_values,
            day_of_month: day_of_month_values,
            month_of_year: month_values,
            timezone,
        };
        let context = format!(
            "seed {seed}, zone {}, crontab(minute={minute:?}, hour={hour:?}, \
             day_of_week={day_of_week:?}, day_of_month={day_of_month:?}, \
             month_of_year={month_of_year:?})",
            timezone.name()
        );
        let crontab = match Crontab::new(
            &minute,
            &hour,
            &day_of_week,
            &day_of_month,
            &month_of_year,
            timezone,
        ) {
            Ok(crontab) => crontab,
            Err(error) => {
                assert!(
                    !expected.some_date_exists(),
                    "{context}: rejected ({error}) though it can fire"
                );
                continue;
            }
        };
        // Never panics, never empty, whatever the fields.
        assert!(!crontab.describe().is_empty(), "{context}");
        assert!(
            expected.some_date_exists(),
            "{context}: accepted though it never fires"
        );
        let reference = expected.firings(after);
        let zone_transitions: Vec<DateTime<Utc>> =
            [after.year() - 1, after.year(), after.year() + 1]
                .into_iter()
                .flat_map(|year| transitions(timezone, year))
                .collect();
        let horizon_end = after + TimeDelta::minutes(HORIZON_MINUTES);
        // Ask from the start, from 90 minutes before each DST transition inside the walk, and
        // from a random second; each time follow the next firings one by one.
        let mut probes = vec![after];
        probes.extend(
            zone_transitions
                .iter()
                .map(|&transition| transition - TimeDelta::minutes(90))
                .filter(|&probe| probe > after && probe < horizon_end),
        );
        probes.push(after + TimeDelta::seconds(rng.i64(0..HORIZON_MINUTES * 60)));
        for probe in probes {
            let mut at = probe;
            let following = reference.iter().filter(|&&firing| firing > probe);
            let mut count = 0;
            for want in following.take(FIRINGS_PER_PROBE) {
                assert_eq!(
                    crontab.next_after(at),
                    Some(*want),
                    "{context}: the firing after {at} (walk started at {after})"
                );
                at = *want;
                count += 1;
                compared += 1;
                if zone_transitions
                    .iter()
                    .any(|&transition| (transition - *want).abs() <= TimeDelta::hours(3))
                {
                    near_a_transition += 1;
                }
                if expected.happens_again_later(*want) {
                    ambiguous += 1;
                }
            }
            if count < FIRINGS_PER_PROBE {
                // The reference has nothing more inside the walk.
                if let Some(got) = crontab.next_after(at) {
                    assert!(
                        got > horizon_end,
                        "{context}: fired at {got} after {at}, but the reference has no \
                         firing before {horizon_end} (walk started at {after})"
                    );
                }
            }
        }
        checked += 1;
    }
    Coverage {
        compared,
        near_a_transition,
        ambiguous,
    }
}

/// The base seed: `CELERY_WEB_SCHEDULE_SEED` if set (to replay a failure), else fixed.
fn base_seed() -> u64 {
    std::env::var("CELERY_WEB_SCHEDULE_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(20_261_121)
}

/// Runs [`check_random_crontabs`] in a zone with DST and checks that the walks crossed enough
/// transitions and fired at enough ambiguous local times to mean something.
fn check_zone_with_dst(timezone: Tz, seed: u64) {
    let coverage = check_random_crontabs(timezone, seed);
    assert!(
        coverage.compared > 3000,
        "seed {seed}: only {} firings compared (a coverage check)",
        coverage.compared
    );
    assert!(
        coverage.near_a_transition > 500,
        "seed {seed}: only {} firings near a DST change (a coverage check)",
        coverage.near_a_transition
    );
    assert!(
        coverage.ambiguous > 15,
        "seed {seed}: only {} firings at ambiguous local times (a coverage check)",
        coverage.ambiguous
    );
}

/// Runs [`check_random_crontabs`] in a zone without DST.
fn check_zone_without_dst(timezone: Tz, seed: u64) {
    let coverage = check_random_crontabs(timezone, seed);
    assert!(
        coverage.compared > 3000,
        "seed {seed}: only {} firings compared (a coverage check)",
        coverage.compared
    );
}

#[test]
fn random_crontabs_match_the_reference_in_oslo() {
    check_zone_with_dst(ZONES[0], base_seed());
}

#[test]
fn random_crontabs_match_the_reference_in_new_york() {
    check_zone_with_dst(ZONES[1], base_seed() + 1);
}

#[test]
fn random_crontabs_match_the_reference_on_lord_howe() {
    check_zone_with_dst(ZONES[2], base_seed() + 2);
}

#[test]
fn random_crontabs_match_the_reference_in_shanghai() {
    check_zone_without_dst(ZONES[3], base_seed() + 3);
}

#[test]
fn random_crontabs_match_the_reference_in_utc() {
    check_zone_without_dst(ZONES[4], base_seed() + 4);
}

#[test]
fn transitions_are_found() {
    let oslo = transitions(chrono_tz::Europe::Oslo, 2026);
    assert_eq!(
        oslo,
        [
            Utc.with_ymd_and_hms(2026, 3, 29, 1, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2026, 10, 25, 1, 0, 0).unwrap(),
        ]
    );
    assert_eq!(transitions(chrono_tz::Australia::Lord_Howe, 2026).len(), 2);
    assert!(transitions(chrono_tz::Asia::Shanghai, 2026).is_empty());
}

// ---------------------------------------------------------------------------------------------
// Schedule::from_setting
// ---------------------------------------------------------------------------------------------

/// Parses `schedule = <text>` as it would appear in a `beat_schedule` table.
fn setting(text: &str) -> Result<Schedule, ScheduleError> {
    let table: toml::Table = toml::from_str(&format!("schedule = {text}")).unwrap();
    Schedule::from_setting(&table["schedule"], chrono_tz::Europe::Oslo)
}

fn interval(every: i64, period: Period) -> Schedule {
    Schedule::Interval(Interval::new(every, period).unwrap())
}

fn error(text: &str) -> String {
    setting(text).unwrap_err().to_string()
}

#[test]
fn numbers_are_seconds() {
    assert_eq!(setting("10").unwrap(), interval(10, Period::Seconds));
    assert_eq!(setting("10.0").unwrap(), interval(10, Period::Seconds));
    assert_eq!(
        setting("2.5").unwrap(),
        interval(2_500_000, Period::Microseconds)
    );
    assert_eq!(
        error("0"),
        "schedule: 0 seconds is not an interval; it must be positive"
    );
    assert_eq!(
        error("-1.5"),
        "schedule: -1.5 seconds is not an interval; it must be positive"
    );
    assert_eq!(
        error("nan"),
        "schedule: NaN seconds is not an interval; it must be positive"
    );
}

#[test]
fn duration_strings() {
    let cases = [
        ("\"10s\"", interval(10, Period::Seconds)),
        ("\"5m\"", interval(5, Period::Minutes)),
        ("\"2h\"", interval(2, Period::Hours)),
        ("\"1d\"", interval(1, Period::Days)),
        ("\"90 seconds\"", interval(90, Period::Seconds)),
        ("\"every 10 minutes\"", interval(10, Period::Minutes)),
        ("\"Every 3 Hours\"", interval(3, Period::Hours)),
        ("\"every hour\"", interval(1, Period::Hours)),
        ("\"250ms\"", interval(250_000, Period::Microseconds)),
        ("\"1 day\"", interval(1, Period::Days)),
        ("\"10\"", interval(10, Period::Seconds)),
    ];
    for (text, expected) in cases {
        assert_eq!(setting(text).unwrap(), expected, "{text}");
    }
    assert_eq!(
        error("\"0s\""),
        "schedule: \"0s\": 0 is not allowed; the interval must be at least 1 seconds"
    );
}

#[test]
fn cron_lines_and_crontab_calls() {
    let oslo = chrono_tz::Europe::Oslo;
    let monday_half_past_seven =
        Schedule::Crontab(Crontab::new("30", "7", "mon", "*", "*", oslo).unwrap());
    assert_eq!(setting("\"30 7 * * mon\"").unwrap(), monday_half_past_seven);
    assert_eq!(
        setting("\"crontab(minute='30', hour='7', day_of_week='mon')\"").unwrap(),
        monday_half_past_seven
    );
    assert_eq!(
        setting(r#"'crontab(minute="30", hour=7, day_of_week="mon")'"#).unwrap(),
        monday_half_past_seven
    );
    assert_eq!(
        setting("\"crontab('30', '7', 'mon')\"").unwrap(),
        monday_half_past_seven
    );
    assert_eq!(
        setting("\"crontab(minute='0,30', hour='*/2', day_of_month='1-7', month_of_year='jan')\"")
            .unwrap(),
        Schedule::Crontab(Crontab::new("0,30", "*/2", "*", "1-7", "jan", oslo).unwrap())
    );
    assert_eq!(
        setting("\"crontab()\"").unwrap(),
        Schedule::Crontab(Crontab::new("*", "*", "*", "*", "*", oslo).unwrap())
    );
    assert_eq!(
        error("\"crontab(minute='0', weekday='mon')\""),
        "schedule: crontab(minute='0', weekday='mon'): unknown argument `weekday`; the \
         arguments are minute, hour, day_of_week, day_of_month and month_of_year; write for \
         example crontab(minute='30', hour='7', day_of_week='mon')"
    );
    assert_eq!(
        error("\"crontab(minute='0', minute='5')\""),
        "schedule: crontab(minute='0', minute='5'): `minute` is given more than once; write \
         for example crontab(minute='30', hour='7', day_of_week='mon')"
    );
    assert_eq!(
        error("\"crontab(minute='0)\""),
        "schedule: crontab(minute='0): a ' quote is not closed; write for example \
         crontab(minute='30', hour='7', day_of_week='mon')"
    );
    assert_eq!(
        error("\"crontab(hour='7', '30')\""),
        "schedule: crontab(hour='7', '30'): a positional argument follows a keyword argument; \
         write for example crontab(minute='30', hour='7', day_of_week='mon')"
    );
    assert_eq!(
        error("\"30 7 * * 7\""),
        "day_of_week: 7 is out of range 0-6 (0 = Sunday; use 0 or sun for Sunday)"
    );
    assert_eq!(error("\"60 * * * *\""), "minute: 60 is out of range 0-59");
}

#[test]
fn tables() {
    let oslo = chrono_tz::Europe::Oslo;
    assert_eq!(
        setting("{ every = 1, period = \"hours\" }").unwrap(),
        interval(1, Period::Hours)
    );
    assert_eq!(
        setting("{ crontab = \"30 7 * * mon\", timezone = \"America/New_York\" }").unwrap(),
        Schedule::Crontab(
            Crontab::new("30", "7", "mon", "*", "*", chrono_tz::America::New_York).unwrap()
        )
    );
    assert_eq!(
        setting("{ crontab = { minute = \"30\", hour = 7, day_of_week = \"mon\" } }").unwrap(),
        Schedule::Crontab(Crontab::new("30", "7", "mon", "*", "*", oslo).unwrap())
    );
    let at = Utc.with_ymd_and_hms(2026, 12, 1, 8, 0, 0).unwrap();
    assert_eq!(
        setting("{ clocked = \"2026-12-01T08:00:00Z\" }").unwrap(),
        Schedule::Clocked(Clocked::new(at))
    );
    assert_eq!(
        setting("{ clocked = 2026-12-01T09:00:00+01:00 }").unwrap(),
        Schedule::Clocked(Clocked::new(at))
    );
    // Without an offset, the default zone (Oslo, UTC+1 in December).
    assert_eq!(
        setting("{ clocked = 2026-12-01T09:00:00 }").unwrap(),
        Schedule::Clocked(Clocked::new(at))
    );
    assert_eq!(
        setting("{ solar = \"sunrise\", latitude = 59.9, longitude = 10 }").unwrap(),
        Schedule::Solar(Solar::new(SolarEvent::Sunrise, 59.9, 10.0).unwrap())
    );
}

#[test]
fn rejected_tables() {
    let cases = [
        (
            "{ every = 1, period = \"hours\", offset = 3 }",
            "schedule: unknown key `offset` in an interval schedule table; allowed keys: \
             every, period",
        ),
        (
            "{ every = 1 }",
            "period: missing; write for example { every = 10, period = \"minutes\" }",
        ),
        (
            "{ every = \"1\", period = \"hours\" }",
            "every: \"1\" is not a whole number; write for example every = 10",
        ),
        (
            "{ every = 0, period = \"hours\" }",
            "every: 0 is not allowed; the interval must be at least 1 hours",
        ),
        (
            "{ crontab = \"30 7 * * mon\", timezone = \"Europe/Olso\" }",
            "timezone: \"Europe/Olso\" is not an IANA time zone name; write for example \
             \"Europe/Oslo\" or \"UTC\"",
        ),
        (
            "{ crontab = { minute = \"30\", hours = \"7\" } }",
            "crontab: unknown key `hours`; the fields are minute, hour, day_of_week, \
             day_of_month and month_of_year",
        ),
        (
            "{ crontab = \"30 7 * *\" }",
            "crontab: \"30 7 * *\" has 4 fields; write 5 fields: minute hour day_of_month \
             month_of_year day_of_week, for example \"30 7 * * mon\"",
        ),
        (
            "{ clocked = \"tomorrow\" }",
            "clocked: \"tomorrow\" is not a date and time; write RFC 3339, for example \
             \"2026-12-01T08:00:00Z\"",
        ),
        (
            "{ clocked = 2026-03-29T02:30:00 }",
            "clocked: \"2026-03-29T02:30:00\" does not exist or happens twice in Europe/Oslo \
             (a daylight saving time change); give a UTC offset, for example \
             \"2026-12-01T08:00:00Z\"",
        ),
        (
            "{ solar = \"sunrise\", latitude = 59.9 }",
            "longitude: missing; write for example { solar = \"sunrise\", latitude = 59.9, \
             longitude = 10.7 }",
        ),
        (
            "{ solar = \"moonrise\", latitude = 59.9, longitude = 10.7 }",
            "solar: \"moonrise\" is not a solar event; use dawn_astronomical, dawn_nautical, \
             dawn_civil, sunrise, solar_noon, sunset, dusk_civil, dusk_nautical or \
             dusk_astronomical",
        ),
        (
            "{ solar = \"sunset\", latitude = 95, longitude = 10.7 }",
            "latitude: 95 is out of range -90 to 90 (degrees, north positive)",
        ),
        (
            "{ every = 1, period = \"hours\", crontab = \"* * * * *\" }",
            "schedule: the table has every and crontab; a schedule has exactly one of every, \
             crontab, clocked or solar",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(error(text), expected, "{text}");
    }
}

#[test]
fn anything_else_lists_every_form() {
    let forms = "write seconds (10 or 2.5), a duration (\"10s\", \"5m\", \"2h\", \"1d\", \
         \"every 10 minutes\"), a cron line (\"30 7 * * mon\": minute hour day_of_month \
         month_of_year day_of_week, 0 = Sunday), \"crontab(minute='30', hour='7', \
         day_of_week='mon')\", or a table: { every = 1, period = \"hours\" }, { crontab = \
         \"30 7 * * mon\", timezone = \"Europe/Oslo\" }, { clocked = \"2026-12-01T08:00:00Z\" \
         }, { solar = \"sunrise\", latitude = 59.9, longitude = 10.7 }";
    assert_eq!(
        error("\"every 10\""),
        format!("schedule: \"every 10\" is not a schedule; {forms}")
    );
    assert_eq!(
        error("\"fortnightly\""),
        format!("schedule: \"fortnightly\" is not a schedule; {forms}")
    );
    assert_eq!(
        error("\"\""),
        format!("schedule: \"\" is not a schedule; {forms}")
    );
    assert_eq!(
        error("true"),
        format!("schedule: true is not a schedule; {forms}")
    );
    assert_eq!(
        error("[1, 2]"),
        format!("schedule: [1, 2] is not a schedule; {forms}")
    );
    assert_eq!(
        error("{}"),
        format!("schedule: this table is not a schedule; {forms}")
    );
    assert_eq!(
        error("{ cron = \"* * * * *\" }"),
        format!("schedule: unknown key `cron` in the schedule table; {forms}")
    );
}

#[test]
fn describe_every_kind() {
    assert_eq!(setting("10").unwrap().describe(), "every 10 seconds");
    assert_eq!(setting("10").unwrap().to_string(), "every 10 seconds");
    assert_eq!(
        setting("\"30 7 * * mon\"").unwrap().describe(),
        "At 07:30 on Monday (Europe/Oslo)"
    );
    assert_eq!(
        setting("{ crontab = \"0 9 * * mon-fri\", timezone = \"UTC\" }")
            .unwrap()
            .describe(),
        "At 09:00, Monday through Friday"
    );
    assert_eq!(
        setting("{ solar = \"sunrise\", latitude = 59.91, longitude = 10.75 }")
            .unwrap()
            .describe(),
        "at sunrise at 59.91, 10.75"
    );
    assert_eq!(
        setting("{ clocked = \"2026-12-01T08:00:00Z\" }")
            .unwrap()
            .describe(),
        "once at 2026-12-01 08:00 UTC"
    );
}

#[test]
fn next_after_dispatches_to_each_kind() {
    let after = Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap();
    assert_eq!(
        setting("\"5m\"").unwrap().next_after(after),
        Some(after + TimeDelta::minutes(5))
    );
    assert_eq!(
        setting("{ clocked = \"2026-12-01T08:00:00Z\" }")
            .unwrap()
            .next_after(after),
        Some(after + TimeDelta::days(1))
    );
    assert_eq!(
        setting("{ crontab = \"0 9 * * *\", timezone = \"UTC\" }")
            .unwrap()
            .next_after(after),
        Some(after + TimeDelta::hours(1))
    );
    let sunrise = setting("{ solar = \"sunrise\", latitude = 59.91, longitude = 10.75 }")
        .unwrap()
        .next_after(after)
        .unwrap();
    assert_eq!(
        sunrise.date_naive(),
        after.date_naive() + TimeDelta::days(1)
    );
}
