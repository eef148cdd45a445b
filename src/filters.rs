//! From `--path`, `--type`, `--since`, `--until`, `--from` to the store's filter:
//! globs anchored the way a shell user means them, dates in local time.

use std::path::Path;

use anyhow::{bail, Result};
use ask_store::Filter;
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp, ToSpan, Zoned};

use crate::cli::{FilterArgs, WhenWhoArgs};

impl FilterArgs {
    /// The filter these options describe, with relative globs taken from
    /// `cwd` and dates read in `tz` as of `now`.
    pub fn resolve(&self, cwd: &Path, now: &Zoned) -> Result<Filter> {
        Ok(Filter {
            path_glob: self.path.as_deref().map(|g| anchor_glob(g, cwd)),
            kinds: self.types.clone(),
            ..self.when.resolve(now)?
        })
    }

    /// Resolves against the process's working directory and clock.
    pub fn resolve_now(&self) -> Result<Filter> {
        let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
        self.resolve(&cwd, &Zoned::now())
    }
}

impl WhenWhoArgs {
    /// The date and sender part of a filter, dates read in `now`'s time zone.
    pub fn resolve(&self, now: &Zoned) -> Result<Filter> {
        let since_ns = self.since.as_deref().map(|d| parse_date("--since", d, now, false)).transpose()?;
        let until_ns = self.until.as_deref().map(|d| parse_date("--until", d, now, true)).transpose()?;
        if let (Some(a), Some(b)) = (since_ns, until_ns) {
            if a >= b {
                bail!("--since {} is not before --until {}: no file can match", self.since.as_deref().unwrap_or(""), self.until.as_deref().unwrap_or(""));
            }
        }
        Ok(Filter { since_ns, until_ns, from: self.from.clone().filter(|f| !f.trim().is_empty()), ..Filter::default() })
    }
}

/// Indexed paths are absolute (and their keys are matched: see
/// [`ask_ingest::discover::path_key`]). A glob without `/` matches a file name
/// anywhere (`*.md`); `~/` is the home directory; a glob starting with `*`
/// or `/` is used as is; any other is relative to `cwd` (`notes/*`).
fn anchor_glob(glob: &str, cwd: &Path) -> String {
    if !glob.contains('/') {
        return format!("*/{glob}");
    }
    if let Some(rest) = glob.strip_prefix("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return format!("{}/{rest}", ask_ingest::PathKey::of(Path::new(&home)).as_str().trim_end_matches('/'));
        }
    }
    if glob.starts_with('/') || glob.starts_with('*') {
        return glob.to_owned();
    }
    let rel = glob.strip_prefix("./").unwrap_or(glob);
    format!("{}/{rel}", ask_ingest::PathKey::of(cwd).as_str().trim_end_matches('/'))
}

/// A date as nanoseconds since the epoch: `2026-11-01` (local midnight; with
/// `end_of_day`, the midnight after it), `2026-11-01T09:30` (local),
/// an RFC 3339 timestamp, or an age before `now`: `12h`, `7d`, `2w`.
fn parse_date(flag: &str, s: &str, now: &Zoned, end_of_day: bool) -> Result<i64> {
    let s = s.trim();
    let tz: TimeZone = now.time_zone().clone();
    let has_time = s.contains(['T', 't', ' ']);
    let ts: Option<Timestamp> = if let Some(age) = parse_age(s) {
        now.checked_sub(age).ok().map(|z| z.timestamp())
    } else if has_time {
        match s.parse::<Timestamp>() {
            Ok(ts) => Some(ts),
            Err(_) => s.parse::<DateTime>().ok().and_then(|dt| dt.to_zoned(tz).ok()).map(|z| z.timestamp()),
        }
    } else {
        s.parse::<Date>().ok().and_then(|date| {
            let day = if end_of_day { date.checked_add(1.day()).ok()? } else { date };
            day.to_zoned(tz).ok().map(|z| z.timestamp())
        })
    };
    match ts {
        Some(ts) => Ok(ts.as_nanosecond() as i64),
        None => bail!("{flag} '{s}' is not a date: use 2026-11-01, 2026-11-01T09:30, 2026-11-01T09:30:00Z, or an age such as 12h, 7d, 2w"),
    }
}

/// `12h`, `7d`, `2w` (hours, days, weeks).
fn parse_age(s: &str) -> Option<Span> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: i64 = num.parse().ok()?;
    match unit {
        "h" => Some(n.hours()),
        "d" => Some(n.days()),
        "w" => Some(n.weeks()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Zoned {
        "2026-11-21T15:00:00+01:00[Europe/Paris]".parse().unwrap()
    }

    fn ns(rfc3339: &str) -> i64 {
        rfc3339.parse::<Timestamp>().unwrap().as_nanosecond() as i64
    }

    #[test]
    fn globs_are_anchored_like_a_shell_user_means() {
        let cwd = Path::new("/home/me/docs");
        assert_eq!(anchor_glob("*.md", cwd), "*/*.md");
        assert_eq!(anchor_glob("/srv/**/x.txt", cwd), "/srv/**/x.txt");
        assert_eq!(anchor_glob("notes/*", cwd), "/home/me/docs/notes/*");
        assert_eq!(anchor_glob("./notes/*", cwd), "/home/me/docs/notes/*");
        assert_eq!(anchor_glob("**/notes/*", cwd), "**/notes/*");
    }

    #[test]
    fn dates_are_local_days_timestamps_or_ages() {
        let now = now();
        // Paris is UTC+1 in November.
        assert_eq!(parse_date("--since", "2026-11-01", &now, false).unwrap(), ns("2026-10-31T23:00:00Z"));
        assert_eq!(parse_date("--until", "2026-11-01", &now, true).unwrap(), ns("2026-11-01T23:00:00Z"));
        assert_eq!(parse_date("--since", "2026-11-01T09:30:00Z", &now, false).unwrap(), ns("2026-11-01T09:30:00Z"));
        assert_eq!(parse_date("--since", "2026-11-01T09:30", &now, false).unwrap(), ns("2026-11-01T08:30:00Z"));
        assert_eq!(parse_date("--since", "7d", &now, false).unwrap(), ns("2026-11-14T14:00:00Z"));
        assert_eq!(parse_date("--since", "12h", &now, false).unwrap(), ns("2026-11-21T02:00:00Z"));
        let err = parse_date("--since", "last tuesday", &now, false).unwrap_err().to_string();
        assert!(err.contains("--since 'last tuesday' is not a date"), "{err}");
    }

    #[test]
    fn an_empty_date_range_is_an_error() {
        let when = WhenWhoArgs { since: Some("2026-11-02".into()), until: Some("2026-11-01".into()), ..Default::default() };
        let args = FilterArgs { when, ..Default::default() };
        assert!(args.resolve(Path::new("/"), &now()).is_err());
        let when = WhenWhoArgs { since: Some("2026-11-01".into()), until: Some("2026-11-01".into()), ..Default::default() };
        let args = FilterArgs { when, ..Default::default() };
        let f = args.resolve(Path::new("/"), &now()).unwrap();
        assert_eq!(f.until_ns.unwrap() - f.since_ns.unwrap(), 24 * 3600 * 1_000_000_000);
    }
}
