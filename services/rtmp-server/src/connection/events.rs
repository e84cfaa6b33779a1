//! The session's events, answered: `connect`, publish and play through the admission gate
//! (which decides; this only tells the client and logs), media into the hub, the client's
//! choices into its play.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use liverelay_admission::{Asker, ClientAsk, ClientInfo, PlayArgs};
use liverelay_rtmp::ServerEvent;
use liverelay_rtmp::command::code;
use liverelay_rtmp::session::{ConnectRequest, PlayRequest, PublishRequest};
use liverelay_types::{Refusal, StreamId, unix_ms};
use tracing::{Span, info, warn};

use super::play::Playing;
use super::{CloseReason, Connection, Publishing};
use crate::write::Transport;

/// A command's answer in progress (see [`Connection::handle_event`]).
type Command<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

impl<S: Transport> Connection<S> {
    pub(super) async fn handle_events(&mut self) {
        // Once the connection is refused or closing, queued events are dropped: a refused
        // client causes no more callbacks.
        while self.closing.is_none() {
            // The event is bound only until it is handed on: bound across the `await`, its
            // room (and its request's) would stay in every connection's task.
            let command = match self.session.poll_event() {
                Some(event) => self.handle_event(event),
                None => break,
            };
            if let Some(command) = command {
                command.await;
            }
        }
    }

