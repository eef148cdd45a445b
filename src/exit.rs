//! Exit codes that scripts and cron can trust.

use std::process::ExitCode;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything worked (individual files may have failed without --strict).
    Success,
    /// The run could not proceed: no index, missing model, unwritable directory.
    Error,
    // 2, a bad command line, is clap's own exit (see the test below).
    /// With --strict: the run finished but some files failed.
    FilesFailed,
    /// `ask status --check` found chunks and file records that disagree.
    CheckFailed,
    /// Another `ask index` holds the index lock (EX_TEMPFAIL: try again later).
    Busy,
    /// Stopped by Ctrl-C (128 + SIGINT, as shells report it).
    Interrupted,
}

impl Exit {
    /// The numeric code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Error => 1,
            Exit::FilesFailed => 3,
            Exit::CheckFailed => 4,
            Exit::Busy => 75,
            Exit::Interrupted => 130,
        }
    }
}

/// A command line that parses but asks for something that cannot be done
/// (a flag that would be ignored): reported as clap reports its own usage
/// errors, with exit code 2, once the command has returned.
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e.code())
    }
}

#[cfg(test)]
mod tests {
    use super::Exit;

    #[test]
    fn codes_are_distinct_and_stable() {
        let all = [Exit::Success, Exit::Error, Exit::FilesFailed, Exit::CheckFailed, Exit::Busy, Exit::Interrupted];
        let codes: Vec<u8> = all.iter().map(|e| e.code()).collect();
        assert_eq!(codes, vec![0, 1, 3, 4, 75, 130]);
        // A bad command line exits 2, from clap itself, as the README's
        // table says; no code of ours may take it.
        assert_eq!(clap::error::Error::<clap::error::DefaultFormatter>::new(clap::error::ErrorKind::InvalidValue).exit_code(), 2);
    }
}
