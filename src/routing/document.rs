//! The event document every expression reads (CONTRACT §7):
//! `{"source", "event_id", "path", "query", "headers", "body", "raw"}`. Built once per request, only
//! for sources that have expressions, and again from the stored event at each transformed attempt.

use hifijson::SliceLexer;
use hifijson::str::LexAlloc;
use hifijson::token::Lex;
use jaq_json::Val;

use super::engine::{object, parse_json, string};
use super::reads::{Field, Needs};

/// Nesting a body may have and still be parsed as JSON for expressions (as serde_json's default);
/// a deeper body is `null` in `.body` (its text is still in `.raw`).
pub const MAX_JSON_DEPTH: usize = 128;

/// What a document is made of, owned, so that it can cross to the routing threads.
#[derive(Debug, Clone)]
pub struct Parts {
    pub source: String,
    pub event_id: String,
    /// The request target as received: the path and, after `?`, the query.
    pub path_and_query: String,
    /// Lower-case names, each once (the last value of a repeated header), values as stored
    /// (credentials `[redacted]`); the source's signature or credential header left out.
    pub headers: Vec<(String, String)>,
    pub content_type: Option<String>,
    pub body: bytes::Bytes,
}

impl Parts {
    /// The document, as a jq value.
    pub fn document(&self) -> Val {
        let (path, query) = match self.path_and_query.split_once('?') {
            Some((p, q)) => (p, q),
            None => (self.path_and_query.as_str(), ""),
        };
        let query =
            last_values(url::form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())));
        // Names are unique already (a header map's keys, or a stored JSON object's).
        let headers = object(self.headers.iter().map(|(k, v)| (string(k.as_str()), string(v.as_str()))));
        object([
            (string("source"), string(self.source.as_str())),
            (string("event_id"), string(self.event_id.as_str())),
            (string("path"), string(path)),
            (string("query"), query),
            (string("headers"), headers),
            (string("body"), self.body_value()),
            (string("raw"), self.raw()),
        ])
    }

    /// The document as far as `needs` reads it (`reads.rs`): the fields it names, and of `body`,
    /// `headers` and `query` only the fields it names of them. What is read has the value it has
    /// in [`Parts::document`].
    pub fn document_for(&self, needs: &Needs) -> Val {
        if needs.is_all() {
            return self.document();
        }
        let (path, query) = self.path_and_query.split_once('?').unwrap_or((self.path_and_query.as_str(), ""));
        let keep = |field: &Field, name: &str| match field {
            Field::Whole => true,
            Field::Only(names) => names.contains(name),
        };
        let mut fields = Vec::new();
        for key in ["source", "event_id", "path", "query", "headers", "body", "raw"] {
            let Some(field) = needs.field(key) else { continue };
            let value = match key {
                "source" => string(self.source.as_str()),
                "event_id" => string(self.event_id.as_str()),
                "path" => string(path),
                "query" => last_values(
                    url::form_urlencoded::parse(query.as_bytes())
                        .filter(|(k, _)| keep(field, k))
                        .map(|(k, v)| (k.into_owned(), v.into_owned())),
                ),
                "headers" => object(
                    self.headers
                        .iter()
                        .filter(|(k, _)| keep(field, k))
                        .map(|(k, v)| (string(k.as_str()), string(v.as_str()))),
                ),
                "body" => match field {
                    Field::Whole => self.body_value(),
                    Field::Only(names) => self.body_fields(names),
                },
                _ => self.raw(),
            };
            fields.push((string(key), value));
        }
        object(fields)
    }

    /// The body with only the fields `names` of its top level, when it is a JSON object; any other
    /// body whole (as [`Parts::body_value`]). The rest of the object is checked, not built.
    fn body_fields(&self, names: &std::collections::BTreeSet<String>) -> Val {
        if self.is_form() {
            return last_values(
                url::form_urlencoded::parse(&self.body)
                    .filter(|(k, _)| names.contains(&**k))
                    .map(|(k, v)| (k.into_owned(), v.into_owned())),
            );
        }
        if self.too_deep() {
            return Val::Null;
        }
        json_fields(&self.body, names).unwrap_or_else(|| parse_json(&self.body).unwrap_or(Val::Null))
    }

    fn is_form(&self) -> bool {
        self.content_type.as_deref().is_some_and(|ct| {
            ct.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
        })
    }

    /// Whether the body nests deeper than [`MAX_JSON_DEPTH`]. Counting the opening brackets is one
    /// vectorised pass; only a body with more of them than the limit can be nested deeper, and only
    /// then is the nesting walked.
    fn too_deep(&self) -> bool {
        let openings = self.body.iter().filter(|&&b| b == b'[' || b == b'{').count();
        openings > MAX_JSON_DEPTH && json_depth(&self.body) > MAX_JSON_DEPTH
    }

    /// The body as text: its own bytes when they are UTF-8 (no copy), else a lossy copy.
    fn raw(&self) -> Val {
        match std::str::from_utf8(&self.body) {
            Ok(_) => Val::utf8_str(self.body.clone()),
            Err(_) => string(String::from_utf8_lossy(&self.body).into_owned()),
        }
    }

    /// A form's fields, else the body as JSON when it parses (whatever the Content-Type), else null.
    fn body_value(&self) -> Val {
        if self.is_form() {
            return last_values(url::form_urlencoded::parse(&self.body).map(|(k, v)| (k.into_owned(), v.into_owned())));
        }
        if self.too_deep() {
            return Val::Null;
        }
        parse_json(&self.body).unwrap_or(Val::Null)
    }
}

