//! The time modifiers (`minute`, `hour`, `day`, `week`, `month`, `year`):
//! a part of the field's timestamp compared with a number.
//!
//! Sysmon events carry their time twice: `UtcTime` as Sysmon writes it
//! (`2019-07-19 14:42:53.277`, UTC) and `_time`, which the add-on parses
//! from `UtcTime` with `TZ = UTC` and splunkd hands the command as epoch
//! seconds (`1563547373.277`). Both read as the same UTC instant, so a rule
//! gets the same parts from either. ISO 8601 text with `T` and an offset
//! (`2019-07-19T16:42:53+02:00`) is turned to UTC first. Anything else is no
//! timestamp, and the test does not match (as in Splunk, where a field
//! without a time has no hour).

use crate::calendar::{civil_from_days, days_from_civil};

/// Which part of the timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// 0–59.
    Minute,
    /// 0–23.
    Hour,
    /// Day of the month, 1–31.
    Day,
    /// ISO 8601 week of the year, 1–53.
    Week,
    /// 1–12.
    Month,
    /// The year.
    Year,
}

impl Part {
    /// The modifier's name → its part.
    pub fn parse(name: &str) -> Option<Part> {
        Some(match name {
            "minute" => Part::Minute,
            "hour" => Part::Hour,
            "day" => Part::Day,
            "week" => Part::Week,
            "month" => Part::Month,
            "year" => Part::Year,
            _ => return None,
        })
    }
}

/// The part of the timestamp `text`, `None` when it is not one.
pub fn part(text: &str, which: Part) -> Option<i64> {
    let secs = epoch_seconds(text.trim())?;
    let days = secs.div_euclid(86_400);
    let in_day = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    Some(match which {
        Part::Minute => in_day / 60 % 60,
        Part::Hour => in_day / 3_600,
        Part::Day => d,
        Part::Month => m,
        Part::Year => y,
        Part::Week => iso_week(days),
    })
}

/// Whole seconds since 1970 (UTC) of epoch text or of a written date-time.
fn epoch_seconds(t: &str) -> Option<i64> {
    if t.bytes().next()?.is_ascii_digit() && t.len() < 24 && !t.contains('-') {
        let whole = t.split('.').next()?;
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        return whole.parse().ok();
    }
    // YYYY-MM-DD[ T]HH:MM:SS[.fff][Z|±HH:MM]
    let b = t.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b' ' | b'T') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = t.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[13] != b':' || b[16] != b':' || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    if h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut rest = &t[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        rest = &frac[digits..];
    }
    let offset = match rest {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let hm = rest[1..].replace(':', "");
            if hm.len() != 4 || !hm.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            sign * (hm[..2].parse::<i64>().ok()? * 3_600 + hm[2..].parse::<i64>().ok()? * 60)
        }
    };
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3_600 + mi * 60 + s - offset)
}

/// ISO 8601 week number of day `days`: weeks start
/// on Monday, week 1 holds the year's first Thursday.
fn iso_week(days: i64) -> i64 {
    // 1970-01-01 was a Thursday: Monday = 0.
    let weekday = (days + 3).rem_euclid(7);
    let thursday = days - weekday + 3;
    let (ty, _, _) = civil_from_days(thursday);
    (thursday - days_from_civil(ty, 1, 1)) / 7 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_time_and_epoch_agree() {
        // The same event's UtcTime and _time (SPLUNK_FIELDS.md).
        for t in [
            "2019-07-19 14:42:53.277",
            "1563547373.277",
            "2019-07-19T16:42:53+02:00",
        ] {
            assert_eq!(part(t, Part::Year), Some(2019), "{t}");
            assert_eq!(part(t, Part::Month), Some(7), "{t}");
            assert_eq!(part(t, Part::Day), Some(19), "{t}");
            assert_eq!(part(t, Part::Hour), Some(14), "{t}");
            assert_eq!(part(t, Part::Minute), Some(42), "{t}");
            assert_eq!(part(t, Part::Week), Some(29), "{t}");
        }
    }

    #[test]
    fn iso_weeks_at_year_edges() {
        assert_eq!(part("2021-01-03 12:00:00", Part::Week), Some(53));
        assert_eq!(part("2021-01-04 00:00:00", Part::Week), Some(1));
        assert_eq!(part("2024-12-30 00:00:00", Part::Week), Some(1));
        assert_eq!(part("2020-12-31 23:59:59", Part::Week), Some(53));
        assert_eq!(part("0", Part::Year), Some(1970));
    }

    #[test]
    fn non_timestamps_have_no_parts() {
        for t in [
            "",
            "-",
            "C:\\x.exe",
            "2019-13-01 00:00:00",
            "12ab",
            "2019-07-19",
        ] {
            assert_eq!(part(t, Part::Hour), None, "{t}");
        }
    }
}
