//! The dashboard's "tasks per minute by state" chart: stacked bars drawn as inline SVG on the
//! server, so it needs no JavaScript.

use std::collections::BTreeMap;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

use crate::monitor::MinuteCount;

/// Chart width and height in SVG units.
pub(crate) const WIDTH: u32 = 720;
pub(crate) const HEIGHT: u32 = 160;
/// States drawn, bottom to top, with their colours; other states are summed as "other".
const SERIES: [(&str, &str); 5] = [
    ("SUCCESS", "#3f9f6f"),
    ("FAILURE", "#d64545"),
    ("RETRY", "#e0a526"),
    ("STARTED", "#4a8fd1"),
    ("other", "#9aa5b1"),
];

/// One rectangle of a bar.
#[derive(Debug, PartialEq)]
pub(crate) struct Segment {
    pub(crate) x: u32,
    pub(crate) y: u32,
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) colour: &'static str,
    /// Tooltip: `17:03 SUCCESS 120`.
    pub(crate) title: String,
}

/// The chart: its segments, the tallest bar's count, and the legend with totals.
#[derive(Debug)]
pub(crate) struct Chart {
    pub(crate) segments: Vec<Segment>,
    pub(crate) peak: u64,
    pub(crate) legend: Vec<(&'static str, &'static str, u64)>,
    pub(crate) width: u32,
    pub(crate) height: u32,
}

/// Bars for the `minutes` minutes up to `now`, from per-minute counts.
pub(crate) fn per_minute(counts: &[MinuteCount], now: DateTime<Utc>, minutes: u32) -> Chart {
    let end = now.duration_trunc(TimeDelta::minutes(1)).unwrap_or(now);
    let start = end - TimeDelta::minutes(i64::from(minutes) - 1);
    let series_of = |status: &str| {
        SERIES
            .iter()
            .position(|(name, _)| *name == status)
            .unwrap_or(SERIES.len() - 1)
    };
    let mut table: BTreeMap<i64, [u64; SERIES.len()]> = BTreeMap::new();
    let mut totals = [0u64; SERIES.len()];
    for count in counts {
        let minute = count
            .minute
            .duration_trunc(TimeDelta::minutes(1))
            .unwrap_or(count.minute);
        if minute < start || minute > end {
            continue;
        }
        let index = (minute - start).num_minutes();
        let series = series_of(&count.status);
        table.entry(index).or_default()[series] += count.count;
        totals[series] += count.count;
    }
    let peak = table
        .values()
        .map(|row| row.iter().sum::<u64>())
        .max()
        .unwrap_or(0);
    let slot = WIDTH / minutes.max(1);
    let mut segments = Vec::new();
    for (index, row) in &table {
        let x = *index as u32 * slot;
        let mut top = HEIGHT;
        for (series, count) in row.iter().enumerate() {
            if *count == 0 {
                continue;
            }
            let height = ((*count as f64 / peak.max(1) as f64) * f64::from(HEIGHT)).round() as u32;
            let height = height.max(1).min(top);
            top -= height;
            let minute = start + TimeDelta::minutes(*index);
            segments.push(Segment {
                x,
                y: top,
                width: slot.saturating_sub(1).max(1),
                height,
                colour: SERIES[series].1,
                title: format!("{} {} {}", minute.format("%H:%M"), SERIES[series].0, count),
            });
        }
    }
    Chart {
        segments,
        peak,
        legend: SERIES
            .iter()
            .zip(totals)
            .map(|((name, colour), total)| (*name, *colour, total))
            .collect(),
        width: WIDTH,
        height: HEIGHT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn bars_stack_by_state_and_scale_to_the_peak() {
        let now = Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 30).unwrap();
        let at = |m: u32| Utc.with_ymd_and_hms(2026, 11, 21, 11, m, 5).unwrap();
        let count = |minute, status: &str, count| MinuteCount {
            minute,
            status: status.to_owned(),
            count,
        };
        let chart = per_minute(
            &[
                count(at(59), "SUCCESS", 30),
                count(at(59), "FAILURE", 10),
                count(at(1), "SUCCESS", 20),
                count(at(1), "PENDING", 5),
                count(at(0), "SUCCESS", 1_000), // 60 minutes ago: outside the hour
            ],
            now,
            60,
        );
        assert_eq!(chart.peak, 40);
        assert_eq!(chart.legend[0], ("SUCCESS", "#3f9f6f", 50));
        assert_eq!(chart.legend[4].2, 5);
        let last: Vec<&Segment> = chart.segments.iter().filter(|s| s.x == 58 * 12).collect();
        assert_eq!(last.len(), 2);
        assert_eq!((last[0].y, last[0].height), (40, 120)); // 30 of 40 = 3/4 of 160
        assert_eq!((last[1].y, last[1].height), (0, 40));
        assert_eq!(last[1].title, "11:59 FAILURE 10");
    }
}
