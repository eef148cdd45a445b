//! Progress bars on a terminal, silence elsewhere: cron and pipes see only
//! errors. Messages go through the bars so they never tear a bar in half.

use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The user-facing side of a long run.
pub struct Ui {
    multi: MultiProgress,
    /// Informational lines are printed (interactive or --verbose, not --quiet).
    pub chatty: bool,
    /// Bars are drawn (stderr is a terminal and not --quiet).
    interactive: bool,
}

impl Ui {
    /// Decides from `--quiet`, `--verbose` and whether stderr is a terminal.
    pub fn new(quiet: bool, verbose: bool) -> Ui {
        let interactive = !quiet && std::io::stderr().is_terminal();
        let target = if interactive { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        Ui { multi: MultiProgress::with_draw_target(target), chatty: !quiet && (interactive || verbose), interactive }
    }

    /// A bar counting `len` items, with a message slot for rates.
    pub fn bar(&self, len: u64, what: &str) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new(len));
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "{{spinner}} {what:>8} [{{bar:30}}] {{pos}}/{{len}} {{msg}} ({{elapsed}}, eta {{eta}})"
            ))
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar
    }

    /// A spinner for work of unknown size.
    pub fn spinner(&self, what: &str) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("valid template"));
        bar.set_message(what.to_owned());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    }

    /// An error or warning about one item; always printed (even with --quiet:
    /// errors are what cron should mail).
    pub fn error(&self, msg: &str) {
        self.multi.suspend(|| eprintln!("ask: {msg}"));
    }

    /// A line saying what a long run is doing now, for a log: printed with
    /// --verbose when no bar shows it (stderr is not a terminal).
    pub fn phase(&self, msg: &str) {
        if self.chatty && !self.interactive {
            eprintln!("ask: {msg}");
        }
    }

    /// An informational line, printed only when chatty.
    pub fn info(&self, msg: &str) {
        if self.chatty {
            self.multi.suspend(|| eprintln!("{msg}"));
        }
    }
}
