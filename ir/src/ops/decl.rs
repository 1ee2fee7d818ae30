//! The vocabulary of the op declaration table in `ops/mod.rs`: the macros that turn one row
//! per op into the `Op` enum, its sub-enums, mnemonics, attributes and [`registry`], and the
//! data each row declares ([`OpInfo`]: operands, attributes, dtype rules, summary).
//!
//! An op's dtype rule is a list of type variables (`T: Float`) that operands refer to by name;
//! operands of one variable share one dtype. An operand may instead name a class directly
//! (`axes: Index`), which constrains it alone. [`OpInfo::check_dtypes`] applies the rule; `infer`
//! calls it, so the declaration is what type checking enforces.

use super::{
    AttrValue, DataFormat, Family, Op, OpResult, PadMode, Padding, SampleMode, SamplePadding,
    ScatterReduction,
};
use crate::{DType, Graph, TensorType};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// A set of dtypes an operand accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DTypeClass {
    /// Every dtype, the low-precision storage types included (casts take them).
    All,
    /// Every dtype but the low-precision storage types.
    Any,
    /// Floats and integers (not bool).
    Numeric,
    /// Floats and integers but u64 (kernels that compute integers in i64).
    NumericButU64,
    /// f16, bf16, f32, f64.
    Float,
    /// Signed and unsigned integers.
    Int,
    /// i32 and i64, the dtypes of shapes, axes and indices.
    Index,
    /// i8 and u8, the dtypes of quantized tensors.
    Byte,
    /// bool.
    Bool,
}

impl DTypeClass {
    /// Every class.
    pub const ALL: [DTypeClass; 9] = [
        DTypeClass::All,
        DTypeClass::Any,
        DTypeClass::Numeric,
        DTypeClass::NumericButU64,
        DTypeClass::Float,
        DTypeClass::Int,
        DTypeClass::Index,
        DTypeClass::Byte,
        DTypeClass::Bool,
    ];

    /// The name tables and docs print (`float`, `numeric`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DTypeClass::All => "all",
            DTypeClass::Any => "any",
            DTypeClass::Numeric => "numeric",
            DTypeClass::NumericButU64 => "numeric but u64",
            DTypeClass::Float => "float",
            DTypeClass::Int => "int",
            DTypeClass::Index => "index",
            DTypeClass::Byte => "i8 or u8",
            DTypeClass::Bool => "bool",
        }
    }

    /// The class an operand declaration names (`Float`, `Index`, ...), if any.
    pub fn from_decl(name: &str) -> Option<DTypeClass> {
        DTypeClass::ALL
            .into_iter()
            .find(|c| format!("{c:?}") == name)
    }

    /// True when `d` belongs to the class.
    pub fn contains(self, d: DType) -> bool {
        match self {
            DTypeClass::All => true,
            DTypeClass::Any => !d.is_low_precision(),
            DTypeClass::Numeric => d.is_numeric(),
            DTypeClass::NumericButU64 => d.is_numeric() && d != DType::U64,
            DTypeClass::Float => d.is_float(),
            DTypeClass::Int => d.is_int(),
            DTypeClass::Index => matches!(d, DType::I32 | DType::I64),
            DTypeClass::Byte => matches!(d, DType::I8 | DType::U8),
            DTypeClass::Bool => d == DType::Bool,
        }
    }

    /// The dtypes of the class, in [`DType::ALL`] order.
    pub fn dtypes(self) -> Vec<DType> {
        DType::ALL
            .into_iter()
            .filter(|&d| self.contains(d))
            .collect()
    }

    /// What an op whose operands must be in this class "is" (for error messages).
    fn requirement(self) -> &'static str {
        match self {
            DTypeClass::All => "defined on every dtype",
            DTypeClass::Any => "not defined on the low-precision storage types",
            DTypeClass::Numeric => "not defined on bool tensors",
            DTypeClass::NumericButU64 => "not defined on bool and u64 tensors",
            DTypeClass::Float => "only defined on floating-point tensors",
            DTypeClass::Int => "only defined on integer tensors",
            DTypeClass::Index => "only defined on i32 and i64 tensors",
            DTypeClass::Byte => "only defined on i8 and u8 tensors",
            DTypeClass::Bool => "only defined on bool tensors",
        }
    }
}

