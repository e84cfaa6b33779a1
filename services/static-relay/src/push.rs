//! A push: a hub viewer of the relay's stream whose frames are published to the target URL.
//! The viewer starts at the cached GOP with the sequence headers, so the target gets a
//! decodable stream from the first frame; the push ends (cleanly) when the stream does.

use liverelay_hub::{Hub, ViewerItem};
use liverelay_rtmp_client::{ClientEvent, Error as ClientError};

use crate::spec::RelaySpec;
use crate::supervisor::{Attempt, Failure, Progress, connect};

/// Frames taken from the hub per write.
const BATCH: usize = 128;

pub(crate) struct Push {
    spec: RelaySpec,
    hub: Hub,
}

impl Push {
    pub fn new(spec: RelaySpec, hub: Hub) -> Self {
        Self { spec, hub }
    }
}

impl Attempt for Push {
    async fn run(&mut self, progress: &Progress) -> Result<(), Failure> {
        if !self.hub.is_live(&self.spec.stream) {
            return Ok(());
        }
        let mut client = connect(&self.spec).await?;
        let result = async {
            let stream_id = client.publish(&self.spec.url.name).await?;
            let mut viewer = self
                .hub
                .play(self.spec.stream.clone())
                .map_err(|e| Failure::new("local_play_refused", e.to_string()))?;
            progress.went_live();
            let mut items = Vec::with_capacity(BATCH);
            loop {
                viewer.poll(&mut items, BATCH);
                let mut ended = false;
                for item in items.drain(..) {
                    match item {
                        ViewerItem::Frame(frame) => {
                            client.send_media(stream_id, &frame.media());
                        }
                        ViewerItem::Unpublished => ended = true,
                        ViewerItem::Published => {}
                    }
                }
                // A target that accepted the connection but stopped reading must not hold the
                // relay "live" forever: the stall timeout bounds the writes too. It bounds each
                // write, not the batch: a slow target given a whole GOP at once is not stalled
                // while it keeps reading.
                let stall = self.spec.reconnect.stall_timeout;
                client.flush_within(stall).await.map_err(|e| match e {
                    ClientError::Timeout(_) => Failure::new(
                        "stalled",
                        format!("target read nothing for {} ms", stall.as_millis()),
                    ),
                    e => e.into(),
                })?;
                if ended {
                    return Ok(());
                }
                while let Some(event) = client.try_event() {
                    if let ClientEvent::Status {
                        level,
                        code,
                        description,
                        ..
                    } = event
                        && level == "error"
                    {
                        return Err(Failure::new("rejected", format!("{code} {description}")));
                    }
                }
                progress.report(&client, false);
                tokio::select! {
                    () = viewer.changed() => {}
                    read = client.read() => {
                        if read? == 0 {
                            return Err(Failure::new("closed", "target closed the connection"));
                        }
                    }
                }
            }
        }
        .await;
        progress.report(&client, true);
        result
    }
}
