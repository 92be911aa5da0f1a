//! What the crawler may follow: URLs normalised (fragment dropped, only
//! http and https), the scope (the seeds' hosts, or the seeds' URL
//! prefixes), and the trap guard (a page limit per path pattern, so
//! `?page=1`, `?page=2`, … or `/2024/01/…` calendars stop after a few).

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use url::Url;

use crate::error::CrawlError;

/// How far from the seeds the crawler may go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScopeKind {
    /// Any page on a seed's host (scheme, host and port).
    #[default]
    Host,
    /// Pages whose URL starts with a seed's URL up to its last `/`.
    Prefix,
}

impl ScopeKind {
    pub const ALL: [ScopeKind; 2] = [ScopeKind::Host, ScopeKind::Prefix];

    pub fn name(self) -> &'static str {
        match self {
            ScopeKind::Host => "host",
            ScopeKind::Prefix => "prefix",
        }
    }
}

impl std::str::FromStr for ScopeKind {
    type Err = CrawlError;
    fn from_str(s: &str) -> Result<ScopeKind, CrawlError> {
        match s {
            "host" => Ok(ScopeKind::Host),
            "prefix" => Ok(ScopeKind::Prefix),
            other => Err(CrawlError::UnknownScope(other.to_string())),
        }
    }
}

/// Why a link is not followed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkRefusal {
    /// `mailto:`, `javascript:`, `ftp:`, `data:`…
    NotHttp(String),
    Unparsable(String),
}

/// A link as the crawler keeps it: absolute, http(s), without fragment.
pub fn normalize(base: &Url, href: &str) -> Result<Url, LinkRefusal> {
    let href = href.trim();
    let mut url = base
        .join(href)
        .map_err(|e| LinkRefusal::Unparsable(format!("{href}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(LinkRefusal::NotHttp(url.scheme().to_string()));
    }
    url.set_fragment(None);
    Ok(url)
}

/// Parses a seed URL as a person typed it (`example.com/docs` gets
/// `https://`), naming what is wrong when it cannot be crawled.
pub fn parse_seed(text: &str) -> Result<Url, CrawlError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(CrawlError::EmptySeed);
    }
    let with_scheme = if text.contains("://") {
        text.to_string()
    } else {
        // Without a scheme only something that looks like a host is taken
        // (`docs.rs/…`, `localhost:8000`), with https.
        let host = text.split('/').next().unwrap_or("");
        if !(host.contains('.') || host.contains(':') || host == "localhost") {
            return Err(CrawlError::NotAUrl { text: text.into() });
        }
        format!("https://{text}")
    };
    let mut url = Url::parse(&with_scheme).map_err(|source| CrawlError::UnparsableSeed {
        text: text.into(),
        source,
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(CrawlError::NotHttp {
            text: text.into(),
            scheme: url.scheme().into(),
        });
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(CrawlError::NoHost { text: text.into() });
    }
    url.set_fragment(None);
    Ok(url)
}

/// The seeds' scope.
#[derive(Clone, Debug)]
pub struct Scope {
    kind: ScopeKind,
    /// Origins (`http://host:port`) for Host, URL prefixes for Prefix.
    allowed: Vec<String>,
}

impl Scope {
    pub fn new(kind: ScopeKind, seeds: &[Url]) -> Scope {
        let allowed = seeds
            .iter()
            .map(|s| match kind {
                ScopeKind::Host => origin(s),
                ScopeKind::Prefix => {
                    let text = s.as_str();
                    let path_end = text.find('?').unwrap_or(text.len());
                    let cut = text[..path_end].rfind('/').map_or(path_end, |i| i + 1);
                    text[..cut].to_string()
                }
            })
            .collect();
        Scope { kind, allowed }
    }

    pub fn contains(&self, url: &Url) -> bool {
        match self.kind {
            ScopeKind::Host => self.allowed.contains(&origin(url)),
            ScopeKind::Prefix => self.allowed.iter().any(|p| url.as_str().starts_with(p)),
        }
    }
}

/// `scheme://host[:port]` of a URL.
pub fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// The pattern a URL counts against: its host and path with runs of
/// digits replaced by `N`, and its query's keys without their values.
pub fn path_pattern(url: &Url) -> String {
    let mut pattern = String::new();
    pattern.push_str(url.host_str().unwrap_or(""));
    let mut in_digits = false;
    for c in url.path().chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                pattern.push('N');
            }
            in_digits = true;
        } else {
            in_digits = false;
            pattern.push(c);
        }
    }
    if url.query().is_some() {
        let mut keys: Vec<String> = url.query_pairs().map(|(k, _)| k.into_owned()).collect();
        keys.sort();
        keys.dedup();
        pattern.push('?');
        pattern.push_str(&keys.join("&"));
    }
    pattern
}

