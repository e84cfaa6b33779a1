//! The role a liverelay process runs (`liverelay <role>`), written in lower case wherever it
//! travels as text (metrics' `role` label, load reports in Redis, logs).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Standalone,
    Ingest,
    Edge,
    Control,
}

impl Role {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Standalone => "standalone",
            Self::Ingest => "ingest",
            Self::Edge => "edge",
            Self::Control => "control",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_is_the_same_everywhere() {
        for role in [Role::Standalone, Role::Ingest, Role::Edge, Role::Control] {
            let json = serde_json::to_string(&role).unwrap();
            assert_eq!(json, format!("\"{role}\""));
        }
    }
}
