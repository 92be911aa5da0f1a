//! What the fuzz tests share (the checkpoint sections here, the crawl
//! state in `crates/crawl/tests`, the run logs in `crates/runs/tests`,
//! which include this file): a seeded generator, random edits of JSON, and
//! the tally that runs each case under `catch_unwind`, counts it by kind,
//! and fails the test on a panic, an accepted file that must be refused, or
//! a refusal that does not name the file.
#![allow(dead_code)]

use serde_json::Value;
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// SplitMix64: seeded, so a failing case repeats with the same seed.
pub struct FuzzRng(u64);

impl FuzzRng {
    pub fn new(seed: u64) -> FuzzRng {
        FuzzRng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// An index into a slice of `len` (> 0).
    pub fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }
}

/// A value a damaged or forged file might hold where another was.
pub fn odd_value(rng: &mut FuzzRng) -> Value {
    match rng.below(12) {
        0 => Value::Null,
        1 => Value::Bool(rng.below(2) == 0),
        2 => (-(rng.below(1000) as i64)).into(),
        3 => u64::MAX.into(),
        4 => (rng.below(1 << 40)).into(),
        5 => 0.into(),
        6 => serde_json::json!(1e308),
        7 => serde_json::json!(-0.5),
        8 => Value::String(String::new()),
        9 => Value::String("\u{0}é\u{202e}../../x".into()),
        10 => Value::Array(vec![Value::Null; rng.below(3) as usize]),
        _ => Value::Object(Default::default()),
    }
}

/// One random edit somewhere in `value`: a leaf replaced by an odd value,
/// a number nudged, a string cut, an entry removed or duplicated, or a key
/// renamed.
pub fn mutate_json(value: &mut Value, rng: &mut FuzzRng) {
    // Walk down a random path, stopping at random.
    let mut at = value;
    loop {
        let go_on = rng.below(4) != 0;
        let next = match at {
            Value::Array(items) if !items.is_empty() && go_on => {
                let i = rng.index(items.len());
                Some(i.to_string())
            }
            Value::Object(map) if !map.is_empty() && go_on => {
                let i = rng.index(map.len());
                map.keys().nth(i).cloned()
            }
            _ => None,
        };
        let Some(step) = next else { break };
        at = match at {
            Value::Array(items) => &mut items[step.parse::<usize>().unwrap()],
            Value::Object(map) => map.get_mut(&step).unwrap(),
            _ => unreachable!(),
        };
    }
    match at {
        Value::Array(items) if !items.is_empty() && rng.below(2) == 0 => {
            let i = rng.index(items.len());
            if rng.below(2) == 0 {
                items.remove(i);
            } else {
                let copy = items[i].clone();
                items.insert(rng.index(items.len()), copy);
            }
        }
        Value::Object(map) if !map.is_empty() && rng.below(2) == 0 => {
            let key = map.keys().nth(rng.index(map.len())).cloned().unwrap();
            let v = map.remove(&key).unwrap();
            if rng.below(2) == 0 {
                map.insert(format!("{key}x"), v);
            }
        }
        Value::Number(n) if rng.below(2) == 0 => {
            let x = n.as_f64().unwrap_or(0.0);
            let nudged = [x + 1.0, x - 1.0, x * 1000.0, -x, x / 3.0][rng.index(5)];
            *at = serde_json::Number::from_f64(nudged).map_or(Value::Null, Value::Number);
        }
        Value::String(s) if !s.is_empty() && rng.below(2) == 0 => {
            let mut chars: Vec<char> = s.chars().collect();
            chars.truncate(rng.index(chars.len()));
            *s = chars.into_iter().collect();
        }
        other => *other = odd_value(rng),
    }
}

/// Characters a refusal may take: a message is read, not scrolled.
const MAX_MESSAGE: usize = 1000;

/// Cases tried, refused and used, by kind.
#[derive(Default)]
struct Counts {
    tried: u64,
    refused: u64,
    used: u64,
    secs: f64,
}

