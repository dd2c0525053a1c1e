//! The destination state table (CONTRACT §8) on PostgreSQL, shared by every node. A claim reads the
//! state of the destinations it asks for; those whose claim changes the row (a rate limit's tokens,
//! a circuit's trial) are locked `FOR UPDATE` and claimed in the same transaction, so two nodes
//! never take the same tokens or both start a trial. The rules themselves are `store/control.rs`.

use deadpool_postgres::GenericClient;

use super::*;

const COLUMNS: &str = "destination, paused, circuit, failures, cooldown_ms, open_until, trial_until, tokens, tokens_at,
    per_second, last_error, last_success_at";

fn row(r: &Row) -> Result<DestinationState, tokio_postgres::Error> {
    Ok(DestinationState {
        destination: r.try_get(0)?,
        paused: r.try_get(1)?,
        circuit: r.try_get(2)?,
        failures: r.try_get::<_, i32>(3)?.max(0) as u32,
        cooldown_ms: r.try_get(4)?,
        open_until: r.try_get(5)?,
        trial_until: r.try_get(6)?,
        tokens: r.try_get(7)?,
        tokens_at: r.try_get(8)?,
        per_second: r.try_get(9)?,
        last_error: r.try_get(10)?,
        last_success_at: r.try_get(11)?,
    })
}

/// The states of `names`, in that order (new ones for rows that do not exist); `lock` locks the rows
/// (creating them first, so that there is a row to lock).
async fn states<C: GenericClient + Sync>(
    c: &C,
    names: &[&str],
    lock: bool,
) -> Result<Vec<DestinationState>, StoreError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    if lock {
        c.execute(
            "INSERT INTO destination_state (destination) SELECT unnest($1::text[]) ORDER BY 1 ON CONFLICT DO NOTHING",
            &[&names],
        )
        .await?;
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM destination_state WHERE destination = ANY($1) ORDER BY destination{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let rows = c.query(&sql, &[&names]).await?;
    let mut found: HashMap<String, DestinationState> = HashMap::new();
    for r in &rows {
        let s = row(r)?;
        found.insert(s.destination.clone(), s);
    }
    Ok(names.iter().map(|n| found.remove(*n).unwrap_or_else(|| DestinationState::new(n))).collect())
}

async fn save<C: GenericClient + Sync>(c: &C, s: &DestinationState) -> Result<(), StoreError> {
    let failures = s.failures.min(i32::MAX as u32) as i32;
    let error = s.last_error.as_deref().map(text);
    let error = error.as_deref();
    c.execute(
        &format!(
            "INSERT INTO destination_state ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (destination) DO UPDATE SET paused = $2, circuit = $3, failures = $4, cooldown_ms = $5,
                open_until = $6, trial_until = $7, tokens = $8, tokens_at = $9, per_second = $10, last_error = $11,
                last_success_at = $12"
        ),
        &[
            &s.destination,
            &s.paused,
            &s.circuit,
            &failures,
            &s.cooldown_ms,
            &s.open_until,
            &s.trial_until,
            &s.tokens,
            &s.tokens_at,
            &s.per_second,
            &error,
            &s.last_success_at,
        ],
    )
    .await?;
    Ok(())
}

type Plan<'a> = (Vec<&'a str>, Vec<i64>, Vec<i64>);

/// The claim statement's arrays: each destination with what its state lets this claim take.
fn plan<'a>(wants: &[(&'a Want, usize)], current: &HashMap<String, DestinationState>, now: Millis) -> Plan<'a> {
    let (mut names, mut counts, mut leases) = (Vec::new(), Vec::new(), Vec::new());
    for (want, n) in wants {
        let n = (*n).min(current[&want.destination].gate(want.rate.as_ref(), now));
        if n > 0 {
            names.push(want.destination.as_str());
            counts.push(n as i64);
            leases.push(want.lease.as_millis() as i64);
        }
    }
    (names, counts, leases)
}

async fn claim_rows<C: GenericClient + Sync>(
    c: &C,
    request: &ClaimRequest,
    names: &[&str],
    counts: &[i64],
    leases: &[i64],
    token: i64,
    now: Millis,
) -> Result<Vec<Claimed>, StoreError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let stmt = c.prepare_cached(CLAIM).await?;
    let rows = c.query(&stmt, &[&now, &(request.total as i64), &token, &names, &counts, &leases]).await?;
    Ok(rows.iter().map(|r| queries::claimed(r, token)).collect::<Result<Vec<_>, _>>()?)
}

