//! The player page in a real browser: Debian's headless chromium, driven by puppeteer-core
//! (tests/browser/watch.mjs), opens `/watch/live/NAME` of a live stream (ffmpeg looping H.264 +
//! AAC with a keyframe every second) and the page's `window.liverelayStats` must show video
//! that plays on: at least 15 s of media in 20 s of wall time, never standing still for more
//! than about a second. For LL-HLS, hls.js must be in low-latency mode and load parts. Play
//! tokens are on: the page must pass its `?token=` on to the media URLs.
//!
//! Skipped (with a message) where /usr/bin/chromium is missing; `make test-deps` installs it,
//! Node.js and the pinned npm packages. A failure keeps the page's screenshot, its console and
//! the samples in a directory whose paths it prints.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;
use support::{
    ChildGuard, Server, TempDir, looping_publisher_of, play_token, sample_flv_1s_gop, spawn_logged,
};

const CHROMIUM: &str = "/usr/bin/chromium";
/// Wall time the page is watched after it starts playing.
const WATCH_SECS: u64 = 20;
/// Media that must have played in that time.
const MIN_PLAYED_SECS: f64 = 15.0;
/// The longest the picture may stand still once playing (samples are 250 ms apart).
const MAX_STILL_MS: f64 = 1250.0;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether the browser is there; the scripts must be, when it is.
fn browser_installed() -> bool {
    if !Path::new(CHROMIUM).exists() {
        eprintln!("SKIPPED: {CHROMIUM} is missing (`make test-deps` installs Debian's chromium)");
        return false;
    }
    for (path, what) in [
        (
            "tests/browser/node_modules/puppeteer-core",
            "puppeteer-core",
        ),
        ("player/dist/hls.min.js", "the player scripts"),
    ] {
        assert!(
            repo().join(path).exists(),
            "{what} not installed: run `make test-deps` (it runs `make player browser-tests`)"
        );
    }
    true
}

/// The play-token secret of the servers here: every media request needs its token, so a page
/// that did not pass `?token=` on would not play.
const SECRET: &str = "browsersecret";

/// A standalone server with the players of `make player` and play tokens on, and a live
/// `live/NAME`.
struct Live {
    server: Server,
    _publisher: ChildGuard,
    _dir: TempDir,
}

fn live(name: &str) -> Live {
    let players = repo().join("player/dist");
    let server = Server::start_with(&[
        ("LIVERELAY_HTTP__PLAYER_DIR", players.to_str().unwrap()),
        ("LIVERELAY_AUTH__PLAY", "token"),
        ("LIVERELAY_AUTH__PLAY_TOKEN_SECRET", SECRET),
    ]);
    let dir = TempDir::new("browser");
    let publisher = looping_publisher_of(
        sample_flv_1s_gop(),
        &server.url(&format!("live/{name}")),
        &dir.path("publisher.log"),
    );
    server.wait_live("live", name, Duration::from_secs(20));
    Live {
        server,
        _publisher: publisher,
        _dir: dir,
    }
}

/// Where one browser run leaves its screenshot, console and samples: removed after a pass,
/// kept after a failure.
struct Artifacts(PathBuf);

impl Artifacts {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "liverelay-browser-{tag}-{}-{}",
            std::process::id(),
            support::free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// The paths a failure message points at, and the end of the page's console.
    fn describe(&self) -> String {
        let console = self.0.join("console.log");
        let text = std::fs::read_to_string(&console).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect::<Vec<_>>();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "\n  screenshot: {}\n  browser console: {}\n  samples: {}\n  last console lines:\n    {}",
            self.0.join("screenshot.png").display(),
            console.display(),
            self.0.join("samples.json").display(),
            tail.join("\n    ")
        )
    }
}

impl Drop for Artifacts {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Opens `path` of the server in chromium and watches it for `secs` once it plays: the
/// watch.mjs result (`started`, `samples` of the page's stats, `final` stats).
fn watch(server: &Server, path: &str, secs: u64, out: &Artifacts) -> Value {
    let url = format!("http://{}{path}", server.http);
    let script = repo().join("tests/browser/watch.mjs");
    let log = out.0.join("node.log");
    let mut node = spawn_logged(
        Command::new("node")
            .arg(&script)
            .arg(&url)
            .arg(&out.0)
            .arg(secs.to_string()),
        &log,
    );
    let limit = Duration::from_secs(secs + 90);
    let status = node.wait_timeout(limit);
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "the browser run of {url} failed ({status:?}): {output}{}",
        out.describe()
    );
    let result: Value = serde_json::from_str(
        &std::fs::read_to_string(out.0.join("samples.json")).expect("watch.mjs wrote samples"),
    )
    .expect("samples.json is JSON");
    assert!(
        result["error"].is_null(),
        "the browser run of {url} failed: {}{}",
        result["error"],
        out.describe()
    );
    result
}