/// Runs the cases and keeps the score (see the module's comment).
pub struct Tally {
    file: String,
    kinds: BTreeMap<String, Counts>,
    order: Vec<String>,
    failures: Vec<String>,
    failed: u64,
    /// A few refusals of each kind, to read.
    examples: BTreeMap<String, Vec<String>>,
}

impl Tally {
    /// Refusals must name `file`.
    pub fn new(file: &str) -> Tally {
        Tally {
            file: file.to_string(),
            kinds: BTreeMap::new(),
            order: Vec::new(),
            failures: Vec::new(),
            failed: 0,
            examples: BTreeMap::new(),
        }
    }

    /// A case that must be refused.
    pub fn refused(&mut self, kind: &str, case: u64, f: impl FnOnce() -> Result<(), String>) {
        self.run(kind, case, false, f);
    }

    /// A case that may be refused or used (the damage is one a forger made
    /// consistent), but never panic.
    pub fn refused_or_used(
        &mut self,
        kind: &str,
        case: u64,
        f: impl FnOnce() -> Result<(), String>,
    ) {
        self.run(kind, case, true, f);
    }

    fn run(
        &mut self,
        kind: &str,
        case: u64,
        may_use: bool,
        f: impl FnOnce() -> Result<(), String>,
    ) {
        if !self.kinds.contains_key(kind) {
            self.order.push(kind.to_string());
        }
        let started = std::time::Instant::now();
        // Panics are caught and counted; their messages go in the failures
        // (with FUZZ_SHOW_PANICS set, each is printed where it happens,
        // with its backtrace under RUST_BACKTRACE=1).
        let outcome = if std::env::var_os("FUZZ_SHOW_PANICS").is_some() {
            catch_unwind(AssertUnwindSafe(f))
        } else {
            let hook = std::panic::take_hook();
            std::panic::set_hook(Box::new(|_| {}));
            let outcome = catch_unwind(AssertUnwindSafe(f));
            std::panic::set_hook(hook);
            outcome
        };
        let counts = self.kinds.entry(kind.to_string()).or_default();
        counts.tried += 1;
        counts.secs += started.elapsed().as_secs_f64();
        let failure = match outcome {
            Err(panic) => Some(format!("panicked: {}", panic_text(&panic))),
            Ok(Ok(())) if may_use => {
                counts.used += 1;
                None
            }
            Ok(Ok(())) => Some("accepted".to_string()),
            Ok(Err(message)) => {
                counts.refused += 1;
                let examples = self.examples.entry(kind.to_string()).or_default();
                if examples.len() < 4 && !examples.contains(&message) {
                    examples.push(message.clone());
                }
                let named = message.contains(&self.file);
                let said = message.replace(&self.file, "").trim().len() >= 12;
                let readable = message.chars().count() <= MAX_MESSAGE;
                (!named || !said || !readable).then(|| {
                    format!("refused without naming the file and the problem briefly: {message}")
                })
            }
        };
        if let Some(what) = failure {
            self.failed += 1;
            if self.failures.len() < 25 {
                self.failures.push(format!("{kind}, case {case}: {what}"));
            }
        }
    }

    /// Prints the counts (and a few refusals of each kind); fails on any
    /// failure or with fewer than `at_least` cases.
    pub fn finish(self, at_least: u64) {
        let mut total = 0;
        eprintln!(
            "{:<34} {:>7} {:>8} {:>6} {:>6}",
            "kind", "tried", "refused", "used", "secs"
        );
        for kind in &self.order {
            let c = &self.kinds[kind];
            total += c.tried;
            eprintln!(
                "{kind:<34} {:>7} {:>8} {:>6} {:>6.2}",
                c.tried, c.refused, c.used, c.secs
            );
        }
        eprintln!("{:<34} {total:>7}", "all");
        for (kind, examples) in &self.examples {
            for e in examples {
                eprintln!("  {kind}: {}", e.chars().take(200).collect::<String>());
            }
        }
        assert!(
            self.failures.is_empty(),
            "{} of {total} cases failed; the first:\n{}",
            self.failed,
            self.failures.join("\n")
        );
        assert!(total >= at_least, "only {total} cases, want {at_least}");
    }
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic".into())
}
