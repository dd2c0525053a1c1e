//! `hmac`: the declarative scheme (CONTRACT §9). A `verify` table says which header carries the
//! signature (`header`, `prefix`, `format`), what is MACed (`signed`, from `{body}`,
//! `{timestamp}`, `{url}`, `{method}`, `{path}`, `{header:Name}`), with which hash (`algorithm`)
//! and encoding, and where the timestamp is (`format` or `timestamp_header`). It is compiled at
//! load into a [`Plan`] (templates parsed once); the named presets (`presets.rs`) are plans too.
//! Every comparison is constant-time; any configured secret may match (rotation).

use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Sha256, Sha512};

use super::handshake::{self, Kind};
use super::hmac_generic::Encoding;
use super::spec::{Issues, Spec};
use super::template::{self, Format, Part};
use super::{
    Handshake, HandshakeError, HandshakeRequest, Request, Scheme, Signed, VerifyError, any_equal, fresh, header,
    json_pointer_field, signature_header, unix_now, unix_seconds,
};
use crate::secret::{Secret, ct_eq_hashed};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "sha1" => Some(Algorithm::Sha1),
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }

    /// HMAC of `parts` concatenated.
    pub fn mac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
            // HMAC takes keys of any length, so this cannot fail.
            let mut m = <M as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
            for p in parts {
                m.update(p);
            }
            m.finalize().into_bytes().to_vec()
        }
        match self {
            Algorithm::Sha1 => run::<Hmac<Sha1>>(key, parts),
            Algorithm::Sha256 => run::<Hmac<Sha256>>(key, parts),
            Algorithm::Sha512 => run::<Hmac<Sha512>>(key, parts),
        }
    }
}

/// How a provider writes its timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampUnit {
    /// Unix seconds (most providers; the only unit a user's `hmac` table has).
    Seconds,
    /// Unix milliseconds (HubSpot).
    Millis,
    /// RFC 3339 (Zendesk).
    Rfc3339,
}

impl TimestampUnit {
    fn seconds(self, text: &str) -> Result<i64, VerifyError> {
        match self {
            TimestampUnit::Seconds => unix_seconds(text),
            TimestampUnit::Millis if text.len() > 3 && text.len() <= 15 && text.bytes().all(|b| b.is_ascii_digit()) => {
                unix_seconds(&text[..text.len() - 3])
            }
            TimestampUnit::Millis => Err(VerifyError::Malformed("timestamp is not unix milliseconds")),
            TimestampUnit::Rfc3339 => time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .map(|t| t.unix_timestamp())
                .map_err(|_| VerifyError::Malformed("timestamp is not RFC 3339")),
        }
    }

    fn now(self, now: SystemTime) -> String {
        let secs = unix_now(now);
        match self {
            TimestampUnit::Seconds => secs.to_string(),
            TimestampUnit::Millis => format!("{secs}000"),
            TimestampUnit::Rfc3339 => time::OffsetDateTime::from_unix_timestamp(secs as i64)
                .ok()
                .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
                .unwrap_or_default(),
        }
    }
}

/// Where a provider names each delivery (the default dedupe key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Header(&'static str),
    /// A JSON pointer into the body.
    Json(&'static str),
}

/// A declarative scheme as written: a user's `hmac` table, or a preset.
#[derive(Debug, Clone)]
pub struct Recipe<'a> {
    pub header: &'a str,
    pub algorithm: &'a str,
    pub encoding: &'a str,
    pub prefix: &'a str,
    pub format: Option<&'a str>,
    pub signed: &'a str,
    pub timestamp_header: Option<&'a str>,
    pub unit: TimestampUnit,
    pub tolerance: Duration,
    pub public_url: Option<&'a str>,
    pub delivery: Option<Delivery>,
    pub handshake: Option<Kind>,
    /// HubSpot signs its URL with these escapes decoded: `%3A` `%2F` `%3F` `%40` `%21` `%24` `%27`
    /// `%28` `%29` `%2A` `%2C` `%3B`.
    pub decode_url: bool,
}

/// A compiled declarative scheme.
#[derive(Debug)]
pub struct Plan {
    header: String,
    algorithm: Algorithm,
    encoding: Encoding,
    prefix: String,
    format: Option<Format>,
    signed: Vec<Part>,
    timestamp_header: Option<String>,
    unit: TimestampUnit,
    tolerance: Duration,
    public_url: Option<String>,
    delivery: Option<Delivery>,
    handshake: Option<Kind>,
    decode_url: bool,
    /// Meta's `hub.verify_token` (`verify_token_env`).
    verify_token: Option<Secret>,
}