/// How many inputs one declared operand stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arity {
    /// Exactly one.
    One,
    /// Zero or one (only last).
    Optional,
    /// Any number, zero included (at most one variadic operand per op).
    Variadic,
}

/// One declared operand of an op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Operand {
    /// Its name in docs and messages (`x`, `filter`, `axes`).
    pub name: &'static str,
    /// A type variable of the op (`T`) or a class name (`Index`).
    pub ty: &'static str,
    /// How many inputs it stands for.
    pub arity: Arity,
}

/// The kind of value an attribute holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttrKind {
    Bool,
    Int,
    /// A non-negative integer.
    Count,
    Ints,
    /// Two positive integers (window sizes, strides, dilations).
    Pair,
    Float,
    Str,
    DType,
    /// `"SAME"`, `"VALID"` or `[top, bottom, left, right]`.
    Padding,
    /// `"NHWC"` or `"NCHW"`.
    DataFormat,
    /// `"constant"`, `"reflect"`, `"symmetric"`, `"edge"` or `"wrap"`.
    PadMode,
    /// `"none"`, `"add"`, `"mul"`, `"max"` or `"min"`.
    ScatterReduction,
    /// `"nearest"`, `"linear"` or `"cubic"` (`grid_sample`'s interpolation).
    SampleMode,
    /// `"zeros"`, `"border"` or `"reflection"` (what `grid_sample` reads outside the image).
    SamplePadding,
    /// A nested graph.
    Graph,
}

impl AttrKind {
    /// The name tables and docs print.
    pub fn name(self) -> &'static str {
        match self {
            AttrKind::Bool => "bool",
            AttrKind::Int => "int",
            AttrKind::Count => "count",
            AttrKind::Ints => "ints",
            AttrKind::Pair => "pair",
            AttrKind::Float => "float",
            AttrKind::Str => "string",
            AttrKind::DType => "dtype",
            AttrKind::Padding => "padding",
            AttrKind::DataFormat => "data_format",
            AttrKind::PadMode => "pad_mode",
            AttrKind::ScatterReduction => "scatter_reduction",
            AttrKind::SampleMode => "sample_mode",
            AttrKind::SamplePadding => "sample_padding",
            AttrKind::Graph => "graph",
        }
    }
}

/// One declared attribute of an op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttrDecl {
    /// Its name in the text format.
    pub name: &'static str,
    /// What it holds.
    pub kind: AttrKind,
}

/// Everything declared about one IR op: what `lathe ops` and `docs/ops.md` print, and what
/// type checking enforces.
#[derive(Clone, Debug, PartialEq)]
pub struct OpInfo {
    /// The mnemonic (`conv2d`, `relu`, `reduce_sum`).
    pub name: &'static str,
    /// Its family (which module holds its `infer` and `eval`).
    pub family: Family,
    /// One line saying what it computes.
    pub summary: &'static str,
    /// Its operands, in input order.
    pub operands: &'static [Operand],
    /// Its attributes, in the order the text format prints them.
    pub attrs: &'static [AttrDecl],
    /// Its type variables and the class each ranges over.
    pub type_vars: Vec<(&'static str, DTypeClass)>,
    /// Graph structure the text format writes itself (`input`, `const`): no attributes, not
    /// built by [`Op::from_parts`].
    pub structural: bool,
}

impl OpInfo {
    /// The type variable an operand refers to, if it names one.
    pub fn type_var(&self, o: &Operand) -> Option<(&'static str, DTypeClass)> {
        self.type_vars.iter().copied().find(|(v, _)| *v == o.ty)
    }

    /// The dtypes operand `o` accepts; `None` when its type names neither a variable nor a
    /// class (a table error the registry tests catch).
    pub fn operand_class(&self, o: &Operand) -> Option<DTypeClass> {
        match self.type_var(o) {
            Some((_, c)) => Some(c),
            None => DTypeClass::from_decl(o.ty),
        }
    }

