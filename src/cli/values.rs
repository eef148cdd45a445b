//! How the command line's values are read: sizes, durations and the
//! names of kinds, follow-up methods and layouts.

use ask_ingest::Kind;

/// `--type` values: the names ask-ingest stores for each kind of document,
/// so the list of kinds is written once.
pub(super) fn kind_parser() -> impl clap::builder::TypedValueParser<Value = Kind> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(Kind::ALL.map(Kind::as_str))
        .map(|name| Kind::parse(&name).expect("a possible value names a kind"))
}

/// Parses a duration: `500ms`, `2s`, `5m`, `1h 30m` (jiff's friendly
/// format), or a bare number of seconds, as `sleep` takes it.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return std::time::Duration::try_from_secs_f64(secs).map_err(|_| format!("'{s}' is not a duration (try 500ms, 30s or 5m)"));
    }
    let d: jiff::SignedDuration = s.parse().map_err(|_| format!("'{s}' is not a duration (try 500ms, 30s or 5m)"))?;
    std::time::Duration::try_from(d).map_err(|_| format!("'{s}' is negative"))
}

/// Parses `50M`, `500K`, `1G`, `1024` (powers of 1000, like `ls --si` and
/// disk vendors; `Ki`, `Mi`, `Gi` for powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num.parse().map_err(|_| format!("'{s}' is not a size (try 50M or 500K)"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().trim_end_matches('b') {
        "" => 1.0,
        "k" => 1e3,
        "m" => 1e6,
        "g" => 1e9,
        "ki" => 1024.0,
        "mi" => 1024.0 * 1024.0,
        "gi" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(format!("unknown size unit in '{s}' (use K, M or G)")),
    };
    Ok((num * mult) as u64)
}

/// `--follow-up`'s values.
pub(super) fn follow_up_parser() -> impl clap::builder::TypedValueParser<Value = ask_pipeline::conversation::FollowUp> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(ask_pipeline::conversation::FollowUp::ALL.map(|(n, _)| n)).map(|s| s.parse().expect("a listed method"))
}

/// `--layout`'s values, listed in `--help` and completions.
pub(super) fn layout_parser() -> impl clap::builder::TypedValueParser<Value = ask_pipeline::prompt::Layout> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(ask_pipeline::prompt::Layout::ALL.map(|(n, _)| n)).map(|s| s.parse().expect("a listed layout"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("50M"), Ok(50_000_000));
        assert_eq!(parse_size("500k"), Ok(500_000));
        assert_eq!(parse_size("1Gi"), Ok(1 << 30));
        assert_eq!(parse_size("1.5MB"), Ok(1_500_000));
        assert_eq!(parse_size("42"), Ok(42));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5X").is_err());
    }

    #[test]
    fn durations() {
        use std::time::Duration;
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("20"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-5s").is_err());
    }
}