impl Plan {
    /// Compiles `r`, reporting each problem under its key.
    pub fn compile(r: &Recipe<'_>, p: &mut Issues) -> Option<Plan> {
        let before = p.len();
        if http::HeaderName::try_from(r.header).is_err() {
            p.push("header", format!("invalid header name {:?}", r.header));
        }
        let algorithm = Algorithm::parse(r.algorithm);
        if algorithm.is_none() {
            p.push(
                "algorithm",
                format!("unknown algorithm {:?}; accepted: \"sha1\", \"sha256\", \"sha512\"", r.algorithm),
            );
        }
        let encoding = match r.encoding {
            "hex" => Some(Encoding::Hex),
            "base64" => Some(Encoding::Base64),
            other => {
                p.push("encoding", format!("unknown encoding {other:?}; accepted: \"hex\", \"base64\""));
                None
            }
        };
        let format = r.format.and_then(|f| Format::parse(f).map_err(|e| p.push("format", e)).ok());
        let signed = template::signed(r.signed).map_err(|e| p.push("signed", e)).ok();
        if let Some(name) = r.timestamp_header {
            if http::HeaderName::try_from(name).is_err() {
                p.push("timestamp_header", format!("invalid header name {name:?}"));
            }
            if format.as_ref().is_some_and(Format::has_timestamp) {
                p.push("timestamp_header", "not used: format already carries {timestamp}");
            }
        }
        let has_ts = r.timestamp_header.is_some() || format.as_ref().is_some_and(Format::has_timestamp);
        if let Some(parts) = &signed {
            if parts.contains(&Part::Timestamp) && !has_ts {
                p.push(
                    "signed",
                    "uses {timestamp}: name its header with timestamp_header, or put {timestamp} in format",
                );
            }
            if !parts.contains(&Part::Timestamp) && has_ts {
                p.push("signed", "does not use {timestamp}: a timestamp that is not signed proves nothing");
            }
            if parts.contains(&Part::Url) && r.public_url.is_none() {
                p.push("public_url", "missing: signed uses {url}; write the URL the provider calls");
            }
            if !parts.contains(&Part::Url) && r.public_url.is_some() {
                p.push("public_url", "not used: signed has no {url}");
            }
        }
        if let Some(url) = r.public_url {
            match url::Url::parse(url) {
                Err(e) => p.push("public_url", format!("invalid URL {url:?}: {e}")),
                Ok(u) if !matches!(u.scheme(), "https" | "http") => p.push("public_url", "must be an https:// URL"),
                Ok(_) if url.contains('?') || url.contains('#') => {
                    p.push("public_url", "must not contain a query or #fragment: the request's query is appended")
                }
                Ok(_) => {}
            }
        }
        if p.len() > before {
            return None;
        }
        Some(Plan {
            header: r.header.to_ascii_lowercase(),
            algorithm: algorithm?,
            encoding: encoding?,
            prefix: r.prefix.to_string(),
            format,
            signed: signed?,
            timestamp_header: r.timestamp_header.map(str::to_ascii_lowercase),
            unit: r.unit,
            tolerance: r.tolerance,
            public_url: r.public_url.map(str::to_string),
            delivery: r.delivery,
            handshake: r.handshake,
            decode_url: r.decode_url,
            verify_token: None,
        })
    }

    /// The user's `hmac` table.
    pub fn from_spec(spec: &Spec, p: &mut Issues) -> Option<Plan> {
        let Some(header) = spec.header.as_deref() else {
            p.push("header", "missing; name the header that carries the signature, e.g. header = \"X-Signature\"");
            return None;
        };
        let tolerance = super::tolerance(spec, p)?;
        let recipe = Recipe {
            header,
            algorithm: spec.algorithm.as_deref().unwrap_or("sha256"),
            encoding: spec.encoding.as_deref().unwrap_or("hex"),
            prefix: spec.prefix.as_deref().unwrap_or(""),
            format: spec.format.as_deref(),
            signed: spec.signed.as_deref().unwrap_or("{body}"),
            timestamp_header: spec.timestamp_header.as_deref(),
            unit: TimestampUnit::Seconds,
            tolerance,
            public_url: spec.public_url.as_deref(),
            delivery: None,
            handshake: None,
            decode_url: false,
        };
        let plan = Self::compile(&recipe, p)?;
        if spec.tolerance.is_some() && !plan.timestamped() {
            p.push("tolerance", "not used: nothing signed carries a timestamp");
        }
        Some(plan)
    }

