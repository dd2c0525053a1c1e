//! `exec`: run a command without a shell, the body on stdin, event facts in the environment.
//! Exit 0 is success. Past the timeout the whole process group is killed (a script's children too;
//! not a child that left the group with `setsid`: docs/RELIABILITY.md, "Admin API and CLI").
//! The command runs in the config file's directory, and does not inherit the variables hookgate
//! reads secrets from.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use super::{Attempt, AttemptResult, Deliver, EXCERPT, excerpt};

pub struct ExecDestination {
    program: PathBuf,
    args: Vec<String>,
    timeout: Duration,
    /// The working directory: the config file's, as for every relative path in the config.
    dir: PathBuf,
    /// Environment variables not passed on (see `Config::secret_env_vars`).
    hidden: Arc<[String]>,
}

impl ExecDestination {
    pub fn new(program: PathBuf, args: Vec<String>, timeout: Duration, dir: PathBuf, hidden: Arc<[String]>) -> Self {
        ExecDestination { program, args, timeout, dir, hidden }
    }
}

/// How long an attempt waits for the end of stderr once the command has exited (or was killed):
/// what it wrote before is already in the pipe, but a child it left running may hold the pipe open
/// for hours, and the exit code must be recorded now.
const STDERR_DRAIN: Duration = Duration::from_millis(100);

/// The command's stderr, read as it arrives into a shared buffer (the first [`EXCERPT`] bytes, so a
/// chatty command cannot fill memory), so an excerpt can be taken whenever the command ends, even
/// while something it started still holds the pipe.
struct StderrCapture {
    kept: Arc<Mutex<Vec<u8>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl StderrCapture {
    fn start(mut r: impl AsyncRead + Unpin + Send + 'static) -> StderrCapture {
        let kept = Arc::new(Mutex::new(Vec::new()));
        let into = kept.clone();
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 8192];
            while let Ok(n) = r.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let mut kept = into.lock().unwrap_or_else(PoisonError::into_inner);
                let room = (EXCERPT + 1).saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        });
        StderrCapture { kept, reader }
    }

    /// After the command ended: waits for end of file for at most [`STDERR_DRAIN`], and returns the
    /// excerpt of what arrived. The reader itself goes on (discarding past the excerpt) until the
    /// pipe closes: a background child writing to a pipe nobody reads would die of SIGPIPE.
    async fn finish(mut self) -> String {
        let _ = tokio::time::timeout(STDERR_DRAIN, &mut self.reader).await;
        excerpt(&self.kept.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
}

/// Kills the command's process group if the attempt is dropped while the command runs (hookgate
/// stopping past its grace period): `kill_on_drop` reaches the command but not what it started.
struct KillGroupOnDrop(Option<u32>);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        kill_group(self.0.take());
    }
}

#[async_trait]
impl Deliver for ExecDestination {
    async fn deliver(&self, a: &Attempt) -> AttemptResult {
        let mut cmd = Command::new(&self.program);
        for var in self.hidden.iter() {
            cmd.env_remove(var);
        }
        cmd.args(&self.args)
            .current_dir(&self.dir)
            .env("HOOKGATE_EVENT_ID", &a.event_id)
            .env("HOOKGATE_SOURCE", &a.source)
            .env("HOOKGATE_DESTINATION", &a.destination)
            .env("HOOKGATE_ATTEMPT", a.attempt.to_string())
            .env("HOOKGATE_CONTENT_TYPE", a.content_type.as_deref().unwrap_or(""))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return AttemptResult::failure(format!("cannot start {}: {e}", self.program.display())),
        };
        let pid = child.id();
        let stdin = child.stdin.take();
        let body = a.body.clone();
        // A command may exit without reading stdin; a broken pipe is not our failure.
        let writer = tokio::spawn(async move {
            if let Some(mut stdin) = stdin {
                let _ = stdin.write_all(&body).await;
            }
        });
        let stderr = child.stderr.take().map(StderrCapture::start);
        let mut running = KillGroupOnDrop(pid);
        let status = tokio::time::timeout(self.timeout, child.wait()).await;
        if matches!(status, Ok(Ok(_))) {
            // It exited by itself; whatever it left running in the background is its business.
            running.0 = None;
        }
        writer.abort();
        let stderr_text = |s: Option<StderrCapture>| async move {
            match s {
                Some(capture) => capture.finish().await,
                None => String::new(),
            }
        };
        match status {
            Err(_) => {
                drop(running);
                let _ = child.kill().await;
                let err = stderr_text(stderr).await;
                AttemptResult {
                    timed_out: true,
                    error: Some(format!(
                        "timed out after {:?}; killed{}{err}",
                        self.timeout,
                        if err.is_empty() { "" } else { "; stderr: " }
                    )),
                    ..Default::default()
                }
            }
            Ok(Err(e)) => {
                drop(running);
                AttemptResult::failure(format!("cannot wait for {}: {e}", self.program.display()))
            }
            Ok(Ok(status)) => {
                let code = status.code();
                if status.success() {
                    return AttemptResult { ok: true, exit_code: code, ..Default::default() };
                }
                let err = stderr_text(stderr).await;
                let how = match code {
                    Some(c) => format!("exit code {c}"),
                    None => "killed by a signal".to_string(),
                };
                AttemptResult {
                    exit_code: code,
                    error: Some(format!("{how}{}{err}", if err.is_empty() { "" } else { "; stderr: " })),
                    ..Default::default()
                }
            }
        }
    }
}
