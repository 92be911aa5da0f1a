//! Identifiers as the guard keeps them: short enough to compare with the
//! keywords and directive names it cares about.

/// Longest identifier kept to recognise `for` and directive names.
const WORD_CAP: usize = 8;

/// A short identifier (longer ones keep their first [`WORD_CAP`] bytes and
/// never equal a keyword).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Word {
    pub(super) bytes: [u8; WORD_CAP],
    pub(super) len: usize,
    pub(super) overflow: bool,
}

impl Word {
    pub(super) fn push(&mut self, b: u8) {
        if self.len < WORD_CAP {
            self.bytes[self.len] = b;
            self.len += 1;
        } else {
            self.overflow = true;
        }
    }

    pub(super) fn is(&self, keyword: &str) -> bool {
        !self.overflow && &self.bytes[..self.len] == keyword.as_bytes()
    }

    pub(super) fn starts_with(&self, prefix: &str) -> bool {
        self.bytes[..self.len].starts_with(prefix.as_bytes())
    }
}
