//! Fill-in-the-middle: the tokenizer's FIM tokens, the training
//! arrangement of a window (pieces that put back together give the window's
//! text, the rate, the same choices from the same position), marker text in
//! prompts, and the infill prompt's budget.

use std::sync::atomic::AtomicBool;

use cllm_core::rng::Rng;
use cllm_data::batches::Batcher;
use cllm_data::dataset::TokenDataset;
use cllm_data::fim::{
    ExtraChunk, FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX, FimTokens, FimTraining, encode_with_markers,
    infill_prompt,
};
use cllm_data::tokenizer::{EOT, Tokenizer};

fn corpus() -> Vec<String> {
    (0..60)
        .map(|i| {
            format!(
                "static int counter_{i} = {i};\n\nint add_{i}(int a, int b) {{\n    if (a > b) {{\n        return a - b;\n    }}\n    return a + b * {i}; // add things ü\n}}\n"
            )
        })
        .collect()
}

fn bpe() -> Tokenizer {
    let texts = corpus();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    Tokenizer::train_bpe(&refs, 400, &mut |_, _| {}, &AtomicBool::new(false)).unwrap()
}

fn fim_of(tok: &Tokenizer) -> FimTokens {
    tok.fim_tokens()
        .expect("a new BPE tokenizer has the FIM tokens")
}

#[test]
fn a_new_bpe_has_the_fim_tokens_and_old_ones_and_bytes_do_not() {
    let tok = bpe();
    let fim = fim_of(&tok);
    assert_eq!(tok.eot_id(), Some(0));
    assert_eq!(
        [fim.prefix, fim.middle, fim.suffix, fim.pad, fim.file_sep],
        [1, 2, 3, 4, 5]
    );
    assert!(tok.is_special(fim.middle) && !tok.is_special(tok.encode("a")[0]));
    // Marker text inside a file is text, never the special token.
    let ids = tok.encode(&format!("x{FIM_PREFIX}y{EOT}"));
    assert!(ids.iter().all(|&id| !tok.is_special(id)), "{ids:?}");
    // They survive tokenizer.json.
    let back = Tokenizer::from_json(&tok.to_json()).unwrap();
    assert_eq!(back.fim_tokens(), Some(fim));
    // A tokenizer.json from before FIM: the same file without them.
    let mut json: serde_json::Value = serde_json::from_str(&tok.to_json()).unwrap();
    json["added_tokens"]
        .as_array_mut()
        .unwrap()
        .retain(|t| t["content"] == EOT);
    let old = Tokenizer::from_json(&json.to_string()).unwrap();
    assert_eq!(old.fim_tokens(), None);
    assert_eq!(Tokenizer::bytes().fim_tokens(), None);
    assert!(FimTraining::new(&old, 0.5).is_none());
    assert!(FimTraining::new(&tok, 0.0).is_none());
}

/// Splits an arranged window into (prefix, middle, suffix) token runs.
fn pieces(window: &[u32], f: FimTokens) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
    let at = |id: u32| window.iter().position(|&t| t == id).unwrap();
    let (pre, suf, mid) = (at(f.prefix), at(f.suffix), at(f.middle));
    let end = window
        .iter()
        .position(|&t| t == f.eot)
        .unwrap_or(window.len());
    let middle = window[mid + 1..end].to_vec();
    if suf == 0 {
        // SPM: <suf> suffix <pre> prefix <mid> middle.
        (
            window[pre + 1..mid].to_vec(),
            middle,
            window[1..pre].to_vec(),
        )
    } else {
        // PSM: <pre> prefix <suf> suffix <mid> middle.
        assert_eq!(pre, 0);
        (
            window[1..suf].to_vec(),
            middle,
            window[suf + 1..mid].to_vec(),
        )
    }
}

