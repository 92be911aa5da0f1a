//! Tokenizers: a byte-level BPE (trained and run by the Hugging Face
//! `tokenizers` crate, saved as a standard `tokenizer.json`) and a plain byte
//! tokenizer for character-level experiments.
//!
//! Ids of the byte tokenizer are the byte values, vocabulary 256, and it has
//! no `<|endoftext|>`: file boundaries then live only in the dataset's
//! document ranges. The BPE has `<|endoftext|>` as a special token (id 0),
//! which only the dataset places (between files): the literal text
//! `<|endoftext|>` inside a file is encoded as ordinary text, never as that id.
//! BPE tokenizers trained since fill-in-the-middle also have the FIM tokens
//! (ids 1 to 5, see [`crate::fim`]); older ones load and work without them.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use rayon::prelude::*;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{
    AddedToken, OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer, Trainer,
};

use crate::error::DataError;
use crate::special_tokens::{FIM_SPECIALS, FimTokens};

pub use crate::special_tokens::EOT;

/// Vocabulary size used when none is given (`cllm train`, `cllm tokenize`,
/// the app).
pub const DEFAULT_VOCAB_SIZE: usize = 2048;

/// Smallest BPE vocabulary accepted: the 256 bytes, `<|endoftext|>`, the
/// FIM tokens, and a few merges.
pub const MIN_BPE_VOCAB_SIZE: usize = 266;

/// Largest BPE vocabulary accepted.
pub const MAX_BPE_VOCAB_SIZE: usize = 1_000_000;

/// Texts are fed to the trainer in pieces of about this many bytes, so
/// progress moves smoothly and cancelling takes effect quickly.
const TRAIN_CHUNK_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub enum Tokenizer {
    /// One token per byte; id = byte value.
    Bytes,
    Bpe(Box<BpeTokenizer>),
}

/// A byte-level BPE: the Hugging Face tokenizer plus, per id, the raw bytes
/// it stands for (for streaming decode without going through strings).
#[derive(Clone)]
pub struct BpeTokenizer {
    hf: tokenizers::Tokenizer,
    pieces: Vec<Vec<u8>>,
    eot: Option<u32>,
    /// The fill-in-the-middle tokens, when the vocabulary has them all.
    fim: Option<FimTokens>,
    /// Id of each single byte, used when the library refuses an input.
    byte_ids: [u32; 256],
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tokenizer::Bytes => write!(f, "Tokenizer::Bytes"),
            Tokenizer::Bpe(b) => write!(f, "Tokenizer::Bpe(vocab {})", b.pieces.len()),
        }
    }
}

impl Tokenizer {
    pub fn bytes() -> Tokenizer {
        Tokenizer::Bytes
    }