    /// An instance of the op with plain attribute values (stride 1, `VALID`, `NHWC`, `f32`,
    /// ...), for questions asked of the op rather than of one node, such as which dtypes a
    /// backend runs it on. `None` for graph structure and ops with a nested graph.
    pub fn sample(&self) -> Option<Op> {
        if self.structural {
            return None;
        }
        let mut attrs = Vec::with_capacity(self.attrs.len());
        for a in self.attrs {
            let v = match a.kind {
                AttrKind::Bool => AttrValue::Bool(false),
                AttrKind::Int => AttrValue::Int(0),
                AttrKind::Count => AttrValue::Int(1),
                AttrKind::Ints => AttrValue::Ints(vec![]),
                AttrKind::Pair => AttrValue::Ints(vec![1, 1]),
                AttrKind::Float => AttrValue::Float(0.0),
                AttrKind::Str => AttrValue::Str(String::new()),
                AttrKind::DType => AttrValue::DType(DType::F32),
                AttrKind::Padding => AttrValue::Str("VALID".into()),
                AttrKind::DataFormat => AttrValue::Str("NHWC".into()),
                AttrKind::PadMode => AttrValue::Str("constant".into()),
                AttrKind::ScatterReduction => AttrValue::Str("none".into()),
                AttrKind::SampleMode => AttrValue::Str("linear".into()),
                AttrKind::SamplePadding => AttrValue::Str("zeros".into()),
                AttrKind::Graph => return None,
            };
            attrs.push((a.name.to_string(), v));
        }
        Op::from_parts(self.name, &attrs).ok()
    }

    /// The dtype rule in one line: `x, y: T numeric` style, grouped by variable.
    pub fn dtype_rule(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        for (var, class) in &self.type_vars {
            let names: Vec<&str> = self
                .operands
                .iter()
                .filter(|o| o.ty == *var)
                .map(|o| o.name)
                .collect();
            if !names.is_empty() {
                parts.push(format!("{}: {}", names.join(", "), class.name()));
            }
        }
        for o in self.operands.iter().filter(|o| self.type_var(o).is_none()) {
            let class = self.operand_class(o).map_or("?", DTypeClass::name);
            parts.push(format!("{}: {class}", o.name));
        }
        parts.join("; ")
    }

    /// The operands in signature form: `x, axes`, `values..., axis`, `x, paddings, value?`.
    pub fn signature(&self) -> String {
        let names: Vec<String> = self
            .operands
            .iter()
            .map(|o| match o.arity {
                Arity::One => o.name.to_string(),
                Arity::Optional => format!("{}?", o.name),
                Arity::Variadic => format!("{}...", o.name),
            })
            .collect();
        names.join(", ")
    }

    /// Which declared operand each of `n` inputs is; `None` when `n` inputs do not fit.
    pub fn bind(&self, n: usize) -> Option<Vec<&'static Operand>> {
        let ops: &'static [Operand] = self.operands;
        let fixed = ops.iter().filter(|o| o.arity == Arity::One).count();
        let optional = ops.iter().filter(|o| o.arity == Arity::Optional).count();
        let variadic = ops.iter().position(|o| o.arity == Arity::Variadic);
        if n < fixed || (variadic.is_none() && n > fixed + optional) {
            return None;
        }
        let mut out = Vec::with_capacity(n);
        match variadic {
            Some(v) => {
                let after = ops.len() - v - 1;
                out.extend(&ops[..v]);
                out.extend(std::iter::repeat_n(&ops[v], n - v - after));
                out.extend(&ops[v + 1..]);
            }
            None => out.extend(ops.iter().take(n)),
        }
        Some(out)
    }

