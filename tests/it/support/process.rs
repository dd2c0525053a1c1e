//! The real `hookgate` binary as a child process on a fixed loopback port, and its memory use.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{binary, eventually};

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// [`super::app::write_config`], with the ingest listener on `port` instead of port 0.
pub fn write_config_on_port(dir: &Path, port: u16, server_extra: &str, body: &str) -> PathBuf {
    let path = super::app::write_config(dir, server_extra, body);
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replacen("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""), 1);
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts `hookgate serve --config CONFIG` (logging errors only, to nowhere) and waits until its
/// ingest listener on `port` answers.
pub async fn serve_on_port(config: &Path, port: u16) -> Child {
    let child = Command::new(binary())
        .args(["serve", "--config"])
        .arg(config)
        .env("HOOKGATE_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/healthz");
    let up = eventually(Duration::from_secs(20), async || client.get(&url).send().await.is_ok()).await;
    assert!(up, "hookgate answered on port {port}");
    child
}

/// The high-water resident memory of process `pid`, in KiB.
pub fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}
