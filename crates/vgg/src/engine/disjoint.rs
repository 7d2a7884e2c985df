//! Output buffer shared by parallel tasks that write provably disjoint parts.
//!
//! Winograd output transforms of different tiles (and channel groups) write
//! interleaved, non-contiguous regions of one NHWC tensor, which safe slice
//! splitting cannot express. Each writer task owns a set of (pixel, channel
//! block) cells that no other task touches; this wrapper carries that contract.

use std::marker::PhantomData;

/// A `&mut [f32]` that several threads may write through at disjoint offsets.
pub(crate) struct DisjointWriter<'a> {
    ptr: *mut f32,
    len: usize,
    _borrow: PhantomData<&'a mut [f32]>,
}

// SAFETY: the wrapper only hands out writes whose disjointness is the caller's
// obligation (see `write`); the underlying buffer is exclusively borrowed.
unsafe impl Send for DisjointWriter<'_> {}
// SAFETY: as above.
unsafe impl Sync for DisjointWriter<'_> {}

impl<'a> DisjointWriter<'a> {
    pub(crate) fn new(buf: &'a mut [f32]) -> Self {
        DisjointWriter {
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
            _borrow: PhantomData,
        }
    }

    /// Copies `values` to `offset..offset + values.len()` (bounds-checked).
    ///
    /// # Safety
    /// No other thread may write or read that range while the writer is alive.
    #[inline(always)]
    pub(crate) unsafe fn write(&self, offset: usize, values: &[f32]) {
        unsafe {
            assert!(
                offset + values.len() <= self.len,
                "disjoint write out of bounds"
            );
            std::ptr::copy_nonoverlapping(values.as_ptr(), self.ptr.add(offset), values.len());
        }
    }
}
