//! Progress for long commands: an indicatif bar with count and ETA on a terminal, plain lines on
//! stderr when piped; Ctrl-C cancels through the job's `CancelToken` (a second Ctrl-C exits at once).

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use unisal_core::events::{CancelToken, Progress, ProgressSink};

/// Write one line to stderr, ignoring a closed stderr (`unisal ... 2>&1 | head` must not panic).
pub fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Shows progress on stderr.
pub struct CliProgress {
    bar: Option<ProgressBar>,
    last_line: Mutex<Option<(Instant, u64)>>,
}

impl CliProgress {
    /// A bar on a terminal, plain lines otherwise.
    pub fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            let style = ProgressStyle::with_template("{msg:>8} [{bar:40}] {pos}/{len} ETA {eta}")
                .map(|s| s.progress_chars("=> "))
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self { bar, last_line: Mutex::new(None) }
    }

    /// Remove the bar before printing the result.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl ProgressSink for CliProgress {
    fn report(&self, p: &Progress) {
        if let Some(bar) = &self.bar {
            bar.set_message(p.stage.clone());
            if let Some(total) = p.total {
                bar.set_length(total);
            }
            bar.set_position(p.done);
            return;
        }
        // Plain lines: at most one a half second, plus the last one.
        let mut last = self.last_line.lock().unwrap_or_else(|e| e.into_inner());
        let due = match *last {
            None => true,
            Some((t, done)) => {
                t.elapsed() >= Duration::from_millis(500) || p.total == Some(p.done) && done != p.done
            }
        };
        if due && p.total.is_some() {
            say(format_args!("{}: {}/{}", p.stage, p.done, p.total.unwrap_or(0)));
            *last = Some((Instant::now(), p.done));
        }
    }
}

/// A token cancelled by Ctrl-C; a second Ctrl-C exits with code 130 at once.
pub fn cancel_on_ctrl_c() -> CancelToken {
    let token = CancelToken::new();
    let handler_token = token.clone();
    let installed = ctrlc::set_handler(move || {
        if handler_token.is_cancelled() {
            std::process::exit(130);
        }
        say(format_args!("\ncancelling (press Ctrl-C again to quit at once)..."));
        handler_token.cancel();
    });
    if let Err(e) = installed {
        say(format_args!("warning: Ctrl-C will not cancel cleanly: {e}"));
    }
    token
}
