//! What a claimed delivery carries: the stored event, or what its route's transform makes of it
//! (CONTRACT §7). Shared by the push workers (`worker.rs`) and pull claims (`pull.rs`), so a pull
//! consumer gets exactly the body an http destination would have been sent.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::Config;
use crate::destination::Attempt;
use crate::routing::document::{Parts, stored_headers};
use crate::routing::engine::{Limits, Program};
use crate::routing::{self, pool::Pool};
use crate::store::Claimed;

pub struct Transforms {
    /// Each (source, destination) with a transform, and the source's credential header (left out
    /// of the document).
    programs: HashMap<(String, String), (Arc<Program>, Option<String>)>,
    /// The threads transforms run on, when the config has expressions.
    routing: Option<Pool>,
}

impl Transforms {
    pub fn new(config: &Config, routing: Option<Pool>) -> Result<Self, String> {
        let mut programs = HashMap::new();
        for s in &config.sources {
            for r in &s.routes {
                if let Some(t) = &r.transform {
                    let credential = s.verifier.credential_header().map(str::to_string);
                    programs.insert((s.name.clone(), r.destination.clone()), (t.program.clone(), credential));
                }
            }
        }
        for r in config.alerts.iter().flat_map(|a| &a.routes) {
            if let Some(t) = &r.transform {
                programs.insert(
                    (crate::config::ALERT_SOURCE.to_string(), r.destination.clone()),
                    (t.program.clone(), None),
                );
            }
        }
        if !programs.is_empty() && routing.is_none() {
            return Err("the config has transforms but no routing threads were started".into());
        }
        Ok(Transforms { programs, routing })
    }

    /// What the destination gets: the stored event, or what its transform makes of it (an error of
    /// the transform makes the delivery dead at once: retrying the same input cannot help).
    /// `traceparent`: the attempt's span, for an HTTP destination to pass on.
    pub async fn attempt_of(&self, c: &Claimed, traceparent: Option<String>) -> Result<Attempt, String> {
        let mut attempt = Attempt {
            event_id: c.event_id.clone(),
            source: c.source.clone(),
            destination: c.destination.clone(),
            attempt: c.attempt,
            content_type: c.content_type.clone(),
            headers_json: c.headers_json.clone(),
            body: c.body.clone(),
            received_at: c.received_at,
            traceparent,
        };
        let key = (c.source.clone(), c.destination.clone());
        let (Some((program, credential)), Some(pool)) = (self.programs.get(&key), &self.routing) else {
            return Ok(attempt);
        };
        let parts = Parts {
            source: c.source.clone(),
            event_id: c.event_id.clone(),
            path_and_query: c.path.clone(),
            headers: stored_headers(&c.headers_json, credential.as_deref()),
            content_type: c.content_type.clone(),
            body: c.body.clone(),
        };
        let program = program.clone();
        let (body, content_type) = pool
            .run(move || routing::transformed(&program, &parts, Limits::default()))
            .await
            .unwrap_or_else(|| Err("transform error: the transform's run failed".into()))?;
        attempt.body = body.into();
        attempt.content_type = Some(content_type.to_string());
        Ok(attempt)
    }
}
