//! Generates every gRPC API from `proto/`. protoc comes from `protoc-bin-vendored` so a build
//! needs nothing installed; an existing `PROTOC` wins.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The protos live outside this package, where cargo does not look for changes.
    println!("cargo:rerun-if-changed=../../proto");
    // Reads `PROTOC` when set.
    let mut config = tonic_prost_build::Config::new();
    if std::env::var_os("PROTOC").is_none() {
        config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    }
    tonic_prost_build::configure()
        // Media payloads stay `bytes::Bytes`: decoding slices the received buffer.
        .bytes(".liverelay.relay.v1.MediaFrame.payload")
        .compile_with_config(
            config,
            &[
                "../../proto/liverelay/relay/v1/relay.proto",
                "../../proto/liverelay/control/v1/control.proto",
            ],
            &["../../proto"],
        )?;
    Ok(())
}
