//! `cllm eval-infill`: how well a model fills holes in C functions of
//! held-out files: single lines (from a point inside a body line to its
//! end) and blocks (the body of an `if`/`for`/`while`/`switch`), each
//! filled greedily with the suffix and from the prefix alone, with and
//! without the repository memory (see [`cllm_generate::infill_eval`]).
//! Prints a table, or with `--json` one JSON object; every filled hole is
//! written as one JSON line.

use super::generate::load_model;
use clap::{Args, ValueEnum};
use cllm_generate::GenerateError;
use cllm_generate::decoder::{DecodeOptions, Precision};
use cllm_generate::infill_eval::{
    self, Cell, HoleKind, HoleResult, InfillEvalReport, InfillEvalSettings, Mode,
};
use cllm_train::TrainConfig;
use cllm_train::prepare::{gather_files, read_texts};
use serde_json::json;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

/// Which memory settings to score.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryChoice {
    On,
    Off,
    Both,
}

#[derive(Args, Debug, Clone)]
pub struct EvalInfillArgs {
    /// The `.cllm` checkpoint or model to evaluate
    #[arg(long, value_name = "FILE")]
    pub model: PathBuf,
    /// Held-out C: files (read whatever their extension) or folders (their
    /// .c and .h files)
    #[arg(long, num_args = 1.., required = true)]
    pub data: Vec<PathBuf>,
    /// Holes of each kind (single-line, block), drawn with --seed
    #[arg(long, default_value_t = 100)]
    pub holes: usize,
    /// Seed of the draw of holes and of the cut points in lines
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Score with the repository memory saved with the model, without it,
    /// or both (a model without one is scored without)
    #[arg(long, value_enum, default_value_t = MemoryChoice::Both)]
    pub memory: MemoryChoice,
    /// Threads for each token's products (0 = every core)
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Where every filled hole goes, one JSON object per line [default:
    /// beside the model, <model dir>/<model stem>-eval-infill.jsonl]
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Print one JSON object instead of the table
    #[arg(long)]
    pub json: bool,
}

/// The `(name, text)` of every file of `--data`.
fn read_data(paths: &[PathBuf]) -> Result<Vec<(String, String)>, String> {
    let (files, folders): (Vec<&PathBuf>, Vec<&PathBuf>) = paths.iter().partition(|p| p.is_file());
    let mut listed: Vec<(PathBuf, String)> = files
        .iter()
        .map(|p| ((*p).clone(), p.display().to_string()))
        .collect();
    if !folders.is_empty() {
        let mut cfg = TrainConfig::default();
        cfg.corpus.data = folders.into_iter().cloned().collect();
        cfg.corpus.files.clear();
        cfg.corpus.extensions = vec!["c".into(), "h".into()];
        let cancel = AtomicBool::new(false);
        listed
            .extend(gather_files(&cfg, &cancel, &mut |_| {}).map_err(|e| format!("--data: {e}"))?);
    }
    Ok(read_texts(&listed)?)
}

pub fn run(args: EvalInfillArgs) -> Result<(), String> {
    let wanted = match args.memory {
        MemoryChoice::Off => super::eval::Switch::Off,
        _ => super::eval::Switch::On,
    };
    let (model, tok, memory, _) = load_model(&args.model, wanted)?;
    let n_ctx = model.config.n_ctx;
    let texts = read_data(&args.data)?;
    let docs = infill_eval::documents(&texts);
    let candidates = infill_eval::find_candidates(&docs)?;
    let holes = infill_eval::draw_holes(&docs, &candidates, args.holes, args.seed, &|h| {
        infill_eval::hole_fits(&tok, &docs, h, n_ctx)
    });
    let drawn = |kind: HoleKind| holes.iter().filter(|h| h.kind == kind).count();
    if holes.is_empty() {
        return Err(format!(
            "no holes to fill in --data ({} C functions that parse on their own, {} body lines, \
             {} if/for/while/switch bodies short enough): give C files with function bodies",
            candidates.functions,
            candidates.lines.len(),
            candidates.blocks.len()
        ));
    }
    let memory_settings = match (args.memory, &memory) {
        (MemoryChoice::Off, _) | (_, None) => vec![false],
        (MemoryChoice::On, Some(_)) => vec![true],
        (MemoryChoice::Both, Some(_)) => vec![false, true],
    };
    let infill_note = tok.fim_tokens().is_none().then(|| {
        format!(
            "infill is unavailable: {} has no fill-in-the-middle tokens (trained before FIM, \
             or on bytes); only prefix-only completions are measured",
            args.model.display()
        )
    });
    let memory_note = (args.memory != MemoryChoice::Off && memory.is_none()).then(|| {
        format!(
            "{} carries no repository memory: scored without it",
            args.model.display()
        )
    });
    if !args.json {
        println!(
            "{}: {} single-line and {} block holes from {} file{} ({} C functions that parse; \
             seed {}), greedy, context {n_ctx} tokens, middles up to {} / {} tokens",
            args.model.display(),
            drawn(HoleKind::SingleLine),
            drawn(HoleKind::Block),
            docs.len(),
            if docs.len() == 1 { "" } else { "s" },
            candidates.functions,
            args.seed,
            infill_eval::max_tokens(HoleKind::SingleLine, n_ctx),
            infill_eval::max_tokens(HoleKind::Block, n_ctx),
        );
    }
    for note in infill_note.iter().chain(&memory_note) {
        if args.json {
            eprintln!("{note}");
        } else {
            println!("{note}");
        }
    }

    let output = args
        .output
        .clone()
        .unwrap_or_else(|| super::beside_model(&args.model, "-eval-infill.jsonl"));
    let file = std::fs::File::create(&output)
        .map_err(|e| format!("cannot create {}: {e}", output.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let terminal = std::io::stderr().is_terminal();
    let mut write = |r: &HoleResult, done: usize, total: usize| -> Result<(), String> {
        progress(terminal, done, total);
        let line = serde_json::to_string(r).map_err(|e| e.to_string())?;
        writeln!(out, "{line}").map_err(|e| format!("cannot write {}: {e}", output.display()))
    };
    let settings = InfillEvalSettings {
        memory_settings,
        options: DecodeOptions {
            threads: args.threads,
            precision: Precision::Fp32,
            ..DecodeOptions::default()
        },
    };
    let cancel = AtomicBool::new(false);
    let report = infill_eval::evaluate_infill(
        &model,
        &tok,
        &docs,
        &holes,
        memory.as_ref(),
        &settings,
        &cancel,
        &mut write,
    )
    .map_err(|e: GenerateError| e.to_string())?;
    if terminal {
        eprint!("\r\x1b[K");
    }
    out.flush()
        .map_err(|e| format!("cannot write {}: {e}", output.display()))?;

    if args.json {
        let object = json!({
            "model": args.model.display().to_string(),
            "data": args.data.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "documents": docs.len(),
            "functions": candidates.functions,
            "candidates": {
                "single_line": candidates.lines.len(),
                "block": candidates.blocks.len(),
            },
            "holes": {
                "single_line": drawn(HoleKind::SingleLine),
                "block": drawn(HoleKind::Block),
            },
            "seed": args.seed,
            "n_ctx": n_ctx,
            "max_tokens": {
                "single_line": infill_eval::max_tokens(HoleKind::SingleLine, n_ctx),
                "block": infill_eval::max_tokens(HoleKind::Block, n_ctx),
            },
            "infill_available": report.infill_available,
            "infill_note": infill_note,
            "memory": memory.is_some() && args.memory != MemoryChoice::Off,
            "cells": report.cells,
            "samples_file": output.display().to_string(),
        });
        println!("{object}");
    } else {
        print!("{}", table(&report));
        println!("every filled hole in {}", output.display());
    }
    Ok(())
}

/// Progress on stderr: a line redrawn in a terminal, otherwise a line at
/// every tenth.
fn progress(terminal: bool, done: usize, total: usize) {
    if terminal {
        eprint!("\r\x1b[Kfilled {done}/{total} holes");
    } else if done == total || (total >= 10 && done.is_multiple_of(total / 10)) {
        eprintln!("filled {done}/{total} holes");
    }
}

fn percent(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

/// One row per kind of hole; a column group per way of asking (with the
/// suffix, prefix only) and memory setting measured.
pub fn table(report: &InfillEvalReport) -> String {
    let mut groups: Vec<(Mode, bool)> = Vec::new();
    for c in &report.cells {
        if !groups.contains(&(c.mode, c.memory)) {
            groups.push((c.mode, c.memory));
        }
    }
    let title = |(mode, memory): (Mode, bool)| {
        format!(
            "{}, {}",
            match mode {
                Mode::Infill => "with suffix",
                Mode::PrefixOnly => "prefix only",
            },
            if memory { "memory" } else { "model only" }
        )
    };
    let mut s = format!("{:<12}", "");
    for &g in &groups {
        s += &format!(" | {:<27}", title(g));
    }
    s += &format!("\n{:<12}", "holes");
    for _ in &groups {
        s += &format!(" | {:>6} {:>6} {:>6} {:>5}", "exact", "ES", "parse", "n");
    }
    s.push('\n');
    for kind in HoleKind::ALL {
        s += &format!("{:<12}", kind.name().replace('_', "-"));
        for &(mode, memory) in &groups {
            match cell(report, kind, mode, memory) {
                Some(c) => {
                    s += &format!(
                        " | {:>6} {:>6.3} {:>6} {:>5}",
                        percent(c.exact_match),
                        c.edit_similarity,
                        percent(c.parse_rate),
                        c.count
                    )
                }
                None => s += &format!(" | {:>27}", "-"),
            }
        }
        s.push('\n');
    }
    // What the suffix brings: exact match with it over without it.
    for memory in [false, true] {
        let gains: Vec<String> = HoleKind::ALL
            .iter()
            .filter_map(|&kind| {
                let with = cell(report, kind, Mode::Infill, memory)?;
                let without = cell(report, kind, Mode::PrefixOnly, memory)?;
                Some(format!(
                    "{} {}",
                    kind.name().replace('_', "-"),
                    if without.exact_match > 0.0 {
                        format!("{:.2}x", with.exact_match / without.exact_match)
                    } else {
                        format!("{} vs 0", percent(with.exact_match))
                    }
                ))
            })
            .collect();
        if !gains.is_empty() {
            s += &format!(
                "exact match with the suffix over the prefix only ({}): {}\n",
                if memory { "memory" } else { "model only" },
                gains.join(", ")
            );
        }
    }
    s
}

fn cell(report: &InfillEvalReport, kind: HoleKind, mode: Mode, memory: bool) -> Option<&Cell> {
    report
        .cells
        .iter()
        .find(|c| c.kind == kind && c.mode == mode && c.memory == memory && c.count > 0)
}
