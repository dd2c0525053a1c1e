//! jq, as the `jaq` crates run it, with a meter: every expression is compiled once, and every run
//! is bounded in steps, time and stack depth, so a filter that runs away (`[range(1e9)]`,
//! `[repeat(.)]`, `def f: f; f`) ends as an error instead of stalling the thread that runs it.
//!
//! The meter rides on jaq's own data type: jaq clones its context at every step of a pipe, every
//! call and every variable binding, so the context's clone counts a step. When a limit is reached
//! the run is unwound (`resume_unwind`, which prints nothing) and caught where it started. Natives
//! that would read the environment, print or stop the process are replaced by ones that raise.

use std::cell::Cell;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::time::{Duration, Instant};

use jaq_core::load::{Arena, File, Loader};
use jaq_core::native::Fun;
use jaq_core::{Compiler, Ctx, DataT, Native, ValT, Vars, data::HasLut, unwrap_valr};
use jaq_json::Val;

use super::reads::Needs;

/// How much one run may take. The defaults ([`Limits::default`]) let every realistic filter and
/// transform of a webhook finish in well under a millisecond's worth of their budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Steps (pipes, calls, bindings, values of `range`) at most.
    pub steps: u64,
    /// Time at most, looked at every [`CHECK_EVERY`] steps.
    pub time: Duration,
    /// Bytes of stack the run may use below where it started.
    pub stack: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { steps: 1_000_000, time: Duration::from_millis(200), stack: 32 << 20 }
    }
}

impl Limits {
    /// The limits of a plain program's run on the request's own thread (`reads.rs`): a realistic
    /// filter takes tens of steps; one that takes more than these is stopped and run again on a
    /// routing thread with the default limits, so that no run holds a runtime thread for long.
    /// A plain program does not recurse, so its stack is its text's nesting and the body's.
    pub fn inline() -> Self {
        Limits { steps: 10_000, time: Duration::from_millis(2), stack: 256 << 10 }
    }
}

/// Steps between two looks at the time.
const CHECK_EVERY: u64 = 1024;

/// Why a run ended without an output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunError {
    /// The expression raised an error (`error("...")`, `.a.b` on a string, ...).
    Raised(String),
    /// A limit stopped it.
    Limit(&'static str),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Raised(m) => f.write_str(m),
            RunError::Limit(what) => write!(f, "stopped: {what}"),
        }
    }
}

/// The marker jaq runs our filters with: values are `jaq_json::Val`, data is the [`Meter`].
pub struct Metered;

impl DataT for Metered {
    type V<'a> = Val;
    type Data<'a> = Meter<'a>;
}

type Lut = jaq_core::Lut<Metered>;

/// The context's data: the program and the run's fuel. Cloning it is one step.
pub struct Meter<'a> {
    lut: &'a Lut,
    fuel: &'a Fuel,
}

impl Clone for Meter<'_> {
    fn clone(&self) -> Self {
        self.fuel.step();
        Meter { lut: self.lut, fuel: self.fuel }
    }
}

impl<'a> HasLut<'a, Metered> for Meter<'a> {
    fn lut(&self) -> &'a Lut {
        self.lut
    }
}

/// A run's remaining budget.
pub struct Fuel {
    left: Cell<u64>,
    limits: Limits,
    started: Instant,
    stack_top: usize,
    /// Set once a limit is reached, so that nothing unwinds twice.
    spent: Cell<bool>,
}

/// The payload a run is unwound with.
struct Exhausted(&'static str);

/// Where the stack is now (it grows down): the address of a local.
#[inline(always)]
fn stack_here() -> usize {
    let probe = 0u8;
    std::hint::black_box(&probe) as *const u8 as usize
}

impl Fuel {
    fn new(limits: Limits) -> Self {
        Fuel {
            left: Cell::new(limits.steps),
            limits,
            started: Instant::now(),
            stack_top: stack_here(),
            spent: Cell::new(false),
        }
    }

    fn step(&self) {
        if self.spent.get() {
            return;
        }
        let left = self.left.get().saturating_sub(1);
        self.left.set(left);
        if left == 0 {
            self.stop("more than the step limit");
        }
        if self.stack_top.saturating_sub(stack_here()) > self.limits.stack {
            self.stop("recursion too deep");
        }
        if left.is_multiple_of(CHECK_EVERY) && self.started.elapsed() > self.limits.time {
            self.stop("over the time limit");
        }
    }

    fn stop(&self, why: &'static str) {
        self.spent.set(true);
        resume_unwind(Box::new(Exhausted(why)));
    }
}

/// A compiled expression, shareable across threads.
pub struct Program {
    filter: jaq_core::compile::Filter<Native<Metered>>,
    /// What of the document it reads (`reads.rs`).
    pub needs: Needs,
    /// Whether it is plain: no loop of its own, so that it may run on the request's thread.
    pub plain: bool,
}

impl fmt::Debug for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Program")
    }
}

