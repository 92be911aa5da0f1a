//! The repository memory: the mix is a distribution, scoring agrees with it
//! exactly, planted repeats are predicted, fitting helps, and the stored
//! form round-trips and refuses damage.

use cllm_core::rng::Rng;
use cllm_memory::{Memory, MemoryError};

const VOCAB: usize = 500;

fn random_tokens(rng: &mut Rng, n: usize, vocab: usize) -> Vec<u32> {
    (0..n).map(|_| rng.below(vocab as u64) as u32).collect()
}

/// "Functions": random token strings, then a corpus of them in random
/// order, each used several times.
fn functions(rng: &mut Rng, count: usize, len: usize) -> Vec<Vec<u32>> {
    (0..count).map(|_| random_tokens(rng, len, VOCAB)).collect()
}

fn corpus(rng: &mut Rng, funcs: &[Vec<u32>], uses: usize) -> Vec<u32> {
    let mut out = Vec::new();
    for _ in 0..uses {
        let f = &funcs[rng.below(funcs.len() as u64) as usize];
        out.extend_from_slice(f);
        // Some glue between functions.
        out.extend(random_tokens(rng, 3, VOCAB));
    }
    out
}

/// A made-up transformer: a random distribution per position (softmax of
/// random logits), the same for a given position and seed.
fn model_distribution(seed: u64, at: usize, vocab: usize) -> Vec<f32> {
    let mut rng = Rng::new(seed ^ (at as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let logits: Vec<f32> = (0..vocab).map(|_| (rng.next_f32() - 0.5) * 6.0).collect();
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

fn bits(probs: &[f32]) -> f64 {
    probs.iter().map(|&p| -(p as f64).log2()).sum::<f64>() / probs.len().max(1) as f64
}

fn fixture() -> (Memory, Vec<u32>) {
    let mut rng = Rng::new(7);
    let funcs = functions(&mut rng, 20, 30);
    let train = corpus(&mut rng, &funcs, 80);
    let memory = Memory::build(train, VOCAB);
    // A document mixing known functions, new text and a repeat of its own.
    let mut doc = corpus(&mut rng, &funcs, 6);
    let fresh = random_tokens(&mut rng, 60, VOCAB);
    doc.extend_from_slice(&fresh);
    doc.extend_from_slice(&fresh);
    (memory, doc)
}

#[test]
fn the_mixed_distribution_sums_to_one_and_is_positive() {
    let (mut memory, doc) = fixture();
    for fitted in [false, true] {
        if fitted {
            let probs: Vec<f32> = (0..doc.len() - 1)
                .map(|i| model_distribution(3, i, VOCAB)[doc[i + 1] as usize])
                .collect();
            memory.fit(&doc, &probs);
        }
        let mut session = memory.session();
        for (i, &t) in doc.iter().enumerate() {
            session.push(t);
            let mut probs = model_distribution(3, i, VOCAB);
            session.mix_into(&mut probs);
            let sum: f64 = probs.iter().map(|&p| p as f64).sum();
            assert!((sum - 1.0).abs() < 1e-5, "at {i}: sum {sum}");
            assert!(probs.iter().all(|&p| p > 0.0), "at {i}");
        }
    }
}

#[test]
fn scoring_reads_exactly_the_full_distribution_at_the_true_token() {
    let (mut memory, doc) = fixture();
    let model_probs: Vec<f32> = (0..doc.len() - 1)
        .map(|i| model_distribution(5, i, VOCAB)[doc[i + 1] as usize])
        .collect();
    for fitted in [false, true] {
        if fitted {
            memory.fit(&doc, &model_probs);
        }
        let scored = memory.score(&doc, &model_probs);
        assert_eq!(scored.len(), doc.len() - 1);
        let mut session = memory.session();
        session.push(doc[0]);
        for i in 0..doc.len() - 1 {
            let mut full = model_distribution(5, i, VOCAB);
            session.mix_into(&mut full);
            let truth = full[doc[i + 1] as usize];
            assert_eq!(truth.to_bits(), scored[i].to_bits(), "at {i}");
            session.push(doc[i + 1]);
        }
    }
}

#[test]
fn planted_repeats_are_predicted_almost_surely_after_their_first_occurrence() {
    let mut rng = Rng::new(11);
    let funcs = functions(&mut rng, 30, 40);
    let train = corpus(&mut rng, &funcs, 120);
    let mut memory = Memory::build(train, VOCAB);
    let uniform = 1.0 / VOCAB as f32;
    let transformer_bits = (VOCAB as f64).log2();

    // Known functions, each whole: after its first two tokens the index
    // knows the rest.
    let mut doc = Vec::new();
    let mut known = Vec::new();
    for f in funcs.iter().take(10) {
        let start = doc.len();
        doc.extend(random_tokens(&mut rng, 5, VOCAB));
        doc.extend_from_slice(f);
        // Targets start+5+2 .. start+5+40: predicted from position - 1.
        known.extend((start + 5 + 2..start + 5 + f.len()).map(|t| t - 1));
    }
    // A fresh random passage, then the same passage again: only the cache
    // can know the second copy.
    let fresh = random_tokens(&mut rng, 200, VOCAB);
    let at = doc.len();
    doc.extend_from_slice(&fresh);
    doc.extend_from_slice(&fresh);
    let repeat: Vec<usize> = (at + 200 + 2..at + 400).map(|t| t - 1).collect();
    let model = vec![uniform; doc.len() - 1];

    let check = |memory: &Memory, what: &str| {
        let scored = memory.score(&doc, &model);
        let known_bits = bits(&known.iter().map(|&i| scored[i]).collect::<Vec<_>>());
        let repeat_bits = bits(&repeat.iter().map(|&i| scored[i]).collect::<Vec<_>>());
        assert!(
            known_bits < 0.2 * transformer_bits,
            "{what}: known functions {known_bits:.3} bits vs {transformer_bits:.3}"
        );
        assert!(
            repeat_bits < 0.2 * transformer_bits,
            "{what}: repeated passage {repeat_bits:.3} bits vs {transformer_bits:.3}"
        );
        // The first copy of the fresh passage is unknown: no better than
        // the transformer (the mix gives it most of the weight).
        let first: Vec<f32> = (at + 2..at + 200).map(|t| scored[t - 1]).collect();
        assert!(
            bits(&first) > 0.9 * transformer_bits,
            "{what}: {}",
            bits(&first)
        );
        (known_bits, repeat_bits)
    };
    let (k0, r0) = check(&memory, "default weights");
    // Fit on another document built the same way.
    let mut val = Vec::new();
    for f in funcs.iter().skip(10).take(10) {
        val.extend(random_tokens(&mut rng, 5, VOCAB));
        val.extend_from_slice(f);
    }
    let fresh = random_tokens(&mut rng, 200, VOCAB);
    val.extend_from_slice(&fresh);
    val.extend_from_slice(&fresh);
    let stats = memory.fit(&val, &vec![uniform; val.len() - 1]);
    assert!(stats.bits_fitted < stats.bits_default, "{stats:?}");
    let (k1, r1) = check(&memory, "fitted weights");
    assert!(
        k1 < k0 && r1 < r0,
        "fitting helps: {k0} -> {k1}, {r0} -> {r1}"
    );
}

#[test]
fn fitting_never_worsens_the_loss_on_the_data_it_was_fitted_on() {
    for seed in 0..4u64 {
        let mut rng = Rng::new(100 + seed);
        let funcs = functions(&mut rng, 15, 25);
        let memory0 = Memory::build(corpus(&mut rng, &funcs, 60), VOCAB);
        let mut val = corpus(&mut rng, &funcs, 10);
        val.extend(random_tokens(&mut rng, 200, VOCAB));
        let probs: Vec<f32> = (0..val.len() - 1)
            .map(|i| model_distribution(seed, i, VOCAB)[val[i + 1] as usize])
            .collect();
        let before = bits(&memory0.score(&val, &probs));
        let transformer = bits(&probs);
        let mut memory = memory0.clone();
        let stats = memory.fit(&val, &probs);
        let after = bits(&memory.score(&val, &probs));
        assert!(after <= before + 1e-9, "seed {seed}: {before} -> {after}");
        // The fit's own bookkeeping is the scoring's.
        assert!(
            (stats.bits_default - before).abs() < 1e-6,
            "{stats:?} vs {before}"
        );
        assert!(
            (stats.bits_fitted - after).abs() < 1e-6,
            "{stats:?} vs {after}"
        );
        assert!((stats.bits_transformer - transformer).abs() < 1e-6);
        assert_eq!(stats.positions, val.len() - 1);
        assert_eq!(memory.fit_stats(), Some(&stats));
    }
}

#[test]
fn the_stored_form_round_trips_for_small_and_large_vocabularies() {
    for vocab in [VOCAB, 70_000, 1_000_000] {
        let mut rng = Rng::new(vocab as u64);
        let train = random_tokens(&mut rng, 3_000, vocab);
        let mut memory = Memory::build(train.clone(), vocab);
        let mut val = train[100..400].to_vec();
        val.extend(random_tokens(&mut rng, 100, vocab));
        let probs: Vec<f32> = (0..val.len() - 1)
            .map(|i| 0.5 / (1 + i % 7) as f32)
            .collect();
        memory.fit(&val, &probs);
        let bytes = memory.to_bytes();
        let back = Memory::from_bytes(&bytes).expect("round trip");
        assert_eq!(back.tokens(), &train[..]);
        assert_eq!(back.vocab_size(), vocab);
        assert_eq!(back.mixer(), memory.mixer());
        // JSON keeps the statistics to about 1e-16 (not bit for bit).
        let (x, y) = (back.fit_stats().unwrap(), memory.fit_stats().unwrap());
        assert_eq!(x.positions, y.positions);
        assert!((x.bits_fitted - y.bits_fitted).abs() < 1e-12);
        assert!((x.bits_default - y.bits_default).abs() < 1e-12);
        assert_eq!(back.index().suffix_array(), memory.index().suffix_array());
        let a = memory.score(&val, &probs);
        let b = back.score(&val, &probs);
        assert_eq!(
            a.iter().map(|p| p.to_bits()).collect::<Vec<_>>(),
            b.iter().map(|p| p.to_bits()).collect::<Vec<_>>()
        );
        // Two bytes a token up to 65,536 tokens, four above.
        let width = if vocab <= 65_536 { 2 } else { 4 };
        assert!(bytes.len() > train.len() * width && bytes.len() < train.len() * width + 40_000);
    }
}

#[test]
fn damaged_bytes_are_refused_with_a_clear_error() {
    let mut rng = Rng::new(3);
    let memory = Memory::build(random_tokens(&mut rng, 500, VOCAB), VOCAB);
    let bytes = memory.to_bytes();
    // Every truncation.
    for len in 0..bytes.len() {
        assert!(
            Memory::from_bytes(&bytes[..len]).is_err(),
            "truncated to {len}"
        );
    }
    // Every single-byte change.
    for at in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[at] ^= 0x5A;
        let err = Memory::from_bytes(&bad).expect_err("damaged");
        let expected = match at {
            0..8 => MemoryError::BadMagic,
            8..12 => MemoryError::Version {
                found: u32::from_le_bytes(bad[8..12].try_into().unwrap()),
                supported: cllm_memory::format::VERSION,
            },
            _ => MemoryError::Checksum,
        };
        assert_eq!(err, expected, "byte {at}");
    }
    // An extra byte at the end shifts the checksum.
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        Memory::from_bytes(&longer).unwrap_err(),
        MemoryError::Checksum
    );
    assert!(
        MemoryError::Checksum.to_string().contains("damaged"),
        "the message says what is wrong"
    );
}

#[test]
fn a_consistent_but_invalid_header_is_refused() {
    use sha2::{Digest, Sha256};
    // Rebuild valid-checksum files with bad contents: a token outside the
    // vocabulary, a wrong count, weights below the floor.
    let memory = Memory::build(vec![1, 2, 3, 1, 2, 3], 4);
    let bytes = memory.to_bytes();
    let header_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[16..16 + header_len])
        .unwrap()
        .to_string();
    let tokens = &bytes[16 + header_len..bytes.len() - 32];
    let seal = |header: &str, tokens: &[u8]| {
        let mut out = b"CLLM-MEM".to_vec();
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(tokens);
        let digest = Sha256::digest(&out);
        out.extend_from_slice(&digest);
        out
    };
    assert!(Memory::from_bytes(&seal(&header, tokens)).is_ok());
    let mut big = tokens.to_vec();
    big[0] = 9;
    let cases = [
        (header.clone(), big),
        (
            header.replace("\"token_count\":6", "\"token_count\":7"),
            tokens.to_vec(),
        ),
        (
            header.replace("\"vocab_size\":4", "\"vocab_size\":0"),
            tokens.to_vec(),
        ),
        (
            header.replace("\"token_bytes\":2", "\"token_bytes\":4"),
            tokens.to_vec(),
        ),
        (header.replacen("[0.", "[-0.", 1), tokens.to_vec()),
        ("{}".to_string(), tokens.to_vec()),
    ];
    for (h, t) in cases {
        assert_ne!(h.len() + t.len(), 0);
        match Memory::from_bytes(&seal(&h, &t)) {
            Err(MemoryError::Header(msg)) => assert!(!msg.is_empty()),
            other => panic!("{h}: {other:?}"),
        }
    }
}

