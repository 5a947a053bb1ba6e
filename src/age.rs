//! The one parser for every age and date option (`--older-than`, `--since`,
//! `--until`, `--stale-after`, …): `90d`, `6mo`, `1y`, `2 weeks`, `1h30min`,
//! `2026-11-01`, `"2026-11-01 08:00"`, `@1795689259`.
//!
//! Months and years are calendar units: `6mo` on 31 August is 29 February or
//! 28 February (the day is clamped), not 180 days. A bare `m` is refused: it
//! has meant minutes to some and months to others, and a purge that reads
//! `6m` as six minutes deletes nearly everything.

use chrono::{
    DateTime, FixedOffset, LocalResult, Months, NaiveDate, NaiveDateTime, Offset, TimeZone,
};

/// What every age option accepts, for error messages and help.
pub const AGE_FORMS: &str = "an age like 90d, 6mo, 1y, 2w, 12h, 30min, 45s (or 90days, \"6 months\"), a date 2026-11-01 or \"2026-11-01 08:00\", or @EPOCH";

/// An age: calendar months plus a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Age {
    pub months: u32,
    pub secs: i64,
}

/// How long a unit is: a fixed number of seconds, or calendar months.
enum Unit {
    Secs(i64),
    Months(u32),
}

fn unit(word: &str) -> Option<Unit> {
    Some(match word.to_ascii_lowercase().as_str() {
        "s" | "sec" | "secs" | "second" | "seconds" => Unit::Secs(1),
        "min" | "mins" | "minute" | "minutes" => Unit::Secs(60),
        "h" | "hr" | "hrs" | "hour" | "hours" => Unit::Secs(3600),
        "d" | "day" | "days" => Unit::Secs(86_400),
        "w" | "wk" | "wks" | "week" | "weeks" => Unit::Secs(7 * 86_400),
        "mo" | "mon" | "mons" | "month" | "months" => Unit::Months(1),
        "y" | "yr" | "yrs" | "year" | "years" => Unit::Months(12),
        _ => return None,
    })
}

/// Parses an age: one or more NUMBER UNIT pairs (`90d`, `6 months`, `1h30min`).
/// `Ok(None)`: not an age at all (maybe a date); `Err`: an age with a bad unit.
pub fn parse_age(s: &str) -> Result<Option<Age>, String> {
    let t = s.trim();
    if !t.starts_with(|c: char| c.is_ascii_digit()) {
        return Ok(None);
    }
    // A date starts with digits too: only digits, letters and spaces make an age.
    if !t
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '\t')
    {
        return Ok(None);
    }
    let mut age = Age::default();
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("\"{s}\" is not an age: {AGE_FORMS}"));
        }
        let n: i64 = rest[..digits]
            .parse()
            .map_err(|_| format!("\"{s}\": the number is too large"))?;
        rest = rest[digits..].trim_start();
        let letters = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let word = &rest[..letters];
        rest = rest[letters..].trim_start();
        if word.is_empty() {
            return Err(format!(
                "\"{s}\" has no unit: write e.g. {n}d (days), {n}h (hours), {n}mo (months) or {n}s (seconds)"
            ));
        }
        if word.eq_ignore_ascii_case("m") {
            return Err(format!(
                "\"{s}\" is ambiguous: write {n}min for minutes or {n}mo for months"
            ));
        }
        let too_large = || format!("\"{s}\" is too large an age");
        match unit(word) {
            Some(Unit::Secs(k)) => {
                age.secs = n
                    .checked_mul(k)
                    .and_then(|v| age.secs.checked_add(v))
                    .ok_or_else(too_large)?;
            }
            Some(Unit::Months(k)) => {
                age.months = u32::try_from(n)
                    .ok()
                    .and_then(|n| n.checked_mul(k))
                    .and_then(|v| age.months.checked_add(v))
                    .ok_or_else(too_large)?;
            }
            None => {
                return Err(format!(
                    "\"{s}\": unknown unit \"{word}\"; units are s, min, h, d, w, mo (months), y (years)"
                ))
            }
        }
    }
    Ok(Some(age))
}

impl Age {
    /// `now` minus this age, in the calendar of `tz` (months clamp the day).
    pub fn before<Tz: TimeZone>(&self, now: i64, tz: &Tz) -> Option<i64> {
        let now_dt = tz.timestamp_opt(now, 0).single()?;
        let t = if self.months == 0 {
            now
        } else {
            let naive = now_dt
                .naive_local()
                .checked_sub_months(Months::new(self.months))?;
            local_to_epoch(&naive, tz, now_dt.offset().fix())?
        };
        t.checked_sub(self.secs)
    }
}

/// A wall-clock time in `tz`: the earlier of two readings in a DST overlap,
/// the offset before the gap for a time that does not exist.
fn local_to_epoch<Tz: TimeZone>(
    naive: &NaiveDateTime,
    tz: &Tz,
    fallback: FixedOffset,
) -> Option<i64> {
    match tz.from_local_datetime(naive) {
        LocalResult::Single(d) | LocalResult::Ambiguous(d, _) => Some(d.timestamp()),
        LocalResult::None => fallback
            .from_local_datetime(naive)
            .single()
            .map(|d| d.timestamp()),
    }
}

