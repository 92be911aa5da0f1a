//! The Ollama `Modelfile` written beside a GGUF export, so that
//! `ollama create NAME -f m.Modelfile` needs no hand-work: the file (a path
//! relative to the Modelfile), the context length, the special tokens as
//! stop texts, and a template that fills a middle when Ollama is given a
//! suffix (its `.Suffix` variable; `.Prompt` is the text before the hole;
//! in the SPM order the model infills best, see `cllm_data::fim`)
//! and passes the prompt through as it is otherwise: these are base models,
//! not chat models. A model without FIM tokens gets the plain template, so
//! Ollama refuses a suffix for it instead of ignoring it.

use super::special_tokens::SpecialTokens;
use super::{Checkpoint, CheckpointError, TrainerRecords};
use cllm_data::fim::{FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX};
use std::fs;
use std::path::{Path, PathBuf};

/// The Modelfile for the GGUF file at `gguf`: `m.gguf` -> `m.Modelfile`
/// beside it (one per export, so exports side by side keep theirs).
pub fn modelfile_path(gguf: &Path) -> PathBuf {
    gguf.with_extension("Modelfile")
}

/// The Modelfile's text for the GGUF file named `gguf_name` (in the same
/// folder) of a model with context `n_ctx` and these special tokens.
pub fn modelfile(gguf_name: &str, n_ctx: usize, special: &SpecialTokens) -> String {
    let mut lines = vec![
        format!("# Ollama Modelfile for {gguf_name}, written by `cllm export`."),
        format!(
            "# ollama create NAME -f {}",
            Path::new(gguf_name).with_extension("Modelfile").display()
        ),
        format!("FROM ./{gguf_name}"),
        format!("PARAMETER num_ctx {n_ctx}"),
    ];
    for (text, _) in special.named() {
        lines.push(format!("PARAMETER stop \"{text}\""));
    }
    let template = if special.fim.is_some() {
        format!(
            "{{{{ if .Suffix }}}}{FIM_SUFFIX}{{{{ .Suffix }}}}{FIM_PREFIX}{{{{ .Prompt }}}}{FIM_MIDDLE}{{{{ else }}}}{{{{ .Prompt }}}}{{{{ end }}}}"
        )
    } else {
        "{{ .Prompt }}".to_string()
    };
    lines.push(format!("TEMPLATE \"\"\"{template}\"\"\""));
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// Writes the Modelfile for `ckpt` exported to the GGUF file `gguf`, at
/// [`modelfile_path`]; returns that path.
pub fn write_modelfile<T: TrainerRecords>(
    ckpt: &Checkpoint<T>,
    gguf: &Path,
) -> Result<PathBuf, CheckpointError> {
    let path = modelfile_path(gguf);
    let name = gguf
        .file_name()
        .ok_or_else(|| CheckpointError::bad_input(gguf, "the GGUF path names no file"))?
        .to_string_lossy();
    let special = SpecialTokens::of(&ckpt.tokenizer_json)?;
    fs::write(&path, modelfile(&name, ckpt.model.n_ctx, &special))
        .map_err(|e| CheckpointError::io(&path, "write", e))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cllm_data::fim::FimTokens;

    #[test]
    fn template_fills_a_middle_only_with_fim_tokens() {
        let fim = FimTokens {
            prefix: 1,
            middle: 2,
            suffix: 3,
            pad: 4,
            file_sep: 5,
            eot: 0,
        };
        let with = modelfile(
            "m.gguf",
            256,
            &SpecialTokens {
                eot: Some(0),
                fim: Some(fim),
            },
        );
        assert!(with.contains("\nFROM ./m.gguf\n"), "{with}");
        assert!(with.contains("\nPARAMETER num_ctx 256\n"), "{with}");
        assert!(with.contains(
            "TEMPLATE \"\"\"{{ if .Suffix }}<fim_suffix>{{ .Suffix }}<fim_prefix>{{ .Prompt }}<fim_middle>{{ else }}{{ .Prompt }}{{ end }}\"\"\"\n"
        ), "{with}");
        let stops: Vec<&str> = with
            .lines()
            .filter_map(|l| l.strip_prefix("PARAMETER stop "))
            .collect();
        assert_eq!(
            stops,
            [
                "\"<|endoftext|>\"",
                "\"<fim_prefix>\"",
                "\"<fim_suffix>\"",
                "\"<fim_middle>\"",
                "\"<fim_pad>\"",
                "\"<file_sep>\""
            ]
        );
        let bytes = modelfile(
            "b.gguf",
            64,
            &SpecialTokens {
                eot: None,
                fim: None,
            },
        );
        assert!(
            bytes.contains("TEMPLATE \"\"\"{{ .Prompt }}\"\"\"\n"),
            "{bytes}"
        );
        assert!(!bytes.contains("PARAMETER stop"), "{bytes}");
        assert_eq!(
            modelfile_path(Path::new("/x/m.gguf")),
            Path::new("/x/m.Modelfile")
        );
    }
}
