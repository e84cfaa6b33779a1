//! Control's commands against a sessions table, and the load reports against a real
//! `redis-server` of the test's own ([`LocalRedis`]). Every wait is for a condition, under a
//! timeout.

use liverelay_admission::SessionInfo;
use liverelay_registry::testing::LocalRedis;
use tokio::sync::oneshot;

use super::*;

const WAIT: Duration = Duration::from_secs(10);
const POD: &str = "edge-a";

fn session(client_id: u64, role: SessionRole, stream: &str, tag: Option<&str>) -> SessionInfo {
    SessionInfo {
        client_id,
        addr: "127.0.0.1:1935".parse().unwrap(),
        role,
        app: "live".into(),
        name: stream.into(),
        tag: tag.map(String::from),
    }
}

/// What each registered session heard: `Some(reason)` if it was kicked.
fn kicked(receivers: &mut [oneshot::Receiver<String>]) -> Vec<Option<String>> {
    receivers.iter_mut().map(|r| r.try_recv().ok()).collect()
}

fn drop_command(target: DropTarget, pod: Option<&str>, client_id: Option<u64>) -> ClusterCommand {
    ClusterCommand::Drop {
        app: "live".into(),
        name: "cam".into(),
        target,
        pod: pod.map(String::from),
        client_id,
    }
}

#[test]
fn a_revoked_key_ends_only_the_publishes_tagged_with_it() {
    let sessions = Sessions::default();
    let entries = [
        session(1, SessionRole::Publisher, "cam", Some("key-1")),
        // A player admitted with the same tag is not a publish of the key.
        session(1, SessionRole::Viewer, "cam", Some("key-1")),
        session(2, SessionRole::Publisher, "other", Some("key-2")),
        session(3, SessionRole::Publisher, "third", None),
        session(4, SessionRole::Publisher, "fourth", Some("key-1")),
    ];
    let (_guards, mut receivers): (Vec<_>, Vec<_>) =
        entries.into_iter().map(|s| sessions.register(s)).unzip();

    apply(
        &ClusterCommand::KeyRevoked {
            key_id: "key-1".into(),
        },
        POD,
        &sessions,
        None,
    );

    let revoked = Some("stream key revoked".to_string());
    assert_eq!(
        kicked(&mut receivers),
        [revoked.clone(), None, None, None, revoked]
    );
    assert_eq!(
        sessions.list().len(),
        3,
        "the kicked sessions left the table"
    );
}

#[test]
fn a_drop_ends_the_chosen_sessions_of_one_stream_on_the_chosen_pod() {
    let sessions = Sessions::default();
    let entries = [
        session(1, SessionRole::Publisher, "cam", None),
        session(2, SessionRole::Viewer, "cam", None),
        session(3, SessionRole::Viewer, "cam", None),
        session(4, SessionRole::Viewer, "other", None),
        session(5, SessionRole::Publisher, "other", None),
    ];
    let (_guards, mut receivers): (Vec<_>, Vec<_>) =
        entries.into_iter().map(|s| sessions.register(s)).unzip();
    let dropped = Some("dropped by an operator".to_string());

    // Meant for another pod: nothing happens here.
    apply(
        &drop_command(DropTarget::All, Some("edge-b"), None),
        POD,
        &sessions,
        None,
    );
    assert_eq!(kicked(&mut receivers), [None, None, None, None, None]);

    // One viewer, by client id, on this pod.
    apply(
        &drop_command(DropTarget::Viewers, Some(POD), Some(3)),
        POD,
        &sessions,
        None,
    );
    assert_eq!(
        kicked(&mut receivers),
        [None, None, dropped.clone(), None, None]
    );

    // The stream's viewers, on every pod: not its publisher, not another stream's viewers.
    apply(
        &drop_command(DropTarget::Viewers, None, None),
        POD,
        &sessions,
        None,
    );
    assert_eq!(
        kicked(&mut receivers),
        [None, dropped.clone(), None, None, None]
    );

    apply(
        &drop_command(DropTarget::Publisher, None, None),
        POD,
        &sessions,
        None,
    );
    assert_eq!(kicked(&mut receivers), [dropped, None, None, None, None]);
    assert_eq!(
        sessions.list().len(),
        2,
        "only the other stream's sessions remain"
    );
}

#[test]
fn a_drop_of_all_ends_publisher_and_viewers() {
    let sessions = Sessions::default();
    let entries = [
        session(1, SessionRole::Publisher, "cam", None),
        session(2, SessionRole::Viewer, "cam", None),
        session(3, SessionRole::Viewer, "other", None),
    ];
    let (_guards, mut receivers): (Vec<_>, Vec<_>) =
        entries.into_iter().map(|s| sessions.register(s)).unzip();
    apply(
        &drop_command(DropTarget::All, None, None),
        POD,
        &sessions,
        None,
    );
    let dropped = Some("dropped by an operator".to_string());
    assert_eq!(kicked(&mut receivers), [dropped.clone(), dropped, None]);
}