/// Parses an age or a date into epoch seconds: an age counts back from `now`,
/// a date without a zone is read in `tz`.
pub fn parse_when<Tz: TimeZone>(s: &str, now: i64, tz: &Tz) -> Result<i64, String> {
    let t = s.trim();
    let bad = || format!("\"{s}\" is not a date or an age: use {AGE_FORMS}");
    if let Some(epoch) = t.strip_prefix('@') {
        return epoch.trim().parse().map_err(|_| bad());
    }
    if let Some(age) = parse_age(t)? {
        return age
            .before(now, tz)
            .ok_or_else(|| format!("\"{s}\" reaches back before any date vmtool can handle"));
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(d.timestamp());
    }
    let naive = if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        d.and_hms_opt(0, 0, 0).ok_or_else(bad)?
    } else {
        [
            "%Y-%m-%d %H:%M:%S",
            "%Y-%m-%d %H:%M",
            "%Y-%m-%dT%H:%M:%S",
            "%Y-%m-%dT%H:%M",
        ]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())
        .ok_or_else(bad)?
    };
    let fallback = tz
        .timestamp_opt(now, 0)
        .single()
        .map(|d| d.offset().fix())
        .ok_or_else(bad)?;
    local_to_epoch(&naive, tz, fallback).ok_or_else(bad)
}

/// A length of time for thresholds (`--stale-after`, `unlock --older-than`):
/// a bare number is seconds (as these options always took), else an age;
/// months count back from `now` in the local calendar.
pub fn parse_secs_at(s: &str, now: i64) -> Result<u64, String> {
    let t = s.trim();
    if let Ok(n) = t.parse::<u64>() {
        return Ok(n);
    }
    let age = parse_age(t)?.ok_or_else(|| {
        format!("\"{s}\" is not a length of time: use seconds (60) or e.g. 90s, 5min, 2h, 1d")
    })?;
    let from = age
        .before(now, &chrono::Local)
        .ok_or_else(|| format!("\"{s}\" is too long"))?;
    u64::try_from(now - from).map_err(|_| format!("\"{s}\" is too long"))
}

/// Value parser for threshold options, against the clock.
pub fn parse_secs(s: &str) -> Result<u64, String> {
    parse_secs_at(s, chrono::Utc::now().timestamp())
}

