//! Routing rules (CONTRACT §7): jq filters and transforms over the event document. Pure: no I/O,
//! no clock. `engine.rs` compiles and runs jq with limits; `document.rs` builds the input;
//! `reads.rs` tells from an expression's text what of the input it reads and whether it is plain
//! enough to run on the request's own thread. Read `engine.rs` first.

pub mod document;
pub mod engine;
pub mod pool;
pub mod reads;

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

/// A source's (or `[alerts]`') filters and ordering keys, one per `deliver_to` entry (`None`: that
/// entry has none; an empty list: no entry has one), with what they read of the document
/// (`reads.rs`) and whether all are plain.
#[derive(Clone)]
pub struct Programs {
    pub filters: Arc<[Option<Filter>]>,
    pub keys: Arc<[Option<Filter>]>,
    needs: Arc<reads::Needs>,
    inline: bool,
}

impl Programs {
    pub fn new(filters: Arc<[Option<Filter>]>, keys: Arc<[Option<Filter>]>) -> Programs {
        let mut needs = reads::Needs::none();
        let mut inline = true;
        for (program, _) in filters.iter().chain(keys.iter()).flatten() {
            needs.union(&program.needs);
            inline &= program.plain;
        }
        Programs { filters, keys, needs: Arc::new(needs), inline }
    }

    /// Each entry's verdict and ordering key for one event (empty lists when there is nothing to
    /// run); `parts` is built only when something runs, as far as the programs read. Plain programs
    /// first run on the caller's thread under small limits; when none is plain, or a limit stopped
    /// one, all run on `pool` with the full limits (a run has no effects to undo). Without threads
    /// (a library caller's mistake) or when the run fails, every filter is an error: nothing passes
    /// unfiltered by accident.
    pub async fn run(
        &self,
        pool: Option<&pool::Pool>,
        parts: impl FnOnce(&reads::Needs) -> document::Parts,
    ) -> (Vec<Verdict>, Vec<Result<Option<String>, String>>) {
        let failed = |why: &str| (vec![Verdict::Error(format!("filter error: {why}")); self.filters.len()], Vec::new());
        match pool {
            Some(pool) if !self.filters.is_empty() || !self.keys.is_empty() => {
                let parts = parts(&self.needs);
                if self.inline {
                    let routed = route(&parts, &self.filters, &self.keys, &self.needs, Limits::inline());
                    if !routed.stopped {
                        return (routed.verdicts, routed.keys);
                    }
                }
                let (filters, keys, needs) = (self.filters.clone(), self.keys.clone(), self.needs.clone());
                let run = move || {
                    let routed = route(&parts, &filters, &keys, &needs, Limits::default());
                    (routed.verdicts, routed.keys)
                };
                pool.run(run).await.unwrap_or_else(|| failed("the filter's run failed"))
            }
            None if !self.filters.is_empty() => failed("no routing threads were started"),
            _ => (Vec::new(), Vec::new()),
        }
    }
}

/// Runs each filter (`None`: the destination has none) on the document of `parts`.
pub fn verdicts(parts: &document::Parts, filters: &[Option<Filter>], limits: Limits) -> Vec<Verdict> {
    let doc = parts.document();
    filters.iter().map(|f| verdict(f, &doc, limits).0).collect()
}

/// One filter's verdict, and whether a limit stopped it.
fn verdict(filter: &Option<Filter>, doc: &Val, limits: Limits) -> (Verdict, bool) {
    let Some((program, text)) = filter else { return (Verdict::Match, false) };
    match program.first(doc.clone(), limits) {
        Ok(out) if truthy(&out) => (Verdict::Match, false),
        Ok(out) => (
            Verdict::NoMatch(format!(
                "no match: {} gave {}",
                text.trim(),
                out.map_or_else(|| "no output".to_string(), |v| v.to_string())
            )),
            false,
        ),
        Err(e) => (Verdict::Error(format!("filter error: {e}")), matches!(e, RunError::Limit(_))),
    }
}

/// One ordering key (CONTRACT §8), and whether a limit stopped it: a string output as it is,
/// `null` or no output as none (unordered), any other value as its JSON text. An expression that
/// raises or hits a limit gives none too, with the reason, so the event is still stored (and logged).
fn ordering_key(key: &Option<Filter>, doc: &Val, limits: Limits) -> (Result<Option<String>, String>, bool) {
    let Some((program, _)) = key else { return (Ok(None), false) };
    match program.first(doc.clone(), limits) {
        Ok(None) | Ok(Some(Val::Null)) => (Ok(None), false),
        Ok(Some(Val::TStr(s))) => (Ok(Some(String::from_utf8_lossy(&s).into_owned())), false),
        Ok(Some(v)) => (Ok(Some(v.to_string())), false),
        Err(e) => (Err(format!("ordering_key error: {e}")), matches!(e, RunError::Limit(_))),
    }
}

/// What a source's filters and ordering keys made of one event.
#[derive(Debug)]
pub struct Routed {
    /// One per `deliver_to` entry; empty when the source has no filter.
    pub verdicts: Vec<Verdict>,
    /// One per `deliver_to` entry; empty when no destination has an ordering key.
    pub keys: Vec<Result<Option<String>, String>>,
    /// Whether a limit stopped one of the runs.
    pub stopped: bool,
}

/// Runs a source's `filters` and ordering `keys` (`None`: that entry has none) on one document of
/// `parts`, built as far as `needs` reads (the union of the programs' own needs, or more).
pub fn route(
    parts: &document::Parts,
    filters: &[Option<Filter>],
    keys: &[Option<Filter>],
    needs: &reads::Needs,
    limits: Limits,
) -> Routed {
    let doc = parts.document_for(needs);
    let mut stopped = false;
    let verdicts = filters
        .iter()
        .map(|f| {
            let (verdict, hit) = verdict(f, &doc, limits);
            stopped |= hit;
            verdict
        })
        .collect();
    let keys = if keys.iter().all(Option::is_none) {
        Vec::new()
    } else {
        keys.iter()
            .map(|k| {
                let (key, hit) = ordering_key(k, &doc, limits);
                stopped |= hit;
                key
            })
            .collect()
    };
    Routed { verdicts, keys, stopped }
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
