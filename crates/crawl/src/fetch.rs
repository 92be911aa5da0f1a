//! One HTTP GET, the crawler's way: no automatic redirects (the crawler
//! checks each hop against its scope and robots.txt), a timeout for the
//! whole exchange, a size cap checked against Content-Length before the
//! body is read and again while it is read, conditional requests with
//! ETag / Last-Modified, and a User-Agent naming the tool and its version.

use std::time::Duration;

/// The User-Agent sent with every request (robots.txt groups match on
/// its first word, `cllm-crawl`).
pub fn user_agent() -> String {
    format!(
        "cllm-crawl/{} (CLLM Workbench; +https://github.com/cllm-workbench)",
        env!("CARGO_PKG_VERSION")
    )
}

/// The name robots.txt groups are matched against.
pub const ROBOTS_AGENT: &str = "cllm-crawl";

/// Validators of a copy already held, for a conditional request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

impl Validators {
    pub fn is_empty(&self) -> bool {
        self.etag.is_none() && self.last_modified.is_none()
    }
}

/// A response as the crawler needs it.
#[derive(Clone, Debug, Default)]
pub struct Response {
    pub status: u16,
    /// The Location header of a redirect, as sent.
    pub location: Option<String>,
    /// The media type, lower-cased, without parameters ("text/html").
    pub media_type: Option<String>,
    /// The charset parameter of Content-Type, if any.
    pub charset: Option<String>,
    pub validators: Validators,
    /// Retry-After of a 429 or 503, as sent.
    pub retry_after: Option<String>,
    /// The body (empty for redirects, 304s and refused bodies).
    pub body: Vec<u8>,
}

/// Why a fetch gave no response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchError {
    Timeout,
    /// The body (or its Content-Length) is over the cap.
    TooLarge {
        limit: u64,
    },
    /// Connection refused, DNS, TLS, a broken response...
    Network(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Timeout => write!(f, "timed out"),
            FetchError::TooLarge { limit } => write!(f, "larger than {limit} bytes"),
            FetchError::Network(e) => write!(f, "{e}"),
        }
    }
}

/// An HTTP client with the crawler's settings.
pub struct Fetcher {
    agent: ureq::Agent,
}

impl Fetcher {
    pub fn new(timeout: Duration) -> Fetcher {
        let config = ureq::Agent::config_builder()
            .max_redirects(0)
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .user_agent(user_agent())
            .build();
        Fetcher {
            agent: config.new_agent(),
        }
    }

    /// GETs `url`. Bodies of media types `want_body` refuses are not read.
    pub fn get(
        &self,
        url: &str,
        validators: &Validators,
        max_bytes: u64,
        want_body: &dyn Fn(Option<&str>) -> bool,
    ) -> Result<Response, FetchError> {
        let mut request = self.agent.get(url);
        if let Some(etag) = &validators.etag {
            request = request.header("If-None-Match", etag);
        }
        if let Some(lm) = &validators.last_modified {
            request = request.header("If-Modified-Since", lm);
        }
        let mut response = request.call().map_err(map_error)?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.trim().to_string())
        };
        let (media_type, charset) = match header("content-type") {
            Some(ct) => parse_content_type(&ct),
            None => (None, None),
        };
        let mut out = Response {
            status,
            location: header("location"),
            media_type,
            charset,
            validators: Validators {
                etag: header("etag"),
                last_modified: header("last-modified"),
            },
            retry_after: header("retry-after"),
            body: Vec::new(),
        };
        let length = header("content-length").and_then(|l| l.parse::<u64>().ok());
        if status != 200 || !want_body(out.media_type.as_deref()) {
            return Ok(out);
        }
        if length.is_some_and(|l| l > max_bytes) {
            return Err(FetchError::TooLarge { limit: max_bytes });
        }
        out.body = response
            .body_mut()
            .with_config()
            .limit(max_bytes)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => FetchError::TooLarge { limit: max_bytes },
                other => map_error(other),
            })?;
        Ok(out)
    }
}

fn map_error(e: ureq::Error) -> FetchError {
    match e {
        ureq::Error::Timeout(_) => FetchError::Timeout,
        ureq::Error::Io(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ) =>
        {
            FetchError::Timeout
        }
        other => FetchError::Network(other.to_string()),
    }
}

/// `text/html; charset=ISO-8859-1` -> (`text/html`, `ISO-8859-1`).
pub fn parse_content_type(value: &str) -> (Option<String>, Option<String>) {
    let mut parts = value.split(';');
    let media = parts
        .next()
        .map(|m| m.trim().to_ascii_lowercase())
        .filter(|m| !m.is_empty());
    let charset = parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k.trim().eq_ignore_ascii_case("charset"))
            .then(|| v.trim().trim_matches('"').trim_matches('\'').to_string())
    });
    (media, charset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_splits_into_media_and_charset() {
        assert_eq!(
            parse_content_type("Text/HTML; charset=\"ISO-8859-1\""),
            (Some("text/html".into()), Some("ISO-8859-1".into()))
        );
        assert_eq!(
            parse_content_type("text/plain"),
            (Some("text/plain".into()), None)
        );
    }
}
