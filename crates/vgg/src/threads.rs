//! How many threads the library's parallel work (the engine, our ops, decoding) uses: one
//! rayon pool for the whole process, sized once. The library never reads or sets the
//! process environment; front ends that want candle's own kernels sized too set
//! `RAYON_NUM_THREADS` themselves (the CLI does).

use crate::error::{Error, Result};

/// Most worker threads accepted: far more than any machine this runs on has cores, few
/// enough that starting them takes no noticeable time.
pub const MAX_THREADS: usize = 256;

/// Sizes the process-wide pool to `threads` workers. Call it before any parallel work: once
/// the pool exists, asking for another size is an error (the same size is not).
pub fn set_num_threads(threads: usize) -> Result<()> {
    if !(1..=MAX_THREADS).contains(&threads) {
        return Err(Error::BadArgument(format!(
            "the thread count must be in 1..={MAX_THREADS}, got {threads}"
        )));
    }
    match rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
    {
        Ok(()) => Ok(()),
        Err(_) if rayon::current_num_threads() == threads => Ok(()),
        Err(e) => Err(Error::BadArgument(format!(
            "cannot use {threads} threads: the pool already runs {} ({e})",
            rayon::current_num_threads()
        ))),
    }
}

/// The pool's size.
pub fn num_threads() -> usize {
    rayon::current_num_threads()
}
