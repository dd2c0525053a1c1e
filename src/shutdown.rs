//! The shutdown signal: SIGTERM or SIGINT. Tests pass their own future to `App::run_until` instead.
//! And SIGHUP, the reload signal (`on_hangup`).

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// Calls `reload` on every SIGHUP until the returned task is aborted. The handler is installed
/// before this returns, so a SIGHUP from then on never takes the default action (exit).
#[cfg(unix)]
pub fn on_hangup(mut reload: impl FnMut() + Send + 'static) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hup.recv().await.is_some() {
            reload();
        }
    }))
}

/// No SIGHUP here.
#[cfg(not(unix))]
pub fn on_hangup(_reload: impl FnMut() + Send + 'static) -> std::io::Result<tokio::task::JoinHandle<()>> {
    Ok(tokio::spawn(async {}))
}
