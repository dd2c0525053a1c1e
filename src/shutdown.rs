//! The shutdown signal: SIGTERM or SIGINT. Tests pass their own future to `App::run_until` instead.
//! And SIGHUP, the reload signal (`on_hangup`).

/// Resolves on SIGTERM or SIGINT (Ctrl-C). The handlers are installed before this returns, so
/// from then on neither signal takes its default action (exit at once, without draining): a
/// SIGTERM that comes while the listeners start up still drains. Call it inside the runtime.
pub fn signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (term, int) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()));
        async move {
            let wait = |s: std::io::Result<tokio::signal::unix::Signal>| async move {
                match s {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            tokio::select! { _ = wait(term) => {}, _ = wait(int) => {} }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
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