/// The page played on for the whole watch: media time advanced by [`MIN_PLAYED_SECS`], never
/// stood still longer than [`MAX_STILL_MS`], and the page saw no longer stall either.
fn assert_plays(result: &Value, out: &Artifacts) {
    let fin = &result["final"];
    assert!(
        result["started"].as_bool() == Some(true),
        "the video did not start playing (in 30 s, or the page gave up); page stats: {fin}{}",
        out.describe()
    );
    let samples = result["samples"].as_array().expect("samples");
    let at = |s: &Value| {
        (
            s["wallMs"].as_f64().unwrap(),
            s["currentTime"].as_f64().unwrap(),
        )
    };
    let (first, last) = (at(&samples[0]), at(samples.last().unwrap()));
    let played = last.1 - first.1;
    let mut still_since = first.0;
    let mut longest_still: f64 = 0.0;
    let mut previous = first.1;
    for (wall, time) in samples.iter().map(at) {
        if time > previous {
            still_since = wall;
        }
        longest_still = longest_still.max(wall - still_since);
        previous = time;
    }
    let latency = fin["latency"].as_f64();
    eprintln!(
        "{}: {played:.1} s played in {:.1} s, longest still {longest_still:.0} ms, \
         page stalls {} (longest {} ms), dropped frames {}/{}, latency {latency:?} s ({}), \
         parts loaded {}, fragments loaded {}",
        result["url"],
        (last.0 - first.0) / 1000.0,
        fin["stalls"],
        fin["longestStallMs"],
        fin["droppedFrames"],
        fin["totalFrames"],
        fin["latencyHow"],
        fin["partsLoaded"],
        fin["fragmentsLoaded"],
    );
    assert!(
        played >= MIN_PLAYED_SECS,
        "only {played:.1} s of media played in {:.1} s; page stats: {fin}{}",
        (last.0 - first.0) / 1000.0,
        out.describe()
    );
    assert!(
        longest_still <= MAX_STILL_MS,
        "the picture stood still for {longest_still:.0} ms; page stats: {fin}{}",
        out.describe()
    );
    let page_stall = fin["longestStallMs"].as_f64().unwrap_or(0.0);
    assert!(
        page_stall <= 1000.0,
        "the page waited {page_stall:.0} ms for data while playing; page stats: {fin}{}",
        out.describe()
    );
    assert!(
        fin["error"].is_null(),
        "the page reported {}{}",
        fin["error"],
        out.describe()
    );
    assert!(
        latency.is_some(),
        "the page shows no latency; page stats: {fin}{}",
        out.describe()
    );
}

/// Opens the page of a live stream with its play token and `query` (`&...`) and checks that
/// `player` plays it ([`assert_plays`]); `None` where the browser is missing.
fn plays(name: &str, query: &str, player: &str) -> Option<(Value, Artifacts)> {
    if !browser_installed() {
        return None;
    }
    // One playing browser at a time: two would share the machine's cores with two encoders'
    // worth of decoding and judge each other's slowness.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let live = live(name);
    let out = Artifacts::new(name);
    let result = watch(
        &live.server,
        &format!(
            "/watch/live/{name}?token={}{query}",
            play_token(SECRET, "live", name)
        ),
        WATCH_SECS,
        &out,
    );
    assert_plays(&result, &out);
    assert_eq!(result["final"]["player"], player, "{}", out.describe());
    Some((result, out))
}

#[test]
fn http_flv_plays_in_chromium() {
    plays("flv", "&proto=flv", "mpegts.js");
}

#[test]
fn ll_hls_plays_in_chromium_with_parts() {
    // LL-HLS is the page's default.
    let Some((result, out)) = plays("hls", "", "hls.js") else {
        return;
    };
    let fin = &result["final"];
    assert_eq!(fin["lowLatencyMode"], true, "{}", out.describe());
    // Parts of 200 ms: a player at the live edge loads about five a second; one that fell
    // back to whole segments loads none after its start.
    let parts = |s: &Value| s["partsLoaded"].as_u64().unwrap_or(0);
    let samples = result["samples"].as_array().unwrap();
    let gained = parts(samples.last().unwrap()) - parts(&samples[0]);
    assert!(
        gained >= 25,
        "hls.js loaded only {gained} parts while playing for {WATCH_SECS} s; page stats: {fin}{}",
        out.describe()
    );
}

/// The page of a server without its players says so instead of showing a black box.
#[test]
fn page_says_when_its_player_is_missing() {
    if !browser_installed() {
        return;
    }
    let empty = TempDir::new("no-players");
    let server = Server::start_with(&[(
        "LIVERELAY_HTTP__PLAYER_DIR",
        empty.path("none").to_str().unwrap(),
    )]);
    let out = Artifacts::new("missing");
    let result = watch(&server, "/watch/live/any?proto=flv", 0, &out);
    let error = result["final"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("mpegts.js could not be loaded") && error.contains("make player"),
        "the page did not explain the missing player: {}{}",
        result["final"],
        out.describe()
    );
    assert!(
        server.wait_log("player file missing", Duration::from_secs(5)),
        "the server did not log why"
    );
}