    /// Trains a byte-level BPE with `vocab_size` tokens in all (256 bytes,
    /// `<|endoftext|>` and the FIM tokens, and merges; fewer if the texts run out of pairs). `progress(done, total)` is called from
    /// this thread: the first half counts words (bytes read), the second
    /// half is the merge loop, which the library runs as one call, so it is
    /// reported when it ends. Cancelling stops word counting at once; during
    /// the merge loop it takes effect when the loop ends.
    pub fn train_bpe(
        texts: &[&str],
        vocab_size: usize,
        progress: &mut dyn FnMut(usize, usize),
        cancel: &AtomicBool,
    ) -> Result<Tokenizer, DataError> {
        if vocab_size < MIN_BPE_VOCAB_SIZE {
            return Err(DataError::VocabTooSmall {
                size: vocab_size,
                min: MIN_BPE_VOCAB_SIZE,
            });
        }
        if vocab_size > MAX_BPE_VOCAB_SIZE {
            return Err(DataError::VocabTooLarge {
                size: vocab_size,
                max: MAX_BPE_VOCAB_SIZE,
            });
        }
        let chunks = chunk_texts(texts, TRAIN_CHUNK_BYTES);
        let total_bytes: usize = chunks.iter().map(|c| c.len()).sum();
        let total = total_bytes * 2;
        let fed = AtomicUsize::new(0);
        let byte_level = ByteLevel::new(false, true, true);
        let mut trainer = BpeTrainerBuilder::new()
            .vocab_size(vocab_size)
            .show_progress(false)
            .special_tokens(
                std::iter::once(EOT)
                    .chain(FIM_SPECIALS)
                    .map(|t| AddedToken::from(t, true))
                    .collect(),
            )
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .build();
        let result = std::thread::scope(|scope| {
            let worker = scope.spawn(|| -> Result<Option<(BPE, Vec<AddedToken>)>, DataError> {
                let pieces = chunks
                    .iter()
                    .take_while(|_| !cancel.load(Ordering::Relaxed))
                    .inspect(|c| {
                        fed.fetch_add(c.len(), Ordering::Relaxed);
                    });
                trainer
                    .feed(pieces, |piece| {
                        let mut split = PreTokenizedString::from(piece);
                        byte_level.pre_tokenize(&mut split)?;
                        Ok(split
                            .get_splits(OffsetReferential::Original, OffsetType::Byte)
                            .into_iter()
                            .map(|(word, _, _)| word.to_owned())
                            .collect())
                    })
                    .map_err(|e| DataError::BpeTraining {
                        stage: "while counting words",
                        reason: e.to_string(),
                    })?;
                if cancel.load(Ordering::Relaxed) {
                    return Ok(None);
                }
                let mut model = BPE::default();
                let special = trainer
                    .train(&mut model)
                    .map_err(|e| DataError::BpeTraining {
                        stage: "in the merge loop",
                        reason: e.to_string(),
                    })?;
                Ok(Some((model, special)))
            });
            while !worker.is_finished() {
                progress(fed.load(Ordering::Relaxed).min(total_bytes), total);
                std::thread::sleep(Duration::from_millis(50));
            }
            worker.join().map_err(|_| DataError::BpeTraining {
                stage: "on its thread",
                reason: "the thread panicked".into(),
            })?
        })?;
        let Some((model, special)) = result else {
            return Err(DataError::Cancelled);
        };
        let mut hf = tokenizers::Tokenizer::new(model);
        hf.with_pre_tokenizer(Some(byte_level));
        hf.with_decoder(Some(ByteLevel::default()));
        hf.add_special_tokens(special)
            .map_err(|e| DataError::BpeTraining {
                stage: "adding the special tokens",
                reason: e.to_string(),
            })?;
        progress(total, total);
        Ok(Tokenizer::Bpe(Box::new(BpeTokenizer::from_hf(hf)?)))
    }

    pub fn vocab_size(&self) -> usize {
        match self {
            Tokenizer::Bytes => 256,
            Tokenizer::Bpe(b) => b.pieces.len(),
        }
    }

    pub fn encode(&self, text: &str) -> Vec<u32> {
        match self {
            Tokenizer::Bytes => text.bytes().map(u32::from).collect(),
            Tokenizer::Bpe(b) => b.encode(text),
        }
    }

    /// Encodes many texts in parallel (one text per task).
    pub fn encode_many(&self, texts: &[&str]) -> Vec<Vec<u32>> {
        texts.par_iter().map(|t| self.encode(t)).collect()
    }

    /// Decodes ids to text; ids outside the vocabulary are dropped, and a
    /// sequence that ends inside a multi-byte character decodes it as U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            self.append_token_bytes(id, &mut bytes);
        }
        match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }

    /// Token ids decode piecewise for streaming generation: bytes of one
    /// token (may be a partial UTF-8 sequence). Empty for an unknown id.
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        let mut out = Vec::new();
        self.append_token_bytes(id, &mut out);
        out
    }

    fn append_token_bytes(&self, id: u32, out: &mut Vec<u8>) {
        match self {
            Tokenizer::Bytes => {
                if let Ok(b) = u8::try_from(id) {
                    out.push(b);
                }
            }
            Tokenizer::Bpe(b) => {
                if let Some(piece) = b.pieces.get(id as usize) {
                    out.extend_from_slice(piece);
                }
            }
        }
    }

    /// `<|endoftext|>`; the byte tokenizer has none.
    pub fn eot_id(&self) -> Option<u32> {
        match self {
            Tokenizer::Bytes => None,
            Tokenizer::Bpe(b) => b.eot,
        }
    }

    /// The fill-in-the-middle tokens; `None` for the byte tokenizer and for
    /// BPE tokenizers trained before them (such a model cannot infill).
    pub fn fim_tokens(&self) -> Option<FimTokens> {
        match self {
            Tokenizer::Bytes => None,
            Tokenizer::Bpe(b) => b.fim,
        }
    }

    /// Whether `id` is a special token (`<|endoftext|>` or a FIM token):
    /// one the dataset or a prompt builder places, never text.
    pub fn is_special(&self, id: u32) -> bool {
        self.eot_id() == Some(id) || self.fim_tokens().is_some_and(|f| f.contains(id))
    }

    /// A Hugging Face `tokenizer.json`. The byte tokenizer is written as a
    /// byte-level BPE with the 256 bytes and no merges, which gives the same
    /// ids, and is read back as `Tokenizer::Bytes`.
    ///
    /// The format has no field for "special tokens in the input are text":
    /// [`Tokenizer::from_json`] turns it on again; another program loading
    /// the file gets our ids for every text without `<|endoftext|>` in it,
    /// and for text with it once it calls `set_encode_special_tokens(true)`.
    pub fn to_json(&self) -> String {
        let hf = match self {
            Tokenizer::Bytes => bytes_as_hf(),
            Tokenizer::Bpe(b) => b.hf.clone(),
        };
        // Serialising plain in-memory maps cannot fail.
        hf.to_string(true).unwrap_or_default()
    }

    pub fn from_json(s: &str) -> Result<Tokenizer, DataError> {
        let bpe = BpeTokenizer::from_hf(hf_from_json(s)?)?;
        let is_plain_bytes = bpe.pieces.len() == 256
            && bpe.eot.is_none()
            && bpe
                .byte_ids
                .iter()
                .enumerate()
                .all(|(b, &id)| id as usize == b);
        Ok(if is_plain_bytes {
            Tokenizer::Bytes
        } else {
            Tokenizer::Bpe(Box::new(bpe))
        })
    }

    /// The Hugging Face tokenizer (for the BPE kind), e.g. to compare with.
    pub fn as_hf(&self) -> tokenizers::Tokenizer {
        match self {
            Tokenizer::Bytes => bytes_as_hf(),
            Tokenizer::Bpe(b) => b.hf.clone(),
        }
    }
}