#[test]
fn an_arranged_window_puts_back_together_into_its_text() {
    let tok = bpe();
    let f = fim_of(&tok);
    let text = corpus()[3..6].concat();
    let all = tok.encode(&text);
    let fim = FimTraining::new(&tok, 1.0).unwrap();
    let (mut psm, mut spm, mut at_line_start) = (0, 0, 0);
    let mut ends = std::collections::BTreeSet::new();
    for seed in 0..200u64 {
        let start = (seed as usize * 7) % (all.len() - 65);
        let original = all[start..start + 65].to_vec();
        let original_text = tok.decode(&original);
        let mut window = original.clone();
        assert!(fim.apply(&mut window, &mut Rng::new(seed)));
        assert_eq!(window.len(), original.len());
        let (p, m, s) = pieces(&window, f);
        if window[0] == f.suffix {
            spm += 1;
        } else {
            psm += 1;
        }
        // Prefix then middle is the start of the text; the suffix and then
        // the document's tokens after the middle's end-of-text (cut at
        // their end to fit) follow them.
        let prefix_text = tok.decode(&p);
        if prefix_text.is_empty() || prefix_text.ends_with('\n') {
            at_line_start += 1;
        }
        let front = prefix_text + &tok.decode(&m);
        assert!(
            original_text.starts_with(&front),
            "seed {seed}: {front:?} is not the start of {original_text:?}"
        );
        // (A middle too long for the window loses its end, end-of-text
        // included.)
        let eot = window.iter().position(|&t| t == f.eot);
        let after: Vec<u32> = eot
            .map_or(&[][..], |e| &window[e + 1..])
            .iter()
            .copied()
            .filter(|&t| t != f.pad)
            .collect();
        let back = tok.decode(&s) + &tok.decode(&after);
        assert!(
            original_text[front.len()..].starts_with(&back),
            "seed {seed}: {back:?} does not follow {front:?}"
        );
        ends.extend(eot);
        // The same position gives the same window.
        let mut again = original.clone();
        fim.apply(&mut again, &mut Rng::new(seed));
        assert_eq!(again, window);
    }
    assert!(psm > 60 && spm > 60, "psm {psm}, spm {spm}");
    // Most prefixes end where a line starts, their current line moved
    // after <fim_middle>; some keep it (the layout other tools build).
    assert!(
        (160..200).contains(&at_line_start),
        "{at_line_start} of 200 prefixes end at a line start"
    );
    // The middle's end-of-text falls at many places, not at the window's
    // end (where a model would learn to end every middle).
    assert!(ends.len() > 15, "end-of-text at {ends:?}");
    assert!(ends.iter().any(|&e| e < 50), "end-of-text at {ends:?}");
}

/// The hole's shapes: about a quarter of the middles are the rest of a
/// line, about a quarter run from a line's end to a later line's first
/// non-blank character; character cuts make either shape rarely.
#[test]
fn middles_take_the_shapes_editors_ask_for() {
    let tok = bpe();
    let f = fim_of(&tok);
    let all = tok.encode(&corpus()[3..9].concat());
    let fim = FimTraining::new(&tok, 1.0).unwrap();
    let (mut rest_of_line, mut whole_lines, mut blank, mut total) = (0, 0, 0, 0);
    for seed in 0..1000u64 {
        let start = (seed as usize * 13) % (all.len() - 129);
        let mut window = all[start..start + 129].to_vec();
        assert!(fim.apply(&mut window, &mut Rng::new(seed)));
        let (p, m, s) = pieces(&window, f);
        // Both ends of the middle inside the window (none cut to fit).
        if !window.contains(&f.eot) || s.is_empty() {
            continue;
        }
        total += 1;
        let (prefix, middle, suffix) = (tok.decode(&p), tok.decode(&m), tok.decode(&s));
        // The middle as trained may start with the hole's current line
        // (moved past `<fim_middle>`), which holds no newline, so the
        // shapes read the same in both layouts.
        let last_line = middle.rsplit('\n').next().unwrap();
        // A hole of blanks (a line break and an indentation) teaches the
        // model to end at once.
        if middle
            .split_once('\n')
            .is_some_and(|(_, rest)| rest.trim().is_empty())
        {
            blank += 1;
        }
        if !middle.contains('\n') && suffix.starts_with('\n') {
            rest_of_line += 1;
        } else if middle.contains('\n')
            && last_line.trim().is_empty()
            && !suffix.starts_with([' ', '\t'])
            && (prefix.is_empty() || prefix.ends_with('\n') || middle.starts_with('\n'))
        {
            whole_lines += 1;
        }
    }
    assert!(total > 500, "{total} whole middles of 1000");
    let share = |n: usize| n as f64 / total as f64;
    assert!(
        (0.2..0.4).contains(&share(rest_of_line)),
        "{rest_of_line} of {total} middles are the rest of a line"
    );
    assert!(
        (0.2..0.4).contains(&share(whole_lines)),
        "{whole_lines} of {total} middles are whole lines"
    );
    assert!(
        share(blank) < 0.03,
        "{blank} of {total} middles are a line break and blanks"
    );
}

