//! The OpenAPI description (issue 17): made from the code (`utoipa`, each route registered with
//! its description, so none goes undocumented), served at `/v1/openapi.json`, the same as the
//! copy in docs/openapi.json (this test fails when they differ: run it with ZSA_BLESS=1 to write
//! the new one, and read the diff), and every documented route answers on a real daemon.

mod common;

use common::Daemon;

fn in_docs() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_description_is_served_and_is_the_one_in_docs() {
    let made = zsa::daemon::routes::openapi().to_pretty_json().unwrap() + "\n";
    if std::env::var_os("ZSA_BLESS").is_some() {
        std::fs::write(in_docs(), &made).unwrap();
    }
    let kept = std::fs::read_to_string(in_docs()).unwrap_or_default();
    assert!(kept == made, "docs/openapi.json is not what the code describes; run ZSA_BLESS=1 cargo test --test openapi and read the diff");
    let d = Daemon::start();
    let (status, served) = common::raw_get(&mut std::os::unix::net::UnixStream::connect(&d.socket).unwrap(), "/v1/openapi.json");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert_eq!(served.trim_end(), made.trim_end());
    let doc: serde_json::Value = serde_json::from_str(&made).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
}

/// Each documented path and method is routed: the daemon never answers it with "no such
/// endpoint" or "method not allowed", whatever else it says to these made-up ids.
#[tokio::test(flavor = "multi_thread")]
async fn every_documented_route_answers() {
    let d = Daemon::start();
    let doc = zsa::daemon::routes::openapi();
    let http = reqwest::Client::builder().unix_socket(d.socket.clone()).build().unwrap();
    let mut asked = 0;
    for (path, item) in &doc.paths.paths {
        let concrete = path.replace("{id}", "R1").replace("{user}", "carol");
        for (method, op) in [("GET", &item.get), ("POST", &item.post)] {
            if op.is_none() || concrete == "/v1/events" {
                continue;
            }
            let rb = match method {
                "GET" => http.get(format!("http://zsa{concrete}")),
                _ => http.post(format!("http://zsa{concrete}")).json(&serde_json::json!({})),
            };
            let answer = rb.send().await.unwrap();
            let status = answer.status().as_u16();
            let body = answer.text().await.unwrap_or_default();
            assert!(
                !body.contains("no_such_endpoint") && !body.contains("method_not_allowed") && status != 405,
                "{method} {path} is documented but not routed: {status} {body}"
            );
            asked += 1;
        }
    }
    assert!(asked >= 35, "only {asked} routes were asked");
}