    /// Checks input dtypes against the declared rule: each operand in its class, operands of
    /// one type variable of one dtype. The message names the op and the offending types.
    pub fn check_dtypes(&self, inputs: &[TensorType]) -> OpResult<()> {
        let mn = self.name;
        let Some(bound) = self.bind(inputs.len()) else {
            return Err(format!(
                "{mn} takes {} inputs ({}), got {}",
                self.operands.len(),
                self.signature(),
                inputs.len()
            ));
        };
        let list = |ts: &[&TensorType]| {
            ts.iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(" and ")
        };
        for (k, (var, class)) in self.type_vars.iter().enumerate() {
            let of_var: Vec<&TensorType> = bound
                .iter()
                .zip(inputs)
                .filter(|(o, _)| o.ty == *var)
                .map(|(_, t)| t)
                .collect();
            let Some(first) = of_var.first() else {
                continue;
            };
            if of_var.iter().any(|t| t.dtype != first.dtype) {
                return Err(format!(
                    "{mn}: operands must have one dtype, got {}",
                    list(&of_var)
                ));
            }
            if !class.contains(first.dtype) {
                return Err(if k == 0 {
                    format!("{mn} is {}, got {}", class.requirement(), list(&of_var))
                } else {
                    let names: Vec<&str> = bound
                        .iter()
                        .filter(|o| o.ty == *var)
                        .map(|o| o.name)
                        .collect();
                    format!(
                        "{mn}: {} must be {}, got {}",
                        names.join(", "),
                        class.name(),
                        list(&of_var)
                    )
                });
            }
        }
        for (o, t) in bound.iter().zip(inputs) {
            if self.type_var(o).is_some() {
                continue;
            }
            let class = self.operand_class(o).unwrap_or(DTypeClass::Any);
            if !class.contains(t.dtype) {
                return Err(format!(
                    "{mn}: {} must be {} ({}), got {t}",
                    o.name,
                    class.name(),
                    class
                        .dtypes()
                        .iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        Ok(())
    }
}

/// Every IR op's declaration, grouped by family, in declaration order within a family.
pub fn registry() -> &'static [OpInfo] {
    &index().0
}

/// The declaration of the op with this mnemonic.
pub fn lookup(mnemonic: &str) -> Option<&'static OpInfo> {
    let (all, by_name) = index();
    by_name.get(mnemonic).map(|&i| &all[i])
}

fn index() -> &'static (Vec<OpInfo>, HashMap<&'static str, usize>) {
    static INDEX: OnceLock<(Vec<OpInfo>, HashMap<&'static str, usize>)> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut all = super::declared_ops();
        all.sort_by_key(|i| i.family);
        let by_name = all.iter().enumerate().map(|(i, o)| (o.name, i)).collect();
        (all, by_name)
    })
}

/// A Rust value that is one attribute: how it prints and parses in the text format.
pub(crate) trait AttrField: Sized {
    /// What kind of attribute it is.
    const KIND: AttrKind;
    /// The value as the text format sees it.
    fn to_attr(&self) -> AttrValue;
    /// The value from the text format; the error says what was expected ("a bool").
    fn from_attr(v: &AttrValue) -> Result<Self, &'static str>;
}

/// A struct of attributes carried by one op variant (`ConvAttrs`): each field one attribute.
pub(crate) trait AttrSet: Sized {
    /// Its attributes, in field order.
    const DECLS: &'static [AttrDecl];
    /// The attributes, in field order.
    fn to_attrs(&self) -> Vec<(&'static str, AttrValue)>;
    /// Reads every field from `a`.
    fn from_attrs(a: &mut Attrs) -> OpResult<Self>;
}

macro_rules! attr_field {
    ($t:ty, $kind:ident, $want:literal, |$s:ident| $to:expr, $($pat:pat $(if $guard:expr)? => $from:expr),+ $(,)?) => {
        impl AttrField for $t {
            const KIND: AttrKind = AttrKind::$kind;
            fn to_attr(&self) -> AttrValue {
                let $s = self;
                $to
            }
            fn from_attr(v: &AttrValue) -> Result<Self, &'static str> {
                #[allow(unreachable_patterns)]
                match v {
                    $($pat $(if $guard)? => $from,)+
                    _ => Err($want),
                }
            }
        }
    };
}

attr_field!(bool, Bool, "a bool", |s| AttrValue::Bool(*s), AttrValue::Bool(b) => Ok(*b));
attr_field!(i64, Int, "an integer", |s| AttrValue::Int(*s), AttrValue::Int(i) => Ok(*i));
attr_field!(usize, Count, "a non-negative integer", |s| AttrValue::Int(*s as i64),
    AttrValue::Int(i) => usize::try_from(*i).map_err(|_| "a non-negative integer"));
attr_field!(Vec<i64>, Ints, "a list of integers", |s| AttrValue::Ints(s.clone()),
    AttrValue::Ints(v) => Ok(v.clone()));
attr_field!(f32, Float, "a float", |s| AttrValue::Float(*s),
    AttrValue::Float(x) => Ok(*x), AttrValue::Int(i) => Ok(*i as f32));
attr_field!(String, Str, "a string", |s| AttrValue::Str(s.clone()),
    AttrValue::Str(x) => Ok(x.clone()));
