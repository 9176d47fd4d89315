//! Timestamps as operators type and read them: `--to-datetime` values and
//! the times `cluster status` shows, in UTC, without a calendar dependency.

/// Milliseconds since the Unix epoch of `YYYY-MM-DDTHH:MM:SS[.sss][Z|±HH:MM]`
/// (Kafka's `--to-datetime` format; without a zone the time is UTC, where
/// Kafka's tool would take the local zone), or of a plain integer (already
/// milliseconds since the epoch).
pub fn parse_datetime(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_err(|_| format!("{s} is not a valid timestamp in milliseconds"));
    }
    let bad =
        || format!("'{s}' is not a date-time: expected YYYY-MM-DDTHH:MM:SS[.sss][Z|+HH:MM] or milliseconds since 1970");
    let (date, rest) = s.split_once(['T', ' ']).ok_or_else(bad)?;
    let mut d = date.splitn(3, '-');
    let year: i64 = num(d.next(), 4).ok_or_else(bad)?;
    let month: i64 = num(d.next(), 2).ok_or_else(bad)?;
    let day: i64 = num(d.next(), 2).ok_or_else(bad)?;
    // The zone: `Z`, `+HH:MM`, `-HH:MM`, `+HHMM`, or none (UTC).
    let (time, offset_min) = if let Some(t) = rest.strip_suffix(['Z', 'z']) {
        (t, 0)
    } else if let Some(i) = rest.rfind(['+', '-']) {
        let (t, z) = rest.split_at(i);
        let sign = if z.starts_with('-') { -1 } else { 1 };
        let digits: String = z[1..].chars().filter(|c| *c != ':').collect();
        if digits.len() != 4 {
            return Err(bad());
        }
        let h: i64 = num(Some(&digits[..2]), 2).ok_or_else(bad)?;
        let m: i64 = num(Some(&digits[2..]), 2).ok_or_else(bad)?;
        (t, sign * (h * 60 + m))
    } else {
        (rest, 0)
    };
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':');
    let hour: i64 = num(t.next(), 2).ok_or_else(bad)?;
    let minute: i64 = num(t.next(), 2).ok_or_else(bad)?;
    let second: i64 = match t.next() {
        Some(x) => num(Some(x), 2).ok_or_else(bad)?,
        None => 0,
    };
    let millis: i64 = if frac.is_empty() {
        0
    } else if frac.len() <= 9 && frac.bytes().all(|b| b.is_ascii_digit()) {
        format!("{frac:0<3}")[..3].parse().map_err(|_| bad())?
    } else {
        return Err(bad());
    };
    if !(1..=12).contains(&month)
        || !(1..=days_in_month(year, month)).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(format!("'{s}' is not a valid date-time (a field is out of range)"));
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_min * 60;
    Ok(secs * 1000 + millis)
}

/// `2024-03-01T12:00:00.000Z`.
pub fn format_utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn num(s: Option<&str>, len: usize) -> Option<i64> {
    let s = s?;
    (s.len() == len && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kafka_datetimes_in_utc_and_with_zones() {
        assert_eq!(parse_datetime("1970-01-01T00:00:00"), Ok(0));
        assert_eq!(parse_datetime("2024-02-29T12:34:56.789Z"), Ok(1_709_210_096_789));
        assert_eq!(parse_datetime("2024-02-29T14:34:56.789+02:00"), Ok(1_709_210_096_789));
        assert_eq!(parse_datetime("2024-02-29T10:34:56.789-0200"), Ok(1_709_210_096_789));
        assert_eq!(parse_datetime("2024-02-29T12:34"), Ok(1_709_210_040_000));
        assert_eq!(parse_datetime("1709210096789"), Ok(1_709_210_096_789));
        for bad in ["yesterday", "2023-02-29T00:00:00", "2024-13-01T00:00:00", "2024-01-01", "2024-01-01T25:00:00"] {
            assert!(parse_datetime(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats_round_trip() {
        for ms in [0, 1_709_210_096_789, 951_782_400_000, 4_102_444_800_000] {
            assert_eq!(parse_datetime(&format_utc(ms)), Ok(ms), "{}", format_utc(ms));
        }
        assert_eq!(format_utc(1_709_210_096_789), "2024-02-29T12:34:56.789Z");
    }
}