impl PostgresStore {
    /// `claim`, gated by each destination's state (see the module's comment).
    pub(super) async fn claim_gated(&self, request: &ClaimRequest, now: Millis) -> Result<Vec<Claimed>, StoreError> {
        let wants: Vec<(&Want, usize)> = request.open_wants().collect();
        if wants.is_empty() {
            return Ok(Vec::new());
        }
        timed(async {
            let mut client = self.client().await?;
            let names: Vec<&str> = wants.iter().map(|(w, _)| w.destination.as_str()).collect();
            let seen = states(&client, &names, false).await?;
            let locked: Vec<&str> = wants
                .iter()
                .zip(&seen)
                .filter(|((w, _), s)| s.claim_writes(w.rate.as_ref(), now))
                .map(|((w, _), _)| w.destination.as_str())
                .collect();
            let mut current: HashMap<String, DestinationState> =
                seen.into_iter().map(|s| (s.destination.clone(), s)).collect();
            let token = claim_token();
            if locked.is_empty() {
                // Nothing to write back: one statement, as without delivery control.
                let (names, counts, leases) = plan(&wants, &current, now);
                return claim_rows(&client, request, &names, &counts, &leases, token, now).await;
            }
            let tx = client.transaction().await?;
            for s in states(&tx, &locked, true).await? {
                current.insert(s.destination.clone(), s);
            }
            let (names, counts, leases) = plan(&wants, &current, now);
            let claimed = claim_rows(&tx, request, &names, &counts, &leases, token, now).await?;
            for name in &locked {
                let want = wants.iter().find(|(w, _)| w.destination == *name).map(|(w, _)| *w);
                let Some(want) = want else { continue };
                let n = claimed.iter().filter(|c| c.destination == *name).count();
                let lease = want.lease.as_millis() as i64;
                if let Some(next) = current[*name].after_claim(n, want.rate.as_ref(), lease, now) {
                    save(&tx, &next).await?;
                }
            }
            tx.commit().await?;
            Ok(claimed)
        })
        .await
    }

    /// When the soonest of `due` (destination, due time) may be claimed, its state considered.
    pub(super) async fn gated_due(&self, due: Vec<(String, Millis)>) -> Result<Option<Millis>, StoreError> {
        if due.is_empty() {
            return Ok(None);
        }
        let names: Vec<&str> = due.iter().map(|(d, _)| d.as_str()).collect();
        let client = self.client().await?;
        let states = states(&client, &names, false).await?;
        Ok(due.iter().zip(&states).filter_map(|((_, t), s)| s.not_before(*t)).min())
    }

    pub(super) async fn read_states(&self, names: &[String]) -> Result<Vec<DestinationState>, StoreError> {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        timed(async { states(&self.client().await?, &names, false).await }).await
    }

    pub(super) async fn write_paused(&self, destination: &str, paused: bool) -> Result<(), StoreError> {
        let sql = format!(
            "WITH s AS (INSERT INTO destination_state (destination, paused) VALUES ($1, $2)
                ON CONFLICT (destination) DO UPDATE SET paused = $2 RETURNING 1)
             SELECT CASE WHEN NOT $2 THEN pg_notify('{CHANNEL}', '')::text END FROM s"
        );
        self.query(&sql, &[&destination, &paused]).await?;
        if !paused {
            self.wakeup.notify_one();
        }
        Ok(())
    }

    pub(super) async fn apply_note(&self, note: &AttemptNote) -> Result<Option<CircuitChange>, StoreError> {
        timed(async {
            let mut client = self.client().await?;
            let name = [note.destination.as_str()];
            // Most successes change nothing worth writing: no lock for them.
            let seen = states(&client, &name, false).await?;
            if seen[0].after_attempt(note).is_none() {
                return Ok(None);
            }
            let tx = client.transaction().await?;
            let locked = states(&tx, &name, true).await?;
            let change = match locked[0].after_attempt(note) {
                None => None,
                Some((next, change)) => {
                    save(&tx, &next).await?;
                    change
                }
            };
            tx.commit().await?;
            Ok(change)
        })
        .await
    }

    pub(super) async fn counts_of(&self, names: &[String]) -> Result<Vec<(String, DeliveryStatus, u64)>, StoreError> {
        let rows = self
            .query(
                "SELECT destination, status, count(*) FROM deliveries
                 WHERE destination = ANY($1) AND status IN ('pending', 'failed', 'in_flight', 'dead')
                 GROUP BY destination, status",
                &[&names],
            )
            .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get::<_, i64>(2)?.max(0) as u64))).collect()
    }
}
