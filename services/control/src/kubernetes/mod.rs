//! Kubernetes-native relays: the `Relay` custom resource and its reconciler.

pub mod crd;
mod reconciler;

pub use crd::{Relay, crd_yaml};
pub use reconciler::{Context, run};
