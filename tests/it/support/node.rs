//! A real `hookgate serve` process: one node of a deployment. Killed (SIGKILL) when dropped, so a
//! failing test leaves no process behind.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use super::app::binary;

pub struct Node {
    child: Child,
    /// None for `--role worker`.
    pub ingest: Option<SocketAddr>,
    pub admin: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Node {
    /// Starts `hookgate serve --config CONFIG --role ROLE` with `env`, and waits until it serves.
    #[allow(clippy::zombie_processes)] // the child is waited for by `Node`'s Drop, or on the failure path
    pub fn spawn(config: &Path, role: &str, env: &[(&str, &str)]) -> Node {
        let mut cmd = Command::new(binary());
        cmd.args(["serve", "--role", role, "--config"]).arg(config).env("HOOKGATE_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.stderr(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let lines = log.clone();
        // Reads every line (a full pipe would block the process) and reports the bound addresses.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    let msg = v["message"].as_str().unwrap_or("");
                    if msg == "ingest listening" || msg == "admin listening" || msg == "hookgate ready" {
                        let _ = tx.send((msg.to_string(), v["addr"].as_str().unwrap_or("").to_string()));
                    }
                }
                lines.lock().unwrap().push(line);
            }
        });
        let (mut ingest, mut admin) = (None, None);
        loop {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok((msg, addr)) if msg == "ingest listening" => ingest = Some(addr.parse().unwrap()),
                Ok((msg, addr)) if msg == "admin listening" => admin = Some(addr.parse().unwrap()),
                Ok(_) => {}
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("hookgate --role {role} did not start:\n{}", log.lock().unwrap().join("\n"));
                }
            }
            if let Some(admin) = admin
                && (ingest.is_some() || role == "worker")
            {
                return Node { child, ingest, admin, log };
            }
        }
    }

    /// The ingest URL for `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.ingest.expect("this node has no ingest listener"))
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// Log lines whose message is `message`.
    pub fn count_logged(&self, message: &str) -> usize {
        let needle = format!("\"message\":\"{message}\"");
        self.log.lock().unwrap().iter().filter(|l| l.contains(&needle)).count()
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Sends `signal` (SIGHUP, SIGTERM) to the process.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    /// Waits up to `limit` for the process to exit by itself (after a SIGTERM); its exit status.
    pub async fn exited(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// SIGKILL: no drain, no cleanup, claims left as they are.
    pub fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill_9();
    }
}