#[test]
fn the_rate_is_the_share_of_windows_rearranged_and_documents_stay_whole() {
    let tok = bpe();
    let f = fim_of(&tok);
    let mut ids = tok.encode(&corpus()[0]);
    ids.truncate(20);
    ids.push(f.eot);
    ids.extend(tok.encode(&corpus()[1..4].concat()));
    let window: Vec<u32> = ids[..129].to_vec();
    let fim = FimTraining::new(&tok, 0.3).unwrap();
    let mut rearranged = 0;
    for seed in 0..1000u64 {
        let mut w = window.clone();
        if fim.apply(&mut w, &mut Rng::new(seed)) {
            rearranged += 1;
            // The short first document is kept as it was, with its
            // end-of-text; the longer second one is the one rearranged.
            assert_eq!(w[..21], window[..21]);
            assert!([f.prefix, f.suffix].contains(&w[21]));
        } else {
            assert_eq!(w, window);
        }
    }
    assert!((250..350).contains(&rearranged), "{rearranged} of 1000");
}

#[test]
fn the_batcher_rearranges_the_same_windows_after_a_resume() {
    let tok = bpe();
    let files: Vec<(String, String)> = corpus()
        .into_iter()
        .enumerate()
        .map(|(i, t)| (format!("f{i}.c"), t))
        .collect();
    let data = TokenDataset::from_texts(&tok, &files);
    let make = || {
        Batcher::new(&data, 32, 4)
            .unwrap()
            .with_fim(FimTraining::new(&tok, 0.5))
    };
    let mut first = make();
    let (mut inp, mut tgt) = (vec![0; 32 * 6], vec![0; 32 * 6]);
    first.next_batch(&mut inp, &mut tgt);
    let at = first.position();
    first.next_batch(&mut inp, &mut tgt);
    let mut resumed = make();
    resumed.set_position(at);
    let (mut inp2, mut tgt2) = (vec![0; 32 * 6], vec![0; 32 * 6]);
    resumed.next_batch(&mut inp2, &mut tgt2);
    assert_eq!((inp.clone(), tgt.clone()), (inp2, tgt2));
    // Targets are the inputs shifted by one, FIM or not.
    for (i, t) in inp.chunks(32).zip(tgt.chunks(32)) {
        assert_eq!(i[1..], t[..31]);
    }
    let f = fim_of(&tok);
    let arranged = inp.chunks(32).filter(|s| s.contains(&f.middle)).count();
    assert!(arranged > 0, "no window of six was rearranged at rate 0.5");
}

