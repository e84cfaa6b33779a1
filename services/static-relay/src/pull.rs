//! A pull: play the upstream URL and publish what arrives into the local hub as the relay's
//! stream, admitted through the same gate as an RTMP publish (in a cluster: claimed in the
//! registry, so every edge can play it).
//!
//! The local publish outlives single connections: after a gap, the next connection's media
//! restarts the stream's timeline after the last timestamp sent, so viewers stay connected and
//! see monotonic time and the new sequence headers.

use std::sync::Arc;

use liverelay_admission::{Admitted, Asker, Gate, PublishKind};
use liverelay_hub::Publisher;
use liverelay_rtmp_client::{ClientEvent, RtmpClient};
use tokio::time::Instant;
use tracing::info;

use crate::spec::RelaySpec;
use crate::supervisor::{Attempt, Failure, Progress, connect};

pub(crate) struct Pull {
    spec: RelaySpec,
    gate: Arc<Gate>,
    /// The local publish and its registration, kept across connections.
    publisher: Option<Admitted<Publisher>>,
}

impl Pull {
    pub fn new(spec: RelaySpec, gate: Arc<Gate>) -> Self {
        Self {
            spec,
            gate,
            publisher: None,
        }
    }

    /// A connection's first media: continue the local publish on a new timeline, or start it.
    async fn start_source(&mut self) -> Result<(), Failure> {
        if let Some(publisher) = &mut self.publisher {
            publisher.restart_source();
        } else {
            // The hub slot first: while we hold it no local RTMP publisher can take the name, so
            // the policy's claim never supersedes one of ours.
            let asker = Asker::Local(self.spec.stream.clone());
            let publisher = self
                .gate
                .publish(asker, PublishKind::Live)
                .await
                .map_err(|refused| Failure::new("local_publish_refused", refused.to_string()))?;
            info!(relay = %self.spec.id, stream = %self.spec.stream, "pulled stream published");
            self.publisher = Some(publisher);
        }
        Ok(())
    }

    async fn pump(&mut self, client: &mut RtmpClient, progress: &Progress) -> Result<(), Failure> {
        let stall = self.spec.reconnect.stall_timeout;
        let mut deadline = Instant::now() + stall;
        let mut fresh = true;
        loop {
            while let Some(event) = client.try_event() {
                match event {
                    ClientEvent::Media { media, .. } => {
                        deadline = Instant::now() + stall;
                        if fresh {
                            fresh = false;
                            progress.went_live();
                            self.start_source().await?;
                        }
                        if let Some(publisher) = &mut self.publisher {
                            publisher.push(media);
                        }
                    }
                    ClientEvent::StreamEof(_) => {
                        return Err(Failure::new("unpublished", "upstream sent StreamEOF"));
                    }
                    ClientEvent::Status { code, .. }
                        if code == "NetStream.Play.UnpublishNotify"
                            || code == "NetStream.Play.Stop" =>
                    {
                        return Err(Failure::new("unpublished", code));
                    }
                    ClientEvent::Status {
                        level,
                        code,
                        description,
                        ..
                    } if level == "error" => {
                        return Err(Failure::new("rejected", format!("{code} {description}")));
                    }
                    _ => {}
                }
            }
            progress.report(client, false);
            let withdrawn = async {
                match self.publisher.as_mut() {
                    Some(publisher) => publisher.withdrawn().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                read = client.read() => {
                    if read? == 0 {
                        return Err(Failure::new("closed", "upstream closed the connection"));
                    }
                }
                () = tokio::time::sleep_until(deadline) => {
                    return Err(Failure::new("stalled", format!("no media for {} ms", stall.as_millis())));
                }
                reason = withdrawn => {
                    // Another pod publishes the stream now: give the name up.
                    self.publisher = None;
                    return Err(Failure::new("stream_taken", reason));
                }
            }
        }
    }
}

impl Attempt for Pull {
    async fn run(&mut self, progress: &Progress) -> Result<(), Failure> {
        let mut client = connect(&self.spec).await?;
        let result = match client.play(&self.spec.url.name).await {
            Ok(_) => self.pump(&mut client, progress).await,
            Err(e) => Err(e.into()),
        };
        progress.report(&client, true);
        result
    }
}
