//! A stream's identity inside liverelay: the application and the stream name, written
//! `app/name` wherever it travels as one string (logs, the registry's index, relay specs).
//!
//! Not to be confused with a secret *publish key* (what an encoder calls its "stream key"),
//! which `liverelay-auth` maps to a `StreamId`.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId {
    pub app: String,
    pub name: String,
}

impl StreamId {
    pub fn new(app: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            app: app.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.app, self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidStreamId(pub String);

impl fmt::Display for InvalidStreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` is not `app/name`", self.0)
    }
}

impl std::error::Error for InvalidStreamId {}

/// `app/name`, split at the first `/` (an app has no `/`; a stream name may).
impl FromStr for StreamId {
    type Err = InvalidStreamId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('/') {
            Some((app, name)) if !app.is_empty() && !name.is_empty() => Ok(Self::new(app, name)),
            _ => Err(InvalidStreamId(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_as_app_slash_name() {
        let id = StreamId::new("live", "cam/1");
        assert_eq!(id.to_string(), "live/cam/1");
        assert_eq!("live/cam/1".parse::<StreamId>().unwrap(), id);
    }

    #[test]
    fn refuses_a_string_without_both_parts() {
        for bad in ["", "live", "/x", "live/"] {
            assert!(bad.parse::<StreamId>().is_err(), "{bad:?}");
        }
    }
}
