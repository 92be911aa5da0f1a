//! How an error reads to a person, in the app and on the command line:
//! its message, then each cause (`source()`) its message does not already
//! say. Typed errors often write their cause into their own message; those
//! read once, the others gain the cause that tells what went wrong. And the
//! text of a panic caught on a background job's thread.

use std::error::Error;

/// `error`'s message followed by `: cause` for each cause not yet said.
pub fn error_text(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let said = e.to_string();
        if !said.is_empty() && !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = e.source();
    }
    text
}

/// Text of a caught panic payload, for a job that crashed on its thread.
pub fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt;

    /// An error with a message and an optional cause.
    #[derive(Debug)]
    struct Failed {
        message: &'static str,
        cause: Option<Box<dyn Error + 'static>>,
    }

    impl fmt::Display for Failed {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.message)
        }
    }

    impl Error for Failed {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.cause.as_deref()
        }
    }

    fn failed(message: &'static str, cause: Option<Failed>) -> Failed {
        Failed {
            message,
            cause: cause.map(|c| Box::new(c) as Box<dyn Error>),
        }
    }

    #[test]
    fn each_cause_is_said_once() {
        let missing = || failed("no such file", None);
        let quiet = failed("cannot read settings.toml", Some(missing()));
        assert_eq!(
            error_text(&quiet),
            "cannot read settings.toml: no such file"
        );
        let says = failed("cannot read settings.toml: no such file", Some(missing()));
        assert_eq!(error_text(&says), "cannot read settings.toml: no such file");
        let nested = failed("run failed", Some(quiet));
        assert_eq!(
            error_text(&nested),
            "run failed: cannot read settings.toml: no such file"
        );
    }
}
