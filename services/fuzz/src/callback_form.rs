//! Fuzz target for the form of an nginx-style callback (`liverelay-callback-form`): the
//! client's tcUrl and the query it put after the app or stream name (`cam?name=x&key=...`)
//! travel to the auth backend with the server's own fields.
//!
//! Input: the client's tcUrl, a newline, then its query string (both read as lossy UTF-8).
//! Beyond "no panic", the target checks that:
//! - the server's fields come first, in order, with the server's values (tcUrl without its
//!   secrets), and no client argument has a server field's name or a secret's;
//! - a backend decoding the form as sent reads each server field exactly once, with the
//!   server's value, and never a `key` or `token`, nor one in the tcUrl's query;
//! - removing secrets from a tcUrl a second time changes nothing.

use liverelay_callback_form::{SECRET_ARGS, SERVER_FIELDS, with_args, without_secrets};

/// The server's fields of a play call, but the tcUrl (from the input).
fn server_form(tc_url: &str) -> Vec<(&'static str, String)> {
    [
        ("call", "play"),
        ("addr", "10.0.0.1"),
        ("clientid", "7"),
        ("app", "live"),
        ("flashver", "LNX 9,0,124,2"),
        ("swfurl", ""),
        ("tcurl", tc_url),
        ("pageurl", ""),
        ("name", "cam"),
        ("start", "4294965296"),
        ("duration", "0"),
        ("reset", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_string()))
    .collect()
}

pub fn fuzz(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (tc_url, args) = text.split_once('\n').unwrap_or((&text, ""));
    let server = server_form(tc_url);
    let expected: Vec<(String, String)> = server
        .iter()
        .map(|(k, v)| match *k {
            "tcurl" => (k.to_string(), without_secrets(v)),
            _ => (k.to_string(), v.clone()),
        })
        .collect();
    let out = with_args(server, Some(args));
    assert_eq!(out[..expected.len()], expected[..], "server fields changed");
    for (k, _) in &out[expected.len()..] {
        assert!(
            !SERVER_FIELDS.contains(&k.as_str()) && !SECRET_ARGS.contains(&k.as_str()),
            "client argument {k:?} passed"
        );
    }
    // What the backend reads from the form as sent.
    let sent = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&out)
        .finish();
    let read: Vec<(String, String)> = form_urlencoded::parse(sent.as_bytes())
        .into_owned()
        .collect();
    for (field, value) in &expected {
        let values: Vec<_> = read.iter().filter(|(k, _)| k == field).collect();
        assert_eq!(
            values.len(),
            1,
            "{field} read {} times from {sent}",
            values.len()
        );
        assert_eq!(&values[0].1, value, "{field} read from {sent}");
    }
    let tc = &expected
        .iter()
        .find(|(k, _)| k == "tcurl")
        .expect("tcurl")
        .1;
    let tc_query = tc.split_once('?').map_or("", |(_, q)| q);
    for (k, _) in read
        .iter()
        .cloned()
        .chain(form_urlencoded::parse(tc_query.as_bytes()).into_owned())
    {
        assert!(
            !SECRET_ARGS.contains(&k.as_str()),
            "{k} reaches the backend: {sent}"
        );
    }
    assert_eq!(&without_secrets(tc), tc, "secrets removed twice differ");
}
