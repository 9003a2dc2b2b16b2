//! Static mode: bearer tokens listed in a YAML file (`AUTH_TOKENS_FILE`).
//!
//! ```yaml
//! - token: "long random text"      # at least 16 characters
//!   subject: ci-reporter
//!   groups: [team-a]
//! ```
//!
//! The file is re-read when its content changes (a mounted Secret is
//! updated in place), checked every [`RELOAD_EVERY`]; a file that cannot be
//! read or parsed keeps the last good tokens and logs why. Tokens are kept
//! only as SHA-256 digests and looked up by digest: no comparison ever runs
//! over a token's bytes, so the time a lookup takes says nothing about any
//! stored token.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::{Admins, TokenDigest, digest};
use crate::domain::access::Identity;

/// How often the file is checked for a change.
pub const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// The shortest token accepted: shorter ones are guessable.
pub const MIN_TOKEN_CHARS: usize = 16;

/// The tokens of the file, as last read successfully.
#[derive(Debug)]
pub struct StaticTokens {
    path: PathBuf,
    admins: Arc<Admins>,
    current: RwLock<Loaded>,
}

#[derive(Debug, Default)]
struct Loaded {
    /// The file's bytes, to notice a change.
    content: Vec<u8>,
    by_digest: HashMap<TokenDigest, Arc<Identity>>,
}

/// A tokens file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokensFileError {
    #[error("cannot read AUTH_TOKENS_FILE {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("AUTH_TOKENS_FILE {path} is not a usable tokens list: {reason}")]
    Invalid { path: String, reason: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    token: String,
    subject: String,
    #[serde(default)]
    groups: Vec<String>,
}

// === impl StaticTokens ===

impl StaticTokens {
    /// Reads the file: it must exist and be valid at startup.
    pub fn load(path: PathBuf, admins: Admins) -> Result<Arc<Self>, TokensFileError> {
        let admins = Arc::new(admins);
        let content = std::fs::read(&path).map_err(|source| TokensFileError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let by_digest = parse(&path, &content, &admins)?;
        Ok(Arc::new(StaticTokens {
            path,
            admins,
            current: RwLock::new(Loaded { content, by_digest }),
        }))
    }

    /// The identity of the token with this digest.
    pub fn identity(&self, digest: &TokenDigest) -> Option<Arc<Identity>> {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        current.by_digest.get(digest).cloned()
    }

    pub fn admins(&self) -> Arc<Admins> {
        self.admins.clone()
    }

    /// How many tokens are known.
    pub fn len(&self) -> usize {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        current.by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Re-reads the file if its content changed. Returns whether new tokens
    /// took effect; a bad file keeps the current ones.
    pub fn reload(&self) -> Result<bool, TokensFileError> {
        let content = std::fs::read(&self.path).map_err(|source| TokensFileError::Read {
            path: self.path.display().to_string(),
            source,
        })?;
        {
            let current = self.current.read().unwrap_or_else(|e| e.into_inner());
            if current.content == content {
                return Ok(false);
            }
        }
        let parsed = parse(&self.path, &content, &self.admins);
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        match parsed {
            Ok(by_digest) => {
                *current = Loaded { content, by_digest };
                Ok(true)
            }
            Err(e) => {
                // Remember the bad content: it is reported once, not every
                // check, and a fix of it is noticed as a change.
                current.content = content;
                Err(e)
            }
        }
    }

    /// Checks the file every `every` until `stop`.
    pub fn watch(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                match self.reload() {
                    Ok(true) => tracing::info!(
                        path = %self.path.display(),
                        tokens = self.len(),
                        "tokens file re-read"
                    ),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(
                        error = %e,
                        tokens = self.len(),
                        "tokens file not taken; the last good tokens stay in effect"
                    ),
                }
            }
        });
    }
}

