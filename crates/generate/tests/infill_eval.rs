//! `cllm eval-infill`'s holes and runs: holes lie inside function bodies,
//! the reference middle put back gives the file exactly and parses, blocks
//! are the bodies of if/for/while/switch, the draw is seeded, and a run
//! fills every hole in every mode it can.

mod common;

use cllm_core::ModelConfig;
use cllm_data::tokenizer::Tokenizer;
use cllm_generate::check_c;
use cllm_generate::decoder::DecodeOptions;
use cllm_generate::infill_eval::{
    self, Document, Hole, HoleKind, InfillEvalSettings, Mode, documents, draw_holes,
    find_candidates,
};
use std::sync::atomic::AtomicBool;

const FIXTURE: &str = include_str!("fixtures/sqlite_functions.c");

const BLOCKS: &str = "int f(int n) {
    int s = 0;
    for (int i = 0; i < n; i++) {
        s += i;
    }
    if (s > 10) {
        s = 10;
    } else {
        s = 0;
    }
    while (n > 0) { n--; }
    switch (n) {
    case 0: s++; break;
    }
    do { s--; } while (s > 100);
    if (n) { /* nothing */ }
    return s;
}
int broken(void) { return 1 +; }
";

fn docs_of(texts: &[(&str, &str)]) -> Vec<Document> {
    let owned: Vec<(String, String)> = texts
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    documents(&owned)
}

/// The checks every hole must pass.
fn assert_sound(docs: &[Document], hole: &Hole) {
    let text = &docs[hole.doc].text;
    let reference = hole.reference(docs);
    assert_eq!(hole.document_with(docs, reference), *text, "{hole:?}");
    let function = &text[hole.function.clone()];
    assert!(
        check_c(&hole.function_with(docs, reference))
            .unwrap()
            .parses,
        "{hole:?}: {function}"
    );
    // Inside the body: after the function's first `{`, before its last `}`.
    let body_open = hole.function.start + function.find('{').unwrap();
    let body_close = hole.function.start + function.rfind('}').unwrap();
    assert!(
        hole.middle.start > body_open && hole.middle.end <= body_close,
        "{hole:?} is not inside the body of {function}"
    );
    assert!(!reference.trim().is_empty(), "{hole:?}: nothing to fill");
    match hole.kind {
        HoleKind::SingleLine => {
            assert!(!reference.contains('\n'), "{reference:?}");
            let line_start = text[..hole.middle.start].rfind('\n').map_or(0, |i| i + 1);
            let before = &text[line_start..hole.middle.start];
            assert!(
                !before.trim().is_empty(),
                "cut at the line's start: {before:?}"
            );
            let after = &text[hole.middle.end..];
            assert!(after.is_empty() || after.starts_with('\n') || after.starts_with("\r\n"));
        }
        HoleKind::Block => {
            assert!(text[..hole.middle.start].ends_with('{'), "{hole:?}");
            assert!(text[hole.middle.end..].starts_with('}'), "{hole:?}");
        }
    }
}

#[test]
fn blocks_are_the_bodies_of_if_for_while_and_switch() {
    let docs = docs_of(&[("blocks.c", BLOCKS)]);
    let found = find_candidates(&docs).unwrap();
    // `broken` does not parse on its own: skipped.
    assert_eq!(found.functions, 1);
    let middles: Vec<&str> = found.blocks.iter().map(|h| h.reference(&docs)).collect();
    assert_eq!(
        middles,
        [
            "\n        s += i;\n    ",
            "\n        s = 10;\n    ",
            " n--; ",
            "\n    case 0: s++; break;\n    ",
        ],
        "the else, the do body and the comment-only block are not holes"
    );
    for hole in &found.blocks {
        assert_sound(&docs, hole);
    }
    // Body lines: between the braces, with something left after the first
    // non-blank character (a lone `}` cannot be cut).
    let lines: Vec<&str> = found
        .lines
        .iter()
        .map(|c| &docs[0].text[c.line.clone()])
        .collect();
    assert_eq!(lines.first(), Some(&"    int s = 0;"));
    assert_eq!(lines.last(), Some(&"    return s;"));
    assert!(!lines.iter().any(|l| l.trim() == "}"), "{lines:?}");
    assert!(!lines.iter().any(|l| l.contains("int f(")), "{lines:?}");
}