/// Natives that read the environment, print (a payload in the log) or stop the process.
const DENIED: [&str; 5] = ["env", "halt", "debug_empty", "stderr_empty", "input"];

fn denied<'a>(cv: jaq_core::Cv<'a, Metered>) -> jaq_core::ValXs<'a, <Metered as DataT>::V<'a>> {
    let _ = cv;
    jaq_core::box_iter::box_once(Err(jaq_core::Exn::from(jaq_core::Error::str(
        "not available in hookgate expressions (no environment, input or output)",
    ))))
}

/// `range/3` with a step per value (the core's counts none, so `[range(1e9)]` would run unmetered).
fn range<'a>(mut cv: jaq_core::Cv<'a, Metered>) -> jaq_core::ValXs<'a, <Metered as DataT>::V<'a>> {
    use std::cmp::Ordering::{Equal, Greater, Less};
    let by = cv.0.pop_var();
    let to = cv.0.pop_var();
    let from = cv.0.pop_var();
    let meter = cv.0.data().clone();
    let cmp = by.partial_cmp(&Val::from(0isize)).unwrap_or(Equal);
    let mut next = Some(from);
    Box::new(std::iter::from_fn(move || {
        meter.fuel.step();
        let x = next.take()?;
        let go = match cmp {
            Greater => x < to,
            Less => x > to,
            Equal => x != to,
        };
        if !go {
            return None;
        }
        match x.clone() + by.clone() {
            Ok(n) => next = Some(n),
            Err(e) => return Some(Err(jaq_core::Exn::from(e))),
        }
        Some(Ok(x))
    }))
}

fn natives() -> impl Iterator<Item = Fun<Metered>> {
    jaq_core::funs::<Metered>().chain(jaq_std::funs()).chain(jaq_json::funs()).map(|(name, args, native)| {
        if name == "range" && args.len() == 3 {
            (name, args, Native::<Metered>::new(range as jaq_core::RunPtr<Metered>))
        } else if DENIED.contains(&name) {
            (name, args, Native::<Metered>::new(denied as jaq_core::RunPtr<Metered>))
        } else {
            (name, args, native)
        }
    })
}

impl Program {
    /// Compiles `code`; the error says what is wrong and where, as jq would.
    pub fn compile(code: &str) -> Result<Program, String> {
        let defs = jaq_core::defs().chain(jaq_std::defs()).chain(jaq_json::defs());
        let loader = Loader::new(defs);
        let arena = Arena::default();
        let modules = loader.load(&arena, File { code, path: () }).map_err(|errs| load_errors(code, errs))?;
        let filter = Compiler::default().with_funs(natives()).compile(modules).map_err(|errs| {
            let mut out = Vec::new();
            for (_, undefined) in errs {
                for (name, what) in undefined {
                    out.push(match what {
                        jaq_core::compile::Undefined::Filter(arity) => {
                            format!("undefined filter \"{name}\" with {arity} argument(s)")
                        }
                        other => format!("undefined {} {name:?}", other.as_str()),
                    });
                }
            }
            out.join("; ")
        })?;
        let (needs, plain) = super::reads::analyse(code);
        Ok(Program { filter, needs, plain })
    }

    /// The first output of the program on `input`: `Ok(None)` when it has none.
    pub fn first(&self, input: Val, limits: Limits) -> Result<Option<Val>, RunError> {
        let fuel = Fuel::new(limits);
        let run = catch_unwind(AssertUnwindSafe(|| {
            let ctx = Ctx::<Metered>::new(Meter { lut: &self.filter.lut, fuel: &fuel }, Vars::new([]));
            let mut out = self.filter.id.run((ctx, input)).map(unwrap_valr);
            match out.next() {
                None => Ok(None),
                Some(Ok(v)) => Ok(Some(v)),
                // `error("text")` shows as its text, as jq shows it, not as a JSON string.
                Some(Err(e)) => {
                    let shown = e.to_string();
                    Err(RunError::Raised(serde_json::from_str::<String>(&shown).unwrap_or(shown)))
                }
            }
        }));
        match run {
            Ok(result) => result,
            Err(payload) => match payload.downcast::<Exhausted>() {
                Ok(e) => Err(RunError::Limit(e.0)),
                Err(other) => {
                    let msg = other
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| other.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "the expression panicked".into());
                    Err(RunError::Raised(msg))
                }
            },
        }
    }
}

