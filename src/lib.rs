//! CLLM Workbench engine: a GPT-style language model trained on CPU cores by a
//! tree of worker threads ("kissing spheres"), with data preparation,
//! checkpoints, generation and a memory of the training tokens (`memory`: an
//! n-gram index and a document cache mixed with the model). The two front
//! ends, the desktop app (`app`) and the command line (`cli`), sit on top;
//! nothing under `model`, `data`, `train`, `checkpoint`, `memory` or `runs` imports
//! them.

pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod crawl;
pub mod data;
pub mod generate;
pub mod memory;
pub mod model;
pub mod rng;
pub mod runs;
pub mod serve;
pub mod train;

pub mod app;
pub mod cli;
