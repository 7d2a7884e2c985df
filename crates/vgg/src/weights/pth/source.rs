//! The bytes of a checkpoint, read at offsets with every range checked against the length.

use std::fs::File;
use std::io::{self, Read};

use super::PthError;

/// Where one storage's bytes lie in the source.
#[derive(Clone, Copy, Debug)]
pub(super) struct Extent {
    pub(super) offset: u64,
    pub(super) len: u64,
}

/// The bytes of a checkpoint: an open file read at offsets, or a buffer.
pub(super) struct Source {
    backing: Backing,
    len: u64,
}

pub(super) enum Backing {
    File(File),
    Memory(Vec<u8>),
}

impl Source {
    /// An open file, read at offsets (never loaded whole).
    pub(super) fn file(file: File) -> io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(Source {
            backing: Backing::File(file),
            len,
        })
    }

    pub(super) fn memory(bytes: Vec<u8>) -> Self {
        Source {
            len: bytes.len() as u64,
            backing: Backing::Memory(bytes),
        }
    }

    pub(super) fn len(&self) -> u64 {
        self.len
    }

    /// Fills `buf` from `offset`, or fails with a truncation error naming
    /// `what` if the source is too short.
    pub(super) fn read_at(
        &self,
        offset: u64,
        buf: &mut [u8],
        what: &'static str,
    ) -> Result<(), PthError> {
        let needed = buf.len() as u64;
        let end = offset.checked_add(needed).filter(|&end| end <= self.len);
        let truncated = || PthError::Truncated {
            what,
            offset,
            needed,
            available: self.len.saturating_sub(offset),
        };
        let end = end.ok_or_else(truncated)?;
        match &self.backing {
            Backing::File(file) => read_file_at(file, buf, offset).map_err(PthError::Io),
            Backing::Memory(bytes) => {
                let range = usize::try_from(offset).ok().zip(usize::try_from(end).ok());
                let src = range
                    .and_then(|(start, end)| bytes.get(start..end))
                    .ok_or_else(truncated)?;
                buf.copy_from_slice(src);
                Ok(())
            }
        }
    }

    /// Reads `len` bytes at `offset`, checking the range against the source's
    /// length before allocating.
    pub(super) fn read_vec(
        &self,
        offset: u64,
        len: u64,
        what: &'static str,
    ) -> Result<Vec<u8>, PthError> {
        let available = self.len.saturating_sub(offset);
        let size = usize::try_from(len).ok().filter(|_| len <= available);
        let size = size.ok_or(PthError::Truncated {
            what,
            offset,
            needed: len,
            available,
        })?;
        let mut buf = vec![0u8; size];
        self.read_at(offset, &mut buf, what)?;
        Ok(buf)
    }
}

#[cfg(unix)]
pub(super) fn read_file_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(windows)]
pub(super) fn read_file_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        let n = file.seek_read(buf, offset)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf = &mut buf[n..];
        offset += n as u64;
    }
    Ok(())
}

/// A sequential reader over a [`Source`], for pickles whose length is only
/// known once parsed (the legacy format).
pub(super) struct SourceReader<'a> {
    pub(super) source: &'a Source,
    pub(super) pos: u64,
}

impl Read for SourceReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.source.len().saturating_sub(self.pos);
        let n = usize::try_from(left).map_or(buf.len(), |left| left.min(buf.len()));
        let head = &mut buf[..n];
        self.source
            .read_at(self.pos, head, "pickle data")
            .map_err(io::Error::other)?;
        self.pos += n as u64;
        Ok(n)
    }
}
