//! Progress on the terminal: indicatif bars on stderr, hidden when stderr is not a terminal.

use std::cell::RefCell;
use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use vgg::progress::Progress;

/// Shows progress on a terminal when there are more than a handful of images.
pub fn progress_bar(total: usize, what: &str) -> ProgressBar {
    if total <= 8 || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template(&format!(
        "{{bar:40}} {{pos}}/{{len}} {what} {{per_sec}} ETA {{eta}}"
    ))
    .expect("valid template");
    ProgressBar::new(total as u64).with_style(style)
}

/// A bar per phase of a training run (loss, accuracy, images/s and ETA), with the run's
/// lines printed above it.
#[derive(Default)]
pub struct TrainingBar {
    bar: RefCell<Option<ProgressBar>>,
}

impl Progress for TrainingBar {
    fn begin(&self, total: usize, label: &str) {
        let bar = if std::io::stderr().is_terminal() {
            let style =
                ProgressStyle::with_template("{prefix} {bar:30} {pos}/{len} {msg} ETA {eta}")
                    .expect("valid template");
            ProgressBar::new(total as u64)
                .with_style(style)
                .with_prefix(label.to_string())
        } else {
            ProgressBar::hidden()
        };
        *self.bar.borrow_mut() = Some(bar);
    }

    fn advance(&self, done: usize, status: &str) {
        if let Some(bar) = &*self.bar.borrow() {
            bar.inc(done as u64);
            bar.set_message(status.to_string());
        }
    }

    fn end(&self) {
        if let Some(bar) = self.bar.borrow_mut().take() {
            bar.finish_and_clear();
        }
    }

    fn message(&self, line: &str) {
        match &*self.bar.borrow() {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }
}
