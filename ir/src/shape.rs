//! Shapes whose dimensions are known sizes, named symbols, or unknown.
//!
//! A symbol (`?batch`) stands for one size that is the same everywhere the symbol appears; an
//! unknown dimension (`?`) promises nothing. Specialization replaces both with known sizes.

use crate::DType;
use std::fmt;
use std::sync::Arc;

/// One dimension of a shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    /// A size known at compile time.
    Known(usize),
    /// A named size, equal wherever the same name appears (e.g. the batch size).
    Sym(Arc<str>),
    /// A size nothing is known about.
    Unknown,
}

impl Dim {
    /// A named symbolic dimension.
    pub fn sym(name: &str) -> Dim {
        Dim::Sym(Arc::from(name))
    }

    /// The size, if known.
    pub fn known(&self) -> Option<usize> {
        match self {
            Dim::Known(n) => Some(*n),
            _ => None,
        }
    }

    /// True when two dims could be equal at run time (known sizes must agree).
    pub fn compatible(&self, other: &Dim) -> bool {
        match (self, other) {
            (Dim::Known(a), Dim::Known(b)) => a == b,
            _ => true,
        }
    }
}

impl From<usize> for Dim {
    fn from(n: usize) -> Dim {
        Dim::Known(n)
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Known(n) => write!(f, "{n}"),
            Dim::Sym(s) => write!(f, "?{s}"),
            Dim::Unknown => f.write_str("?"),
        }
    }
}

/// A ranked shape: one `Dim` per axis (rank 0 is a scalar).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Shape(pub Vec<Dim>);

impl Shape {
    /// A shape of known sizes.
    pub fn known(dims: &[usize]) -> Shape {
        Shape(dims.iter().map(|&d| Dim::Known(d)).collect())
    }

    /// The scalar shape `[]`.
    pub fn scalar() -> Shape {
        Shape(Vec::new())
    }

    /// Number of axes.
    pub fn rank(&self) -> usize {
        self.0.len()
    }

    /// The dims.
    pub fn dims(&self) -> &[Dim] {
        &self.0
    }

    /// Every size, if all are known.
    pub fn as_known(&self) -> Option<Vec<usize>> {
        self.0.iter().map(Dim::known).collect()
    }

    /// Every size, with each unknown or symbolic dimension taken as `fill` (the shape of an
    /// example value: batch 1 for `inspect`, a worker's batch size for a test).
    pub fn known_or(&self, fill: usize) -> Vec<usize> {
        self.0.iter().map(|d| d.known().unwrap_or(fill)).collect()
    }

    /// True when every dimension is known.
    pub fn is_known(&self) -> bool {
        self.0.iter().all(|d| d.known().is_some())
    }

    /// Number of elements, if every dimension is known.
    pub fn num_elements(&self) -> Option<usize> {
        self.as_known().map(|v| v.iter().product())
    }

    /// True when `concrete` could be a value of this shape: same rank, known dims equal.
    /// Symbols are not bound here (see [`Shape::bind_symbols`]).
    pub fn admits(&self, concrete: &[usize]) -> bool {
        self.rank() == concrete.len()
            && self
                .0
                .iter()
                .zip(concrete)
                .all(|(d, &c)| d.known().is_none_or(|k| k == c))
    }

    /// Binds this shape's symbols to the sizes in `concrete`, checking consistency with
    /// earlier bindings. Returns the symbol that conflicts, if any.
    pub fn bind_symbols(
        &self,
        concrete: &[usize],
        bindings: &mut Vec<(Arc<str>, usize)>,
    ) -> Result<(), (Arc<str>, usize, usize)> {
        for (d, &c) in self.0.iter().zip(concrete) {
            if let Dim::Sym(s) = d {
                match bindings.iter().find(|(n, _)| n == s) {
                    Some((_, v)) if *v != c => return Err((s.clone(), *v, c)),
                    Some(_) => {}
                    None => bindings.push((s.clone(), c)),
                }
            }
        }
        Ok(())
    }
}

impl From<Vec<Dim>> for Shape {
    fn from(v: Vec<Dim>) -> Shape {
        Shape(v)
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// The static type of a value: element type and shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorType {
    pub dtype: DType,
    pub shape: Shape,
}

impl TensorType {
    /// A type from a dtype and a shape.
    pub fn new(dtype: DType, shape: Shape) -> TensorType {
        TensorType { dtype, shape }
    }

    /// A type with every dimension known.
    pub fn known(dtype: DType, dims: &[usize]) -> TensorType {
        TensorType::new(dtype, Shape::known(dims))
    }

    /// A scalar type.
    pub fn scalar(dtype: DType) -> TensorType {
        TensorType::new(dtype, Shape::scalar())
    }

    /// The rank of the shape.
    pub fn rank(&self) -> usize {
        self.shape.rank()
    }

    /// True when a value of one type could be a value of the other: same dtype and rank, and
    /// every pair of dims [compatible](Dim::compatible). This is how the verifier compares a
    /// recorded type with a re-inferred one.
    pub fn compatible(&self, other: &TensorType) -> bool {
        self.dtype == other.dtype
            && self.rank() == other.rank()
            && self
                .shape
                .dims()
                .iter()
                .zip(other.shape.dims())
                .all(|(a, b)| a.compatible(b))
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.dtype, self.shape)
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn known_or_fills_unknown_and_symbolic_dims() {
        let s = Shape(vec![Dim::sym("n"), Dim::Known(3), Dim::Unknown]);
        assert_eq!(s.known_or(1), vec![1, 3, 1]);
        assert_eq!(Shape::known(&[2, 5]).known_or(9), vec![2, 5]);
    }
    use super::*;

    #[test]
    fn display() {
        let t = TensorType::new(
            DType::F32,
            Shape(vec![Dim::sym("batch"), Dim::Known(3), Dim::Unknown]),
        );
        assert_eq!(t.to_string(), "f32[?batch,3,?]");
        assert_eq!(TensorType::scalar(DType::I64).to_string(), "i64[]");
    }

    #[test]
    fn symbols_bind_consistently() {
        let s = Shape(vec![Dim::sym("n"), Dim::sym("n")]);
        let mut b = Vec::new();
        assert!(s.bind_symbols(&[2, 2], &mut b).is_ok());
        let mut b = Vec::new();
        assert!(s.bind_symbols(&[2, 3], &mut b).is_err());
        assert!(s.admits(&[4, 5]));
        assert!(!Shape::known(&[4]).admits(&[5]));
    }
}
