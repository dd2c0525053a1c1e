//! What of the event document an expression reads, told from its syntax at load, and whether it
//! is *plain*. Both are conservative: an expression this module cannot see through reads the
//! whole document and is not plain.
//!
//! - **What it reads** ([`Needs`]): the document's top-level fields an expression names (`.body`,
//!   `.headers["x-github-event"]`), and of `body`, `headers` and `query` the fields named right
//!   after them. The ingest path builds only those (`document::Parts::document_for`): a filter on
//!   `.body.ref` parses no headers and no query, copies no `raw`, and of the body builds only `ref`.
//!   This is sound because every way an expression can reach a value goes through a path from `.`:
//!   `.` itself, `..`, `.[]`, a computed key, a variable or a definition read the whole document.
//! - **Plain**: made only of paths, literals, comparisons, `and`/`or`/`not`/`//`, `if`, `try`,
//!   pipes and string interpolation, with calls only to the built-ins in [`PLAIN_CALLS`] (each
//!   linear in its input), and no `def`, `reduce`, `foreach`, variable, recursion, array or object
//!   built after a pipe, `*` or `-`. Such a program has no loop of its own, so its cost is bounded
//!   by its text and the document's size; ingest runs it on the request's own thread under small
//!   limits ([`super::engine::Limits::inline`]) instead of handing it to a routing thread.

use std::collections::{BTreeMap, BTreeSet};

use jaq_core::load::lex::StrPart;
use jaq_core::load::parse::{BinaryOp, Term};
use jaq_core::ops::Math;
use jaq_core::path::{Part, Path};

/// What of one top-level field of the document is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// All of it.
    Whole,
    /// Only these of its fields (for `body`, `headers` and `query`).
    Only(BTreeSet<String>),
}

/// What of the document a set of expressions reads: `None` for all of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs(Option<BTreeMap<String, Field>>);

/// The fields of the document whose own fields are told apart.
const NESTED: [&str; 3] = ["body", "headers", "query"];

impl Needs {
    /// The whole document.
    pub fn all() -> Needs {
        Needs(None)
    }

    /// Nothing (the start of a union).
    pub fn none() -> Needs {
        Needs(Some(BTreeMap::new()))
    }

    /// Whether the whole document is needed.
    pub fn is_all(&self) -> bool {
        self.0.is_none()
    }

    /// What is read of the top-level field `key`: `None` when nothing.
    pub fn field(&self, key: &str) -> Option<&Field> {
        static WHOLE: Field = Field::Whole;
        match &self.0 {
            None => Some(&WHOLE),
            Some(keys) => keys.get(key),
        }
    }

    /// Both what `self` and what `other` read.
    pub fn union(&mut self, other: &Needs) {
        let (Some(mine), Some(theirs)) = (&mut self.0, &other.0) else {
            self.0 = None;
            return;
        };
        for (key, field) in theirs {
            let merged = match (mine.remove(key), field) {
                (None, f) => f.clone(),
                (Some(Field::Only(mut a)), Field::Only(b)) => {
                    a.extend(b.iter().cloned());
                    Field::Only(a)
                }
                _ => Field::Whole,
            };
            mine.insert(key.clone(), merged);
        }
    }

    fn read(&mut self, key: &str, sub: Option<String>) {
        let field = match sub {
            Some(sub) if NESTED.contains(&key) => Field::Only(BTreeSet::from([sub])),
            _ => Field::Whole,
        };
        self.union(&Needs(Some(BTreeMap::from([(key.to_string(), field)]))));
    }
}

/// Built-ins a plain program may call after a pipe: each is linear in its input (or bounded by it),
/// none loops of its own. (Without `def` they cannot be redefined.)
pub const PLAIN_CALLS: [(&str, usize); 27] = [
    ("true", 0),
    ("false", 0),
    ("null", 0),
    ("empty", 0),
    ("not", 0),
    ("length", 0),
    ("utf8bytelength", 0),
    ("type", 0),
    ("tostring", 0),
    ("tonumber", 0),
    ("ascii_downcase", 0),
    ("ascii_upcase", 0),
    ("keys", 0),
    ("any", 0),
    ("all", 0),
    ("startswith", 1),
    ("endswith", 1),
    ("ltrimstr", 1),
    ("rtrimstr", 1),
    ("test", 1),
    ("test", 2),
    ("has", 1),
    ("select", 1),
    ("split", 1),
    ("any", 1),
    ("all", 1),
    ("first", 0),
];