    pub fn with_verify_token(self, token: Option<Secret>) -> Self {
        Plan { verify_token: token, ..self }
    }

    pub fn timestamped(&self) -> bool {
        self.signed.contains(&Part::Timestamp)
    }

    /// The URL the provider signed: `public_url` and the request's query.
    fn url(&self, path_and_query: &str) -> String {
        let base = self.public_url.as_deref().unwrap_or("");
        let url = match path_and_query.split_once('?') {
            Some((_, q)) if !q.is_empty() => format!("{base}?{q}"),
            _ => base.to_string(),
        };
        if !self.decode_url {
            return url;
        }
        const DECODED: [(&str, &str); 12] = [
            ("%3A", ":"),
            ("%2F", "/"),
            ("%3F", "?"),
            ("%40", "@"),
            ("%21", "!"),
            ("%24", "$"),
            ("%27", "'"),
            ("%28", "("),
            ("%29", ")"),
            ("%2A", "*"),
            ("%2C", ","),
            ("%3B", ";"),
        ];
        let mut out = String::with_capacity(url.len());
        let mut rest = url.as_str();
        while let Some(i) = rest.find('%') {
            out.push_str(&rest[..i]);
            let code = rest.get(i..i + 3).unwrap_or("");
            match DECODED.iter().find(|(from, _)| from.eq_ignore_ascii_case(code)) {
                Some((_, to)) => {
                    out.push_str(to);
                    rest = &rest[i + 3..];
                }
                None => {
                    out.push('%');
                    rest = &rest[i + 1..];
                }
            }
        }
        out.push_str(rest);
        out
    }

    /// The bytes MACed for `req` with timestamp `ts`.
    fn message(&self, req: &Request<'_>, ts: &str) -> Result<Vec<u8>, VerifyError> {
        let mut out = Vec::with_capacity(req.body.len() + 64);
        for part in &self.signed {
            match part {
                Part::Literal(s) => out.extend_from_slice(s.as_bytes()),
                Part::Body => out.extend_from_slice(req.body),
                Part::Timestamp => out.extend_from_slice(ts.as_bytes()),
                Part::Url => out.extend_from_slice(self.url(req.path_and_query).as_bytes()),
                Part::Method => out.extend_from_slice(req.method.as_bytes()),
                Part::Path => out.extend_from_slice(req.path_and_query.split('?').next().unwrap_or("").as_bytes()),
                Part::Header(name) => out.extend_from_slice(header(req.headers, name)?.as_bytes()),
            }
        }
        Ok(out)
    }

    /// The encoded MAC of `req` at timestamp `ts` under `key`, as the provider writes it (no prefix).
    pub fn signature(&self, req: &Request<'_>, ts: &str, key: &[u8]) -> Result<String, VerifyError> {
        Ok(self.encoding.encode(&self.algorithm.mac(key, &[&self.message(req, ts)?])))
    }

    /// The secret that signed `req`, if one did (handshakes answer with it).
    pub(crate) fn signer<'s>(
        &self,
        req: &Request<'_>,
        secrets: &'s [Secret],
        now: SystemTime,
    ) -> Result<&'s Secret, VerifyError> {
        let value = signature_header(req.headers, &self.header)?;
        let value = value.strip_prefix(self.prefix.as_str()).ok_or(VerifyError::Malformed("missing prefix"))?;
        let (ts, encoded) = match &self.format {
            Some(f) => {
                let parsed = f.read(value).map_err(VerifyError::Malformed)?;
                (parsed.timestamp, parsed.signatures)
            }
            None => (None, vec![value]),
        };
        let ts = match (&self.timestamp_header, ts) {
            (Some(name), _) => Some(signature_header(req.headers, name)?),
            (None, Some(ts)) => Some(ts),
            (None, None) if self.timestamped() => return Err(VerifyError::Malformed("no timestamp")),
            (None, None) => None,
        };
        let candidates: Vec<Vec<u8>> = encoded.iter().filter_map(|s| self.encoding.decode(s).ok()).collect();
        if candidates.is_empty() {
            return Err(match encoded.iter().all(|s| s.is_empty()) {
                true => VerifyError::Malformed("empty signature"),
                false => self.encoding.decode(encoded[0]).err().unwrap_or(VerifyError::Mismatch),
            });
        }
        let ts = ts.unwrap_or("");
        if self.timestamped() {
            fresh(self.unit.seconds(ts)?, now, self.tolerance)?;
        }
        let message = self.message(req, ts)?;
        secrets
            .iter()
            .find(|s| any_equal(&self.algorithm.mac(s.expose(), &[&message]), &candidates))
            .ok_or(VerifyError::Mismatch)
    }

    /// Meta's verify token, for `hookgate send --handshake` (empty when none is configured).
    pub(crate) fn verify_token_bytes(&self) -> &[u8] {
        self.verify_token.as_ref().map(|t| t.expose()).unwrap_or_default()
    }

    pub(crate) fn verify_token_matches(&self, given: &str) -> bool {
        self.verify_token.as_ref().is_some_and(|t| ct_eq_hashed(given.as_bytes(), t.expose()))
    }
}

