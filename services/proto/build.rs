//! Generates every gRPC API from `proto/`. protoc comes from `protoc-bin-vendored` so a build
//! needs nothing installed; an existing `PROTOC` wins.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        // SAFETY: build scripts are single-threaded; nothing else reads the environment now.
        unsafe { std::env::set_var("PROTOC", protoc) };
    }
    tonic_prost_build::configure()
        // Media payloads stay `bytes::Bytes`: decoding slices the received buffer.
        .bytes(".liverelay.relay.v1.MediaFrame.payload")
        .compile_protos(
            &[
                "../../proto/liverelay/relay/v1/relay.proto",
                "../../proto/liverelay/control/v1/control.proto",
            ],
            &["../../proto"],
        )?;
    Ok(())
}
