//! One control replica reading the webhook queue as a member of the replicas' consumer group.
//!
//! Each tick it takes what it has room for: at start its own unacknowledged entries (it
//! restarted under the same pod id), every few seconds entries another replica has held idle
//! for the takeover time (that replica died), and always new entries. Every entry is handled on
//! its own task: it waits until no earlier entry of its subject is pending in the group (order
//! per stream or key, across replicas), is delivered, then acknowledged. Entries still being
//! delivered are kept (their idle time reset) so a live replica's slow retries are not taken
//! over.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use liverelay_redis::{QueueConsumer, QueuedEvent, WebhookQueue};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::send::Sender;

/// The consumer group every control replica joins.
const GROUP: &str = "webhooks";
/// Entries this replica delivers at once.
const MAX_IN_FLIGHT: usize = 64;
/// How often the queue is read (reads do not block: that would hold the shared connection).
const POLL: Duration = Duration::from_millis(250);
/// How often entries held idle by other replicas are looked for (at most).
const CLAIM_EVERY: Duration = Duration::from_secs(5);
/// How often an entry waiting for an earlier one of its subject looks again.
const ORDER_WAIT: Duration = Duration::from_millis(200);

type InFlight = Arc<Mutex<HashSet<String>>>;

/// `takeover`: an entry held this long without being kept is another replica's to take over
/// (`control.webhook_takeover_secs`).
pub(super) async fn run(queue: WebhookQueue, name: String, sender: Sender, takeover: Duration) {
    let claim_every = CLAIM_EVERY.min(takeover / 2);
    // Well within the takeover time, so a live replica keeps what it delivers.
    let keep_every = takeover / 3;
    let consumer = Arc::new(join(&queue, &name).await);
    info!(
        consumer = name,
        group = GROUP,
        "delivering webhooks from the queue"
    );
    let sender = Arc::new(sender);
    let in_flight = InFlight::default();
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut tasks = JoinSet::new();
    let mut own_pending = true;
    let mut last_claim: Option<Instant> = None;
    let mut last_keep = Instant::now();
    let mut failing = false;
    loop {
        while tasks.try_join_next().is_some() {}
        let mut reads = Vec::new();
        if own_pending {
            reads.push(consumer.read_own_pending(permits.available_permits()).await);
            own_pending = reads.last().is_some_and(Result::is_err);
        }
        if last_claim.is_none_or(|t| t.elapsed() >= claim_every) {
            last_claim = Some(Instant::now());
            let room = permits.available_permits();
            reads.push(consumer.claim_stale(takeover, room).await);
        }
        let room = permits.available_permits();
        if room > 0 {
            reads.push(consumer.read_new(room).await);
        }
        if last_keep.elapsed() >= keep_every {
            last_keep = Instant::now();
            let held: Vec<String> = in_flight.lock().unwrap().iter().cloned().collect();
            reads.push(consumer.keep(&held).await.map(|()| Vec::new()));
        }
        let mut error = None;
        for read in reads {
            match read {
                Ok(events) => {
                    for event in events {
                        if !in_flight.lock().unwrap().insert(event.entry.clone()) {
                            continue;
                        }
                        // No room: it stays pending under this name and is taken over later.
                        let Ok(permit) = permits.clone().try_acquire_owned() else {
                            in_flight.lock().unwrap().remove(&event.entry);
                            continue;
                        };
                        tasks.spawn(handle(
                            consumer.clone(),
                            sender.clone(),
                            event,
                            in_flight.clone(),
                            permit,
                        ));
                    }
                }
                Err(e) => error = Some(e),
            }
        }
        // Said once per outage, not every tick.
        match &error {
            Some(e) if !failing => warn!(error = %e, "cannot read the webhook queue"),
            None if failing => info!("reading the webhook queue again"),
            _ => {}
        }
        failing = error.is_some();
        tokio::time::sleep(POLL).await;
    }
}

/// Joins the group, waiting for Redis as long as it takes.
async fn join(queue: &WebhookQueue, name: &str) -> QueueConsumer {
    loop {
        match queue.consumer(GROUP, name).await {
            Ok(consumer) => return consumer,
            Err(e) => warn!(error = %e, "cannot join the webhook queue; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Delivers one entry once every earlier entry of its subject is done, then acknowledges it.
async fn handle(
    consumer: Arc<QueueConsumer>,
    sender: Arc<Sender>,
    queued: QueuedEvent,
    in_flight: InFlight,
    _permit: OwnedSemaphorePermit,
) {
    let mut warned = false;
    loop {
        match consumer.earlier_pending(&queued).await {
            Ok(false) => break,
            Ok(true) => {}
            // Once per event: Redis being down would otherwise log every ORDER_WAIT.
            Err(e) if !warned => {
                warned = true;
                warn!(error = %e, id = queued.event.id, "cannot check webhook order; waiting");
            }
            Err(_) => {}
        }
        tokio::time::sleep(ORDER_WAIT).await;
    }
    sender.deliver(&queued.event).await;
    while let Err(e) = consumer.ack(&queued.entry).await {
        warn!(error = %e, id = queued.event.id, "cannot acknowledge webhook event; retrying");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    in_flight.lock().unwrap().remove(&queued.entry);
}
