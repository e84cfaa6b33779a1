//! A warning at start when the Redis that holds stream keys, restream targets and declared
//! relays would lose them on a restart: neither an append-only file nor RDB snapshots are on.

use std::collections::HashMap;

use liverelay_redis::RedisConn;
use tracing::{info, warn};

/// Asks Redis (`CONFIG GET appendonly` and `save`) and logs what a restart would keep. Managed
/// Redis services often refuse `CONFIG`: that is logged, not an error.
pub(crate) async fn check(conn: &RedisConn) {
    let config: Result<HashMap<String, String>, _> = conn
        .query(
            "config_get",
            redis::cmd("CONFIG").arg("GET").arg("appendonly"),
        )
        .await;
    let save: Result<HashMap<String, String>, _> = conn
        .query("config_get", redis::cmd("CONFIG").arg("GET").arg("save"))
        .await;
    match (config, save) {
        (Ok(config), Ok(save)) => {
            let aof = config.get("appendonly").map(String::as_str);
            let snapshots = save.get("save").map(String::as_str);
            match (aof, snapshots) {
                (Some(aof), Some(snapshots)) if !persists(aof, snapshots) => warn!(
                    "Redis does not persist (appendonly no, no save points): stream keys, \
                     restream targets and declared relays are lost when it restarts"
                ),
                (Some(aof), Some(snapshots)) => {
                    info!(
                        appendonly = aof,
                        save = snapshots,
                        "Redis persists its data"
                    )
                }
                _ => warn!("Redis persistence could not be checked: CONFIG GET answered nothing"),
            }
        }
        (Err(e), _) | (_, Err(e)) => {
            warn!(error = %e, "Redis persistence could not be checked (CONFIG refused?)")
        }
    }
}

/// Whether Redis writes its data somewhere: an append-only file, or any RDB save point.
fn persists(appendonly: &str, save: &str) -> bool {
    appendonly.eq_ignore_ascii_case("yes") || !save.trim().is_empty()
}

#[cfg(test)]
mod tests {
    use super::persists;

    #[test]
    fn either_an_append_only_file_or_a_save_point_persists() {
        assert!(persists("yes", ""));
        assert!(persists("no", "3600 1 300 100"));
        assert!(!persists("no", ""));
        assert!(!persists("no", " "));
    }
}
