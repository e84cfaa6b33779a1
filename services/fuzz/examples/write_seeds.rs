//! Rewrites the generated seed files and the dictionary of each fuzz target under `corpus/`:
//! `cargo run -p liverelay-fuzz --example write_seeds`. Files in `corpus/` with other names
//! (inputs the fuzzer found, regressions) are left alone.

use std::path::Path;

use liverelay_fuzz::seeds;

fn main() -> std::io::Result<()> {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let dir = corpus.join("server_session");
    std::fs::create_dir_all(&dir)?;
    for (name, input) in seeds::server_session() {
        std::fs::write(dir.join(name), &input)?;
        println!("{name}: {} bytes", input.len());
    }
    let dict: String = seeds::server_session_dictionary()
        .iter()
        .map(|e| seeds::dictionary_line(e) + "\n")
        .collect();
    std::fs::write(corpus.join("server_session.dict"), dict)
}