impl Scheme for Plan {
    fn verify(&self, req: &Request<'_>, secrets: &[Secret], now: SystemTime) -> Result<(), VerifyError> {
        self.signer(req, secrets, now).map(|_| ())
    }

    fn delivery_id(&self, req: &Request<'_>) -> Option<String> {
        match self.delivery? {
            Delivery::Header(name) => req.headers.get(name)?.to_str().ok().map(|s| s.trim().to_string()),
            Delivery::Json(ptr) => json_pointer_field(req.body, ptr),
        }
    }

    fn credential_header(&self) -> Option<&str> {
        Some(&self.header)
    }

    fn sign(&self, req: &Request<'_>, secret: &Secret, now: SystemTime) -> Signed {
        let ts = if self.timestamped() { self.unit.now(now) } else { String::new() };
        let mut extra: Vec<(String, String)> = Vec::new();
        // Signed headers the caller did not set (an id), and the delivery header: fresh values.
        let mut headers = req.headers.clone();
        for part in &self.signed {
            if let Part::Header(name) = part
                && !headers.contains_key(name.as_str())
                && Some(name) != self.timestamp_header.as_ref()
            {
                let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
                if let (Ok(n), Ok(v)) = (http::HeaderName::try_from(name.as_str()), id.parse()) {
                    headers.insert(n, v);
                }
                extra.push((name.clone(), id));
            }
        }
        if let Some(name) = &self.timestamp_header {
            if let (Ok(n), Ok(v)) = (http::HeaderName::try_from(name.as_str()), ts.parse()) {
                headers.insert(n, v);
            }
            extra.push((name.clone(), ts.clone()));
        }
        let full =
            Request { method: req.method, path_and_query: req.path_and_query, headers: &headers, body: req.body };
        let sig = self.signature(&full, &ts, secret.expose()).unwrap_or_default();
        let value = match &self.format {
            Some(f) => f.write(&sig, &ts),
            None => sig,
        };
        let mut out = vec![(self.header.clone(), format!("{}{value}", self.prefix))];
        out.extend(extra);
        if let Some(Delivery::Header(name)) = self.delivery {
            out.push((name.to_string(), uuid::Uuid::new_v4().to_string()));
        }
        Signed::headers(req, out)
    }

    fn answers_get(&self) -> bool {
        self.handshake.is_some_and(Kind::answers_get)
    }

    fn handshake(
        &self,
        req: &Request<'_>,
        secrets: &[Secret],
        now: SystemTime,
    ) -> Option<Result<Handshake, HandshakeError>> {
        handshake::answer(self.handshake?, self, req, secrets, now)
    }

    fn sign_handshake(&self, path: &str, secret: &Secret, now: SystemTime) -> Option<HandshakeRequest> {
        handshake::sign(self.handshake?, self, path, secret, now)
    }
}

impl handshake::Signs for Plan {
    fn signer<'s>(&self, req: &Request<'_>, secrets: &'s [Secret], now: SystemTime) -> Result<&'s Secret, VerifyError> {
        Plan::signer(self, req, secrets, now)
    }

    fn verify_token_bytes(&self) -> &[u8] {
        Plan::verify_token_bytes(self)
    }

    fn verify_token_matches(&self, given: &str) -> bool {
        Plan::verify_token_matches(self, given)
    }
}

#[cfg(test)]
#[path = "hmac_tests.rs"]
mod tests;
