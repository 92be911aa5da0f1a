//! Tokenizer speed, side by side with the `tokenizers` crate used directly:
//! BPE training time and single-thread encoding MB/s on a corpus, plus the
//! decode(encode(x)) == x check and bytes per token on every `.txt` file in
//! the corpus folder.
//!
//! Our BPE *is* the `tokenizers` crate's trainer and model; what differs is
//! how we feed it (64 KiB pieces with progress and cancel, our own decode),
//! and that we encode a long text in pieces, in parallel (checked here to
//! give the ids of one call).
//!
//! Run: `cargo bench -p cllm-data --bench tokenizer` (corpus:
//! $CLLM_BENCH_CORPUS or ../shared/data/sqlite_c.train.txt beside the
//! workspace; vocabulary: $CLLM_BENCH_VOCAB or 8192).

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use cllm_data::read_clean;
use cllm_data::tokenizer::{EOT, Tokenizer};
use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer as HfTokenizer};

const RUNS: usize = 2;

fn main() {
    let corpus = std::env::var("CLLM_BENCH_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../../shared/data/sqlite_c.train.txt")
        });
    let vocab: usize = std::env::var("CLLM_BENCH_VOCAB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8192);
    let text = match read_clean(&corpus) {
        Ok(t) => t,
        Err(e) => {
            println!("skipping tokenizer bench: {e}");
            return;
        }
    };
    let mb = text.len() as f64 / 1e6;
    println!(
        "corpus {} ({mb:.2} MB), vocabulary {vocab}",
        corpus.display()
    );

    // ---- training (the crate's own parallelism, same for both)
    let mut ours = None;
    let mut ours_s = f64::MAX;
    for _ in 0..RUNS {
        let t0 = Instant::now();
        let tok = Tokenizer::train_bpe(&[&text], vocab, &mut |_, _| {}, &AtomicBool::new(false))
            .expect("training failed");
        ours_s = ours_s.min(t0.elapsed().as_secs_f64());
        ours = Some(tok);
    }
    let ours = ours.expect("at least one run");
    let mut hf = None;
    let mut hf_s = f64::MAX;
    for _ in 0..RUNS {
        let t0 = Instant::now();
        let tok = train_hf_directly(&text, vocab);
        hf_s = hf_s.min(t0.elapsed().as_secs_f64());
        hf = Some(tok);
    }
    let hf = hf.expect("at least one run");
    println!(
        "train  ours {ours_s:.2} s | tokenizers crate {hf_s:.2} s | vocab {} vs {}",
        ours.vocab_size(),
        hf.get_vocab_size(true)
    );

    // ---- encoding on one thread (ours cuts a long text into pieces and
    // encodes them on the rayon pool: here a pool of one thread)
    tokenizers::utils::parallelism::set_parallelism(false);
    let one_thread = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool");
    let mut ours_ids = Vec::new();
    let mut ours_enc = f64::MAX;
    for _ in 0..RUNS {
        let t0 = Instant::now();
        ours_ids = one_thread.install(|| ours.encode(&text));
        ours_enc = ours_enc.min(t0.elapsed().as_secs_f64());
    }
    let t0 = Instant::now();
    let parallel_ids = ours.encode(&text);
    let ours_par = t0.elapsed().as_secs_f64();
    // Pieces give the ids of one call on the whole text.
    let whole: Vec<u32> = ours
        .as_hf()
        .encode_fast(text.as_str(), false)
        .expect("encode")
        .get_ids()
        .to_vec();
    println!(
        "encode ours on {} threads {:.2} MB/s | pieces == one call: {}",
        rayon::current_num_threads(),
        mb / ours_par,
        parallel_ids == whole && ours_ids == whole
    );
    assert_eq!(parallel_ids, whole, "encoding in pieces changed the ids");
    let mut hf_ids = Vec::new();
    let mut hf_enc = f64::MAX;
    for _ in 0..RUNS {
        let t0 = Instant::now();
        hf_ids = hf
            .encode(text.as_str(), false)
            .expect("encode")
            .get_ids()
            .to_vec();
        hf_enc = hf_enc.min(t0.elapsed().as_secs_f64());
    }
    println!(
        "encode ours {:.2} MB/s | tokenizers crate {:.2} MB/s | same ids: {} \
         (differ when the merges differ: the crate alone is fed lines, we feed 64 KiB pieces)",
        mb / ours_enc,
        mb / hf_enc,
        ours_ids == hf_ids
    );
    let t0 = Instant::now();
    let decoded = ours.decode(&ours_ids);
    println!("decode ours {:.2} MB/s", mb / t0.elapsed().as_secs_f64());
    assert_eq!(decoded, text, "round trip failed on the training corpus");

    // ---- round trip and bytes per token on every corpus file
    let dir = corpus.parent().map(PathBuf::from).unwrap_or_default();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    paths.retain(|p| p.extension().is_some_and(|e| e == "txt"));
    paths.sort();
    for path in paths {
        let Ok(raw) = std::fs::read(&path) else {
            continue;
        };
        // Check the exact file content (not the cleaned text) round trips.
        let Ok(content) = String::from_utf8(raw) else {
            println!("{}: not UTF-8, skipped", path.display());
            continue;
        };
        let ids = ours.encode(&content);
        let ok = ours.decode(&ids) == content;
        println!(
            "{}: {} bytes, {} tokens, {:.3} bytes/token, decode(encode(x)) == x: {ok}",
            path.display(),
            content.len(),
            ids.len(),
            content.len() as f64 / ids.len().max(1) as f64
        );
        assert!(ok, "round trip failed on {}", path.display());
    }
}

/// The crate on its own, the way its file trainer does it: line by line.
fn train_hf_directly(text: &str, vocab: usize) -> HfTokenizer {
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .vocab_size(vocab)
        .show_progress(false)
        .special_tokens(vec![AddedToken::from(EOT, true)])
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build()
        .into();
    let mut tok = HfTokenizer::new(BPE::default());
    tok.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tok.with_decoder(Some(ByteLevel::default()));
    tok.train(&mut trainer, text.split_inclusive('\n'))
        .expect("training failed");
    tok
}
