//! The official `openai` Python client asking `/v1/completions` for a
//! middle as Continue does (FIM marker text, whole and streamed) and with
//! OpenAI's `suffix`: each answer is the engine's middle. Runs where a
//! python3 with `openai` is found (`CLLM_TEST_PYTHON`, else `python3` on
//! the PATH) and says "skipped: ..." elsewhere, unless
//! `CLLM_REQUIRE_PYTHON_CLIENTS=1` (CI sets it, with the client installed
//! by .ci/run), which makes a missing client a failure.

use super::*;
use std::process::Command;

const SCRIPT: &str = r#"
import json, sys
from openai import OpenAI

base, prefix, suffix = sys.argv[1], sys.argv[2], sys.argv[3]
client = OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=60)
greedy = dict(model="cllm", max_tokens=12, temperature=0, extra_body={"repetition_penalty": 1.0})
template = "<fim_prefix>" + prefix + "<fim_suffix>" + suffix + "<fim_middle>"
whole = client.completions.create(prompt=template, **greedy)
streamed = "".join(c.choices[0].text for c in client.completions.create(prompt=template, stream=True, **greedy))
with_suffix = client.completions.create(prompt=prefix, suffix=suffix, **greedy)
print(json.dumps({
    "whole": whole.choices[0].text,
    "finish_reason": whole.choices[0].finish_reason,
    "prompt_tokens": whole.usage.prompt_tokens,
    "streamed": streamed,
    "suffix": with_suffix.choices[0].text,
}))
"#;

/// A python3 that imports `openai`, or why there is none.
fn python_with_openai() -> Result<String, String> {
    let python = std::env::var("CLLM_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    match Command::new(&python).args(["-c", "import openai"]).output() {
        Ok(out) if out.status.success() => Ok(python),
        Ok(out) => Err(format!(
            "{python} cannot import openai ({}); set CLLM_TEST_PYTHON to a python3 with `pip install openai`",
            String::from_utf8_lossy(&out.stderr)
                .trim()
                .lines()
                .last()
                .unwrap_or("")
        )),
        Err(e) => Err(format!("no {python} ({e})")),
    }
}

#[test]
fn the_openai_python_client_gets_the_middle_from_fim_text_and_suffix() {
    let python = match python_with_openai() {
        Ok(p) => p,
        Err(why) if std::env::var("CLLM_REQUIRE_PYTHON_CLIENTS").as_deref() == Ok("1") => {
            panic!("CLLM_REQUIRE_PYTHON_CLIENTS=1 but {why}")
        }
        Err(why) => {
            println!("skipped: the openai Python client test: {why}");
            return;
        }
    };
    let model = lively_fim_model();
    let prefix = "int sum(const int *values, int n) {\n    int total = 0;\n";
    let suffix = "    return total;\n}\n";
    let (expected, stats) = library_middle(&model, prefix, suffix, 12);
    let server = start_fim(model, |_| {});
    // Straight to the server on loopback, whatever proxy the machine has.
    let mut cmd = Command::new(&python);
    cmd.args(["-c", SCRIPT, &server.base_url(), prefix, suffix]);
    for var in [
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd.env("NO_PROXY", "*").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["whole"], expected.as_str(), "{v}");
    assert_eq!(v["streamed"], expected.as_str(), "{v}");
    assert_eq!(v["suffix"], expected.as_str(), "{v}");
    assert_eq!(v["prompt_tokens"], stats.prompt_tokens);
    let finish = v["finish_reason"].as_str().unwrap();
    assert!(finish == "length" || finish == "stop", "{v}");
}
