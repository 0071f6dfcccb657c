//! Sysmon's `UtcTime` text to epoch seconds, without a date crate.

/// `2019-07-19 14:42:53.277` (UTC) → epoch seconds.
pub fn utc_to_epoch(s: &str) -> Option<f64> {
    let (date, time) = s.trim().split_once(' ')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (h, mi) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let sec: f64 = t.next()?.parse().ok()?;
    let days = crate::calendar::days_from_civil(y, m, day);
    Some((days * 86400 + h * 3600 + mi * 60) as f64 + sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times() {
        assert_eq!(
            utc_to_epoch("2019-07-19 14:42:53.277"),
            Some(1563547373.277)
        );
        assert_eq!(utc_to_epoch("1970-01-01 00:00:00.000"), Some(0.0));
        assert_eq!(utc_to_epoch("garbage"), None);
    }
}