fn load_errors(code: &str, errs: jaq_core::load::Errors<&str, ()>) -> String {
    use jaq_core::load::Error;
    // Where in `code` a piece of it starts (jaq's errors point into the text).
    let at = |s: &str| {
        let offset = (s.as_ptr() as usize).wrapping_sub(code.as_ptr() as usize);
        if offset <= code.len() {
            format!("at character {}", code[..offset].chars().count() + 1)
        } else {
            String::new()
        }
    };
    let mut out = Vec::new();
    for (_, e) in errs {
        match e {
            Error::Io(items) => out.extend(items.into_iter().map(|(path, why)| format!("cannot load {path}: {why}"))),
            Error::Lex(items) => {
                out.extend(items.into_iter().map(|(expect, s)| format!("expected {} {}", expect.as_str(), at(s))))
            }
            Error::Parse(items) => out.extend(items.into_iter().map(|(expect, s)| {
                if s.is_empty() {
                    format!("expected {} at the end", expect.as_str())
                } else {
                    format!("expected {} {}", expect.as_str(), at(s))
                }
            })),
        }
    }
    if out.is_empty() { "cannot parse".into() } else { out.join("; ") }
}

/// Makes a value from JSON text, `None` when it is not JSON.
pub fn parse_json(bytes: &[u8]) -> Option<Val> {
    jaq_json::read::parse_single(bytes).ok()
}

/// An object value from its fields.
pub fn object(fields: impl IntoIterator<Item = (Val, Val)>) -> Val {
    Val::from_map(fields).unwrap_or_default()
}

/// A string value.
pub fn string(s: impl Into<String>) -> Val {
    Val::from(s.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs on a pool thread, as the gateway does (a test thread's stack is too small for the limit).
    fn run(code: &str, input: &str) -> Result<Option<String>, RunError> {
        let p = Program::compile(code).expect("compiles");
        let input = input.to_string();
        let pool = super::super::pool::Pool::new(1).expect("pool");
        pool.run_blocking(move || {
            p.first(parse_json(input.as_bytes()).expect("json"), Limits::default()).map(|v| v.map(|v| v.to_string()))
        })
        .expect("no panic")
    }

    #[test]
    fn runs_jq() {
        assert_eq!(run(".a.b", r#"{"a":{"b":[1,2]}}"#), Ok(Some("[1,2]".into())));
        assert_eq!(run(r#"{text: "PR #\(.n)"}"#, r#"{"n":7}"#), Ok(Some(r#"{"text":"PR #7"}"#.into())));
        assert_eq!(run("empty", "1"), Ok(None));
        assert_eq!(run("[range(3)]", "null"), Ok(Some("[0,1,2]".into())));
        assert_eq!(run("[range(5;0;-2)]", "null"), Ok(Some("[5,3,1]".into())));
        assert!(matches!(run("error(\"no\")", "1"), Err(RunError::Raised(m)) if m.contains("no")));
        assert!(matches!(run(".a.b", "\"s\""), Err(RunError::Raised(_))));
    }

    #[test]
    fn runaways_are_stopped() {
        for code in
            ["[range(1e9)] | length", "[repeat(.)] | length", "def f: f; f", "last(range(1e12))", "def f: 1 + f; f"]
        {
            let got = run(code, "1");
            assert!(matches!(got, Err(RunError::Limit(_))), "{code}: {got:?}");
        }
    }

    #[test]
    fn the_environment_is_out_of_reach() {
        for code in ["env", "$ENV", "halt", "debug", "stderr", "input"] {
            let got = Program::compile(code).map(|p| p.first(Val::Null, Limits::default()));
            assert!(!matches!(got, Ok(Ok(_))), "{code}: {got:?}");
        }
    }

    #[test]
    fn compile_errors_say_what_and_where() {
        let e = Program::compile(".a | ").unwrap_err();
        assert!(e.contains("expected"), "{e}");
        let e = Program::compile("nosuchfn(1)").unwrap_err();
        assert!(e.contains("nosuchfn"), "{e}");
    }
}
