//! A TCP proxy in front of a real service, which a test stops (closing every connection through
//! it, as a broker that goes away does) and starts again on the same port. The real service is
//! never touched: other tests and other people use it.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

pub struct TcpProxy {
    pub port: u16,
    target: SocketAddr,
    tasks: Option<JoinSet<()>>,
}

impl TcpProxy {
    /// A proxy to `target` on a free port, not yet listening: connections to it are refused.
    pub fn stopped(target: SocketAddr) -> TcpProxy {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        TcpProxy { port, target, tasks: None }
    }

    /// Listens on its port and passes each connection on to the target.
    pub async fn start(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        let target = self.target;
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                conns.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        self.tasks = Some(tasks);
    }

    /// Stops listening and cuts every connection through it (dropping the tasks drops the sockets).
    pub async fn stop(&mut self) {
        if let Some(mut tasks) = self.tasks.take() {
            tasks.shutdown().await;
        }
    }

    /// The URL of `base` with its host and port replaced by the proxy's.
    pub fn url(&self, base: &str) -> String {
        let mut url = url::Url::parse(base).unwrap();
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(self.port)).unwrap();
        url.to_string()
    }
}

/// The host and port of a service URL (`nats://127.0.0.1:4222`).
pub fn addr_of(url: &str) -> SocketAddr {
    let url = url::Url::parse(url).unwrap();
    let host = url.host_str().unwrap();
    let host = if host == "localhost" { "127.0.0.1" } else { host };
    SocketAddr::new(host.parse().unwrap(), url.port().unwrap())
}
