//! How long-running library calls (training, classifying folders) report how far they have
//! got. The library never draws anything itself: the CLI implements [`Progress`] with a
//! terminal progress bar, the Python package with nothing or a notebook widget.

/// Receives a long-running call's phases, its advances and its messages for the user.
pub trait Progress {
    /// A phase of `total` items begins (`label`: "epoch 3/30", "validation", "images").
    fn begin(&self, _total: usize, _label: &str) {}
    /// `done` more items of the phase finished; `status` sums up the phase so far
    /// (loss, accuracy, speed) or is empty.
    fn advance(&self, _done: usize, _status: &str) {}
    /// The phase ended.
    fn end(&self) {}
    /// A line for the user: a phase's results, or a warning about a skipped input.
    fn message(&self, line: &str);
}

/// Drops every report: for library users who only want the result.
pub struct Silent;

impl Progress for Silent {
    fn message(&self, _line: &str) {}
}