/// Calls that read nothing of their input, allowed on the document itself.
const CONSTANT_CALLS: [&str; 4] = ["true", "false", "null", "empty"];

/// What the expression `code` reads of the document, and whether it is plain.
pub fn analyse(code: &str) -> (Needs, bool) {
    let Some(term) = jaq_core::load::parse(code, |p| p.term()) else {
        return (Needs::all(), false);
    };
    let mut needs = Needs::none();
    if on_document(&term, &mut needs) { (needs, true) } else { (Needs::all(), false) }
}

/// A string literal's text, when the term is one.
fn literal(t: &Term<&str>) -> Option<String> {
    let Term::Str(None, parts) = t else { return None };
    let mut s = String::new();
    for part in parts {
        match part {
            StrPart::Str(text) => s.push_str(text),
            StrPart::Char(c) => s.push(*c),
            StrPart::Term(_) => return None,
        }
    }
    Some(s)
}

/// Whether a path part is a constant: a literal key or number, or `[]` / `[n:m]` of numbers.
fn constant_part(part: &Part<Term<&str>>) -> bool {
    let constant = |t: &Term<&str>| matches!(t, Term::Num(_)) || literal(t).is_some();
    match part {
        Part::Index(t) => constant(t),
        Part::Range(a, b) => a.iter().chain(b.iter()).all(|t| matches!(t, Term::Num(_))),
    }
}

/// `t`, run on the document: records what it reads in `needs`; false if it is not plain (then
/// `needs` no longer matters).
fn on_document(t: &Term<&str>, needs: &mut Needs) -> bool {
    match t {
        Term::Num(_) => true,
        Term::Str(None, parts) => parts.iter().all(|p| match p {
            StrPart::Term(t) => on_document(t, needs),
            _ => true,
        }),
        Term::Arr(None) => true,
        Term::Arr(Some(t)) | Term::Neg(t) | Term::TryCatch(t, None) => on_document(t, needs),
        Term::Obj(entries) => entries.iter().all(|(k, v)| match v {
            Some(v) => on_document(k, needs) && on_document(v, needs),
            // `{a}` is `{a: .a}`.
            None => literal(k).map(|k| needs.read(&k, None)).is_some(),
        }),
        Term::Path(head, Path(parts)) => {
            if !parts.iter().all(|(p, _)| constant_part(p)) {
                return false;
            }
            match &**head {
                Term::Id => {
                    let mut keys = parts.iter().map(|(p, _)| match p {
                        Part::Index(t) => literal(t),
                        Part::Range(..) => None,
                    });
                    let Some(Some(key)) = keys.next() else { return false };
                    needs.read(&key, keys.next().flatten());
                    true
                }
                head => on_document(head, needs),
            }
        }
        Term::BinOp(l, op, r) => match op {
            BinaryOp::Pipe(None) => on_document(l, needs) && on_value(r),
            BinaryOp::Comma | BinaryOp::Alt | BinaryOp::Or | BinaryOp::And | BinaryOp::Cmp(_) => {
                on_document(l, needs) && on_document(r, needs)
            }
            BinaryOp::Math(Math::Add | Math::Div | Math::Rem) => on_document(l, needs) && on_document(r, needs),
            _ => false,
        },
        Term::IfThenElse(branches, otherwise) => {
            branches.iter().all(|(c, then)| on_document(c, needs) && on_document(then, needs))
                && otherwise.as_deref().is_none_or(|e| on_document(e, needs))
        }
        Term::Call(name, args) => args.is_empty() && CONSTANT_CALLS.iter().any(|c| c == name),
        _ => false,
    }
}

