//! Listeners with `tls: true` serve HTTPS with the operator's certificate,
//! judged by curl; a TLS listener without a certificate refuses to start.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Server, TempDir, binary, free_port, run_myelin, scrub_env};

/// A self-signed certificate for `localhost` and 127.0.0.1, made by openssl.
pub(crate) fn self_signed_certificate(dir: &Path) -> (String, String) {
    let certificate = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let output = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&certificate)
        .output()
        .expect("openssl runs");
    assert!(
        output.status.success(),
        "openssl req failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = |path: &Path| path.to_str().expect("UTF-8 temp path").to_owned();
    (text(&certificate), text(&key))
}

/// curl's output (body, then the HTTP version on the last line) and exit code.
fn curl(args: &[&str]) -> (String, Option<i32>) {
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_version}"])
        .args(args)
        .output()
        .expect("curl runs");
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        output.status.code(),
    )
}

#[tokio::test]
async fn a_tls_listener_serves_https_with_the_configured_certificate() {
    let certs = TempDir::new("tls-certs");
    let (certificate, key) = self_signed_certificate(certs.path());
    let port = free_port();
    let tls_listener = format!(
        "listeners:\n  - port: {port}\n    tls: true\n    type: http\n    \
         bind_addresses: ['127.0.0.1']\n    resources:\n      - names: [client, federation]\n"
    );
    let server = Server::builder()
        .edit_config("listeners:\n", &tls_listener)
        .env("MYELIN_TLS_CERTIFICATE_PATH", &certificate)
        .env("MYELIN_TLS_PRIVATE_KEY_PATH", &key)
        .start()
        .await;

    let url = format!("https://localhost:{port}/_matrix/client/versions");
    let resolve = format!("localhost:{port}:127.0.0.1");
    for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let (output, code) = curl(&[flag, "--cacert", &certificate, "--resolve", &resolve, &url]);
        assert_eq!(code, Some(0), "curl {flag} failed: {output}");
        let (body, negotiated) = output
            .rsplit_once('\n')
            .expect("curl wrote its version line");
        assert_eq!(negotiated, version, "curl {flag} spoke HTTP/{negotiated}");
        let versions: serde_json::Value = serde_json::from_str(body).expect("JSON from /versions");
        assert!(
            versions["versions"]
                .as_array()
                .is_some_and(|list| list.iter().any(|v| v == "v1.11")),
            "unexpected /versions over TLS: {body}"
        );
    }

    // Without our certificate as a trust anchor, curl must refuse the peer:
    // the listener really speaks TLS with the configured certificate.
    let (output, code) = curl(&["--resolve", &resolve, &url]);
    assert_eq!(
        code,
        Some(60),
        "curl trusted an unknown certificate: {output}"
    );

    // The plain listener beside it still answers.
    let plain = reqwest::get(format!("{}/_matrix/client/versions", server.url()))
        .await
        .expect("plain listener answers");
    assert_eq!(plain.status(), 200);
}

#[test]
fn a_tls_listener_without_a_certificate_refuses_to_start() {
    let dir = TempDir::new("tls-missing");
    let data = dir.path().join("data");
    let data_text = data.to_str().expect("UTF-8 temp path");
    let generated = run_myelin(&[
        "generate",
        "--server-name",
        "tls.test",
        "--data-dir",
        data_text,
    ]);
    assert!(generated.status.success(), "generate failed");
    let config = data.join("homeserver.yaml");
    let yaml = std::fs::read_to_string(&config).expect("read homeserver.yaml");
    assert!(
        yaml.contains("tls: false"),
        "generated listener has no `tls: false`"
    );
    let yaml = yaml
        .replace("tls: false", "tls: true")
        .replace("port: 8008", "port: 0");
    std::fs::write(&config, yaml).expect("write homeserver.yaml");

    let mut command = Command::new(binary());
    scrub_env(&mut command);
    let mut child = command
        .arg("run")
        .arg("-c")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start myelin run");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll myelin run") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("myelin run kept running with a TLS listener and no certificate");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("read stderr");
    assert!(
        !status.success(),
        "myelin run succeeded without a certificate"
    );
    assert!(
        stderr.contains("tls_certificate_path"),
        "the error does not name the missing key: {stderr}"
    );
}