fn reporter(
    redis: RedisConn,
    hub: &Hub,
    sessions: &Sessions,
    hls: Option<HlsViewers>,
    every: Duration,
) -> (LoadReporter, watch::Sender<Phase>) {
    let (phase, phase_rx) = watch::channel(Phase::Running);
    let reporter = LoadReporter {
        redis,
        pod: POD.into(),
        role: Role::Edge,
        rtmp_url: "rtmp://10.0.0.7:1935".into(),
        every,
        hub: hub.clone(),
        sessions: sessions.clone(),
        hls,
        phase: phase_rx,
    };
    (reporter, phase)
}

async fn written(reporting: &mut Reporting, draining: bool) {
    tokio::time::timeout(WAIT, reporting.written.wait_for(|w| *w == Some(draining)))
        .await
        .expect("a report reached Redis within the wait")
        .unwrap();
}

#[tokio::test]
async fn the_load_report_counts_rtmp_sessions_and_hls_sessions_per_stream() {
    let redis = LocalRedis::start("load").await;
    let conn = redis.conn().await;
    let hub = Hub::new(Default::default());
    let sessions = Sessions::default();
    let _publisher = hub.publish(liverelay_types::StreamId::new("live", "cam"));
    // A player waiting for a stream nobody publishes: in the hub, not live.
    let _waiting = hub.play(liverelay_types::StreamId::new("live", "waiting"));
    // A relay subscriber is a hub viewer but no RTMP session: not counted.
    let _relay = hub.play(liverelay_types::StreamId::new("live", "cam"));
    let _guards: Vec<_> = [
        session(1, SessionRole::Publisher, "cam", None),
        session(2, SessionRole::Viewer, "cam", None),
        session(3, SessionRole::Viewer, "cam", None),
        session(4, SessionRole::Viewer, "waiting", None),
    ]
    .into_iter()
    .map(|s| sessions.register(s))
    .collect();
    // HLS sessions: two clients of the show (its packaging's one hub viewer is no session),
    // one of a stream only HLS clients watch here.
    let hls = HlsViewers::new(WAIT, 100, &Default::default());
    let hls_client = |stream: &str, last: u8| {
        let key = liverelay_types::StreamId::new("live", stream);
        let ok = axum::response::IntoResponse::into_response("#EXTM3U\n");
        hls.answered(&key, std::net::IpAddr::from([10, 0, 0, last]), None, ok);
    };
    hls_client("cam", 1);
    hls_client("cam", 2);
    hls_client("hls-only", 1);

    let (reporter, _phase) = reporter(
        conn.clone(),
        &hub,
        &sessions,
        Some(hls.clone()),
        Duration::from_secs(3600),
    );
    let mut reporting = reporter.spawn();
    written(&mut reporting, false).await;

    let reports = NodeReports::new(conn).list().await.unwrap();
    assert_eq!(reports.len(), 1, "{reports:?}");
    let report = &reports[0];
    assert_eq!(
        (report.pod.as_str(), report.role, report.rtmp_url.as_str()),
        (POD, Role::Edge, "rtmp://10.0.0.7:1935")
    );
    assert!(!report.draining);
    assert_eq!((report.publishers, report.viewers), (1, 6));
    let streams: Vec<(&str, u64, bool)> = report
        .streams
        .iter()
        .map(|(k, l)| (k.as_str(), l.viewers, l.live))
        .collect();
    assert_eq!(
        streams,
        [
            ("live/cam", 4, true),
            ("live/hls-only", 1, false),
            ("live/waiting", 1, false)
        ],
        "viewers per stream from the sessions; live from the hub"
    );
}

#[tokio::test]
async fn draining_is_reported_at_once_and_leaving_withdraws_the_report() {
    let redis = LocalRedis::start("drain").await;
    let conn = redis.conn().await;
    let hub = Hub::new(Default::default());
    let sessions = Sessions::default();
    let reports = NodeReports::new(conn.clone());
    // An interval far longer than the test: only the phase change can bring a new report.
    let (reporter, phase) = reporter(conn, &hub, &sessions, None, Duration::from_secs(3600));
    let mut reporting = reporter.spawn();
    written(&mut reporting, false).await;
    assert!(!reports.list().await.unwrap()[0].draining);

    phase.send_replace(Phase::Draining);
    reporting.draining_reported(WAIT).await;
    assert_eq!(
        *reporting.written.borrow(),
        Some(true),
        "draining reached Redis before the interval came round"
    );
    let listed = reports.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].draining, "Redis says draining: {listed:?}");

    reporting.leave(WAIT).await;
    assert_eq!(
        reports.list().await.unwrap(),
        [],
        "a leaving pod's report is gone, not left to expire"
    );
}