attr_field!(DType, DType, "a dtype", |s| AttrValue::DType(*s), AttrValue::DType(d) => Ok(*d));
attr_field!(Arc<Graph>, Graph, "a graph", |s| AttrValue::Graph(s.clone()),
    AttrValue::Graph(g) => Ok(g.clone()));
attr_field!([usize; 2], Pair, "two positive integers",
    |s| AttrValue::Ints(vec![s[0] as i64, s[1] as i64]),
    AttrValue::Ints(v) if v.len() == 2 && v.iter().all(|&x| x > 0) => Ok([v[0] as usize, v[1] as usize]));
attr_field!(DataFormat, DataFormat, "\"NHWC\" or \"NCHW\"", |s| AttrValue::Str(s.name().into()),
    AttrValue::Str(x) => DataFormat::parse(x).map_err(|_| "\"NHWC\" or \"NCHW\""));
attr_field!(PadMode, PadMode,
    "\"constant\", \"reflect\", \"symmetric\", \"edge\" or \"wrap\"",
    |s| AttrValue::Str(s.name().into()),
    AttrValue::Str(x) => PadMode::parse(x).ok_or(
        "\"constant\", \"reflect\", \"symmetric\", \"edge\" or \"wrap\""));
attr_field!(ScatterReduction, ScatterReduction,
    "\"none\", \"add\", \"mul\", \"max\" or \"min\"",
    |s| AttrValue::Str(s.name().into()),
    AttrValue::Str(x) => ScatterReduction::parse(x).ok_or(
        "\"none\", \"add\", \"mul\", \"max\" or \"min\""));
attr_field!(SampleMode, SampleMode, "\"nearest\", \"linear\" or \"cubic\"",
    |s| AttrValue::Str(s.name().into()),
    AttrValue::Str(x) => SampleMode::parse(x).ok_or("\"nearest\", \"linear\" or \"cubic\""));
attr_field!(SamplePadding, SamplePadding, "\"zeros\", \"border\" or \"reflection\"",
    |s| AttrValue::Str(s.name().into()),
    AttrValue::Str(x) => SamplePadding::parse(x).ok_or(
        "\"zeros\", \"border\" or \"reflection\""));
attr_field!(Padding, Padding, "\"SAME\", \"VALID\" or [top, bottom, left, right]",
|s| match s {
    Padding::Valid => AttrValue::Str("VALID".into()),
    Padding::Same => AttrValue::Str("SAME".into()),
    Padding::Explicit([[t, b], [l, r]]) =>
        AttrValue::Ints(vec![*t as i64, *b as i64, *l as i64, *r as i64]),
},
AttrValue::Str(x) if x == "VALID" => Ok(Padding::Valid),
AttrValue::Str(x) if x == "SAME" => Ok(Padding::Same),
AttrValue::Ints(v) if v.len() == 4 && v.iter().all(|&x| x >= 0) => {
    let u: Vec<usize> = v.iter().map(|&x| x as usize).collect();
    Ok(Padding::Explicit([[u[0], u[1]], [u[2], u[3]]]))
});

/// A parsed attribute list being read into an op, tracking which attributes were used.
pub(crate) struct Attrs<'a> {
    op: &'a str,
    list: &'a [(String, AttrValue)],
    used: Vec<bool>,
}

impl<'a> Attrs<'a> {
    /// Starts reading `list` for op `op` (named in errors).
    pub(crate) fn new(op: &'a str, list: &'a [(String, AttrValue)]) -> Attrs<'a> {
        Attrs {
            op,
            list,
            used: vec![false; list.len()],
        }
    }

    /// The attribute `name` as a `T`; an error names the op, the attribute and what it needs.
    pub(crate) fn take<T: AttrField>(&mut self, name: &str) -> OpResult<T> {
        let i = self
            .list
            .iter()
            .position(|(n, _)| n == name)
            .ok_or_else(|| format!("{}: missing attribute `{name}`", self.op))?;
        self.used[i] = true;
        let v = &self.list[i].1;
        T::from_attr(v)
            .map_err(|want| format!("{}: attribute `{name}` must be {want}, got `{v}`", self.op))
    }

    /// Errors on an attribute no field read.
    pub(crate) fn finish(self) -> OpResult<()> {
        match self.used.iter().position(|u| !u) {
            Some(i) => Err(format!(
                "{}: unknown attribute `{}`",
                self.op, self.list[i].0
            )),
            None => Ok(()),
        }
    }
}

