//! Rewrites the generated seed files and the dictionary of each fuzz target under `corpus/`:
//! `cargo run -p liverelay-fuzz --example write_seeds`. Files in `corpus/` with other names
//! (inputs the fuzzer found, regressions) are left alone.

use std::path::Path;

use liverelay_fuzz::seeds;

type Seeds = fn() -> Vec<(&'static str, Vec<u8>)>;
type Dictionary = fn() -> Vec<Vec<u8>>;

fn main() -> std::io::Result<()> {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let targets: [(&str, Seeds, Dictionary); 7] = [
        (
            "server_session",
            seeds::server_session,
            seeds::server_session_dictionary,
        ),
        (
            "chunk_decoder",
            seeds::chunk_decoder,
            seeds::chunk_decoder_dictionary,
        ),
        ("amf", seeds::amf, seeds::amf_dictionary),
        ("media_tag", seeds::media_tag, seeds::media_tag_dictionary),
        (
            "api_bodies",
            seeds::api_bodies,
            seeds::api_bodies_dictionary,
        ),
        (
            "callback_form",
            seeds::callback_form,
            seeds::callback_form_dictionary,
        ),
        (
            "relay_message",
            seeds::relay_message,
            seeds::relay_message_dictionary,
        ),
    ];
    for (target, seeds, dictionary) in targets {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir)?;
        for (name, input) in seeds() {
            std::fs::write(dir.join(name), &input)?;
            println!("{target}/{name}: {} bytes", input.len());
        }
        let dict: String = dictionary()
            .iter()
            .map(|e| seeds::dictionary_line(e) + "\n")
            .collect();
        std::fs::write(corpus.join(format!("{target}.dict")), dict)?;
    }
    Ok(())
}
