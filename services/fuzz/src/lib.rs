//! liverelay's fuzz targets, as ordinary functions of a workspace crate.
//!
//! Each target takes arbitrary bytes and panics when the code under test misbehaves: not only
//! when it crashes, but when what it produces breaks the protocol (see each target's module).
//! Three things run them:
//! - `libfuzzer/` is the cargo-fuzz crate (outside the workspace: it needs libFuzzer and
//!   sanitizer flags); each of its binaries is one line calling a target here. `make fuzz`.
//! - `tests/corpus.rs` replays every file of `corpus/<target>/` through its target on each
//!   `cargo test`, so the targets compile and the committed corpus keeps passing in CI.
//! - `examples/write_seeds.rs` regenerates the seed files and dictionaries from the project's
//!   own client session and encoders.
//!
//! Adding a target: a module with a `fuzz(&[u8])` function, an entry in [`TARGETS`], a binary in
//! `libfuzzer/fuzz_targets/<name>.rs` and seeds in `corpus/<name>/`.

pub mod amf;
pub mod api_bodies;
pub mod callback_form;
pub mod chunk_decoder;
pub mod media_tag;
pub mod output;
pub mod relay_message;
pub mod seeds;
pub mod server_session;

/// One fuzz target: its name is the cargo-fuzz binary's, the corpus directory's
/// (`corpus/<name>/`) and the dictionary's (`corpus/<name>.dict`).
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

pub const TARGETS: &[Target] = &[
    Target {
        name: "server_session",
        run: server_session::fuzz,
    },
    Target {
        name: "chunk_decoder",
        run: chunk_decoder::fuzz,
    },
    Target {
        name: "amf",
        run: amf::fuzz,
    },
    Target {
        name: "media_tag",
        run: media_tag::fuzz,
    },
    Target {
        name: "api_bodies",
        run: api_bodies::fuzz,
    },
    Target {
        name: "callback_form",
        run: callback_form::fuzz,
    },
    Target {
        name: "relay_message",
        run: relay_message::fuzz,
    },
];