/// The Hugging Face tokenizer a `tokenizer.json` describes. A damaged file
/// is an error, never a panic: the library panics on some (a syntax error
/// inside the decoder, a merge shorter than a subword prefix), so the text
/// must be JSON and name no prefix or suffix (byte-level BPE has neither)
/// before the library reads it, and a panic of the library is an error too.
pub fn hf_from_json(s: &str) -> Result<tokenizers::Tokenizer, DataError> {
    let bad = |why: String| DataError::tokenizer(format!("not a valid tokenizer.json: {why}"));
    let json: serde_json::Value = serde_json::from_str(s).map_err(|e| bad(e.to_string()))?;
    for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
        let value = &json["model"][key];
        if !(value.is_null() || value.as_str() == Some("")) {
            return Err(bad(format!(
                "its model has a {key} ({value}), which byte-level BPE does not use"
            )));
        }
    }
    match std::panic::catch_unwind(|| tokenizers::Tokenizer::from_str(s)) {
        Ok(parsed) => parsed.map_err(|e| bad(e.to_string())),
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|m| m.to_string()))
                .unwrap_or_default();
            Err(bad(format!("the tokenizers library failed on it ({what})")))
        }
    }
}

impl BpeTokenizer {
    /// Checks the tokenizer is byte level (every byte has a token) and
    /// builds the per-id byte table.
    ///
    /// It also makes `<|endoftext|>` in the input ordinary text: the library
    /// does not save this setting in `tokenizer.json`, so it is set here, on
    /// every tokenizer we build or load.
    fn from_hf(mut hf: tokenizers::Tokenizer) -> Result<BpeTokenizer, DataError> {
        hf.set_encode_special_tokens(true);
        let vocab_size = hf.get_vocab_size(true);
        let char_to_byte = byte_level_char_to_byte();
        let mut pieces = vec![Vec::new(); vocab_size];
        let specials = hf.get_added_tokens_decoder();
        for (id, piece) in pieces.iter_mut().enumerate() {
            let id = id as u32;
            if let Some(special) = specials.get(&id) {
                *piece = special.content.as_bytes().to_vec();
                continue;
            }
            let token = hf.id_to_token(id).ok_or_else(|| {
                DataError::tokenizer(format!(
                    "tokenizer.json has no token for id {id} (ids must be dense)"
                ))
            })?;
            *piece = token
                .chars()
                .map(|c| {
                    char_to_byte(c).ok_or_else(|| {
                        DataError::tokenizer(format!("tokenizer.json is not byte level: token {token:?} (id {id}) has character {c:?}"))
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        let mut byte_ids = [0u32; 256];
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            let c = byte_to_char(b as u8);
            *slot = hf.token_to_id(&c.to_string()).ok_or_else(|| {
                DataError::tokenizer(format!(
                    "tokenizer.json is not byte level: no token for byte {b:#04x}"
                ))
            })?;
        }
        let eot = hf.token_to_id(EOT);
        let fim = FimTokens::from_lookup(|name| {
            hf.token_to_id(name)
                .filter(|id| specials.get(id).is_some_and(|t| t.special))
        });
        Ok(BpeTokenizer {
            hf,
            pieces,
            eot,
            fim,
            byte_ids,
        })
    }

    /// Long texts (a consolidated corpus is one text) are encoded in pieces,
    /// in parallel: the library builds a string per token, so one call on a
    /// 200 MB text would need gigabytes. The pieces are cut where the
    /// result is provably the same as one call (see [`encode_cuts`]).
    fn encode(&self, text: &str) -> Vec<u32> {
        self.encode_in_pieces(text, ENCODE_PIECE_BYTES)
    }

    fn encode_in_pieces(&self, text: &str, target: usize) -> Vec<u32> {
        if text.len() <= target.saturating_mul(2) {
            return self.encode_piece(text);
        }
        let cuts = encode_cuts(text, target);
        let pieces: Vec<&str> = cuts.windows(2).map(|w| &text[w[0]..w[1]]).collect();
        let ids: Vec<Vec<u32>> = pieces.par_iter().map(|p| self.encode_piece(p)).collect();
        ids.concat()
    }

    fn encode_piece(&self, text: &str) -> Vec<u32> {
        match self.hf.encode_fast(text, false) {
            Ok(encoding) => encoding.get_ids().to_vec(),
            // Every byte has a token, so a byte-per-token encoding is always
            // a correct (if long) fallback.
            Err(_) => text.bytes().map(|b| self.byte_ids[b as usize]).collect(),
        }
    }
}

/// The GPT-2 byte-to-character table: printable bytes stand for themselves,
/// the rest are moved to U+0100 upwards so every token is visible text.
pub fn byte_to_char(b: u8) -> char {
    let printable = |b: u8| (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
    if printable(b) {
        return char::from(b);
    }
    let rank = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + rank).unwrap_or('\u{fffd}')
}

fn byte_level_char_to_byte() -> impl Fn(char) -> Option<u8> {
    let mut table = std::collections::HashMap::with_capacity(256);
    for b in 0..=255u8 {
        table.insert(byte_to_char(b), b);
    }
    move |c| table.get(&c).copied()
}

/// The byte tokenizer as a Hugging Face tokenizer: 256 single-byte tokens,
/// id = byte value, no merges.
fn bytes_as_hf() -> tokenizers::Tokenizer {
    let vocab: Vocab = (0..=255u8)
        .map(|b| (byte_to_char(b).to_string(), u32::from(b)))
        .collect();
    let model = BPE::builder()
        .vocab_and_merges(vocab, Vec::new())
        .build()
        .unwrap_or_default();
    let mut hf = tokenizers::Tokenizer::new(model);
    hf.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    hf.with_decoder(Some(ByteLevel::default()));
    hf
}

/// Texts longer than twice this are encoded in pieces of about this size.
const ENCODE_PIECE_BYTES: usize = 256 * 1024;

/// Byte offsets `0, c1, ..., text.len()` that cut `text` into pieces of
/// about `target` bytes or more, each cut just before a `\n` that follows
/// a non-whitespace character. There the byte-level pre-tokenizer (the
/// GPT-2 pattern) always ends a word, whatever follows, and starts the next
/// one afresh: a match that holds a `\n` is all whitespace, the character
/// before is not, and the pattern looks ahead (`\s+(?!\S)`) but never
/// behind. So encoding the pieces one by one gives the ids of the whole.
/// A text with no such place stays whole.
fn encode_cuts(text: &str, target: usize) -> Vec<usize> {
    let bytes = text.as_bytes();
    let mut cuts = vec![0];
    let mut from = target.max(1);
    while from < text.len() {
        let next = bytes[from..]
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'\n')
            .map(|(i, _)| from + i)
            .find(|&at| {
                text[..at]
                    .chars()
                    .next_back()
                    .is_some_and(|c| !c.is_whitespace())
            });
        match next {
            Some(at) => {
                cuts.push(at);
                from = at + target.max(1);
            }
            None => break,
        }
    }
    cuts.push(text.len());
    cuts
}

/// Cuts texts into pieces of about `target` bytes at line ends (a line
/// longer than that stays whole), so word counting sees whole lines.
///
/// The search for the line end runs over bytes: `start + target` may fall
/// inside a multi-byte character, and a `\n` byte is never part of one, so
/// every cut (just after a `\n`, or the end of the text) is a character
/// boundary.
fn chunk_texts<'a>(texts: &[&'a str], target: usize) -> Vec<&'a str> {
    let mut chunks = Vec::new();
    for text in texts {
        let bytes = text.as_bytes();
        let mut start = 0;
        while start < text.len() {
            let mut end = start.saturating_add(target.max(1)).min(text.len());
            if end < text.len() {
                end = match bytes[end..].iter().position(|&b| b == b'\n') {
                    Some(i) => end + i + 1,
                    None => text.len(),
                };
            }
            chunks.push(&text[start..end]);
            start = end;
        }
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_is_a_bijection_matching_gpt2() {
        let chars: std::collections::HashSet<char> = (0..=255u8).map(byte_to_char).collect();
        assert_eq!(chars.len(), 256);
        // Values from the GPT-2 table: space is 'Ġ' (U+0120), newline 'Ċ'.
        assert_eq!(byte_to_char(b' '), '\u{120}');
        assert_eq!(byte_to_char(b'\n'), '\u{10a}');
        assert_eq!(byte_to_char(0), '\u{100}');
        assert_eq!(byte_to_char(b'a'), 'a');
        let hf: std::collections::HashSet<char> = ByteLevel::alphabet().into_iter().collect();
        assert_eq!(chars, hf);
    }

    /// Every target, over text with characters of every width and lines of
    /// every length: chunks are whole characters that end at line ends (or
    /// the text's end) and cover the text.
    #[test]
    fn chunks_never_split_a_character() {
        let text = "aé한🦀\n한x\n\n🦀🦀🦀é한aaaa\né\n한🦀".repeat(3);
        for target in 0..=text.len() + 1 {
            let chunks = chunk_texts(&[&text, "é", ""], target);
            assert_eq!(chunks.concat(), format!("{text}é"), "target {target}");
            let (last, rest) = chunks.split_last().unwrap();
            assert_eq!(*last, "é");
            for c in rest[..rest.len() - 1].iter() {
                assert!(c.ends_with('\n'), "target {target}: {c:?}");
            }
            assert!(rest.iter().all(|c| !c.is_empty()));
        }
    }

    fn small_bpe() -> Tokenizer {
        let text =
            "fn main() {\n    let x = 1;  \n\n\tprintln!(\"{x}\");\n}\n  // done\n".repeat(30);
        Tokenizer::train_bpe(&[&text], 300, &mut |_, _| {}, &AtomicBool::new(false)).unwrap()
    }

    /// Encoding in pieces gives exactly the ids of one call, for every
    /// piece size, over text with runs of spaces, tabs, blank lines and
    /// Unicode whitespace around line ends.
    #[test]
    fn encoding_in_pieces_equals_encoding_whole() {
        let Tokenizer::Bpe(bpe) = small_bpe() else {
            panic!("not a BPE")
        };
        let text = "fn main() {\n    let x = 1;  \n\n\tprintln!(\"{x}\");\n}\n  // done\n\
                    a\u{a0}\n b\u{2003}\n\n\n  c \n\td'\ns\n'll\n한\n🦀 \n x\r\n"
            .repeat(4);
        let whole = bpe.encode_piece(&text);
        for target in 1..text.len() / 2 {
            let cuts = encode_cuts(&text, target);
            assert!(cuts.len() > 2, "target {target}: no cuts");
            assert!(cuts.windows(2).all(|w| w[0] < w[1]));
            assert_eq!(
                bpe.encode_in_pieces(&text, target),
                whole,
                "target {target}"
            );
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// The same on generated text heavy in whitespace of every kind.
        #[test]
        fn encoding_in_pieces_equals_encoding_whole_on_generated_text(
            text in r"([a-z0-9'.,{}한🦀]{1,4}|[ \t\n\r\x{a0}\x{2003}\x{85}]{1,5}){0,80}",
            target in 1usize..60,
        ) {
            static TOK: std::sync::OnceLock<Tokenizer> = std::sync::OnceLock::new();
            let Tokenizer::Bpe(bpe) = TOK.get_or_init(small_bpe) else {
                panic!("not a BPE")
            };
            proptest::prop_assert_eq!(bpe.encode_in_pieces(&text, target), bpe.encode_piece(&text));
        }
    }

    #[test]
    fn chunks_cover_text_and_end_at_lines() {
        let text = "line one\nline two\nthree\n".repeat(50);
        let chunks = chunk_texts(&[&text, ""], 30);
        assert_eq!(chunks.concat(), text);
        assert!(chunks.iter().all(|c| c.ends_with('\n')));
    }
}