/// The fields `names` of a JSON object's top level, each parsed as `jaq_json` parses it (a name
/// given twice keeps its last value); the other values are checked and skipped. `None` when `text`
/// is not one strict JSON object, for the caller to parse it whole.
fn json_fields(text: &[u8], names: &std::collections::BTreeSet<String>) -> Option<Val> {
    let mut lexer = SliceLexer::new(text);
    if lexer.ws_peek() != Some(b'{') {
        return None;
    }
    let offset = |rest: &[u8]| text.len() - rest.len();
    let mut found: Vec<(String, std::ops::Range<usize>)> = Vec::new();
    let scanned = lexer.discarded().seq(b'}', SliceLexer::ws_peek, |next, lexer| {
        lexer.expect(|_| Some(next), b'"').ok_or(hifijson::Expect::String)?;
        let name = lexer.str_string().map_err(hifijson::Error::Str)?;
        lexer.expect(SliceLexer::ws_peek, b':').ok_or(hifijson::Expect::Colon)?;
        let next = lexer.ws_peek().ok_or(hifijson::Expect::Value)?;
        let start = offset(lexer.as_slice());
        hifijson::ignore::parse(next, lexer)?;
        if names.contains(&*name) {
            let range = start..offset(lexer.as_slice());
            match found.iter_mut().find(|(n, _)| *n == *name) {
                Some(slot) => slot.1 = range,
                None => found.push((name.into_owned(), range)),
            }
        }
        Ok::<_, hifijson::Error>(())
    });
    if scanned.is_err() || lexer.ws_peek().is_some() {
        return None;
    }
    let mut fields = Vec::with_capacity(found.len());
    for (name, range) in found {
        fields.push((string(name), parse_json(&text[range])?));
    }
    Some(object(fields))
}

/// An object of `pairs`, a name given more than once keeping its last value (in its first place).
fn last_values(pairs: impl Iterator<Item = (String, String)>) -> Val {
    let mut fields: Vec<(String, String)> = Vec::new();
    for (k, v) in pairs {
        match fields.iter_mut().find(|(name, _)| *name == k) {
            Some(slot) => slot.1 = v,
            None => fields.push((k, v)),
        }
    }
    object(fields.into_iter().map(|(k, v)| (string(k), string(v))))
}