#[test]
fn holes_lie_in_bodies_and_the_reference_puts_the_file_back() {
    // A consolidated text: two files behind `cllm prepare`'s markers.
    let consolidated = format!(
        "// ===== FILE: a/blocks.c =====\n{BLOCKS}// ===== FILE: b/sqlite.c =====\n{FIXTURE}"
    );
    let docs = docs_of(&[("val.txt", &consolidated)]);
    assert_eq!(
        docs.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
        ["a/blocks.c", "b/sqlite.c"]
    );
    let found = find_candidates(&docs).unwrap();
    assert!(found.functions >= 4, "{}", found.functions);
    let holes = draw_holes(&docs, &found, 1000, 7, &|_| true);
    let lines = holes
        .iter()
        .filter(|h| h.kind == HoleKind::SingleLine)
        .count();
    assert_eq!(lines, found.lines.len(), "every line is drawn once");
    assert_eq!(holes.len() - lines, found.blocks.len());
    assert!(
        lines > 50 && found.blocks.len() > 10,
        "{lines} {}",
        found.blocks.len()
    );
    for hole in &holes {
        assert_sound(&docs, hole);
    }
    // Every reference middle put back parses: 100%.
    let parsed = holes
        .iter()
        .filter(|h| {
            check_c(&h.function_with(&docs, h.reference(&docs)))
                .unwrap()
                .parses
        })
        .count();
    assert_eq!(parsed, holes.len());

    // Seeded: the same draw again, another one with another seed; `fits`
    // is respected and the count per kind is capped.
    let short = |h: &Hole| h.middle.len() < 40;
    let short_blocks = found.blocks.iter().filter(|h| short(h)).count();
    assert!(short_blocks >= 2, "{short_blocks}");
    let a = draw_holes(&docs, &found, 5, 3, &short);
    assert_eq!(a, draw_holes(&docs, &found, 5, 3, &short));
    assert_ne!(a, draw_holes(&docs, &found, 5, 4, &short));
    assert_eq!(a.len(), 5 + short_blocks.min(5));
    assert!(a.iter().all(short));
}

fn bpe(texts: &[&str]) -> Tokenizer {
    Tokenizer::train_bpe(texts, 330, &mut |_, _| {}, &AtomicBool::new(false)).unwrap()
}

fn tiny(vocab: usize) -> ModelConfig {
    let mut cfg = common::byte_config("tiny");
    cfg.vocab_size = vocab.max(256);
    cfg.n_ctx = 128;
    cfg
}

#[test]
fn a_run_fills_every_hole_each_way_and_without_fim_only_from_the_prefix() {
    let docs = docs_of(&[("blocks.c", BLOCKS), ("sqlite.c", FIXTURE)]);
    let found = find_candidates(&docs).unwrap();
    let settings = InfillEvalSettings {
        memory_settings: vec![false, true],
        options: DecodeOptions::default(),
    };
    let cancel = AtomicBool::new(false);
    for tok in [bpe(&[BLOCKS, FIXTURE]), Tokenizer::bytes()] {
        let fim = tok.fim_tokens().is_some();
        let model = common::lively_model(tiny(tok.vocab_size()), 3);
        let n_ctx = model.config.n_ctx;
        let holes = draw_holes(&docs, &found, 3, 1, &|h| {
            infill_eval::hole_fits(&tok, &docs, h, n_ctx)
        });
        assert_eq!(holes.len(), 6);
        let mut seen = 0;
        let report = infill_eval::evaluate_infill(
            &model,
            &tok,
            &docs,
            &holes,
            None,
            &settings,
            &cancel,
            &mut |r, done, total| {
                seen += 1;
                assert_eq!(done, seen);
                assert_eq!(total, if fim { 12 } else { 6 });
                assert!(r.tokens <= infill_eval::max_tokens(r.kind, n_ctx));
                assert!(!r.memory, "no memory was given");
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(report.infill_available, fim);
        let modes: Vec<Mode> = report.cells.iter().map(|c| c.mode).collect();
        if fim {
            assert_eq!(
                modes,
                [
                    Mode::Infill,
                    Mode::PrefixOnly,
                    Mode::Infill,
                    Mode::PrefixOnly
                ]
            );
        } else {
            assert_eq!(modes, [Mode::PrefixOnly, Mode::PrefixOnly]);
        }
        for cell in &report.cells {
            assert_eq!(cell.count, 3);
            assert!((0.0..=1.0).contains(&cell.edit_similarity));
        }
        for r in &report.results {
            assert_eq!(r.exact, r.middle.trim_end() == r.reference.trim_end());
            if r.kind == HoleKind::SingleLine {
                assert!(!r.middle.contains('\n'), "{:?}", r.middle);
            }
        }
    }
}
