//! The binary token file written by `cllm tokenize`: a 24-byte header
//! (magic `CLLMTOKS`, version u32, vocabulary size u32, token count u64),
//! then the ids as little-endian u32.

use std::io::{BufWriter, Read, Write};
use std::path::Path;

use crate::error::DataError;

pub const MAGIC: &[u8; 8] = b"CLLMTOKS";
pub const VERSION: u32 = 1;
const HEADER_BYTES: u64 = 24;

pub fn write_tokens(path: &Path, vocab_size: u32, tokens: &[u32]) -> Result<(), DataError> {
    let fail = |e: std::io::Error| DataError::io(path, "write tokens", e);
    let mut out = BufWriter::new(std::fs::File::create(path).map_err(fail)?);
    out.write_all(MAGIC).map_err(fail)?;
    out.write_all(&VERSION.to_le_bytes()).map_err(fail)?;
    out.write_all(&vocab_size.to_le_bytes()).map_err(fail)?;
    out.write_all(&(tokens.len() as u64).to_le_bytes())
        .map_err(fail)?;
    for &t in tokens {
        out.write_all(&t.to_le_bytes()).map_err(fail)?;
    }
    out.flush().map_err(fail)
}

/// Returns (vocabulary size, tokens). Checks the header and the file length
/// before allocating, and that every id is inside the vocabulary.
pub fn read_tokens(path: &Path) -> Result<(u32, Vec<u32>), DataError> {
    let bad = |problem: String| DataError::token_file(path, problem);
    let mut file = std::fs::File::open(path).map_err(|e| DataError::io(path, "open", e))?;
    let len = file
        .metadata()
        .map_err(|e| DataError::io(path, "read", e))?
        .len();
    let mut header = [0u8; HEADER_BYTES as usize];
    file.read_exact(&mut header).map_err(|_| {
        bad(format!(
            "too short for a token file header ({len} bytes): not a token file `cllm tokenize` wrote"
        ))
    })?;
    if &header[..8] != MAGIC {
        return Err(bad(
            "not a token file (bad magic): give the tokens.bin `cllm tokenize` wrote".into(),
        ));
    }
    let word =
        |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    let version = word(8);
    if version != VERSION {
        return Err(bad(format!(
            "token file version {version}, expected {VERSION}: tokenize the data again with this cllm"
        )));
    }
    let vocab = word(12);
    let mut count_bytes = [0u8; 8];
    count_bytes.copy_from_slice(&header[16..24]);
    let count = u64::from_le_bytes(count_bytes);
    let expected = count
        .checked_mul(4)
        .and_then(|b| b.checked_add(HEADER_BYTES));
    if expected != Some(len) {
        return Err(bad(format!(
            "header says {count} tokens but the file has {len} bytes (truncated or corrupt): tokenize the data again"
        )));
    }
    let mut raw = Vec::with_capacity(count as usize * 4);
    file.read_to_end(&mut raw)
        .map_err(|e| DataError::io(path, "read", e))?;
    let tokens: Vec<u32> = raw
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if let Some((i, &bad_id)) = tokens.iter().enumerate().find(|&(_, &t)| t >= vocab) {
        return Err(bad(format!(
            "token {i} is {bad_id}, outside the vocabulary of {vocab} (corrupt): tokenize the data again"
        )));
    }
    Ok((vocab, tokens))
}
