//! Tasks whose life is tied to a value's.

use tokio::task::{AbortHandle, JoinHandle};

/// Aborts the tasks it holds when dropped: a background task (a heartbeat, an updater) then
/// lives exactly as long as the thing it serves, whichever way that ends.
#[derive(Debug, Default)]
pub struct AbortOnDrop(Vec<AbortHandle>);

impl AbortOnDrop {
    pub fn new<T>(task: &JoinHandle<T>) -> Self {
        Self(vec![task.abort_handle()])
    }

    pub fn push<T>(&mut self, task: &JoinHandle<T>) {
        self.0.push(task.abort_handle());
    }
}

impl From<Vec<AbortHandle>> for AbortOnDrop {
    fn from(handles: Vec<AbortHandle>) -> Self {
        Self(handles)
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.iter().for_each(AbortHandle::abort);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dropping_the_guard_stops_the_task() {
        let task = tokio::spawn(std::future::pending::<()>());
        let guard = AbortOnDrop::new(&task);
        drop(guard);
        assert!(task.await.unwrap_err().is_cancelled());
    }
}
