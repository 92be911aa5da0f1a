//! Typed access to a request body's fields, each refusal naming its field,
//! and the seed a request that gave none gets.

use super::api::ApiError;
use serde_json::{Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};

/// A seed for a request that gave none: different every time.
pub fn fresh_seed() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Typed access to the body's fields; `null` counts as absent.
pub struct Fields<'a>(pub &'a Map<String, Value>);

impl Fields<'_> {
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    pub fn boolean(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(ApiError::invalid(
                Some(name),
                format!("{name} must be true or false"),
            )),
        }
    }

    /// The `memory` field: whether a reply mixes in the repository memory
    /// (by default when the model has one; refused when asked of a model
    /// without one).
    pub fn memory(&self, has_memory: bool) -> Result<bool, ApiError> {
        match self.boolean("memory")? {
            Some(true) if !has_memory => Err(ApiError::invalid(
                Some("memory"),
                "this model has no repository memory",
            )),
            Some(m) => Ok(m),
            None => Ok(has_memory),
        }
    }

    pub fn number(&self, name: &str) -> Result<Option<f64>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_f64() {
                Some(x) if x.is_finite() => Ok(Some(x)),
                _ => Err(ApiError::invalid(
                    Some(name),
                    format!("{name} must be a finite number"),
                )),
            },
            Some(_) => Err(ApiError::invalid(
                Some(name),
                format!("{name} must be a number"),
            )),
        }
    }

    /// A non-negative integer (`2.0` counts, `2.5` and `-1` do not).
    pub fn uint(&self, name: &str) -> Result<Option<u64>, ApiError> {
        let bad =
            || ApiError::invalid(Some(name), format!("{name} must be a non-negative integer"));
        match self.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => {
                if let Some(u) = n.as_u64() {
                    Ok(Some(u))
                } else {
                    match n.as_f64() {
                        Some(x) if x >= 0.0 && x.fract() == 0.0 && x < 1.8e19 => Ok(Some(x as u64)),
                        _ => Err(bad()),
                    }
                }
            }
            Some(_) => Err(bad()),
        }
    }

    pub fn string(&self, name: &str) -> Result<Option<&str>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ApiError::invalid(
                Some(name),
                format!("{name} must be a string"),
            )),
        }
    }
    /// An integer, negative ones included (llama.cpp's `-1` = "no limit").
    pub fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        let bad = || ApiError::invalid(Some(name), format!("{name} must be an integer"));
        match self.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => Ok(Some(i)),
                (None, Some(x)) if x.fract() == 0.0 && x.abs() < 9.0e18 => Ok(Some(x as i64)),
                _ => Err(bad()),
            },
            Some(_) => Err(bad()),
        }
    }

    /// A list of strings (absent: empty).
    pub fn strings(&self, name: &str) -> Result<Vec<String>, ApiError> {
        let bad = || ApiError::invalid(Some(name), format!("{name} must be a list of strings"));
        match self.get(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string).ok_or_else(bad))
                .collect(),
            Some(_) => Err(bad()),
        }
    }
}
