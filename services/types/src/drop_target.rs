//! Which sessions of a stream a drop ends: what control's API takes and the pods apply.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DropTarget {
    Publisher,
    Viewers,
    /// Publisher and viewers.
    All,
}