/// `t`, run on a value taken from the document (never the document itself): whether it is plain.
fn on_value(t: &Term<&str>) -> bool {
    match t {
        Term::Id | Term::Num(_) => true,
        Term::Str(None, parts) => parts.iter().all(|p| match p {
            StrPart::Term(t) => on_value(t),
            _ => true,
        }),
        Term::Neg(t) | Term::TryCatch(t, None) => on_value(t),
        Term::Path(head, Path(parts)) => {
            on_value(head)
                && parts.iter().all(|(p, _)| match p {
                    Part::Index(t) => on_value(t),
                    Part::Range(a, b) => a.iter().chain(b.iter()).all(on_value),
                })
        }
        Term::BinOp(l, op, r) => {
            matches!(
                op,
                BinaryOp::Pipe(None)
                    | BinaryOp::Comma
                    | BinaryOp::Alt
                    | BinaryOp::Or
                    | BinaryOp::And
                    | BinaryOp::Cmp(_)
            ) && on_value(l)
                && on_value(r)
        }
        Term::IfThenElse(branches, otherwise) => {
            branches.iter().all(|(c, then)| on_value(c) && on_value(then)) && otherwise.as_deref().is_none_or(on_value)
        }
        Term::Call(name, args) => {
            PLAIN_CALLS.iter().any(|&(n, arity)| n == *name && arity == args.len()) && args.iter().all(on_value)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(fields: &[&str]) -> Field {
        Field::Only(fields.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn paths_name_what_they_read() {
        let (n, plain) = analyse(r#".headers["x-github-event"] == "push" and .body.ref == "refs/heads/main""#);
        assert!(plain);
        assert_eq!(n.field("headers"), Some(&only(&["x-github-event"])));
        assert_eq!(n.field("body"), Some(&only(&["ref"])));
        assert_eq!(n.field("raw"), None);
        assert_eq!(n.field("query"), None);
        let (n, plain) = analyse(r#".body.id | startswith("evt_0")"#);
        assert!(plain);
        assert_eq!(n.field("body"), Some(&only(&["id"])));
        let (n, plain) = analyse(r#".body | .action == "opened""#);
        assert!(plain);
        assert_eq!(n.field("body"), Some(&Field::Whole));
        let (n, _) = analyse(r#"{a: .raw, source}"#);
        assert_eq!((n.field("raw"), n.field("source")), (Some(&Field::Whole), Some(&Field::Whole)));
        let (n, plain) = analyse(r#".body.pull_request.title | test("wip"; "i") | not"#);
        assert!(plain);
        assert_eq!(n.field("body"), Some(&only(&["pull_request"])));
        let (n, plain) = analyse(r#".query.token? // "none" | ascii_downcase"#);
        assert!(plain);
        assert_eq!(n.field("query"), Some(&only(&["token"])));
        let (n, plain) = analyse(r#"if .body.amount > 1000 then true else .headers."x-a" == "1" end"#);
        assert!(plain);
        assert_eq!(n.field("headers"), Some(&only(&["x-a"])));
    }

    #[test]
    fn what_cannot_be_seen_through_reads_everything() {
        for code in [
            ".",
            "tojson | contains(\"main\")",
            ". as $d | $d.body",
            ".[\"bo\" + \"dy\"]",
            ".[] | length",
            "..",
            "keys",
            "def f: .body; f",
            "getpath([\"body\"])",
            "select(.body.x)",
            "$__loc__",
            "reduce .body[] as $x (0; . + 1)",
            ".body.x | [., .]",
            ".body.n * 1000000",
            "not",
        ] {
            let (n, plain) = analyse(code);
            assert!(n.is_all() && !plain, "{code}: {n:?} {plain}");
        }
    }

    #[test]
    fn the_union_of_two_reads_both() {
        let (mut a, _) = analyse(".body.a");
        let (b, _) = analyse(".body.b, .headers.x");
        a.union(&b);
        assert_eq!(a.field("body"), Some(&only(&["a", "b"])));
        assert_eq!(a.field("headers"), Some(&only(&["x"])));
        let (c, _) = analyse(".body");
        a.union(&c);
        assert_eq!(a.field("body"), Some(&Field::Whole));
        a.union(&Needs::all());
        assert!(a.is_all());
    }
}
