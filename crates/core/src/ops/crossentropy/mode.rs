//! Which way the head's backward gets each tile's exponentials back:
//! stored in the (chunk, V) scratch by the forward tiles, or recomputed
//! tile by tile. Chosen per process (`CLLM_HEAD`, or the benchmark's
//! `--head`), read where the head runs.

use std::sync::atomic::{AtomicU8, Ordering};

/// How pass 2 of the head's backward finds a tile's exponentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadMode {
    /// Pass 1 stores every tile's exponentials in the (chunk, V) scratch
    /// and pass 2 reads them back: one product per tile fewer, a V-sized
    /// array written and read per chunk.
    Store,
    /// Pass 1 keeps only each row's statistics; pass 2 multiplies each
    /// tile's logits again and exponentiates them while in cache (Wijmans
    /// et al. 2024, "Cut Your Losses"): one more product per tile, no
    /// V-sized array, and a scratch of one tile.
    Recompute,
}

impl HeadMode {
    pub const ALL: [HeadMode; 2] = [HeadMode::Store, HeadMode::Recompute];

    pub fn name(self) -> &'static str {
        match self {
            HeadMode::Store => "store",
            HeadMode::Recompute => "recompute",
        }
    }

    /// `store` or `recompute` (any case).
    pub fn parse(s: &str) -> Option<HeadMode> {
        HeadMode::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(s.trim()))
    }

    fn code(self) -> u8 {
        match self {
            HeadMode::Store => 1,
            HeadMode::Recompute => 2,
        }
    }
}

/// The environment variable naming the mode.
pub const HEAD_MODE_ENV: &str = "CLLM_HEAD";

/// The mode when neither `CLLM_HEAD` nor [`set_head_mode`] chose one.
pub const DEFAULT_HEAD_MODE: HeadMode = HeadMode::Store;

/// 0 until chosen, else [`HeadMode::code`].
static MODE: AtomicU8 = AtomicU8::new(0);

/// The mode the training head runs in: the last [`set_head_mode`], else
/// `CLLM_HEAD` (read once; an unknown value is warned about and ignored),
/// else [`DEFAULT_HEAD_MODE`].
pub fn head_mode() -> HeadMode {
    match MODE.load(Ordering::Relaxed) {
        1 => HeadMode::Store,
        2 => HeadMode::Recompute,
        _ => {
            let mode = match std::env::var(HEAD_MODE_ENV) {
                Err(_) => DEFAULT_HEAD_MODE,
                Ok(v) => HeadMode::parse(&v).unwrap_or_else(|| {
                    eprintln!(
                        "warning: {HEAD_MODE_ENV}={v} is not one of store, recompute; \
                         the head stores its exponentials"
                    );
                    DEFAULT_HEAD_MODE
                }),
            };
            // A racing set_head_mode wins over the environment.
            let _ = MODE.compare_exchange(0, mode.code(), Ordering::Relaxed, Ordering::Relaxed);
            head_mode()
        }
    }
}

/// Chooses the mode for every head that runs from now on (the
/// benchmark's `--head`, measuring both in one run).
pub fn set_head_mode(mode: HeadMode) {
    MODE.store(mode.code(), Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for m in HeadMode::ALL {
            assert_eq!(HeadMode::parse(m.name()), Some(m));
            assert_eq!(HeadMode::parse(&m.name().to_uppercase()), Some(m));
        }
        assert_eq!(HeadMode::parse("stored-ish"), None);
    }
}
