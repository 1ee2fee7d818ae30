//! Writing a kernel's instructions: SSA names, nested regions (`scf.for`, `scf.if`) and
//! hoisting a computation out of the loops it does not depend on.
//!
//! Each open region is a scope with a text buffer of its own; a region's text goes into its
//! parent's buffer when it closes, after everything the parent wrote before. So a value can be
//! written into an outer scope (before the loop being built) while an inner one is open:
//! [`Emitter::hoisted`] does that for values whose coordinates are all defined outside the
//! loop, so that a reduction used inside another loop (a variance over a mean) is computed once.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

/// The instructions of one kernel being written.
pub struct Emitter {
    scopes: Vec<Scope>,
    next: usize,
    /// The scope each SSA name was defined in (index constants: 0).
    depth: HashMap<String, usize>,
    /// Index constants used, written once at the kernel's start (`%c4`, `%cm1` for -1).
    constants: BTreeSet<i64>,
    /// The scopes above the one a hoisted computation writes to, set aside meanwhile.
    set_aside: Vec<Vec<Scope>>,
}

/// One open region: its text and the values computed in it, by key.
struct Scope {
    text: String,
    memo: HashMap<String, Vec<String>>,
}

impl Scope {
    fn new() -> Scope {
        Scope {
            text: String::new(),
            memo: HashMap::new(),
        }
    }
}

impl Default for Emitter {
    fn default() -> Self {
        Emitter::new()
    }
}

impl Emitter {
    /// An emitter whose outermost scope is the thread's element (`%i` defined outside it).
    pub fn new() -> Emitter {
        Emitter {
            scopes: vec![Scope::new()],
            next: 0,
            depth: HashMap::from([("%i".to_string(), 0)]),
            constants: BTreeSet::new(),
            set_aside: Vec::new(),
        }
    }

    /// A fresh SSA name, defined in the current scope.
    pub fn fresh(&mut self) -> String {
        self.next += 1;
        let name = format!("%v{}", self.next - 1);
        self.depth.insert(name.clone(), self.scopes.len() - 1);
        name
    }

    /// Writes `%name = rhs` and returns `%name`.
    pub fn assign(&mut self, rhs: impl AsRef<str>) -> String {
        let name = self.fresh();
        self.line(format!("{name} = {}", rhs.as_ref()));
        name
    }

    /// Writes a line with no result.
    pub fn line(&mut self, text: impl AsRef<str>) {
        let top = self.scopes.last_mut().expect("a scope is open");
        let _ = writeln!(top.text, "{}", text.as_ref());
    }

    /// The index constant `v`, written once at the kernel's start.
    pub fn index(&mut self, v: i64) -> String {
        self.constants.insert(v);
        let name = constant_name(v);
        self.depth.insert(name.clone(), 0);
        name
    }

    /// The values computed under `key` in an open scope, if any.
    pub fn recall(&self, key: &str) -> Option<Vec<String>> {
        (self.scopes.iter().rev()).find_map(|s| s.memo.get(key).cloned())
    }

    /// Remembers `values` under `key` in the current scope.
    pub fn remember(&mut self, key: String, values: Vec<String>) {
        let top = self.scopes.last_mut().expect("a scope is open");
        top.memo.insert(key, values);
    }

    /// The innermost scope any of `names` is defined in (0 when none is).
    pub fn depth_of<'a>(&self, names: impl IntoIterator<Item = &'a String>) -> usize {
        (names.into_iter())
            .map(|n| self.depth.get(n).copied().unwrap_or(0))
            .max()
            .unwrap_or(0)
    }

    /// The name of an op's results (`%v7`, or `%v7:2` to define and `%v7#0`, `%v7#1` to use).
    fn results(&mut self, n: usize) -> (String, Vec<String>) {
        let name = self.fresh();
        match n {
            1 => (name.clone(), vec![name]),
            n => (
                format!("{name}:{n}"),
                (0..n).map(|k| format!("{name}#{k}")).collect(),
            ),
        }
    }

    /// Writes a closed region's text, indented one level.
    fn nested(&mut self, text: &str) {
        for l in text.lines() {
            self.line(format!("  {l}"));
        }
    }

    /// The kernel's instructions: the index constants, then the outermost scope, each line
    /// indented by `indent` spaces.
    pub fn finish(self, indent: usize) -> String {
        assert_eq!(self.scopes.len(), 1, "every region was closed");
        let pad = " ".repeat(indent);
        let mut out = String::new();
        for v in &self.constants {
            let _ = writeln!(
                out,
                "{pad}{} = arith.constant {v} : index",
                constant_name(*v)
            );
        }
        for l in self.scopes[0].text.lines() {
            let _ = writeln!(out, "{pad}{l}");
        }
        out
    }
}

/// Regions (`scf.for`, `scf.if`) and hoisting, for whatever writes through an [`Emitter`]: the
/// emitter itself, or a kernel builder that holds one (whose closures need the builder).
pub trait Regions: Sized {
    fn em(&mut self) -> &mut Emitter;

