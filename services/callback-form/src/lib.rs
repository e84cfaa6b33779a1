//! The form of an nginx-style callback (`on_connect`, `on_publish`, `on_play`, ...): the
//! fields the server sends, then the client's own query arguments, as nginx-rtmp passes them,
//! except any that would shadow a server field or carry a secret of liverelay's. The client
//! chooses those arguments, so this is hostile input; kept apart from `liverelay-auth` (HTTP,
//! gRPC, the hub) so that `liverelay-fuzz` can build it with sanitizers.

#![forbid(unsafe_code)]

/// The server's fields of one call, in the order they are sent.
pub type Form = Vec<(&'static str, String)>;

/// Fields any call of ours sends. A client argument of the same name is dropped, so that a
/// backend reading the last (or first) value of a field always reads the server's
/// (`cam?name=other&addr=1.2.3.4` must not authorize another name or address).
pub const SERVER_FIELDS: &[&str] = &[
    "call",
    "addr",
    "clientid",
    "app",
    "flashver",
    "swfurl",
    "tcurl",
    "pageurl",
    "epoch",
    "name",
    "type",
    "start",
    "duration",
    "reset",
    "time",
    "timestamp",
];

/// Client arguments that are credentials for liverelay itself (a stream key, a playback
/// token): callbacks never see them, wherever they ride (the name's or the app's query, so
/// also tcUrl).
pub const SECRET_ARGS: &[&str] = &["key", "token"];

/// Fields of the stream name's (or connect's) query string, passed on as nginx-rtmp does,
/// except those that collide with a server field or carry a secret.
pub fn with_args(form: Form, args: Option<&str>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = form
        .into_iter()
        .map(|(k, v)| match k {
            "tcurl" => (k.to_string(), without_secrets(&v)),
            _ => (k.to_string(), v),
        })
        .collect();
    if let Some(args) = args {
        out.extend(
            form_urlencoded::parse(args.trim_start_matches('?').as_bytes())
                .into_owned()
                .filter(|(k, _)| !SERVER_FIELDS.contains(&k.as_str()))
                .filter(|(k, _)| !SECRET_ARGS.contains(&k.as_str())),
        );
    }
    out
}

/// A URL (tcUrl) without its secret query parameters.
pub fn without_secrets(url: &str) -> String {
    match url.split_once('?') {
        None => url.to_string(),
        Some((url, query)) => {
            let kept = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(
                    form_urlencoded::parse(query.as_bytes())
                        .filter(|(k, _)| !SECRET_ARGS.contains(&k.as_ref())),
                )
                .finish();
            if kept.is_empty() {
                url.to_string()
            } else {
                format!("{url}?{kept}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(form: &[(String, String)]) -> Vec<(&str, &str)> {
        form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    #[test]
    fn secrets_are_dropped_from_the_arguments_and_tcurl() {
        let form = vec![
            ("tcurl", "rtmp://h/live?key=sk_1&x=2&token=t".to_string()),
            ("name", "cam".to_string()),
        ];
        let out = with_args(form, Some("?key=sk_1&sign=abc&token=t9"));
        assert_eq!(
            pairs(&out),
            [
                ("tcurl", "rtmp://h/live?x=2"),
                ("name", "cam"),
                ("sign", "abc")
            ]
        );
        assert_eq!(without_secrets("rtmp://h/live?key=sk_1"), "rtmp://h/live");
        assert_eq!(without_secrets("rtmp://h/live"), "rtmp://h/live");
    }

    #[test]
    fn client_arguments_never_shadow_server_fields() {
        let attacker = "name=other&addr=1.2.3.4&call=play&app=x&clientid=9&flashver=f\
            &swfurl=s&tcurl=t&pageurl=p&type=record&start=1&duration=2&reset=1&epoch=3\
            &time=4&timestamp=5&user=7";
        let form = vec![
            ("name", "cam".to_string()),
            ("addr", "10.0.0.1".to_string()),
        ];
        let out = with_args(form, Some(attacker));
        // The server's values, once each; other arguments still pass.
        assert_eq!(
            pairs(&out),
            [("name", "cam"), ("addr", "10.0.0.1"), ("user", "7")]
        );
    }
}
