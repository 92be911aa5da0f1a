//! Why a stored memory could not be read back. The caller (the checkpoint
//! reader) names the file it came from.

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum MemoryError {
    #[error("the memory is truncated ({0} bytes): the file was cut short")]
    Truncated(usize),
    #[error("not a CLLM memory (bad magic bytes)")]
    BadMagic,
    #[error(
        "memory format version {found} is not supported (this program reads version {supported}): use the cllm that saved it"
    )]
    Version { found: u32, supported: u32 },
    #[error("the memory's checksum does not match: the data is damaged")]
    Checksum,
    #[error("the memory's header is invalid: {0}")]
    Header(String),
}
