//! Secrets never leave the process in clear through the settings: every secret field
//! serializes (`--print-config`) as [`REDACTED`], a Redis URL without its password, a callback
//! or webhook URL without its query (which may carry a backend's credentials), a relay URL as
//! its logs show it. The fields name these functions with `serialize_with`, so no caller can
//! forget to redact.

use liverelay_static_relay::{RelayConfig, RelaySpec};
use serde::{Serialize, Serializer};

/// What a secret that is set serializes as.
pub const REDACTED: &str = "<redacted>";

/// A URL as logged or printed: without its query and fragment.
pub fn without_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// A secret: `<redacted>` when set, `null` when not (so an operator still sees which).
pub fn secret<S: Serializer>(value: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    value.as_ref().map(|_| REDACTED).serialize(s)
}

/// A URL whose query is replaced by `?<redacted>`.
fn url_text(url: &str) -> String {
    let base = without_query(url);
    if base.len() == url.len() {
        url.to_string()
    } else {
        format!("{base}?{REDACTED}")
    }
}

pub fn url<S: Serializer>(value: &str, s: S) -> Result<S::Ok, S::Error> {
    url_text(value).serialize(s)
}

pub fn optional_url<S: Serializer>(value: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    value.as_deref().map(url_text).serialize(s)
}

/// Redis URLs (comma-separated seeds) without the password of their user info:
/// `redis://:pw@h:6379` → `redis://:<redacted>@h:6379`, `redis://u:pw@h` → `redis://u:<redacted>@h`.
pub fn redis_urls(urls: &str) -> String {
    urls.split(',')
        .map(|url| {
            let Some((scheme, rest)) = url.split_once("://") else {
                return url.to_string();
            };
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rsplit_once('@') {
                Some((user_info, host)) => {
                    let path = url_text(&rest[authority_end..]);
                    match user_info.split_once(':') {
                        Some((user, _)) => format!("{scheme}://{user}:{REDACTED}@{host}{path}"),
                        // A user name alone is no secret.
                        None => format!("{scheme}://{user_info}@{host}{path}"),
                    }
                }
                None => url_text(url),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

pub fn redis_url<S: Serializer>(value: &str, s: S) -> Result<S::Ok, S::Error> {
    redis_urls(value).serialize(s)
}

/// Relays with their URLs as the relay's logs show them (a push target's stream key and any
/// query hidden).
pub fn relays<S: Serializer>(value: &[RelayConfig], s: S) -> Result<S::Ok, S::Error> {
    let shown: Vec<RelayConfig> = value
        .iter()
        .enumerate()
        .map(|(i, c)| RelayConfig {
            url: RelaySpec::parse(i, c).map_or_else(|_| REDACTED.to_string(), |s| s.display_url()),
            ..c.clone()
        })
        .collect();
    shown.serialize(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NotifySettings, Settings, WebhookSettings};

    #[test]
    fn a_logged_url_has_no_query() {
        assert_eq!(
            without_query("http://auth/on_publish?psk=s"),
            "http://auth/on_publish"
        );
        assert_eq!(without_query("http://auth/x#f"), "http://auth/x");
        assert_eq!(without_query("http://auth/x"), "http://auth/x");
    }

    #[test]
    fn redis_passwords_are_hidden_in_every_seed() {
        assert_eq!(
            redis_urls("redis://:pw1@a:6379/0,rediss://user:pw2@b:6380"),
            "redis://:<redacted>@a:6379/0,rediss://user:<redacted>@b:6380"
        );
        assert_eq!(
            redis_urls("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(redis_urls("redis://user@h:6379"), "redis://user@h:6379");
        assert_eq!(
            redis_urls("redis://h:6379/0?password=pw3"),
            "redis://h:6379/0?<redacted>"
        );
    }

    #[test]
    fn printed_settings_hold_no_secret() {
        let mut s = Settings::default();
        s.cluster.token = Some("sec-cluster".into());
        s.redis.url = "redis://:sec-redis@10.0.0.1:6379".into();
        s.control.admin_token = Some("sec-admin".into());
        s.auth.play_token_secret = Some("sec-play".into());
        s.control.webhooks = vec![WebhookSettings {
            url: "https://platform/hook?auth=sec-hookquery".into(),
            secret: Some("sec-webhook".into()),
            ..WebhookSettings::default()
        }];
        s.notify = vec![NotifySettings {
            on_publish: Some("http://auth/on_publish?psk=sec-notify".into()),
            ..NotifySettings::default()
        }];
        s.relays = vec![RelayConfig {
            url: "rtmp://a.rtmp.youtube.com/live2/abcd-sec-streamkey".into(),
            ..serde_json::from_str(r#"{"kind": "push", "url": "", "stream": "live/foo"}"#).unwrap()
        }];
        let printed = serde_json::to_string_pretty(&s).unwrap();
        assert!(!printed.contains("sec-"), "a secret is printed:\n{printed}");
        // What is set still shows as set, and where.
        let v: serde_json::Value = serde_json::from_str(&printed).unwrap();
        assert_eq!(v["cluster"]["token"], REDACTED);
        assert_eq!(v["control"]["admin_token"], REDACTED);
        assert_eq!(v["control"]["webhooks"][0]["secret"], REDACTED);
        assert_eq!(v["auth"]["play_token_secret"], REDACTED);
        assert_eq!(v["redis"]["url"], "redis://:<redacted>@10.0.0.1:6379");
        assert_eq!(
            v["notify"][0]["on_publish"],
            "http://auth/on_publish?<redacted>"
        );
        assert_eq!(
            v["control"]["webhooks"][0]["url"],
            "https://platform/hook?<redacted>"
        );
        assert_eq!(v["notify"][0]["on_play"], serde_json::Value::Null);
        assert!(
            v["relays"][0]["url"]
                .as_str()
                .unwrap()
                .starts_with("rtmp://a.rtmp.youtube.com")
        );
    }
}