/// The deepest nesting of arrays and objects in JSON text (strings skipped), without parsing it.
pub fn json_depth(text: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in text {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The stored headers (a JSON object of name → value) as document headers, without `credential`.
pub fn stored_headers(headers_json: &str, credential: Option<&str>) -> Vec<(String, String)> {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(headers_json) else {
        return Vec::new();
    };
    map.into_iter()
        .filter(|(name, _)| !credential.is_some_and(|c| name.eq_ignore_ascii_case(c)))
        .map(|(name, value)| {
            let value = match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            (name.to_ascii_lowercase(), value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::engine::{Limits, Program};
    use super::*;

    fn parts(content_type: &str, body: &str) -> Parts {
        Parts {
            source: "gh".into(),
            event_id: "e1".into(),
            path_and_query: "/hooks/gh?x=1&x=2&y=a%20b".into(),
            headers: vec![("x-github-event".into(), "ping".into())],
            content_type: Some(content_type.into()),
            body: bytes::Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn the_document_has_every_field() {
        let doc = parts("application/json", r#"{"ref":"refs/heads/main"}"#).document().to_string();
        let want = r#"{"source":"gh","event_id":"e1","path":"/hooks/gh","query":{"x":"2","y":"a b"},"headers":{"x-github-event":"ping"},"body":{"ref":"refs/heads/main"},"raw":"{\"ref\":\"refs/heads/main\"}"}"#;
        assert_eq!(doc, want);
    }

    #[test]
    fn bodies_are_forms_json_or_null() {
        let form = parts("application/x-www-form-urlencoded; charset=utf-8", "a=1&b=x+y&a=3").document().to_string();
        assert!(form.contains(r#""body":{"a":"3","b":"x y"}"#), "{form}");
        let text_json = parts("text/plain", "[1,2]").document().to_string();
        assert!(text_json.contains(r#""body":[1,2]"#), "{text_json}");
        let not_json = parts("application/json", "{nope").document().to_string();
        let mut latin1 = parts("text/plain", "");
        latin1.body = bytes::Bytes::from_static(b"caf\xe9");
        assert!(latin1.document().to_string().contains("\"raw\":\"caf\u{fffd}\""));
        assert!(not_json.contains(r#""body":null"#), "{not_json}");
        let deep = "[".repeat(MAX_JSON_DEPTH + 1) + &"]".repeat(MAX_JSON_DEPTH + 1);
        assert!(parts("application/json", &deep).document().to_string().contains(r#""body":null"#));
        assert_eq!(json_depth(br#"{"a":"[[[[","b":[{}]}"#), 3);
    }

    #[test]
    fn a_partial_document_reads_as_the_whole_one() {
        let exprs = [".body.a", ".body.b", r#".body["é"]"#, ".headers[\"x-github-event\"]", ".query.x", ".path"];
        let mut needs = Needs::none();
        for e in exprs {
            needs.union(&super::super::reads::analyse(e).0);
        }
        let bodies = [
            r#"{"a": 1.50, "pad": "xxxx", "b": {"c": [1, "two"]}}"#,
            r#"{"a": 1, "a": 2, "\u0062": "escaped name", "\u00e9": true}"#,
            r#" {"z": [[[]]], "a": "x\ny"} "#,
            r#"[{"a": 1}]"#,
            r#""a string""#,
            r#"{"a": 1} trailing"#,
            r#"{"a": NaN, "b": 1}"#,
            r#"{"a": 1, "b": }"#,
            "",
        ];
        for body in bodies {
            let p = parts("application/json", body);
            let (whole, partial) = (p.document(), p.document_for(&needs));
            for e in exprs {
                let program = Program::compile(e).expect("compiles");
                let run = |doc: &Val| program.first(doc.clone(), Limits::inline()).map(|v| v.map(|v| v.to_string()));
                assert_eq!(run(&partial), run(&whole), "{e} on {body}");
            }
        }
        let partial = parts("application/json", r#"{"a":1,"pad":"x","b":2}"#).document_for(&needs).to_string();
        assert_eq!(
            partial,
            r#"{"path":"/hooks/gh","query":{"x":"2"},"headers":{"x-github-event":"ping"},"body":{"a":1,"b":2}}"#
        );
        let form = parts("application/x-www-form-urlencoded", "a=1&pad=x&a=3").document_for(&needs).to_string();
        assert!(form.contains(r#""body":{"a":"3"}"#), "{form}");
    }

    #[test]
    fn stored_headers_leave_out_the_credential() {
        let h = stored_headers(
            r#"{"X-Hub-Signature-256":"[redacted]","x-github-event":"push"}"#,
            Some("x-hub-signature-256"),
        );
        assert_eq!(h, vec![("x-github-event".to_string(), "push".to_string())]);
    }
}