/// Value parser for interval options taking fractional seconds
/// (`--lock-timeout 2.5`, `--poll 1min`).
pub fn parse_secs_f64(s: &str) -> Result<f64, String> {
    let t = s.trim();
    if let Ok(n) = t.parse::<f64>() {
        return Ok(n);
    }
    match parse_age(t)? {
        Some(Age { months: 0, secs }) => Ok(secs as f64),
        Some(_) => Err(format!("\"{s}\": months and years are too long here")),
        None => Err(format!(
            "\"{s}\" is not a length of time: use seconds (2.5) or e.g. 30s, 5min"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn utc(s: &str) -> i64 {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
            .unwrap()
            .and_utc()
            .timestamp()
    }

    fn when(s: &str, now: &str) -> Result<i64, String> {
        parse_when(s, utc(now), &Utc)
    }

    #[test]
    fn fixed_units() {
        let now = "2026-12-06 12:00:00";
        assert_eq!(when("45s", now), Ok(utc("2026-12-06 11:59:15")));
        assert_eq!(when("30min", now), Ok(utc("2026-12-06 11:30:00")));
        assert_eq!(when("12h", now), Ok(utc("2026-12-06 00:00:00")));
        assert_eq!(when("90d", now), Ok(utc("2026-09-07 12:00:00")));
        assert_eq!(when("2w", now), Ok(utc("2026-11-22 12:00:00")));
        assert_eq!(when("0d", now), Ok(utc(now)));
    }

    #[test]
    fn long_forms_and_spaces() {
        let now = "2026-12-06 12:00:00";
        for (a, b) in [
            ("90days", "90d"),
            ("90 days", "90d"),
            ("1 day", "1d"),
            ("6 months", "6mo"),
            ("6months", "6mo"),
            ("1 year", "1y"),
            ("2 weeks", "2w"),
            ("3 hours", "3h"),
            ("5 minutes", "5min"),
            ("10 seconds", "10s"),
            ("2 yrs", "24mo"),
            ("1y6mo", "18mo"),
            ("1h30min", "90min"),
            ("1 h 30 min", "90min"),
            ("7D", "7d"),
            (" 7d ", "7d"),
        ] {
            assert_eq!(when(a, now), when(b, now), "{a} vs {b}");
            assert!(when(a, now).is_ok(), "{a}");
        }
    }

    #[test]
    fn calendar_months_clamp_the_day() {
        // 31 Aug - 6 months: 28 Feb (2026 is not a leap year), time kept.
        assert_eq!(
            when("6mo", "2026-08-31 10:00:00"),
            Ok(utc("2026-02-28 10:00:00"))
        );
        // Leap year: 29 Feb.
        assert_eq!(
            when("6mo", "2028-08-31 10:00:00"),
            Ok(utc("2028-02-29 10:00:00"))
        );
        // 29 Feb - 1 year: 28 Feb.
        assert_eq!(
            when("1y", "2028-02-29 00:00:00"),
            Ok(utc("2027-02-28 00:00:00"))
        );
        // 31 Mar - 1 month: 28 Feb; across a year boundary.
        assert_eq!(
            when("1mo", "2026-03-31 23:59:59"),
            Ok(utc("2026-02-28 23:59:59"))
        );
        assert_eq!(
            when("2mo", "2026-01-15 00:00:00"),
            Ok(utc("2025-11-15 00:00:00"))
        );
        // Months, then the fixed part.
        assert_eq!(
            when("1mo1d", "2026-03-31 00:00:00"),
            Ok(utc("2026-02-27 00:00:00"))
        );
    }

    #[test]
    fn calendar_months_in_a_zone_with_dst() {
        let paris: chrono_tz::Tz = "Europe/Paris".parse().unwrap();
        // 2026-07-15 12:00 in Paris (UTC+2) - 6 months = 2026-01-15 12:00 (UTC+1).
        let now = paris
            .with_ymd_and_hms(2026, 7, 15, 12, 0, 0)
            .unwrap()
            .timestamp();
        let want = paris
            .with_ymd_and_hms(2026, 1, 15, 12, 0, 0)
            .unwrap()
            .timestamp();
        assert_eq!(parse_when("6mo", now, &paris), Ok(want));
        // 6 months of fixed days would be off by the DST hour; the calendar is not.
        assert_ne!(want, now - 181 * 86_400);
        // A wall-clock time inside the spring gap resolves, not fails.
        let now = paris
            .with_ymd_and_hms(2026, 4, 29, 2, 30, 0)
            .unwrap()
            .timestamp();
        assert!(parse_when("1mo", now, &paris).is_ok());
        // A date is read in the zone.
        assert_eq!(
            parse_when("2026-01-15 12:00", now, &paris),
            Ok(paris
                .with_ymd_and_hms(2026, 1, 15, 12, 0, 0)
                .unwrap()
                .timestamp())
        );
    }

    #[test]
    fn bare_m_is_refused_and_offers_min_and_mo() {
        for s in ["6m", "6M", "90 m", "1h6m"] {
            let e = when(s, "2026-12-06 12:00:00").unwrap_err();
            assert!(e.contains("ambiguous"), "{s}: {e}");
            assert!(e.contains("min") && e.contains("mo"), "{s}: {e}");
        }
    }

    #[test]
    fn dates() {
        let now = "2026-12-06 12:00:00";
        assert_eq!(when("2026-11-01", now), Ok(utc("2026-11-01 00:00:00")));
        assert_eq!(
            when("2026-11-01 08:00", now),
            Ok(utc("2026-11-01 08:00:00"))
        );
        assert_eq!(
            when("2026-11-01T08:00:30", now),
            Ok(utc("2026-11-01 08:00:30"))
        );
        assert_eq!(
            when("2026-11-01T08:00:00+02:00", now),
            Ok(utc("2026-11-01 06:00:00"))
        );
        assert_eq!(
            when("2026-11-01T08:00:00Z", now),
            Ok(utc("2026-11-01 08:00:00"))
        );
        assert_eq!(when("@1795689259", now), Ok(1_795_689_259));
    }

    #[test]
    fn refusals() {
        let now = "2026-12-06 12:00:00";
        for s in [
            "",
            "d",
            "90",
            "90x",
            "ninety days",
            "2026-13-01",
            "2026-02-30",
            "-5d",
            "5d ago",
            "1.5h",
            "@x",
            "99999999999999999999d",
            "9999999999y",
        ] {
            assert!(when(s, now).is_err(), "{s:?} was accepted");
        }
        let e = when("90", now).unwrap_err();
        assert!(e.contains("no unit"), "{e}");
        let e = when("3fortnights", now).unwrap_err();
        assert!(e.contains("unknown unit"), "{e}");
    }

    #[test]
    fn thresholds() {
        let now = utc("2026-12-06 12:00:00");
        assert_eq!(parse_secs_at("60", now), Ok(60));
        assert_eq!(parse_secs_at("90s", now), Ok(90));
        assert_eq!(parse_secs_at("5min", now), Ok(300));
        assert_eq!(parse_secs_at("2 hours", now), Ok(7200));
        assert_eq!(parse_secs_at("1d", now), Ok(86_400));
        assert!(parse_secs_at("5m", now).unwrap_err().contains("ambiguous"));
        assert!(parse_secs_at("soon", now).is_err());
        assert_eq!(parse_secs_f64("2.5"), Ok(2.5));
        assert_eq!(parse_secs_f64("1min"), Ok(60.0));
        assert!(parse_secs_f64("1mo").is_err());
    }
}