/// Declares a struct whose fields are all attributes of the op variant carrying it.
macro_rules! attr_struct {
    (
        $(#[$m:meta])*
        pub struct $name:ident {
            $( $(#[$fm:meta])* pub $f:ident : $t:ty ),* $(,)?
        }
    ) => {
        $(#[$m])*
        pub struct $name {
            $( $(#[$fm])* pub $f: $t ),*
        }

        impl $crate::ops::decl::AttrSet for $name {
            const DECLS: &'static [$crate::ops::decl::AttrDecl] = &[$(
                $crate::ops::decl::AttrDecl {
                    name: stringify!($f),
                    kind: <$t as $crate::ops::decl::AttrField>::KIND,
                }
            ),*];
            fn to_attrs(&self) -> Vec<(&'static str, $crate::ops::AttrValue)> {
                vec![$( (stringify!($f), $crate::ops::decl::AttrField::to_attr(&self.$f)) ),*]
            }
            fn from_attrs(a: &mut $crate::ops::decl::Attrs) -> $crate::ops::OpResult<Self> {
                Ok($name { $( $f: a.take(stringify!($f))? ),* })
            }
        }
    };
}
pub(crate) use attr_struct;

/// Declares a family's sub-enum of ops (`UnaryOp`): one row per variant with its mnemonic,
/// the dtype class its operands range over, and a one-line summary.
macro_rules! op_kinds {
    (
        $(#[$m:meta])*
        pub enum $name:ident {
            $( $(#[$vm:meta])* $v:ident = $mn:literal, $class:ident, $summary:literal; )*
        }
    ) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $( #[doc = $summary] $(#[$vm])* $v, )*
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: [$name; [$(stringify!($v)),*].len()] = [$($name::$v),*];

            /// The text-format mnemonic.
            pub fn mnemonic(self) -> &'static str {
                match self { $($name::$v => $mn,)* }
            }

            /// One line saying what it computes.
            pub fn summary(self) -> &'static str {
                match self { $($name::$v => $summary,)* }
            }

            /// The dtypes its data operands range over.
            pub fn dtypes(self) -> $crate::ops::decl::DTypeClass {
                match self { $($name::$v => $crate::ops::decl::DTypeClass::$class,)* }
            }

            /// The variant with this mnemonic.
            pub fn from_mnemonic(m: &str) -> Option<$name> {
                match m { $($mn => Some($name::$v),)* _ => None }
            }
        }
    };
}
pub(crate) use op_kinds;

/// `Arity::One` unless an operand says `[Optional]` or `[Variadic]`.
macro_rules! arity {
    () => {
        $crate::ops::decl::Arity::One
    };
    ($a:ident) => {
        $crate::ops::decl::Arity::$a
    };
}
pub(crate) use arity;

/// A `&'static [Operand]` from `(x: T, axes: Index, values: T [Variadic])`.
macro_rules! operands {
    ($( $o:ident : $t:ident $([$a:ident])? ),*) => {
        &[$( $crate::ops::decl::Operand {
            name: stringify!($o),
            ty: stringify!($t),
            arity: $crate::ops::decl::arity!($($a)?),
        } ),*]
    };
}
pub(crate) use operands;

/// Declares the `Op` enum from one row per op (or per family sub-enum), and derives from the
/// rows `Op::mnemonic`, `Op::family`, `Op::attrs`, `Op::from_parts` and the registry rows.
///
/// Row forms, by section:
/// - `builtin`: graph structure the text format writes itself (`input`, `const`); no
///   attributes, not built by `from_parts`.
/// - `plain`: a unit variant or a struct variant whose fields are all attributes.
/// - `sets`: a tuple variant carrying one [`AttrSet`] struct (`Conv2D(ConvAttrs)`).
/// - `kinds`: a tuple variant carrying a sub-enum (`Unary(UnaryOp)`), one op per sub-enum
///   variant; type variable `T` ranges over the variant's class.
/// - `kinds_with_attrs`: a struct variant `{ kind: Sub, attr: Type, ... }`.
macro_rules! declare_ops {
    (
        builtin { $(
            $(#[$bm:meta])*
            $bv:ident $(($bt:ty))? $({ $($bf:ident : $bft:ty),* })? = $bmn:literal, $bfam:ident,
            ($($bo:ident : $bot:ident $([$ba:ident])?),*), [$($bvar:ident : $bcls:ident),*],
            $bsum:literal;
        )* }
        plain { $(
            $(#[$pm:meta])*
            $pv:ident $({ $($pf:ident : $pft:ty),* })? = $pmn:literal, $pfam:ident,
            ($($po:ident : $pot:ident $([$pa:ident])?),*), [$($pvar:ident : $pcls:ident),*],
            $psum:literal;
        )* }
        sets { $(
            $(#[$sm:meta])*
            $sv:ident($st:ty) = $smn:literal, $sfam:ident,
            ($($so:ident : $sot:ident $([$sa:ident])?),*), [$($svar:ident : $scls:ident),*],
            $ssum:literal;
        )* }
        kinds { $(
            $(#[$km:meta])*
            $kv:ident($kt:ty), $kfam:ident,
            ($($ko:ident : $kot:ident $([$ka:ident])?),*), [$($kvar:ident : $kcls:ident),*];
        )* }
        kinds_with_attrs { $(
            $(#[$wm:meta])*
            $wv:ident { kind: $wt:ty $(, $wf:ident : $wft:ty)* }, $wfam:ident,
            ($($wo:ident : $wot:ident $([$wa:ident])?),*), [$($wvar:ident : $wcls:ident),*];
        )* }
    ) => {
        /// An operation: what a node computes from its inputs.
        ///
        /// Declared by the table in `ops/mod.rs`; see each variant for its inputs.
        #[derive(Clone, Debug, PartialEq)]
        pub enum Op {
            $( #[doc = $bsum] $(#[$bm])* $bv $(($bt))? $({ $($bf: $bft),* })?, )*
            $( #[doc = $psum] $(#[$pm])* $pv $({ $($pf: $pft),* })?, )*
            $( #[doc = $ssum] $(#[$sm])* $sv($st), )*
            $( $(#[$km])* $kv($kt), )*
            $( $(#[$wm])* $wv { kind: $wt $(, $wf: $wft)* }, )*
        }

        impl Op {
            /// The text-format name of the op (`matmul`, `conv2d`, `reduce_mean`, ...).
            pub fn mnemonic(&self) -> &'static str {
                match self {
                    $( Op::$bv { .. } => $bmn, )*
                    $( Op::$pv { .. } => $pmn, )*
                    $( Op::$sv { .. } => $smn, )*
                    $( Op::$kv(k) => k.mnemonic(), )*
                    $( Op::$wv { kind, .. } => kind.mnemonic(), )*
                }
            }

            /// The family this op belongs to.
            pub fn family(&self) -> Family {
                match self {
                    $( Op::$bv { .. } => Family::$bfam, )*
                    $( Op::$pv { .. } => Family::$pfam, )*
                    $( Op::$sv { .. } => Family::$sfam, )*
                    $( Op::$kv(_) => Family::$kfam, )*
                    $( Op::$wv { .. } => Family::$wfam, )*
                }
            }

            /// The op's attributes, in declaration order, as the text format prints them.
            /// `Const`'s tensor and `Input`'s index are printed by the text format itself.
            pub fn attrs(&self) -> Vec<(&'static str, AttrValue)> {
                #[allow(unused_imports)]
                use $crate::ops::decl::{AttrField, AttrSet};
                match self {
                    $( Op::$bv { .. } => vec![], )*
                    $( Op::$pv $({ $($pf),* })? => vec![$($( (stringify!($pf), $pf.to_attr()) ),*)?], )*
                    $( Op::$sv(s) => s.to_attrs(), )*
                    $( Op::$kv(_) => vec![], )*
                    $( Op::$wv { kind: _ $(, $wf)* } => vec![$( (stringify!($wf), $wf.to_attr()) ),*], )*
                }
            }

            /// Builds an op from its mnemonic and attributes (the inverse of [`Op::mnemonic`]
            /// and [`Op::attrs`]). Every declared attribute must be present; unknown
            /// attributes are an error. Not for `input` and `const`, which the text format
            /// builds.
            pub fn from_parts(mnemonic: &str, attrs: &[(String, AttrValue)]) -> OpResult<Op> {
                #[allow(unused_imports)]
                use $crate::ops::decl::AttrSet;
                #[allow(unused_mut)]
                let mut a = $crate::ops::decl::Attrs::new(mnemonic, attrs);
                let op = match mnemonic {
                    $( $pmn => Op::$pv $({ $($pf: a.take(stringify!($pf))?),* })?, )*
                    $( $smn => Op::$sv(<$st>::from_attrs(&mut a)?), )*
                    m => 'found: {
                        $( if let Some(k) = <$kt>::from_mnemonic(m) {
                            break 'found Op::$kv(k);
                        } )*
                        $( if let Some(kind) = <$wt>::from_mnemonic(m) {
                            break 'found Op::$wv { kind $(, $wf: a.take(stringify!($wf))?)* };
                        } )*
                        return Err(format!("unknown op `{m}`"));
                    }
                };
                a.finish()?;
                Ok(op)
            }
        }

        /// One [`OpInfo`](decl::OpInfo) per IR op, in table order (see [`decl::registry`]).
        // The table's rows come in groups of different shapes, so the list is built by pushes.
        #[allow(clippy::vec_init_then_push)]
        fn declared_ops() -> Vec<decl::OpInfo> {
            #[allow(unused_imports)]
            use $crate::ops::decl::{AttrDecl, AttrField, AttrSet, DTypeClass, OpInfo};
            let mut v: Vec<OpInfo> = Vec::new();
            $( v.push(OpInfo {
                name: $bmn,
                family: Family::$bfam,
                summary: $bsum,
                operands: decl::operands!($($bo : $bot $([$ba])?),*),
                attrs: &[],
                type_vars: vec![$( (stringify!($bvar), DTypeClass::$bcls) ),*],
                structural: true,
            }); )*
            $( v.push(OpInfo {
                name: $pmn,
                family: Family::$pfam,
                summary: $psum,
                operands: decl::operands!($($po : $pot $([$pa])?),*),
                attrs: &[$($( AttrDecl {
                    name: stringify!($pf),
                    kind: <$pft as AttrField>::KIND,
                } ),*)?],
                type_vars: vec![$( (stringify!($pvar), DTypeClass::$pcls) ),*],
                structural: false,
            }); )*
            $( v.push(OpInfo {
                name: $smn,
                family: Family::$sfam,
                summary: $ssum,
                operands: decl::operands!($($so : $sot $([$sa])?),*),
                attrs: <$st as AttrSet>::DECLS,
                type_vars: vec![$( (stringify!($svar), DTypeClass::$scls) ),*],
                structural: false,
            }); )*
            $( for k in <$kt>::ALL {
                v.push(OpInfo {
                    name: k.mnemonic(),
                    family: Family::$kfam,
                    summary: k.summary(),
                    operands: decl::operands!($($ko : $kot $([$ka])?),*),
                    attrs: &[],
                    type_vars: vec![("T", k.dtypes()) $(, (stringify!($kvar), DTypeClass::$kcls))*],
                    structural: false,
                });
            } )*
            $( for k in <$wt>::ALL {
                let ops: &'static [decl::Operand] = decl::operands!($($wo : $wot $([$wa])?),*);
                // `T` is the kind's class when an operand uses it (fused inputs do not).
                let kind_var = ops.iter().any(|o| o.ty == "T").then(|| ("T", k.dtypes()));
                v.push(OpInfo {
                    name: k.mnemonic(),
                    family: Family::$wfam,
                    summary: k.summary(),
                    operands: ops,
                    attrs: &[$( AttrDecl {
                        name: stringify!($wf),
                        kind: <$wft as AttrField>::KIND,
                    } ),*],
                    type_vars: kind_var.into_iter()
                        $(.chain([(stringify!($wvar), DTypeClass::$wcls)]))*
                        .collect(),
                    structural: false,
                });
            } )*
            v
        }
    };
}
pub(crate) use declare_ops;

impl Op {
    /// This op's declaration.
    pub fn info(&self) -> &'static OpInfo {
        lookup(self.mnemonic()).expect("every op's mnemonic is in the registry")
    }
}
