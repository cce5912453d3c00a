//! Znode path rules, exactly as ZooKeeper enforces them (`PathUtils.validatePath`), and small
//! helpers to split a valid path.
//!
//! ZooKeeper checks paths as Java strings, one UTF-16 code unit at a time. Its forbidden range
//! U+D800..U+F8FF covers the surrogates, so every character outside the Basic Multilingual
//! Plane is rejected, as is the private-use area. Offsets in errors are UTF-16 code-unit
//! indexes, as ZooKeeper reports them.

/// Why a path is not a valid znode path. The server answers `BadArguments` for all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
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
    EmptyNodeName { at: usize },
    #[error("relative paths not allowed @{at}")]
    RelativePath { at: usize },
    #[error("invalid character @{at}")]
    InvalidCharacter { at: usize },
}

/// Checks `path` as a znode path. A sequential create is checked as if its sequence suffix
/// were already appended, so `/parent/` is a valid sequential path.
pub fn validate_path(path: &str, is_sequential: bool) -> Result<(), PathError> {
    match is_sequential {
        false => validate(path),
        // The server appends a 10-digit counter; any digit stands for it here.
        true => validate(&format!("{path}1")),
    }
}

fn validate(path: &str) -> Result<(), PathError> {
    // ASCII paths (nearly all) are checked in place; others as UTF-16, as ZooKeeper sees them.
    if path.is_ascii() {
        validate_units(path.as_bytes())
    } else {
        validate_units(&path.encode_utf16().collect::<Vec<u16>>())
    }
}

fn validate_units<T: Copy + Into<u16>>(units: &[T]) -> Result<(), PathError> {
    const SLASH: u16 = b'/' as u16;
    match units {
        [] => return Err(PathError::Empty),
        [first, ..] if (*first).into() != SLASH => return Err(PathError::NotAbsolute),
        [_] => return Ok(()),
        [.., last] if (*last).into() == SLASH => return Err(PathError::TrailingSlash),
        _ => {}
    }
    for at in 1..units.len() {
        let before_before = at.checked_sub(2).map(|index| units[index].into());
        let after = units.get(at + 1).map(|&unit| unit.into());
        check_unit(
            before_before,
            units[at - 1].into(),
            units[at].into(),
            after,
            at,
        )?;
    }
    Ok(())
}

/// Checks the code unit at `at` (never 0) given its neighbours.
fn check_unit(
    before_before: Option<u16>,
    before: u16,
    unit: u16,
    after: Option<u16>,
    at: usize,
) -> Result<(), PathError> {
    const SLASH: u16 = b'/' as u16;
    const DOT: u16 = b'.' as u16;
    // A component ends at a slash or at the end of the path.
    let ends_component = after.is_none_or(|next| next == SLASH);
    match unit {
        0 => Err(PathError::NullCharacter { at }),
        SLASH if before == SLASH => Err(PathError::EmptyNodeName { at }),
        // ".." as a whole component.
        DOT if before == DOT && before_before == Some(SLASH) && ends_component => {
            Err(PathError::RelativePath { at })
        }
        // "." as a whole component.
        DOT if before == SLASH && ends_component => Err(PathError::RelativePath { at }),
        0x0001..=0x001f | 0x007f..=0x009f | 0xd800..=0xf8ff | 0xfff0..=0xffff => {
            Err(PathError::InvalidCharacter { at })
        }
        _ => Ok(()),
    }
}

/// The parent of a valid path: `/` for a top-level node, `None` for the root itself.
pub fn parent_of(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some("/"),
        Some(slash) => Some(&path[..slash]),
        None => None,
    }
}

