//! The one rule for app and stream names, wherever they enter: RTMP `connect`/`publish`/`play`,
//! HTTP paths and the control API. A name becomes part of Redis keys, pub/sub messages, node
//! reports, logs and metric labels, so it is checked before anything else sees it; an invalid
//! name is described by its length only, never echoed.

/// nginx-rtmp's limit, and the default of `rtmp.max_name_len`.
pub const DEFAULT_MAX_NAME_LEN: usize = 256;

/// Characters a name may not hold: they separate path segments and query arguments.
const RESERVED: [char; 4] = ['/', '?', '&', '#'];

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("name is empty")]
    Empty,
    #[error("name of {len} bytes is longer than {limit}")]
    TooLong { len: usize, limit: usize },
    #[error("name contains a control character")]
    ControlCharacter,
    #[error("name contains '/', '?', '&' or '#'")]
    Reserved,
}

/// Checks an app or stream name (without its query string) against the rule: non-empty, at
/// most `max_len` bytes, no control characters and none of `/ ? & #`.
pub fn check_name(name: &str, max_len: usize) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > max_len {
        return Err(NameError::TooLong {
            len: name.len(),
            limit: max_len,
        });
    }
    if name.chars().any(char::is_control) {
        return Err(NameError::ControlCharacter);
    }
    if name.contains(RESERVED) {
        return Err(NameError::Reserved);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_one_rule() {
        assert_eq!(check_name("live", 256), Ok(()));
        assert_eq!(check_name("cam-1.ü_", 256), Ok(()));
        assert_eq!(check_name(&"a".repeat(256), 256), Ok(()));
        assert_eq!(
            check_name(&"a".repeat(257), 256),
            Err(NameError::TooLong {
                len: 257,
                limit: 256
            })
        );
        assert_eq!(
            check_name("ab", 1),
            Err(NameError::TooLong { len: 2, limit: 1 })
        );
        assert_eq!(check_name("", 256), Err(NameError::Empty));
        for bad in ["a\nb", "a\0", "\u{7f}", "x\u{85}"] {
            assert_eq!(
                check_name(bad, 256),
                Err(NameError::ControlCharacter),
                "{bad:?}"
            );
        }
        for bad in ["a/b", "a?b", "a&b", "a#b"] {
            assert_eq!(check_name(bad, 256), Err(NameError::Reserved), "{bad:?}");
        }
        // The error never carries the name itself.
        let shown = check_name(&"x".repeat(10_000), 256)
            .unwrap_err()
            .to_string();
        assert!(!shown.contains("xx"), "{shown}");
    }
}
