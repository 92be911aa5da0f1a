//! robots.txt: fetched once per origin (the text is kept in the crawl's
//! state, so a resumed crawl does not ask again), matched for the
//! `cllm-crawl` agent with `texting_robots`, Crawl-delay honoured.
//!
//! As the robots exclusion standard (RFC 9309) says: a missing file (4xx)
//! allows everything; a server error or an unreachable file disallows
//! everything on that origin.

use serde::{Deserialize, Serialize};
use texting_robots::Robot;

use super::fetch::ROBOTS_AGENT;

/// What an origin's robots.txt said, as kept in the state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RobotsText {
    /// No robots.txt (4xx): everything allowed.
    Missing,
    /// Server error or unreachable: nothing allowed.
    Unreachable(String),
    /// The file's text.
    Text(String),
}

/// The rules of one origin.
pub struct Rules {
    robot: Option<Robot>,
    deny_all: bool,
    /// Why robots.txt could not be read, when it could not.
    unreachable: Option<String>,
}

impl Rules {
    pub fn new(text: &RobotsText) -> Rules {
        match text {
            RobotsText::Missing => Rules {
                robot: None,
                deny_all: false,
                unreachable: None,
            },
            RobotsText::Unreachable(why) => Rules {
                robot: None,
                deny_all: true,
                unreachable: Some(why.clone()),
            },
            RobotsText::Text(t) => Rules {
                // A file texting_robots cannot read is treated as missing.
                robot: Robot::new(ROBOTS_AGENT, t.as_bytes()).ok(),
                deny_all: false,
                unreachable: None,
            },
        }
    }

    pub fn allowed(&self, url: &str) -> bool {
        if self.deny_all {
            return false;
        }
        self.robot.as_ref().is_none_or(|r| r.allowed(url))
    }

    /// Why robots.txt could not be read (everything is then disallowed).
    pub fn unreachable(&self) -> Option<&str> {
        self.unreachable.as_deref()
    }

    /// Crawl-delay in seconds, if the file gives one.
    pub fn delay(&self) -> Option<f64> {
        self.robot
            .as_ref()
            .and_then(|r| r.delay)
            .map(f64::from)
            .filter(|d| d.is_finite() && *d >= 0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disallowed_folders_and_crawl_delay() {
        let text = "User-agent: *\nDisallow: /private/\nCrawl-delay: 0.5\n";
        let rules = Rules::new(&RobotsText::Text(text.into()));
        assert!(!rules.allowed("http://a.test/private/x.html"));
        assert!(rules.allowed("http://a.test/public/x.html"));
        assert_eq!(rules.delay(), Some(0.5));
        assert!(Rules::new(&RobotsText::Missing).allowed("http://a.test/private/"));
        assert!(!Rules::new(&RobotsText::Unreachable("503".into())).allowed("http://a.test/"));
    }

    #[test]
    fn our_agent_group_is_used() {
        let text = "User-agent: cllm-crawl\nDisallow: /\n\nUser-agent: *\nDisallow:\n";
        let rules = Rules::new(&RobotsText::Text(text.into()));
        assert!(!rules.allowed("http://a.test/page"));
    }
}
