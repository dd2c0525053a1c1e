//! The declarative scheme's two templates, parsed once at load: `signed` (what is MACed) and
//! `format` (how the signature header is laid out). Errors say what is wrong in words that
//! `hookgate check` shows under the template's key.

/// One piece of the `signed` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Literal(String),
    Body,
    Timestamp,
    /// `public_url` followed by the request's query string, if any.
    Url,
    Method,
    /// The request's path, without its query.
    Path,
    /// A request header's value (lowercase name); a missing header fails verification.
    Header(String),
}

/// The placeholders `signed` accepts.
pub const SIGNED_PLACEHOLDERS: &str = "{body}, {timestamp}, {url}, {method}, {path}, {header:Name}";

/// Splits a template into literals and `{name}` placeholders.
fn pieces(text: &str) -> Result<Vec<(bool, &str)>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        match (rest.find('{'), rest.find('}')) {
            (_, Some(close)) if rest.find('{').is_none_or(|open| close < open) => {
                return Err(format!("unmatched '}}' in {text:?}"));
            }
            (Some(open), close) => {
                let Some(close) = close else { return Err(format!("unclosed '{{' in {text:?}")) };
                if open > 0 {
                    out.push((false, &rest[..open]));
                }
                let name = &rest[open + 1..close];
                if name.contains('{') {
                    return Err(format!("unclosed '{{' in {text:?}"));
                }
                out.push((true, name));
                rest = &rest[close + 1..];
            }
            (None, _) => {
                out.push((false, rest));
                rest = "";
            }
        }
    }
    Ok(out)
}

/// Parses `signed`, e.g. `"{timestamp}.{body}"`.
pub fn signed(text: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    for (placeholder, piece) in pieces(text)? {
        if !placeholder {
            parts.push(Part::Literal(piece.to_string()));
            continue;
        }
        parts.push(match piece {
            "body" => Part::Body,
            "timestamp" => Part::Timestamp,
            "url" => Part::Url,
            "method" => Part::Method,
            "path" => Part::Path,
            other => match other.strip_prefix("header:") {
                Some(name) if http::HeaderName::try_from(name).is_ok() => Part::Header(name.to_ascii_lowercase()),
                Some(name) => return Err(format!("{{header:{name}}} does not name a valid header")),
                None => return Err(format!("unknown placeholder {{{other}}}; accepted: {SIGNED_PLACEHOLDERS}")),
            },
        });
    }
    if parts.is_empty() {
        return Err("empty; write e.g. signed = \"{timestamp}.{body}\"".into());
    }
    Ok(parts)
}

/// What a `format` item captures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Signature,
    Timestamp,
}

/// A parsed `format`: items separated by `sep`, each a literal key followed by one placeholder,
/// e.g. `t={timestamp},v1={signature}`. A header is read item by item, in any order; an item
/// whose key is not in the format is ignored (`v0=` beside `v1=`), a `{signature}` item may come
/// several times (one per active secret), a `{timestamp}` only once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    sep: Option<char>,
    items: Vec<(String, Field)>,
}

/// What a header holds under a [`Format`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed<'a> {
    pub timestamp: Option<&'a str>,
    pub signatures: Vec<&'a str>,
}

impl Format {
    pub fn parse(text: &str) -> Result<Self, String> {
        const SEPARATORS: [char; 3] = [',', ';', ' '];
        let ps = pieces(text)?;
        // The separator is the first character after the first placeholder that has more after it.
        let sep = ps.windows(2).find(|w| w[0].0 && !w[1].0).and_then(|w| w[1].1.chars().next());
        let sep = match sep {
            Some(c) if SEPARATORS.contains(&c) => Some(c),
            Some(c) => {
                return Err(format!(
                    "{c:?} follows a placeholder: items must be separated by ',', ';' or ' ' \
                     (e.g. \"t={{timestamp}},v1={{signature}}\")"
                ));
            }
            None => None,
        };
        let item_texts: Vec<&str> = match sep {
            Some(c) => text.split(c).collect(),
            None => vec![text],
        };
        let mut items: Vec<(String, Field)> = Vec::new();
        for item in item_texts {
            let ps = pieces(item)?;
            // The item's label, as `t=` in `t={timestamp}`.
            let (label, name) = match ps.as_slice() {
                [(true, name)] => ("", *name),
                [(false, label), (true, name)] => (*label, *name),
                _ => {
                    return Err(format!(
                        "item {item:?} must be a literal key followed by one placeholder, e.g. \"v1={{signature}}\""
                    ));
                }
            };
            let field = match name {
                "signature" => Field::Signature,
                "timestamp" => Field::Timestamp,
                other => {
                    return Err(format!("unknown placeholder {{{other}}}; accepted: {{signature}}, {{timestamp}}"));
                }
            };
            match items.iter().find(|(l, _)| l == label) {
                Some((_, f)) if matches!((f, field), (Field::Signature, Field::Signature)) => continue,
                Some(_) => return Err(format!("key {label:?} is used twice")),
                None => items.push((label.to_string(), field)),
            }
        }
        if !items.iter().any(|(_, f)| matches!(f, Field::Signature)) {
            return Err("has no {signature}".into());
        }
        // Longest key first, so "v1a=" is not read as "v1" + "a=".
        items.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
        Ok(Format { sep, items })
    }

