//! Routing rules (CONTRACT §7): jq filters and transforms over the event document. Pure: no I/O,
//! no clock. `engine.rs` compiles and runs jq with limits; `document.rs` builds the input.
//! Read `engine.rs` first.

pub mod document;
pub mod engine;
pub mod pool;

use std::sync::Arc;

use engine::{Limits, Program, RunError};
use jaq_json::Val;

/// Whether a filter's first output lets the event through: anything but `false`, `null` or nothing.
fn truthy(v: &Option<Val>) -> bool {
    !matches!(v, None | Some(Val::Null) | Some(Val::Bool(false)))
}

/// What one destination's filter made of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It gets a delivery (its filter matched, or it has none).
    Match,
    /// The filter's first output was `false`, `null` or nothing: the text says which.
    NoMatch(String),
    /// The filter raised or was stopped by a limit: counted as no match.
    Error(String),
}

impl Verdict {
    /// Why the delivery is `filtered` (its `last_error`), or `None` when it is due.
    pub fn reason(&self) -> Option<String> {
        match self {
            Verdict::Match => None,
            Verdict::NoMatch(why) => Some(why.clone()),
            Verdict::Error(e) => Some(e.clone()),
        }
    }
}

/// A compiled filter with its text (for the reason of a non-match).
pub type Filter = (Arc<Program>, String);

/// Each `deliver_to` entry's verdict and ordering key for one event (empty lists when there is
/// nothing to run), run on `pool`; `parts` is built only when something runs. Without threads (a
/// library caller's mistake) or when the run fails, every filter is an error: nothing passes
/// unfiltered by accident.
pub async fn route(
    pool: Option<&pool::Pool>,
    parts: impl FnOnce() -> document::Parts,
    filters: &Arc<[Option<Filter>]>,
    keys: &Arc<[Option<Filter>]>,
) -> (Vec<Verdict>, Vec<Result<Option<String>, String>>) {
    let failed = |why: &str| (vec![Verdict::Error(format!("filter error: {why}")); filters.len()], Vec::new());
    match pool {
        Some(pool) if !filters.is_empty() || !keys.is_empty() => {
            let (parts, filters, keys) = (parts(), filters.clone(), keys.clone());
            let run = move || {
                let limits = Limits::default();
                (verdicts(&parts, &filters, limits), ordering_keys(&parts, &keys, limits))
            };
            pool.run(run).await.unwrap_or_else(|| failed("the filter's run failed"))
        }
        None if !filters.is_empty() => failed("no routing threads were started"),
        _ => (Vec::new(), Vec::new()),
    }
}

/// Runs each filter (`None`: the destination has none) on the document of `parts`.
pub fn verdicts(parts: &document::Parts, filters: &[Option<Filter>], limits: Limits) -> Vec<Verdict> {
    let doc = parts.document();
    filters
        .iter()
        .map(|f| {
            let Some((program, text)) = f else { return Verdict::Match };
            match program.first(doc.clone(), limits) {
                Ok(out) if truthy(&out) => Verdict::Match,
                Ok(out) => Verdict::NoMatch(format!(
                    "no match: {} gave {}",
                    text.trim(),
                    out.map_or_else(|| "no output".to_string(), |v| v.to_string())
                )),
                Err(e) => Verdict::Error(format!("filter error: {e}")),
            }
        })
        .collect()
}

/// Each destination's ordering key (CONTRACT §8) for the event: a string output as it is, `null` or
/// no output as none (unordered), any other value as its JSON text. An expression that raises or
/// hits a limit gives none too, with the reason, so the event is still stored (and logged).
pub fn ordering_keys(
    parts: &document::Parts,
    keys: &[Option<Filter>],
    limits: Limits,
) -> Vec<Result<Option<String>, String>> {
    if keys.iter().all(Option::is_none) {
        return Vec::new();
    }
    let doc = parts.document();
    keys.iter()
        .map(|k| {
            let Some((program, _)) = k else { return Ok(None) };
            match program.first(doc.clone(), limits) {
                Ok(None) | Ok(Some(Val::Null)) => Ok(None),
                Ok(Some(Val::TStr(s))) => Ok(Some(String::from_utf8_lossy(&s).into_owned())),
                Ok(Some(v)) => Ok(Some(v.to_string())),
                Err(e) => Err(format!("ordering_key error: {e}")),
            }
        })
        .collect()
}

/// For each destination of `deliver_to`, what [`route`] gave it: why it is `filtered` (None: due) and its
/// ordering key. A key whose expression raised is no key: the event is still delivered, unordered
/// (logged as a warning).
pub fn planned(
    deliver_to: &[String],
    verdicts: &[Verdict],
    keys: &[Result<Option<String>, String>],
) -> Vec<(Option<String>, Option<String>)> {
    (0..deliver_to.len())
        .map(|i| {
            let key = match keys.get(i) {
                Some(Ok(key)) => key.clone(),
                Some(Err(e)) => {
                    tracing::warn!(destination = %deliver_to[i], error = %e, "no ordering key: delivered unordered");
                    None
                }
                None => None,
            };
            (verdicts.get(i).and_then(Verdict::reason), key)
        })
        .collect()
}

/// A transform's output as the body to send and its content type: a string as it is
/// (`text/plain; charset=utf-8`), any other value as JSON (`application/json`).
pub fn transformed(
    program: &Program,
    parts: &document::Parts,
    limits: Limits,
) -> Result<(Vec<u8>, &'static str), String> {
    match program.first(parts.document(), limits) {
        Ok(Some(Val::TStr(s))) => Ok((s.to_vec(), "text/plain; charset=utf-8")),
        Ok(Some(v)) => Ok((v.to_string().into_bytes(), "application/json")),
        Ok(None) => Err("transform error: no output".into()),
        Err(RunError::Raised(m)) => Err(format!("transform error: {m}")),
        Err(e @ RunError::Limit(_)) => Err(format!("transform error: {e}")),
    }
}
