//! Flags that take one of a fixed set of values, typed as the engine's own
//! enums. The engine crates do not depend on clap, so each enum states its
//! values once (`ALL` and `name()` beside its definition) and [`Choice`]
//! hands them to clap here: `--help` lists them, and clap refuses any other
//! value with its usual message naming the flag and the values it takes.

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use std::ffi::OsStr;
use std::marker::PhantomData;

/// An enum a flag takes by name.
pub trait Choice: Copy + Send + Sync + 'static {
    /// Every value, in the order `--help` lists them.
    const VALUES: &'static [Self];

    /// The name typed on the command line.
    fn typed_name(self) -> &'static str;

    /// Other spellings accepted for this value (not listed in `--help`).
    fn aliases(self) -> &'static [&'static str] {
        &[]
    }
}

/// The value parser of a [`Choice`] flag:
/// `#[arg(long, value_parser = choice::<ScheduleKind>())]`.
pub fn choice<T: Choice>() -> ChoiceParser<T> {
    ChoiceParser(PhantomData)
}

/// Parses a flag's value into `T` through clap's [`PossibleValuesParser`],
/// so the listing in `--help`, shell completions and the error for a value
/// that is not one of them are clap's own.
pub struct ChoiceParser<T>(PhantomData<fn() -> T>);

impl<T> Clone for ChoiceParser<T> {
    fn clone(&self) -> Self {
        ChoiceParser(PhantomData)
    }
}

impl<T: Choice> ChoiceParser<T> {
    fn possible_value(value: T) -> PossibleValue {
        PossibleValue::new(value.typed_name()).aliases(value.aliases().iter().copied())
    }
}

impl<T: Choice> TypedValueParser for ChoiceParser<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        let listed = T::VALUES.iter().map(|&v| Self::possible_value(v));
        let typed = PossibleValuesParser::new(listed).parse_ref(cmd, arg, value)?;
        let ignore_case = arg.is_some_and(clap::Arg::is_ignore_case_set);
        let found = T::VALUES
            .iter()
            .copied()
            .find(|&v| Self::possible_value(v).matches(&typed, ignore_case));
        // PossibleValuesParser accepted `typed`, so one of the values matches it.
        found.ok_or_else(|| clap::Error::new(clap::error::ErrorKind::InvalidValue).with_cmd(cmd))
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(T::VALUES.iter().map(|&v| Self::possible_value(v))))
    }
}

/// `Choice` for an engine enum with `ALL` and `name()` of its own.
macro_rules! engine_choice {
    ($($ty:ty),* $(,)?) => {$(
        impl Choice for $ty {
            const VALUES: &'static [Self] = &<$ty>::ALL;
            fn typed_name(self) -> &'static str {
                <$ty>::name(self)
            }
        }
    )*};
}

engine_choice!(
    cllm_generate::decoder::Precision,
    cllm_train::ScheduleKind,
    cllm_train::TokenizerKind,
    cllm_train::FinalWeights,
    cllm_train::checkpoint::export_gguf::GgufType,
    cllm_crawl::scope::ScopeKind,
);

/// Training matmul precision: `f32` is also taken for `fp32`, as the
/// engine's parser always took it.
impl Choice for cllm_core::ops::bf16::PrecisionChoice {
    const VALUES: &'static [Self] = &Self::ALL;

    fn typed_name(self) -> &'static str {
        Self::name(self)
    }

    fn aliases(self) -> &'static [&'static str] {
        match self {
            Self::Fp32 => &["f32"],
            _ => &[],
        }
    }
}

/// `--preset` of a new run: `auto` or a named size.
pub fn train_presets() -> PossibleValuesParser {
    let auto = std::iter::once(cllm_train::config::AUTO);
    PossibleValuesParser::new(auto.chain(cllm_core::PRESET_NAMES))
}

/// `--preset` of a benchmark: a named size.
pub fn model_presets() -> PossibleValuesParser {
    PossibleValuesParser::new(cllm_core::PRESET_NAMES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use cllm_core::ops::bf16::PrecisionChoice;
    use cllm_train::ScheduleKind;

    #[derive(Parser, Debug)]
    struct Flags {
        #[arg(long, value_parser = choice::<ScheduleKind>())]
        schedule: Option<ScheduleKind>,
        #[arg(long, ignore_case = true, value_parser = choice::<PrecisionChoice>())]
        precision: Option<PrecisionChoice>,
    }

    #[test]
    fn every_value_parses_to_itself_and_others_are_refused_with_the_list() {
        for &kind in ScheduleKind::ALL.iter() {
            let flags = Flags::try_parse_from(["t", "--schedule", kind.name()]).unwrap();
            assert_eq!(flags.schedule, Some(kind));
        }
        let err = Flags::try_parse_from(["t", "--schedule", "wavy"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::InvalidValue);
        let text = err.to_string();
        assert!(text.contains("wavy"), "{text}");
        assert!(text.contains("constant, cosine, linear, step"), "{text}");
    }

    #[test]
    fn aliases_and_case_are_taken_where_the_engine_took_them() {
        for (typed, want) in [
            ("f32", PrecisionChoice::Fp32),
            ("BF16", PrecisionChoice::Bf16),
            ("Auto", PrecisionChoice::Auto),
        ] {
            let flags = Flags::try_parse_from(["t", "--precision", typed]).unwrap();
            assert_eq!(flags.precision, Some(want), "{typed}");
            assert_eq!(PrecisionChoice::parse(typed).ok(), Some(want), "{typed}");
        }
    }

    #[test]
    fn presets_are_the_models_sizes() {
        let names: Vec<String> = train_presets()
            .possible_values()
            .unwrap()
            .map(|v| v.get_name().to_string())
            .collect();
        assert_eq!(names[0], "auto");
        assert_eq!(names[1..], cllm_core::PRESET_NAMES.map(String::from));
    }
}
