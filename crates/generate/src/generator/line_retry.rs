//! The line guard's side of the generator: where the current line began,
//! and taking a faulty line back so that it is sampled again.

use super::{FinishReason, Generator};
use crate::braces::CloseWatch;
use crate::bracket_guard::BracketGuard;
use crate::line_guard::{LineFault, LineGuard, RETRIES_PER_LINE, RETRIES_PER_REPLY};

/// The reply as it was after the last token that ended a line: what going
/// back to that line's start restores.
pub(super) struct LineStart {
    pub(super) generated: usize,
    pub(super) text_len: usize,
    pub(super) pending_bytes: Vec<u8>,
    pub(super) logits: Vec<f32>,
    pub(super) slides: usize,
    pub(super) brackets: Option<BracketGuard>,
    pub(super) close_watch: Option<CloseWatch>,
    pub(super) guard: LineGuard,
}

/// The line guard, the start of the line it watches, and the tokens it
/// refuses there.
pub(super) struct Lines {
    /// The guard after everything sampled so far.
    pub(super) guard: LineGuard,
    pub(super) start: LineStart,
    /// `(tokens since the line's start, token)`: refused after exactly
    /// those tokens. A line rejected as a repeat refuses the token its text
    /// began with, so that the next attempt takes another way.
    pub(super) refused: Vec<(Vec<u32>, u32)>,
    pub(super) line_retries: usize,
    /// Lines taken back in this reply.
    pub(super) reply_retries: usize,
}

impl Generator<'_> {
    /// With the line guard: reads the text from byte `from` on, and the
    /// fault of the line it ends or makes too long, if any.
    pub(super) fn judge_line(&mut self, from: usize) -> Option<LineFault> {
        let lines = self.lines.as_mut()?;
        let fault = lines.guard.feed(&self.text[from..]);
        if fault.is_some() {
            // The guard stopped at the fault: read the line again, unjudged,
            // for when it stands.
            lines.guard = lines.start.guard.clone();
            lines
                .guard
                .feed_unjudged(&self.text[lines.start.text_len..]);
        }
        fault
    }

    /// Goes back to the start of the line the guard found `fault` in, so
    /// that it is sampled again; false (the line stands) once the line or
    /// the reply has used its attempts.
    pub(super) fn take_line_back(&mut self, fault: LineFault) -> bool {
        let Some(mut lines) = self.lines.take() else {
            return false;
        };
        if lines.line_retries >= RETRIES_PER_LINE || lines.reply_retries >= RETRIES_PER_REPLY {
            self.lines = Some(lines);
            return false;
        }
        let start = &lines.start;
        // The newest token is not in the context yet.
        let taken = self.generated_ids.len() - start.generated - 1;
        lines.line_retries += 1;
        lines.reply_retries += 1;
        let line = &self.generated_ids[start.generated..];
        if fault == LineFault::Repeats {
            let first_solid = line.iter().position(|&t| {
                self.tok
                    .token_bytes(t)
                    .iter()
                    .any(|b| !b.is_ascii_whitespace())
            });
            if let Some(at) = first_solid {
                lines.refused.push((line[..at].to_vec(), line[at]));
            }
        }
        self.generated_ids.truncate(start.generated);
        self.text.truncate(start.text_len);
        self.pending_bytes.clone_from(&start.pending_bytes);
        if self.slides == start.slides {
            // Everything since the line's start is in the cache's last rows.
            self.context.truncate(self.context.len() - taken);
            self.cache.truncate(self.cache.len() - taken);
            self.logits.copy_from_slice(&start.logits);
        } else {
            // The window slid since: see the last half-window of the prompt
            // and the kept reply, as a slide there would have left it.
            let keep = (self.cache.capacity() / 2).max(1);
            let mut seen = self.full_prompt.clone();
            seen.extend_from_slice(&self.generated_ids);
            self.context = seen.split_off(seen.len().saturating_sub(keep));
            self.cache.clear();
            match self.cache.append(self.model, &self.context) {
                Ok(logits) => self.logits.copy_from_slice(logits),
                Err(_) => self.end(FinishReason::MaxTokens),
            }
        }
        if let (Some(b), Some(saved)) = (self.brackets.as_mut(), &start.brackets) {
            b.guard = saved.clone();
        }
        self.close_watch.clone_from(&start.close_watch);
        if let Some(session) = self.memory.as_mut() {
            session.truncate(self.full_prompt.len() + start.generated);
        }
        lines.guard = start.guard.clone();
        self.lines = Some(lines);
        true
    }

    /// With the line guard: after a token that ended a line, the reply as
    /// it now is becomes the start to go back to.
    pub(super) fn mark_line_start(&mut self) {
        let Some(mut lines) = self.lines.take() else {
            return;
        };
        lines.start = self.line_start(lines.guard.clone());
        lines.refused.clear();
        lines.line_retries = 0;
        self.lines = Some(lines);
    }

    /// The reply as it is now, with the line guard's state `guard`.
    pub(super) fn line_start(&self, guard: LineGuard) -> LineStart {
        LineStart {
            generated: self.generated_ids.len(),
            text_len: self.text.len(),
            pending_bytes: self.pending_bytes.clone(),
            logits: self.logits.clone(),
            slides: self.slides,
            brackets: self.brackets.as_ref().map(|b| b.guard.clone()),
            close_watch: self.close_watch.clone(),
            guard,
        }
    }
}