#[test]
fn marker_text_in_a_prompt_becomes_the_special_tokens() {
    let tok = bpe();
    let f = fim_of(&tok);
    let (ids, found) = encode_with_markers(&tok, "<fim_prefix>int a<fim_suffix>;\n<fim_middle>");
    assert!(found);
    let a = tok.encode("int a");
    let semi = tok.encode(";\n");
    // The prefix's current line goes after <fim_middle>, as trained.
    let mut want = vec![f.prefix, f.suffix];
    want.extend(&semi);
    want.push(f.middle);
    want.extend(&a);
    assert_eq!(ids, want);
    let (lines, _) = encode_with_markers(&tok, "<fim_prefix>x;\nint a<fim_suffix>;\n<fim_middle>");
    let mut want_lines = vec![f.prefix];
    want_lines.extend(tok.encode("x;\n"));
    want_lines.extend(&want[1..]);
    assert_eq!(lines, want_lines);
    // Text already after <fim_middle> is the client's layout, kept as sent.
    let (kept, _) = encode_with_markers(&tok, "<fim_prefix>int a<fim_suffix>;\n<fim_middle>int");
    let mut want_kept = vec![f.prefix];
    want_kept.extend(&a);
    want_kept.push(f.suffix);
    want_kept.extend(&semi);
    want_kept.push(f.middle);
    want_kept.extend(tok.encode("int"));
    assert_eq!(kept, want_kept);
    // Qwen-style spellings too.
    let (qwen, _) = encode_with_markers(&tok, "<|fim_prefix|>int a<|fim_suffix|>;\n<|fim_middle|>");
    assert_eq!(qwen, want);
    let (plain, found) = encode_with_markers(&tok, "int a;");
    assert!(!found);
    assert_eq!(plain, tok.encode("int a;"));
    // Without FIM tokens the markers stay text.
    let (bytes, found) = encode_with_markers(&Tokenizer::bytes(), FIM_MIDDLE);
    assert!(!found);
    assert_eq!(bytes.len(), FIM_MIDDLE.len());
}

#[test]
fn an_infill_prompt_fits_its_budget_keeping_the_text_nearest_the_hole() {
    let tok = bpe();
    let f = fim_of(&tok);
    let prefix = corpus()[..4].concat();
    let suffix = corpus()[4..8].concat();
    let small = infill_prompt(&tok, f, &[], "int x", " = 1;", 100);
    assert!(!small.truncated);
    // SPM: the prefix right before the middle, its current line after it.
    let mut want = vec![f.suffix];
    want.extend(tok.encode(" = 1;"));
    want.push(f.prefix);
    want.push(f.middle);
    want.extend(tok.encode("int x"));
    assert_eq!(small.ids, want);
    let lines = infill_prompt(&tok, f, &[], "int y;\nint x", " = 1;", 100);
    let mut want = vec![f.suffix];
    want.extend(tok.encode(" = 1;"));
    want.push(f.prefix);
    want.extend(tok.encode("int y;\n"));
    want.push(f.middle);
    want.extend(tok.encode("int x"));
    assert_eq!(lines.ids, want);
    assert_eq!(tok.decode(&lines.prefix_ids), "int y;\nint x");
    let p = infill_prompt(&tok, f, &[], &prefix, &suffix, 100);
    assert!(p.truncated);
    assert_eq!(p.ids.len(), 100);
    assert!(prefix.ends_with(&tok.decode(&p.prefix_ids)));
    assert!(suffix.starts_with(&tok.decode(&p.suffix_ids)));
    assert!(p.prefix_ids.len() >= 3 * p.suffix_ids.len() - 3);
    // A short suffix leaves its share to the prefix.
    let q = infill_prompt(&tok, f, &[], &prefix, ";", 100);
    assert_eq!(q.ids.len(), 100);
    assert_eq!(q.suffix_ids, tok.encode(";"));
    // Extra files come first, whole, when they fit.
    let extra = [ExtraChunk {
        filename: "util.h".into(),
        text: "int helper(void);\n".into(),
    }];
    let e = infill_prompt(&tok, f, &extra, "int x", " = 1;", 100);
    assert_eq!(e.ids[0], f.file_sep);
    assert!(tok.decode(&e.ids).contains("util.h\nint helper(void);\n"));
    assert_eq!(e.ids.iter().filter(|&&t| t == f.suffix).count(), 1);
    let crowded = infill_prompt(&tok, f, &extra, &prefix, &suffix, 100);
    assert!(!crowded.ids.contains(&f.file_sep));
    let _ = (FIM_PREFIX, FIM_SUFFIX);
}