fn parse(
    path: &Path,
    content: &[u8],
    admins: &Admins,
) -> Result<HashMap<TokenDigest, Arc<Identity>>, TokensFileError> {
    let invalid = |reason: String| TokensFileError::Invalid {
        path: path.display().to_string(),
        reason,
    };
    let entries: Vec<Entry> = serde_yaml::from_slice(content).map_err(|e| {
        invalid(format!(
            "{e} (expected a list of {{token, subject, groups}})"
        ))
    })?;
    let mut by_digest = HashMap::with_capacity(entries.len());
    for (i, e) in entries.into_iter().enumerate() {
        let at = |what: &str| invalid(format!("entry {} ({:?}): {what}", i + 1, e.subject));
        if e.token.trim() != e.token || e.token.chars().count() < MIN_TOKEN_CHARS {
            return Err(at(&format!(
                "the token must be at least {MIN_TOKEN_CHARS} characters without surrounding spaces"
            )));
        }
        if e.token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(at(
                "the token must not contain spaces or control characters",
            ));
        }
        if e.subject.is_empty() || e.subject.starts_with("group:") {
            return Err(at("the subject must be a name (groups go in groups)"));
        }
        if e.groups
            .iter()
            .any(|g| g.is_empty() || g.starts_with("group:"))
        {
            return Err(at("a group must be a bare name (no group: prefix)"));
        }
        let identity = Arc::new(admins.identity(e.subject.clone(), e.groups.clone()));
        if by_digest.insert(digest(&e.token), identity).is_some() {
            return Err(at("the same token is listed twice"));
        }
    }
    Ok(by_digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "
- token: reporter-token-0123456789
  subject: ci-reporter
  groups: [team-a]
- token: root-token-0123456789abc
  subject: root
";

    fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
        let path = dir.path().join("tokens.yaml");
        if let Err(e) = std::fs::write(&path, text) {
            panic!("cannot write {}: {e}", path.display());
        }
        path
    }

    fn load(dir: &tempfile::TempDir, text: &str) -> Result<Arc<StaticTokens>, TokensFileError> {
        StaticTokens::load(write(dir, text), Admins::new(vec!["root".into()]))
    }

    #[test]
    fn tokens_map_to_identities_and_admins() -> Result<(), TokensFileError> {
        let dir = tempfile::tempdir().map_err(|source| TokensFileError::Read {
            path: "tempdir".into(),
            source,
        })?;
        let tokens = load(&dir, GOOD)?;
        let who = tokens.identity(&digest("reporter-token-0123456789"));
        assert!(
            matches!(&who, Some(w) if w.subject == "ci-reporter" && w.groups == ["team-a"] && !w.admin)
        );
        assert!(matches!(tokens.identity(&digest("root-token-0123456789abc")), Some(w) if w.admin));
        assert!(
            tokens
                .identity(&digest("reporter-token-012345678"))
                .is_none()
        );
        Ok(())
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("no tempdir");
        };
        for (text, reason) in [
            ("token: x", "expected a list"),
            ("- token: short\n  subject: a\n", "at least 16"),
            (
                "- token: 0123456789abcdefgh\n  subject: group:a\n",
                "subject",
            ),
            (
                "- token: 0123456789abcdefgh\n  subject: a\n  groups: ['']\n",
                "group",
            ),
            (
                "- token: 0123456789abcdefgh\n  subject: a\n- token: 0123456789abcdefgh\n  subject: b\n",
                "twice",
            ),
            (
                "- token: 0123456789abcdefgh\n  subject: a\n  role: admin\n",
                "unknown field",
            ),
        ] {
            match load(&dir, text) {
                Err(e) => assert!(e.to_string().contains(reason), "{text}: {e}"),
                Ok(_) => panic!("accepted {text:?}"),
            }
        }
    }

    #[test]
    fn a_changed_file_is_taken_and_a_broken_one_keeps_the_last_good() -> Result<(), TokensFileError>
    {
        let dir = tempfile::tempdir().map_err(|source| TokensFileError::Read {
            path: "tempdir".into(),
            source,
        })?;
        let tokens = load(&dir, GOOD)?;
        assert!(!tokens.reload()?, "unchanged content is not a change");

        write(
            &dir,
            "- token: rotated-token-0123456789\n  subject: ci-reporter\n",
        );
        assert!(tokens.reload()?);
        assert!(
            tokens
                .identity(&digest("reporter-token-0123456789"))
                .is_none()
        );
        assert!(
            tokens
                .identity(&digest("rotated-token-0123456789"))
                .is_some()
        );

        write(&dir, "- token: [broken\n");
        assert!(tokens.reload().is_err());
        assert!(
            tokens
                .identity(&digest("rotated-token-0123456789"))
                .is_some()
        );
        // Reported once: the same bad content is no news.
        assert!(!tokens.reload()?);

        write(&dir, GOOD);
        assert!(tokens.reload()?);
        assert_eq!(tokens.len(), 2);
        Ok(())
    }
}
