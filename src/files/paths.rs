//! Paths inside a sandbox: absolute, no NUL, no `..`; `.` and repeated slashes are folded.

use crate::error::{AppError, AppResult, ErrorCode};

const MAX_PATH_BYTES: usize = 4096;

/// A checked, normalised absolute path (`/` or `/a/b`, never a trailing slash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxPath(String);

impl SandboxPath {
    pub fn parse(raw: &str) -> AppResult<Self> {
        let invalid = |why: &str| AppError::new(ErrorCode::InvalidPath, format!("`{}` is not a usable path: {why}.", raw.escape_debug()));
        if raw.contains('\0') {
            return Err(invalid("it contains a NUL byte"));
        }
        if raw.len() > MAX_PATH_BYTES {
            return Err(invalid("it is longer than 4096 bytes"));
        }
        if !raw.starts_with('/') {
            return Err(invalid("paths must be absolute, like /workspace/notes.txt"));
        }
        let mut parts = Vec::new();
        for part in raw.split('/') {
            match part {
                "" | "." => {}
                ".." => return Err(invalid("`..` is not allowed")),
                other => parts.push(other),
            }
        }
        Ok(SandboxPath(format!("/{}", parts.join("/"))))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the path is `dir` or inside it.
    pub fn is_within(&self, dir: &str) -> bool {
        self.0 == dir || self.0.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
    }

    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }

    /// The directory holding this path and the last component; `None` for `/`.
    pub fn split(&self) -> Option<(SandboxPath, &str)> {
        let (parent, name) = self.0.rsplit_once('/')?;
        if name.is_empty() {
            return None;
        }
        let parent = if parent.is_empty() { "/".to_owned() } else { parent.to_owned() };
        Some((SandboxPath(parent), name))
    }

    pub fn join(&self, name: &str) -> AppResult<SandboxPath> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(AppError::new(ErrorCode::InvalidPath, format!("`{}` is not a file name (no slashes, not . or ..).", name.escape_debug())));
        }
        SandboxPath::parse(&format!("{}/{}", self.0.trim_end_matches('/'), name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_rejects() {
        assert_eq!(SandboxPath::parse("/workspace//a/./b/").unwrap().as_str(), "/workspace/a/b");
        assert_eq!(SandboxPath::parse("/").unwrap().as_str(), "/");
        for bad in ["relative/x", "", "/a/../etc/passwd", "/..", "/a\0b", "./x"] {
            assert!(SandboxPath::parse(bad).is_err(), "{bad:?}");
        }
        assert!(SandboxPath::parse(&format!("/{}", "a".repeat(5000))).is_err());
    }

    #[test]
    fn splits_and_joins() {
        let p = SandboxPath::parse("/workspace/notes.txt").unwrap();
        let (dir, name) = p.split().unwrap();
        assert_eq!((dir.as_str(), name), ("/workspace", "notes.txt"));
        assert_eq!(SandboxPath::parse("/top").unwrap().split().unwrap().0.as_str(), "/");
        assert!(SandboxPath::parse("/").unwrap().split().is_none());
        assert_eq!(dir.join("x.md").unwrap().as_str(), "/workspace/x.md");
        assert!(dir.join("../x").is_err());
        assert!(dir.join("..").is_err());
        assert!(dir.join("").is_err());
    }
}