    pub fn has_timestamp(&self) -> bool {
        self.items.iter().any(|(_, f)| *f == Field::Timestamp)
    }

    /// Reads a header value. Fails on a second timestamp or when no signature is present.
    pub fn read<'a>(&self, value: &'a str) -> Result<Parsed<'a>, &'static str> {
        let mut parsed = Parsed::default();
        let items: Vec<&str> = match self.sep {
            Some(c) => value.split(c).collect(),
            None => vec![value],
        };
        for item in items.into_iter().map(str::trim).filter(|i| !i.is_empty()) {
            let Some((key, field)) = self.items.iter().find(|(k, _)| item.starts_with(k.as_str())) else { continue };
            let text = item[key.len()..].trim();
            match field {
                Field::Timestamp if parsed.timestamp.is_some() => return Err("several timestamps"),
                Field::Timestamp => parsed.timestamp = Some(text),
                Field::Signature => parsed.signatures.push(text),
            }
        }
        if parsed.signatures.is_empty() {
            return Err("no signature in the format's place");
        }
        Ok(parsed)
    }

    /// The header value for one signature and timestamp (`sign`).
    pub fn write(&self, signature: &str, timestamp: &str) -> String {
        let mut items: Vec<&(String, Field)> = self.items.iter().collect();
        // Timestamp first, as every provider writes it.
        items.sort_by_key(|(_, f)| !matches!(f, Field::Timestamp));
        let sep = self.sep.map(String::from).unwrap_or_default();
        items
            .iter()
            .map(|(k, f)| match f {
                Field::Signature => format!("{k}{signature}"),
                Field::Timestamp => format!("{k}{timestamp}"),
            })
            .collect::<Vec<_>>()
            .join(&sep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_templates() {
        assert_eq!(
            signed("{method}{url}{body}{timestamp}").unwrap(),
            vec![Part::Method, Part::Url, Part::Body, Part::Timestamp]
        );
        assert_eq!(
            signed("v0:{timestamp}:{body}").unwrap(),
            vec![Part::Literal("v0:".into()), Part::Timestamp, Part::Literal(":".into()), Part::Body]
        );
        assert_eq!(
            signed("{header:Webhook-Id}.{path}").unwrap(),
            vec![Part::Header("webhook-id".into()), Part::Literal(".".into()), Part::Path]
        );
        for (text, want) in [
            ("{bdy}", "unknown placeholder {bdy}"),
            ("{body", "unclosed '{'"),
            ("body}", "unmatched '}'"),
            ("{{body}}", "unclosed '{'"),
            ("{header:bad name}", "does not name a valid header"),
            ("", "empty"),
        ] {
            let got = signed(text).unwrap_err();
            assert!(got.contains(want), "case {text:?}: {got}");
        }
    }

    #[test]
    fn formats() {
        let stripe = Format::parse("t={timestamp},v1={signature}").unwrap();
        assert_eq!(
            stripe.read("t=1,v0=zz,v1=ab,v1=cd"),
            Ok(Parsed { timestamp: Some("1"), signatures: vec!["ab", "cd"] })
        );
        assert_eq!(stripe.read("v1=ab, t=2"), Ok(Parsed { timestamp: Some("2"), signatures: vec!["ab"] }));
        assert_eq!(stripe.read("t=1,t=2,v1=ab"), Err("several timestamps"));
        assert_eq!(stripe.read("t=1"), Err("no signature in the format's place"));
        assert_eq!(stripe.write("ab", "1"), "t=1,v1=ab");
        let paddle = Format::parse("ts={timestamp};h1={signature}").unwrap();
        assert_eq!(paddle.read("ts=9;h1=x;h1=y").unwrap().signatures, vec!["x", "y"]);
        let pd = Format::parse("v1={signature},v1={signature}").unwrap();
        assert_eq!(pd.read("v1=a, v1=b").unwrap().signatures, vec!["a", "b"]);
        assert_eq!(pd.write("a", ""), "v1=a");
        let sw = Format::parse("v1,{signature} v1,{signature}").unwrap();
        assert_eq!(sw.read("v1a,zz v1,ab").unwrap().signatures, vec!["ab"]);
        let plain = Format::parse("{signature}").unwrap();
        assert_eq!(plain.read("abc").unwrap().signatures, vec!["abc"]);
        assert!(!plain.has_timestamp() && stripe.has_timestamp());
        for (text, want) in [
            ("t={timestamp}", "has no {signature}"),
            ("t={timestamp}.v1={signature}", "must be separated"),
            ("t={timestamp},t={signature}", "used twice"),
            ("v1={sig}", "unknown placeholder {sig}"),
            ("a{signature}{timestamp}", "must be a literal key followed by one placeholder"),
            ("v1={signature", "unclosed"),
        ] {
            let got = Format::parse(text).unwrap_err();
            assert!(got.contains(want), "case {text:?}: {got}");
        }
    }
}