/// The last component of a valid path (the node's name); empty for the root.
pub fn basename(path: &str) -> &str {
    match path.rfind('/') {
        Some(slash) => &path[slash + 1..],
        None => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(path: &str) -> Result<(), PathError> {
        validate_path(path, false)
    }

    #[test]
    fn root_and_plain_paths_are_valid() {
        for path in [
            "/",
            "/a",
            "/a/b",
            "/zookeeper/config",
            "/.a",
            "/a.",
            "/...",
            "/a/..b",
        ] {
            assert_eq!(check(path), Ok(()), "{path}");
        }
        assert_eq!(check("/caf\u{e9}/\u{4e2d}"), Ok(()));
    }

    #[test]
    fn must_be_absolute_and_non_empty() {
        assert_eq!(check(""), Err(PathError::Empty));
        assert_eq!(check("a"), Err(PathError::NotAbsolute));
        assert_eq!(check("a/b"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn no_trailing_slash_except_root() {
        assert_eq!(check("/a/"), Err(PathError::TrailingSlash));
        assert_eq!(check("//"), Err(PathError::TrailingSlash));
    }

    #[test]
    fn no_empty_node_name() {
        assert_eq!(check("//a"), Err(PathError::EmptyNodeName { at: 1 }));
        assert_eq!(check("/a//b"), Err(PathError::EmptyNodeName { at: 3 }));
    }

    #[test]
    fn no_dot_or_dot_dot_components() {
        assert_eq!(check("/."), Err(PathError::RelativePath { at: 1 }));
        assert_eq!(check("/a/./b"), Err(PathError::RelativePath { at: 3 }));
        assert_eq!(check("/.."), Err(PathError::RelativePath { at: 2 }));
        assert_eq!(check("/a/../b"), Err(PathError::RelativePath { at: 4 }));
        assert_eq!(check("/a/.."), Err(PathError::RelativePath { at: 4 }));
    }

    #[test]
    fn null_character_is_forbidden() {
        assert_eq!(check("/a\0b"), Err(PathError::NullCharacter { at: 2 }));
    }

    #[test]
    fn control_and_reserved_characters_are_forbidden() {
        for c in [
            '\u{1}', '\u{1f}', '\u{7f}', '\u{9f}', '\u{e000}', '\u{f8ff}', '\u{fff0}',
        ] {
            assert_eq!(
                check(&format!("/a{c}")),
                Err(PathError::InvalidCharacter { at: 2 }),
                "{:x}",
                c as u32
            );
        }
        // Neighbours of the forbidden ranges are allowed.
        for c in [' ', '\u{a0}', '\u{d7ff}', '\u{f900}', '\u{ffef}'] {
            assert_eq!(check(&format!("/a{c}")), Ok(()), "{:x}", c as u32);
        }
    }

    #[test]
    fn characters_outside_the_bmp_are_forbidden() {
        // U+1F600 is a surrogate pair in UTF-16; offsets count code units.
        assert_eq!(
            check("/\u{1f600}"),
            Err(PathError::InvalidCharacter { at: 1 })
        );
        assert_eq!(
            check("/\u{4e2d}/x\u{1f600}"),
            Err(PathError::InvalidCharacter { at: 4 })
        );
    }

    #[test]
    fn sequential_paths_are_checked_with_their_suffix() {
        assert_eq!(validate_path("/a/", true), Ok(()));
        assert_eq!(validate_path("/a/lock-", true), Ok(()));
        assert_eq!(validate_path("/a/", false), Err(PathError::TrailingSlash));
        assert_eq!(
            validate_path("/a//", true),
            Err(PathError::EmptyNodeName { at: 3 })
        );
        assert_eq!(validate_path("/a/.", true), Ok(()));
        assert_eq!(validate_path("/a/..", true), Ok(()));
        assert_eq!(validate_path("", true), Err(PathError::NotAbsolute));
    }

    #[test]
    fn parent_and_basename() {
        assert_eq!(parent_of("/"), None);
        assert_eq!(parent_of("/a"), Some("/"));
        assert_eq!(parent_of("/a/b/c"), Some("/a/b"));
        assert_eq!(basename("/"), "");
        assert_eq!(basename("/a"), "a");
        assert_eq!(basename("/a/b/c"), "c");
    }
}
