//! Unit tests of the delivery loop's claim rounds.

use std::path::Path;

use super::*;
use crate::store::sqlite::SqliteStore;

async fn dispatcher(dir: &Path) -> Dispatcher {
    let text = r#"
        [delivery]
        concurrency = 8
        [[destinations]]
        name = "slow"
        type = "exec"
        command = ["true"]
        concurrency = 2
        [[destinations]]
        name = "fast"
        type = "exec"
        command = ["true"]
    "#;
    let config = Config::from_toml(text, Path::new("t.toml"), dir).unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("t.db"), crate::clock::system()).await.unwrap());
    Dispatcher::new(&config, store, &HashMap::new(), &Metrics::new(), crate::clock::system(), None).unwrap()
}

fn wants(request: &ClaimRequest) -> Vec<(&str, usize)> {
    request.wants.iter().map(|w| (w.destination.as_str(), w.max)).collect()
}

/// A round asks of a destination with its own concurrency only what it has permits for, holds
/// those permits for the deliveries it claims, and leaves it out while they are all held; each
/// round starts one destination further along.
#[tokio::test]
async fn a_round_asks_each_destination_only_for_what_it_can_start() {
    let dir = tempfile::tempdir().unwrap();
    let d = dispatcher(dir.path()).await;
    let (first, held) = d.claim_request(8, 0);
    assert_eq!(wants(&first), [("slow", 2), ("fast", 8)]);
    assert_eq!(first.total, 8);
    // While the slow destination's two permits are held, it is not asked for more.
    let (second, _) = d.claim_request(8, 1);
    assert_eq!(wants(&second), [("fast", 8)]);
    drop(held);
    let (third, _) = d.claim_request(5, 1);
    assert_eq!(wants(&third), [("fast", 5), ("slow", 2)], "the next round starts with the next destination");
    assert!(third.wants.iter().all(|w| w.lease == d.routes[&w.destination].lease));
}
