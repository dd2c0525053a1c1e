//! The ceiling: a bare axum server that reads the body and answers 200 with a small JSON body.
//! usage: ceiling ADDR   (prints the bound address)

use axum::Router;
use axum::body::Bytes;

#[tokio::main]
async fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".into());
    let app = Router::new().fallback(|body: Bytes| async move {
        let _ = body.len();
        ([("content-type", "application/json")], r#"{"status":"queued","event_id":"0"}"#)
    });
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    println!("{}", listener.local_addr().unwrap());
    axum::serve(listener, app).await.unwrap();
}