/// Timing on a real corpus, bytes as tokens: `CLLM_MEMORY_TRAIN=FILE
/// CLLM_MEMORY_VAL=FILE cargo test --test memory_index -- --ignored
/// --nocapture`. Prints the build, scoring and reload times.
#[test]
#[ignore]
fn timing_on_a_real_corpus() {
    use std::time::Instant;
    let (Ok(train), Ok(val)) = (
        std::env::var("CLLM_MEMORY_TRAIN"),
        std::env::var("CLLM_MEMORY_VAL"),
    ) else {
        eprintln!("set CLLM_MEMORY_TRAIN and CLLM_MEMORY_VAL");
        return;
    };
    let train: Vec<u32> = std::fs::read(train)
        .unwrap()
        .into_iter()
        .map(u32::from)
        .collect();
    let val: Vec<u32> = std::fs::read(val)
        .unwrap()
        .into_iter()
        .map(u32::from)
        .collect();
    let val = &val[..val.len().min(100_000)];
    let began = Instant::now();
    let mut memory = Memory::build(train.clone(), 256);
    let build = began.elapsed().as_secs_f64();
    let pristine = memory.clone();
    let uniform = vec![1.0 / 256.0; val.len() - 1];
    let began = Instant::now();
    let scored = memory.score(val, &uniform);
    let score = began.elapsed().as_secs_f64();
    let began = Instant::now();
    let stats = memory.fit(val, &uniform);
    let fit = began.elapsed().as_secs_f64();
    // Out of sample: fitted on the first half, scored on the second.
    let half = val.len() / 2;
    let mut held_out = pristine;
    let before = bits(&held_out.score(&val[half..], &uniform[half..]));
    held_out.fit(&val[..half], &uniform[..half - 1]);
    let after = bits(&held_out.score(&val[half..], &uniform[half..]));
    eprintln!(
        "held out: {before:.3} bits/token with the defaults, {after:.3} fitted on the first half"
    );
    let bytes = memory.to_bytes();
    let began = Instant::now();
    let back = Memory::from_bytes(&bytes).unwrap();
    let load = began.elapsed().as_secs_f64();
    assert_eq!(back.tokens().len(), train.len());
    eprintln!(
        "{} train tokens: suffix array {build:.2} s ({:.1} M tokens/s); scoring {} tokens {score:.2} s ({:.0} tokens/s), {:.3} bits/token with defaults; fit {fit:.2} s: {stats:?}; stored {} bytes, loaded in {load:.2} s",
        train.len(),
        train.len() as f64 / build / 1e6,
        val.len(),
        val.len() as f64 / score,
        bits(&scored),
        bytes.len()
    );
}

