//! Generates the control service's gRPC code from `proto/` (protoc from `protoc-bin-vendored`
//! unless `PROTOC` is set).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        // SAFETY: build scripts are single-threaded; nothing else reads the environment now.
        unsafe { std::env::set_var("PROTOC", protoc) };
    }
    tonic_prost_build::configure().compile_protos(
        &["../../proto/liverelay/control/v1/control.proto"],
        &["../../proto"],
    )?;
    Ok(())
}