    /// Runs `f` with `depth` as the current scope (writing before the loops opened since),
    /// then reopens those loops.
    fn hoisted<T>(&mut self, depth: usize, f: impl FnOnce(&mut Self) -> T) -> T {
        let e = self.em();
        if depth + 1 >= e.scopes.len() {
            return f(self);
        }
        let above = e.scopes.split_off(depth + 1);
        e.set_aside.push(above);
        let out = f(self);
        let e = self.em();
        let above = e.set_aside.pop().expect("set aside above");
        e.scopes.extend(above);
        out
    }

    /// Runs `f` in a new scope: its text and what it returned.
    fn region<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, String>,
    ) -> Result<(String, T), String> {
        self.em().scopes.push(Scope::new());
        let r = f(self);
        let scope = self.em().scopes.pop().expect("the region's scope");
        r.map(|v| (scope.text, v))
    }

    /// `scf.for %j = 0 to n` carrying `inits` (`(value, type)`); `body` gets the induction
    /// variable and the carried values and returns their next values. Returns the loop's
    /// results.
    fn for_loop(
        &mut self,
        n: usize,
        inits: &[(String, String)],
        body: impl FnOnce(&mut Self, &str, &[String]) -> Result<Vec<String>, String>,
    ) -> Result<Vec<String>, String> {
        let e = self.em();
        let (zero, one, end) = (e.index(0), e.index(1), e.index(n as i64));
        let (inner, (j, carried, next)) = self.region(|c| {
            let e = c.em();
            let j = e.fresh();
            let carried: Vec<String> = inits.iter().map(|_| e.fresh()).collect();
            let next = body(c, &j, &carried)?;
            Ok((j, carried, next))
        })?;
        let e = self.em();
        let types: Vec<&str> = inits.iter().map(|(_, t)| t.as_str()).collect();
        let results = e.results(inits.len());
        let head = if inits.is_empty() {
            format!("scf.for {j} = {zero} to {end} step {one} {{")
        } else {
            let args: Vec<String> = (carried.iter().zip(inits))
                .map(|(c, (v, _))| format!("{c} = {v}"))
                .collect();
            format!(
                "{} = scf.for {j} = {zero} to {end} step {one} iter_args({}) -> ({}) {{",
                results.0,
                args.join(", "),
                types.join(", ")
            )
        };
        e.line(head);
        e.nested(&inner);
        if !next.is_empty() {
            e.line(format!(
                "  scf.yield {} : {}",
                next.join(", "),
                types.join(", ")
            ));
        }
        e.line("}");
        Ok(results.1)
    }

    /// `scf.if cond` with results of `types`: each branch returns its values.
    fn if_else(
        &mut self,
        cond: &str,
        types: &[String],
        then: impl FnOnce(&mut Self) -> Result<Vec<String>, String>,
        otherwise: impl FnOnce(&mut Self) -> Result<Vec<String>, String>,
    ) -> Result<Vec<String>, String> {
        let (a, va) = self.region(then)?;
        let (b, vb) = self.region(otherwise)?;
        let e = self.em();
        let results = e.results(types.len());
        let ty = types.join(", ");
        if types.is_empty() {
            e.line(format!("scf.if {cond} {{"));
        } else {
            e.line(format!("{} = scf.if {cond} -> ({ty}) {{", results.0));
        }
        e.nested(&a);
        if !types.is_empty() {
            e.line(format!("  scf.yield {} : {ty}", va.join(", ")));
        }
        e.line("} else {");
        e.nested(&b);
        if !types.is_empty() {
            e.line(format!("  scf.yield {} : {ty}", vb.join(", ")));
        }
        e.line("}");
        Ok(results.1)
    }

    /// `scf.if cond` without results or else branch.
    fn when(
        &mut self,
        cond: &str,
        then: impl FnOnce(&mut Self) -> Result<(), String>,
    ) -> Result<(), String> {
        let (text, ()) = self.region(then)?;
        let e = self.em();
        e.line(format!("scf.if {cond} {{"));
        e.nested(&text);
        e.line("}");
        Ok(())
    }
}

impl Regions for Emitter {
    fn em(&mut self) -> &mut Emitter {
        self
    }
}

fn constant_name(v: i64) -> String {
    if v < 0 {
        format!("%cm{}", -v)
    } else {
        format!("%c{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hoisted_value_is_written_before_the_loop() {
        let mut e = Emitter::new();
        let init = e.assign("arith.constant 0.0 : f32");
        let r = e
            .for_loop(4, &[(init, "f32".into())], |e, j, acc| {
                let outer = e.hoisted(0, |e: &mut Emitter| e.assign("arith.constant 1.0 : f32"));
                let x = e.assign(format!("arith.index_cast {j} : index to i32"));
                let _ = x;
                Ok(vec![
                    e.assign(format!("arith.addf {}, {outer} : f32", acc[0]))
                ])
            })
            .unwrap();
        assert_eq!(r.len(), 1);
        let text = e.finish(0);
        let hoisted = text.find("arith.constant 1.0").unwrap();
        let for_ = text.find("scf.for").unwrap();
        assert!(hoisted < for_, "{text}");
        assert!(text.contains("%c4 = arith.constant 4 : index"), "{text}");
        assert!(text.contains("scf.yield"), "{text}");
    }
}
