//! Znode path rules, as ZooKeeper's `PathUtils.validatePath` applies them: absolute, no empty
//! component, no trailing slash except the root, no `.` or `..` component, and none of the
//! characters ZooKeeper forbids.

/// Why a path is not a valid znode path; `at` is the character index, as ZooKeeper reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path length must be > 0")]
    Empty,
    #[error("path must start with / character")]
    NotAbsolute,
    #[error("path must not end with / character")]
    TrailingSlash,
    #[error("null character not allowed @{at}")]
    NullCharacter { at: usize },
    #[error("empty node name specified @{at}")]
    EmptyComponent { at: usize },
    #[error("relative paths not allowed @{at}")]
    Relative { at: usize },
    #[error("invalid character @{at}")]
    InvalidCharacter { at: usize },
}

/// Checks `path`; a sequential create's path is checked as if its suffix were already there.
pub fn validate_path(path: &str, is_sequential: bool) -> Result<(), PathError> {
    if is_sequential {
        return validate_path(&format!("{path}1"), false);
    }
    let chars: Vec<char> = path.chars().collect();
    match chars.as_slice() {
        [] => return Err(PathError::Empty),
        [first, ..] if *first != '/' => return Err(PathError::NotAbsolute),
        [_] => return Ok(()),
        [.., last] if *last == '/' => return Err(PathError::TrailingSlash),
        _ => {}
    }
    for at in 1..chars.len() {
        let c = chars[at];
        let previous = chars[at - 1];
        let component_ends = at + 1 == chars.len() || chars[at + 1] == '/';
        if c == '\0' {
            return Err(PathError::NullCharacter { at });
        }
        if c == '/' && previous == '/' {
            return Err(PathError::EmptyComponent { at });
        }
        if c == '.' && previous == '.' && at >= 2 && chars[at - 2] == '/' && component_ends {
            return Err(PathError::Relative { at });
        }
        if c == '.' && previous == '/' && component_ends {
            return Err(PathError::Relative { at });
        }
        if is_forbidden(c) {
            return Err(PathError::InvalidCharacter { at });
        }
    }
    Ok(())
}

/// Characters ZooKeeper rejects. Java sees characters above U+FFFF as surrogate pairs, which
/// fall in its forbidden range, so they are rejected here too.
fn is_forbidden(c: char) -> bool {
    matches!(c, '\u{1}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{e000}'..='\u{f8ff}')
        || matches!(c, '\u{fff0}'..='\u{ffff}')
        || c as u32 > 0xffff
}

/// The parent of an absolute path; `None` for the root or a path without a slash.
pub fn parent_of(path: &str) -> Option<&str> {
    match path.rfind('/')? {
        0 if path.len() > 1 => Some("/"),
        0 => None,
        index => Some(&path[..index]),
    }
}

/// The last component of a path ("" for the root).
pub fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_paths() {
        for path in [
            "/",
            "/a",
            "/a/b",
            "/a.b",
            "/..a",
            "/a./b",
            "/zookeeper/quota",
            "/é",
        ] {
            assert_eq!(validate_path(path, false), Ok(()), "{path}");
        }
        assert_eq!(validate_path("/seq-", true), Ok(()));
        assert_eq!(validate_path("/dir/", true), Ok(()));
    }

    #[test]
    fn rejects_each_rule() {
        assert_eq!(validate_path("", false), Err(PathError::Empty));
        assert_eq!(validate_path("a", false), Err(PathError::NotAbsolute));
        assert_eq!(validate_path("/a/", false), Err(PathError::TrailingSlash));
        assert_eq!(
            validate_path("/a//b", false),
            Err(PathError::EmptyComponent { at: 3 })
        );
        assert_eq!(
            validate_path("/a/./b", false),
            Err(PathError::Relative { at: 3 })
        );
        assert_eq!(
            validate_path("/a/..", false),
            Err(PathError::Relative { at: 4 })
        );
        assert_eq!(
            validate_path("/.", false),
            Err(PathError::Relative { at: 1 })
        );
        assert_eq!(
            validate_path("/a\0", false),
            Err(PathError::NullCharacter { at: 2 })
        );
        assert_eq!(
            validate_path("/a\u{1}", false),
            Err(PathError::InvalidCharacter { at: 2 })
        );
        assert_eq!(
            validate_path("/\u{9f}", false),
            Err(PathError::InvalidCharacter { at: 1 })
        );
        assert_eq!(
            validate_path("/\u{e000}", false),
            Err(PathError::InvalidCharacter { at: 1 })
        );
        assert_eq!(
            validate_path("/\u{fff0}", false),
            Err(PathError::InvalidCharacter { at: 1 })
        );
        assert_eq!(
            validate_path("/\u{1f600}", false),
            Err(PathError::InvalidCharacter { at: 1 })
        );
        assert_eq!(
            validate_path("/a//", true),
            Err(PathError::EmptyComponent { at: 3 })
        );
    }

    #[test]
    fn parents_and_names() {
        assert_eq!(parent_of("/"), None);
        assert_eq!(parent_of("/a"), Some("/"));
        assert_eq!(parent_of("/a/b"), Some("/a"));
        assert_eq!(basename("/a/b"), "b");
        assert_eq!(basename("/"), "");
    }
}
