//! Issue 8, end to end: the web client in real headless Chromium, driven by Playwright
//! (tests/browser/e2e.mjs), against the real server binary, next to terminal-protocol users.
//! Screenshots of the logged-in page land in target/browser-screenshots/ (tls/ for the run
//! with `web_tls = true`, where the page is served over HTTPS and its socket is WSS).
//!
//! Needs node, Debian's chromium (/usr/bin/chromium, or LANCHAT_CHROMIUM) and
//! `npm ci` in tests/browser; `make test-deps` installs them. Without them the test fails
//! (and `make test` reports it as skipped: tests/needs.sh).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{Proc, ServerProcess};

/// The whole browser run may take this long (Chromium's start is the slow part).
const BROWSER_PATIENCE: Duration = Duration::from_secs(180);

/// What is missing to run the browser test, if anything, and the command that installs it.
fn missing(browser_dir: &Path) -> Option<(String, String)> {
    let chromium = std::env::var("LANCHAT_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        return Some((chromium, "apt-get install chromium".into()));
    }
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Some(("node".into(), "apt-get install nodejs npm".into()));
    }
    if !browser_dir.join("node_modules/playwright-core").is_dir() {
        let dir = browser_dir.display();
        return Some(("playwright-core".into(), format!("cd {dir} && npm ci")));
    }
    None
}

/// Where Cargo puts build output, for the screenshots.
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|d| if d.is_absolute() { d } else { root.join(d) })
        .unwrap_or_else(|| root.join("target"))
}

/// The base64 SHA-256 of the certificate's SubjectPublicKeyInfo in `cert_pem`: what
/// Chromium's `--ignore-certificate-errors-spki-list` trusts (that one key, nothing else).
fn spki_sha256_base64(cert_pem: &Path) -> String {
    use base64ct::Encoding;
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    use sha2::Digest;
    let cert = CertificateDer::from_pem_file(cert_pem).expect("the server's certificate");
    let parsed = webpki::EndEntityCert::try_from(&cert).expect("an X.509 certificate");
    let digest = sha2::Sha256::digest(parsed.subject_public_key_info().as_ref());
    base64ct::Base64::encode_string(&digest)
}

/// Runs tests/browser/e2e.mjs against a server started with `toml` (plus the crowd
/// settings the presence step needs); with `tls`, over HTTPS with the server's key trusted.
fn run_e2e(toml: &str, tls: bool, shots_subdir: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let browser_dir = root.join("tests/browser");
    if let Some((what, install)) = missing(&browser_dir) {
        support::require(false, &what, &install);
    }
    let tmp = tempfile::tempdir().unwrap();
    // A crowd from the fourth user online on (the presence step logs in dave and erin).
    let server = ServerProcess::start_with_web_config(
        "127.0.0.1",
        tmp.path(),
        &format!("presence_summary_above = 3\npresence_summary_ms = 200\n{toml}"),
        "dave davepw\nerin erinpw\n",
    );
    let web_port = server.web_port.expect("the web door is open");
    let shots = target_dir(root).join(shots_subdir);
    let out_path = tmp.path().join("e2e.out");
    let out = std::fs::File::create(&out_path).unwrap();
    let mut command = Command::new("node");
    command.arg(browser_dir.join("e2e.mjs"));
    if tls {
        // The server made its key and certificate in its data directory on start.
        let cert = tmp
            .path()
            .join("data")
            .join(lanchat::tls::identity::CERT_FILE);
        command
            .args(["--web", &format!("https://127.0.0.1:{web_port}/")])
            .args(["--spki", &spki_sha256_base64(&cert)]);
    } else {
        command.args(["--web", &format!("http://127.0.0.1:{web_port}/")]);
    }
    let child = command
        .args(["--tcp", &server.port.to_string()])
        .args(["--pid", &server.proc.0.id().to_string()])
        .arg("--shots")
        .arg(&shots)
        .current_dir(&browser_dir)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("start node");
    let mut node = Proc(child);
    let deadline = Instant::now() + BROWSER_PATIENCE;
    let status = loop {
        if let Some(status) = node.0.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(node);
    let transcript = std::fs::read_to_string(&out_path).unwrap_or_default();
    println!("{transcript}");
    match status {
        Some(s) if s.success() => {
            assert!(transcript.contains("0 failed"), "{transcript}");
            println!("screenshots: {}", shots.display());
        }
        Some(s) => panic!(
            "the browser test failed ({s}); screenshots in {}",
            shots.display()
        ),
        None => panic!("the browser test took over {BROWSER_PATIENCE:?}"),
    }
}

#[test]
fn web_client_in_headless_chromium() {
    run_e2e("", false, "browser-screenshots");
}

/// The same run with `web_tls = true`: the page over HTTPS, its socket over WSS, with
/// Chromium trusting the server's own key only (not every certificate error).
#[test]
fn web_client_over_https_and_wss_in_headless_chromium() {
    run_e2e("web_tls = true\n", true, "browser-screenshots/tls");
}
