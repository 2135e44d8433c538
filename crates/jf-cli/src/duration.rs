//! Durations as people type and read them: `90s`, `5m`, `72h`, `7d` in, `71h` or
//! `in 3d` out.

use k8s_openapi::jiff::fmt::friendly::{Spacing, SpanPrinter};
use k8s_openapi::jiff::{SignedDuration, Span, SpanRelativeTo, Timestamp};

const EXAMPLES: &str = "such as 90s, 5m, 72h or 7d";

/// Parses a positive duration such as `90s`, `5m`, `1h30m`, `72h` or `7d` (a day is 24 hours).
pub fn parse(text: &str) -> Result<SignedDuration, String> {
    let span: Span = text
        .trim()
        .parse()
        .map_err(|_| format!("expected a duration {EXAMPLES}"))?;
    let duration = span
        .to_duration(SpanRelativeTo::days_are_24_hours())
        .map_err(|_| {
            format!("expected a duration in seconds, minutes, hours, days or weeks, {EXAMPLES}")
        })?;
    if duration.is_positive() {
        Ok(duration)
    } else {
        Err(format!("expected a duration longer than zero, {EXAMPLES}"))
    }
}

/// A duration the way it is typed: `2m`, `1h30m`, `72h`.
pub fn display(duration: SignedDuration) -> String {
    SpanPrinter::new()
        .spacing(Spacing::None)
        .duration_to_string(&duration)
}

/// A duration in its largest sensible unit, rounded down: `45s`, `12m`, `71h`, `9d`.
pub fn short(duration: SignedDuration) -> String {
    let seconds = duration.as_secs().max(0);
    let (minutes, hours, days) = (seconds / 60, seconds / 3600, seconds / 86_400);
    if seconds < 120 {
        format!("{seconds}s")
    } else if minutes < 120 {
        format!("{minutes}m")
    } else if hours < 96 {
        format!("{hours}h")
    } else {
        format!("{days}d")
    }
}

/// When something expires, seen from `now`: `in 71h`, or `expired`.
pub fn expires(at: Timestamp, now: Timestamp) -> String {
    let left = at.duration_since(now);
    if left.is_positive() {
        format!("in {}", short(left))
    } else {
        "expired".to_owned()
    }
}

/// How long ago something happened, seen from `now`: `5m`.
pub fn age(since: Timestamp, now: Timestamp) -> String {
    short(now.duration_since(since))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_people_type() {
        assert_eq!(parse("90s"), Ok(SignedDuration::from_secs(90)));
        assert_eq!(parse("5m"), Ok(SignedDuration::from_mins(5)));
        assert_eq!(parse("72h"), Ok(SignedDuration::from_hours(72)));
        assert_eq!(parse("1h30m"), Ok(SignedDuration::from_mins(90)));
        assert_eq!(parse("3d"), Ok(SignedDuration::from_hours(72)));
        assert_eq!(parse("1w"), Ok(SignedDuration::from_hours(168)));
        assert_eq!(parse("250ms"), Ok(SignedDuration::from_millis(250)));
        assert_eq!(parse(" 2 hours "), Ok(SignedDuration::from_hours(2)));
    }

    #[test]
    fn refuses_what_is_not_a_positive_duration() {
        for text in ["", "abc", "10", "0s", "-5m", "5m ago", "1mo", "1y", "1.5d"] {
            let error = parse(text).expect_err(text);
            assert!(error.contains("72h"), "{text}: {error}");
        }
    }

    #[test]
    fn displays_durations_compactly() {
        assert_eq!(display(SignedDuration::from_mins(2)), "2m");
        assert_eq!(display(SignedDuration::from_mins(90)), "1h30m");
        assert_eq!(display(SignedDuration::from_hours(72)), "72h");
    }

    #[test]
    fn short_durations() {
        assert_eq!(short(SignedDuration::from_secs(0)), "0s");
        assert_eq!(short(SignedDuration::from_secs(119)), "119s");
        assert_eq!(short(SignedDuration::from_secs(120)), "2m");
        assert_eq!(short(SignedDuration::from_mins(119)), "119m");
        assert_eq!(short(SignedDuration::from_mins(120)), "2h");
        assert_eq!(
            short(SignedDuration::from_hours(72) - SignedDuration::from_secs(1)),
            "71h"
        );
        assert_eq!(short(SignedDuration::from_hours(96)), "4d");
        assert_eq!(short(SignedDuration::from_secs(-5)), "0s");
    }

    #[test]
    fn expiry_and_age() {
        let now = Timestamp::UNIX_EPOCH + SignedDuration::from_hours(1000);
        assert_eq!(
            expires(
                now + SignedDuration::from_hours(72),
                now + SignedDuration::from_secs(1)
            ),
            "in 71h"
        );
        assert_eq!(expires(now, now), "expired");
        assert_eq!(expires(now - SignedDuration::from_mins(5), now), "expired");
        assert_eq!(age(now - SignedDuration::from_mins(5), now), "5m");
    }
}