#[test]
fn without_any_match_the_transformer_is_left_exactly_as_it_is() {
    // An empty index and a document with no repeated token: no source
    // but the transformer takes part, so the mix is the transformer.
    let empty = Memory::build(Vec::new(), VOCAB);
    let doc: Vec<u32> = (0..VOCAB as u32).rev().collect();
    let probs: Vec<f32> = (0..doc.len() - 1)
        .map(|i| model_distribution(9, i, VOCAB)[doc[i + 1] as usize])
        .collect();
    let scored = empty.score(&doc, &probs);
    assert_eq!(
        scored.iter().map(|p| p.to_bits()).collect::<Vec<_>>(),
        probs.iter().map(|p| p.to_bits()).collect::<Vec<_>>()
    );
    let mut session = empty.session();
    session.push(doc[0]);
    let mut full = model_distribution(9, 0, VOCAB);
    let before = full.clone();
    session.mix_into(&mut full);
    assert_eq!(full, before);
    // A memory that never saw the document's tokens (another range of
    // ids) does no better and no worse.
    let other = Memory::build((0..100).map(|i| i % 50).collect(), VOCAB);
    let doc: Vec<u32> = (100..300).collect();
    let probs = vec![0.01f32; doc.len() - 1];
    assert_eq!(other.score(&doc, &probs), probs);
}
