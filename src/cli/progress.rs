//! Progress on the terminal: an indicatif bar on stderr per phase of a long call (images,
//! epochs, validation), hidden when stderr is not a terminal, with the call's messages
//! printed above it.

use std::cell::RefCell;
use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use vgg::progress::Progress;

/// Phases this short are over before a bar would tell anything.
const MIN_ITEMS_SHOWN: usize = 9;

#[derive(Default)]
pub struct Bar {
    bar: RefCell<Option<ProgressBar>>,
}

impl Bar {
    /// Runs `print` with the bar out of the way, so output lines do not tear it.
    pub fn suspend<R>(&self, print: impl FnOnce() -> R) -> R {
        match &*self.bar.borrow() {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }
}

impl Progress for Bar {
    fn begin(&self, total: usize, label: &str) {
        let bar = if total >= MIN_ITEMS_SHOWN && std::io::stderr().is_terminal() {
            let style = ProgressStyle::with_template(
                "{prefix} {bar:30} {pos}/{len} {msg} {per_sec} ETA {eta}",
            )
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
        self.suspend(|| eprintln!("{line}"));
    }
}