    /// Acts on `event`; a `connect`, publish or play comes back as the future that answers
    /// it. Boxed: these run once per session, and inline their state would enlarge every
    /// connection's task for its whole life.
    fn handle_event(&mut self, event: ServerEvent) -> Option<Command<'_>> {
        match event {
            ServerEvent::Connect(req) => return Some(Box::pin(self.on_connect(req))),
            ServerEvent::Publish(req) => return Some(Box::pin(self.on_publish(req))),
            ServerEvent::Play(req) => return Some(Box::pin(self.on_play(req))),
            ServerEvent::Media { stream_id, media } => {
                if let Some(p) = self.publishing(stream_id) {
                    p.publisher.push(media);
                }
            }
            ServerEvent::StreamClosed { stream_id } => {
                if self.publishing(stream_id).is_some() {
                    self.publishing = None;
                    info!("unpublished");
                }
                if self.playing(stream_id).is_some() {
                    self.playing = None;
                    info!("play stopped");
                }
            }
            ServerEvent::Pause {
                stream_id, paused, ..
            } => {
                if let Some(p) = self.playing(stream_id) {
                    p.pause(paused);
                }
            }
            ServerEvent::ReceiveAudio { stream_id, enabled } => {
                if let Some(p) = self.playing(stream_id) {
                    p.receive_audio(enabled);
                }
            }
            ServerEvent::ReceiveVideo { stream_id, enabled } => {
                if let Some(p) = self.playing(stream_id) {
                    p.receive_video(enabled);
                }
            }
            ServerEvent::Close => self.closing = Some(CloseReason::ClientClose),
        }
        None
    }

    fn publishing(&mut self, stream_id: u32) -> Option<&mut Publishing> {
        self.publishing
            .as_deref_mut()
            .filter(|p| p.stream_id == stream_id)
    }

    fn playing(&mut self, stream_id: u32) -> Option<&mut Playing> {
        self.playing.as_mut().filter(|p| p.stream_id == stream_id)
    }

    async fn on_connect(&mut self, req: ConnectRequest) {
        Span::current().record("app", req.app.as_str());
        // Without its query: a stream key may ride there.
        let tc_url = req.tc_url.as_deref().unwrap_or("");
        info!(
            app = %req.app,
            tc_url = loggable(tc_url.split_once('?').map_or(tc_url, |(url, _)| url)),
            flash_ver = loggable(req.flash_ver.as_deref().unwrap_or("")),
            handshake = ?self.session.handshake_kind(),
            "connect"
        );
        let client = Arc::new(ClientInfo {
            id: self.id,
            addr: self.peer,
            app: req.app.clone(),
            connect_query: req.query.clone(),
            flash_ver: req.flash_ver.clone(),
            swf_url: req.swf_url.clone(),
            tc_url: req.tc_url.clone(),
            page_url: req.page_url.clone(),
            connected_at_ms: unix_ms(),
        });
        match self.gate.connect(client.clone()).await {
            Ok(moved) => {
                let client = match moved {
                    Some(app) => {
                        info!(from = %req.app, to = %app, "connect moved to another app");
                        Span::current().record("app", app.as_str());
                        Arc::new(ClientInfo {
                            app,
                            ..(*client).clone()
                        })
                    }
                    None => client,
                };
                self.session.accept_connect(&req);
                self.client = Some(client);
            }
            Err(refusal) => {
                warn!(app = %req.app, "connect refused: {}", refusal.description);
                self.session.reject_connect(&req, &refusal.description);
                self.closing = Some(CloseReason::Refused("connect refused"));
            }
        }
    }

    /// The name was checked by the session (`liverelay_rtmp::name`) before this event.
    async fn on_publish(&mut self, req: PublishRequest) {
        if self.publishing.is_some() {
            let status = Refusal {
                code: code::PUBLISH_BAD_NAME,
                description: "already publishing on this connection".into(),
            };
            return self.refuse_publish(&req, None, status, "second publish on one connection");
        }
        let asker = Asker::Client(ClientAsk {
            client: self.client.clone(),
            name: req.name.clone(),
            args: req.query.clone(),
            plays: None,
        });
        match self.gate.publish(asker, req.kind).await {
            Ok(publisher) => {
                let stream = publisher.stream();
                Span::current().record("stream", stream.name.as_str());
                info!(stream = %stream, kind = req.kind.as_str(), "publish started");
                self.session.accept_publish(&req);
                self.publishing = Some(Box::new(Publishing {
                    stream_id: req.stream_id,
                    publisher,
                }));
            }
            Err(refused) => {
                self.refuse_publish(&req, refused.stream(), refused.status(), refused.why());
            }
        }
    }

    /// The name was checked by the session before this event, as for a publish.
    async fn on_play(&mut self, req: PlayRequest) {
        let asker = Asker::Client(ClientAsk {
            client: self.client.clone(),
            name: req.name.clone(),
            args: req.query.clone(),
            plays: Some(&mut self.plays),
        });
        let args = PlayArgs {
            start: req.start,
            duration: req.duration,
            reset: req.reset,
        };
        match self.gate.play(asker, args).await {
            Ok(viewer) => {
                let stream = viewer.stream();
                Span::current().record("stream", stream.name.as_str());
                info!(stream = %stream, live = viewer.is_live(), "play started");
                self.session.accept_play(&req);
                // A second play on this connection replaces the first.
                let watching = self.metrics.viewers.watching("rtmp");
                self.playing = Some(Playing::new(req.stream_id, req.name, viewer, watching));
            }
            Err(refused) => {
                self.refuse_play(&req, refused.stream(), refused.status(), refused.why());
            }
        }
    }

    fn refuse_publish(
        &mut self,
        req: &PublishRequest,
        stream: Option<&StreamId>,
        status: Refusal,
        why: &'static str,
    ) {
        self.session
            .reject_publish(req, status.code, &status.description);
        self.refused("publish", stream, &status, why);
    }

    fn refuse_play(
        &mut self,
        req: &PlayRequest,
        stream: Option<&StreamId>,
        status: Refusal,
        why: &'static str,
    ) {
        self.session
            .reject_play(req, status.code, &status.description);
        self.refused("play", stream, &status, why);
    }

    /// Logs a refused publish or play and closes the connection after the answer. `stream` is
    /// the stream's name inside liverelay when known: the name the client sent may be a secret
    /// stream key and is never logged.
    fn refused(
        &mut self,
        what: &'static str,
        stream: Option<&StreamId>,
        status: &Refusal,
        why: &'static str,
    ) {
        let shown = stream.map(StreamId::to_string);
        warn!(
            stream = shown.as_deref().unwrap_or("-"),
            status = status.code,
            "{what} refused: {}",
            status.description
        );
        self.closing = Some(CloseReason::Refused(why));
    }
}

/// A client-chosen string as a log field: its first 256 characters, control characters
/// escaped, so that it can neither flood the log nor forge lines in it.
fn loggable(s: &str) -> String {
    s.chars().take(256).flat_map(char::escape_debug).collect()
}
