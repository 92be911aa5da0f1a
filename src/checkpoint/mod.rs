//! The `.cllm` checkpoint format: write, verify, load, resume, export.