/// Counts URLs per path pattern; refuses one past the limit. Only URLs
/// with a query or a number in their path count (plain pages are not a
/// trap, however many a site has).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TrapGuard {
    pub counts: HashMap<String, usize>,
}

impl TrapGuard {
    /// Whether `url` may be queued; counts it when it may.
    pub fn admit(&mut self, url: &Url, limit: usize) -> bool {
        let numbered = url.query().is_some() || url.path().chars().any(|c| c.is_ascii_digit());
        if !numbered || limit == 0 {
            return true;
        }
        let count = self.counts.entry(path_pattern(url)).or_default();
        if *count >= limit {
            return false;
        }
        *count += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn links_lose_fragments_and_only_http_is_followed() {
        let base = u("http://a.test/docs/index.html");
        assert_eq!(
            normalize(&base, "intro.html#part").unwrap().as_str(),
            "http://a.test/docs/intro.html"
        );
        assert!(matches!(
            normalize(&base, "mailto:x@a.test"),
            Err(LinkRefusal::NotHttp(_))
        ));
        assert!(matches!(
            normalize(&base, "javascript:void(0)"),
            Err(LinkRefusal::NotHttp(_))
        ));
    }

    #[test]
    fn host_and_prefix_scopes() {
        let seed = u("http://a.test:8080/docs/index.html");
        let host = Scope::new(ScopeKind::Host, std::slice::from_ref(&seed));
        assert!(host.contains(&u("http://a.test:8080/blog/")));
        assert!(!host.contains(&u("http://a.test:8081/docs/")));
        assert!(!host.contains(&u("http://b.test:8080/docs/")));
        let prefix = Scope::new(ScopeKind::Prefix, &[seed]);
        assert!(prefix.contains(&u("http://a.test:8080/docs/x/y.html")));
        assert!(!prefix.contains(&u("http://a.test:8080/blog/")));
    }

    #[test]
    fn query_traps_are_limited_per_pattern() {
        let mut guard = TrapGuard::default();
        let admitted = (0..10)
            .filter(|i| guard.admit(&u(&format!("http://a.test/list?page={i}")), 3))
            .count();
        assert_eq!(admitted, 3);
        assert!(guard.admit(&u("http://a.test/list?sort=1"), 3));
        assert!(guard.admit(&u("http://a.test/plain/page"), 3));
        assert_eq!(
            path_pattern(&u("http://a.test/2024/01/x?b=1&a=2")),
            "a.test/N/N/x?a&b"
        );
    }

    #[test]
    fn seeds_are_checked() {
        assert!(parse_seed("").is_err());
        assert!(
            parse_seed("htp//x")
                .unwrap_err()
                .to_string()
                .contains("not a URL")
        );
        assert!(
            parse_seed("ftp://a.test/")
                .unwrap_err()
                .to_string()
                .contains("ftp")
        );
        assert!(
            "hostt"
                .parse::<ScopeKind>()
                .unwrap_err()
                .to_string()
                .contains("use host or prefix")
        );
        assert_eq!(
            parse_seed("a.test/docs").unwrap().as_str(),
            "https://a.test/docs"
        );
    }
}
