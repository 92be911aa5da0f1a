//! The reply's text handed out in pieces: held back while it may still be
//! part of a character or of a stop string, flushed at the end.

use super::Generator;

impl Generator<'_> {
    /// Byte offset in `text` of the first stop string in the part not yet
    /// handed out (held-back text guarantees none starts earlier).
    pub(super) fn find_stop(&self) -> Option<usize> {
        let tail = &self.text[self.emitted..];
        self.cfg
            .stop
            .iter()
            .filter_map(|s| tail.find(s.as_str()))
            .min()
            .map(|i| self.emitted + i)
    }

    /// Length of the longest end of the unsent text that begins some stop
    /// string (and so must wait for the next token).
    pub(super) fn stop_prefix_len(&self) -> usize {
        let tail = &self.text[self.emitted..];
        let mut hold = 0;
        for stop in &self.cfg.stop {
            for (i, _) in tail.char_indices() {
                let end = &tail[i..];
                if end.len() <= hold {
                    break;
                }
                if stop.starts_with(end) {
                    hold = end.len();
                    break;
                }
            }
        }
        hold
    }

    pub(super) fn take_piece(&mut self, upto: usize) -> String {
        let piece = self.text[self.emitted..upto].to_string();
        self.emitted = upto;
        piece
    }

    /// Everything held back, an incomplete character decoded as U+FFFD.
    pub(super) fn flush_all(&mut self) -> String {
        if !self.pending_bytes.is_empty() {
            self.text
                .push_str(&String::from_utf8_lossy(&self.pending_bytes));
            self.pending_bytes.clear();
        }
        self.take_piece(self.text.len())
    }
}

/// Moves the longest valid UTF-8 start of `pending` into `out`; bytes that
/// can never be valid become U+FFFD, an incomplete last character stays.
pub(super) fn drain_utf8(pending: &mut Vec<u8>, out: &mut String) {
    loop {
        match std::str::from_utf8(pending) {
            Ok(s) => {
                out.push_str(s);
                pending.clear();
                return;
            }
            Err(e) => {
                let valid = e.valid_up_to();
                // The prefix was just checked to be valid UTF-8.
                out.push_str(std::str::from_utf8(&pending[..valid]).unwrap_or_default());
                match e.error_len() {
                    Some(bad) => {
                        out.push(char::REPLACEMENT_CHARACTER);
                        pending.drain(..valid + bad);
                    }
                    None => {
                        pending.drain(..valid);
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_utf8_waits_for_split_characters() {
        let bytes = "aé€".as_bytes();
        let mut pending = Vec::new();
        let mut out = String::new();
        for &b in bytes {
            pending.push(b);
            drain_utf8(&mut pending, &mut out);
            assert!(bytes.starts_with(out.as_bytes()));
        }
        assert_eq!(out, "aé€");
        assert!(pending.is_empty());
        pending.extend_from_slice(&[0xff, b'x']);
        drain_utf8(&mut pending, &mut out);
        assert_eq!(out, "aé€\u{fffd}x");
    }
}
