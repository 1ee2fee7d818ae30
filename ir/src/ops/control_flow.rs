//! Control-flow family: ops with nested regions (`if`, `while`) and the dense list ops that
//! loops accumulate into (`list_reserve`, `set_item`).
//!
//! A region is a nested [`Graph`] held as an attribute, as a fused body is: its inputs are
//! the values the op hands it, in order, and its outputs what it hands back.
//!
//! - `if(cond, args...)` runs `then_branch` or `else_branch` on `args`; both branches take the
//!   args and return the op's outputs (the same count, compatible types).
//! - `while(init...)` carries values: `cond` maps them to a bool scalar, `body` maps them to
//!   their next values; the outputs are the values when `cond` first says false.
//!
//! A loop-carried value may enter a loop less known than it leaves the first iteration: a list
//! reserved with an unknown element dimension (TensorFlow's `TensorListReserve` with a `-1`
//! element shape) learns that dimension from the item the body writes. The `while` output
//! types are the entry types refined by the body's output types (a dim unknown at entry takes
//! the body's); specialization iterates this to a fixed point and gives the reservation the
//! dims it learnt, so every specialized value has a known shape.
//!
//! TensorFlow's lists (`TensorList*`) are dense tensors here: element `i` is row `i` of a
//! tensor of shape `[n, element...]`, reserved with zeros.

use super::common::check_region;
use super::{Op, OpResult};
use crate::{DType, Dim, Shape, Tensor, TensorType};

/// Output types of control-flow ops.
pub fn infer(
    op: &Op,
    inputs: &[TensorType],
    consts: &[Option<&Tensor>],
) -> OpResult<Vec<TensorType>> {
    match op {
        Op::If {
            then_branch,
            else_branch,
        } => {
            let cond = &inputs[0];
            if cond.rank() != 0 {
                return Err(format!(
                    "if: the condition must be a bool scalar, got {cond}"
                ));
            }
            let args = &inputs[1..];
            check_region("then_branch", then_branch, args)?;
            check_region("else_branch", else_branch, args)?;
            let (t, e) = (then_branch.outputs(), else_branch.outputs());
            if t.len() != e.len() {
                return Err(format!(
                    "if: then_branch returns {} values, else_branch {}",
                    t.len(),
                    e.len()
                ));
            }
            t.iter()
                .zip(e)
                .enumerate()
                .map(|(k, (a, b))| {
                    let (a, b) = (
                        then_branch.value_type(a.value),
                        else_branch.value_type(b.value),
                    );
                    join(a, b).ok_or_else(|| {
                        format!("if: output {k} is {a} in then_branch but {b} in else_branch")
                    })
                })
                .collect()
        }
        Op::While { cond, body } => {
            check_region("cond", cond, inputs)?;
            check_region("body", body, inputs)?;
            match cond.outputs() {
                [o] if cond.value_type(o.value) == &TensorType::scalar(DType::Bool) => {}
                outs => {
                    let got: Vec<String> = outs
                        .iter()
                        .map(|o| cond.value_type(o.value).to_string())
                        .collect();
                    return Err(format!(
                        "while: cond must return one bool scalar, returns ({})",
                        got.join(", ")
                    ));
                }
            }
            let outs = body.outputs();
            if outs.len() != inputs.len() {
                return Err(format!(
                    "while: body returns {} values for {} loop-carried values",
                    outs.len(),
                    inputs.len()
                ));
            }
            inputs
                .iter()
                .zip(outs)
                .enumerate()
                .map(|(k, (entry, o))| {
                    let next = body.value_type(o.value);
                    refine(entry, next).ok_or_else(|| {
                        format!(
                            "while: loop-carried value {k} enters as {entry} but the body returns {next}"
                        )
                    })
                })
                .collect()
        }
        Op::ListReserve { dtype } => {
            let (shape, n) = (&inputs[0], &inputs[1]);
            if shape.rank() != 1 || n.rank() != 0 {
                return Err(format!(
                    "list_reserve takes an element shape (rank 1) and a count (a scalar), got {shape} and {n}"
                ));
            }
            let count = match consts[1] {
                Some(t) => Dim::Known(list_count(t)?),
                None => Dim::Unknown,
            };
            let element = match consts[0] {
                Some(t) => element_dims(t)?,
                None => match shape.shape.dims()[0].known() {
                    Some(r) => vec![Dim::Unknown; r],
                    None => {
                        return Err("list_reserve needs an element shape of known rank".to_string())
                    }
                },
            };
            let mut dims = vec![count];
            dims.extend(element);
            Ok(vec![TensorType::new(*dtype, Shape(dims))])
        }
        Op::SetItem => {
            let (x, index, item) = (&inputs[0], &inputs[1], &inputs[2]);
            if x.rank() == 0 || index.rank() != 0 || item.rank() + 1 != x.rank() {
                return Err(format!(
                    "set_item writes an item of rank r - 1 at a scalar index of a rank-r tensor, got {x}, {index} and {item}"
                ));
            }
            let row = TensorType::new(x.dtype, Shape(x.shape.dims()[1..].to_vec()));
            let refined = refine(&row, item)
                .ok_or_else(|| format!("set_item: the item is {item} but the rows are {row}"))?;
            let mut dims = vec![x.shape.dims()[0].clone()];
            dims.extend(refined.shape.dims().iter().cloned());
            Ok(vec![TensorType::new(x.dtype, Shape(dims))])
        }
        _ => unreachable!("{op:?} is not a control-flow op"),
    }
}

/// Evaluates control-flow ops: regions run on the interpreter.
pub fn eval(op: &Op, inputs: &[&Tensor]) -> OpResult<Vec<Tensor>> {
    match op {
        Op::If {
            then_branch,
            else_branch,
        } => {
            let branch = if truth(inputs[0])? {
                then_branch
            } else {
                else_branch
            };
            crate::interp::run(branch, &inputs[1..]).map_err(|e| format!("in if: {e}"))
        }
        Op::While { cond, body } => {
            let mut carried: Vec<Tensor> = inputs.iter().map(|t| (*t).clone()).collect();
            for iteration in 0usize.. {
                let c = crate::interp::run(cond, &carried)
                    .map_err(|e| format!("in while cond (iteration {iteration}): {e}"))?;
                if !truth(&c[0])? {
                    break;
                }
                carried = crate::interp::run(body, &carried)
                    .map_err(|e| format!("in while body (iteration {iteration}): {e}"))?;
            }
            Ok(carried)
        }
        Op::ListReserve { dtype } => {
            let n = list_count(inputs[1])?;
            let mut dims = vec![n];
            for (axis, d) in element_dims(inputs[0])?.into_iter().enumerate() {
                match d {
                    Dim::Known(k) => dims.push(k),
                    _ => {
                        return Err(format!(
                            "list_reserve: element dimension {axis} is unknown (-1) and nothing refined it"
                        ))
                    }
                }
            }
            check_element_count(&dims)?;
            Ok(vec![Tensor::zeros(*dtype, &dims)])
        }
        Op::SetItem => {
            let (x, index, item) = (inputs[0], inputs[1], inputs[2]);
            let n = x.shape()[0];
            let i = row_index(index.to_i64_vec()?[0], n).map_err(|e| format!("set_item: {e}"))?;
            if item.shape() != &x.shape()[1..] {
                return Err(format!(
                    "set_item: the item has shape {:?} but the rows have shape {:?}",
                    item.shape(),
                    &x.shape()[1..]
                ));
            }
            let mut bytes = x.to_le_bytes();
            let row = item.size_bytes();
            bytes[i * row..(i + 1) * row].copy_from_slice(&item.to_le_bytes());
            Ok(vec![Tensor::from_le_bytes(x.dtype(), x.shape(), &bytes)?])
        }
        _ => unreachable!("{op:?} is not a control-flow op"),
    }
}

/// The row index `i` names in a list of `n` rows; the error the interpreter and the CPU
/// kernel both give.
pub fn row_index(i: i64, n: usize) -> OpResult<usize> {
    usize::try_from(i)
        .ok()
        .filter(|&r| r < n)
        .ok_or_else(|| format!("index {i} is out of range for {n} rows"))
}

/// The truth of a condition: a bool scalar.
pub fn truth(t: &Tensor) -> OpResult<bool> {
    match t.as_array::<bool>() {
        Some(a) if a.len() == 1 => Ok(*a.iter().next().expect("one element")),
        _ => Err(format!("a condition must be a bool scalar, got {}", t.ty())),
    }
}

/// The type both `a` and `b` are instances of: equal dims kept, differing dims unknown.
/// `None` when dtypes or ranks differ, or known dims disagree.
pub fn join(a: &TensorType, b: &TensorType) -> Option<TensorType> {
    merge_dims(a, b, |x, y| if x == y { x.clone() } else { Dim::Unknown })
}

/// `entry` with each unknown dim taken from `next` (what a loop learns in one iteration).
/// `None` when the two are not compatible.
pub fn refine(entry: &TensorType, next: &TensorType) -> Option<TensorType> {
    merge_dims(entry, next, |e, n| match e {
        Dim::Unknown => n.clone(),
        _ => e.clone(),
    })
}

/// `a` with each dim `f(a's, b's)`, when the two types are compatible.
fn merge_dims(a: &TensorType, b: &TensorType, f: impl Fn(&Dim, &Dim) -> Dim) -> Option<TensorType> {
    a.compatible(b).then(|| {
        let dims = a.shape.dims().iter().zip(b.shape.dims());
        TensorType::new(a.dtype, Shape(dims.map(|(x, y)| f(x, y)).collect()))
    })
}

/// The number of items of a list (a non-negative scalar).
fn list_count(t: &Tensor) -> OpResult<usize> {
    let v = t.to_i64_vec()?;
    match v.as_slice() {
        [n] if *n >= 0 => Ok(*n as usize),
        _ => Err(format!(
            "a list's item count must be a non-negative scalar, got {v:?}"
        )),
    }
}

/// An element shape: `-1` is an unknown dim.
fn element_dims(t: &Tensor) -> OpResult<Vec<Dim>> {
    t.to_i64_vec()?
        .into_iter()
        .map(|d| match d {
            -1 => Ok(Dim::Unknown),
            d if d >= 0 => Ok(Dim::Known(d as usize)),
            d => Err(format!("an element dimension must be -1 or more, got {d}")),
        })
        .collect()
}

/// Refuses a reservation too large to hold (sizes read from a model are not trusted).
fn check_element_count(dims: &[usize]) -> OpResult<()> {
    const MAX_ELEMENTS: usize = 1 << 32;
    dims.iter()
        .try_fold(1usize, |acc, &d| {
            acc.checked_mul(d).filter(|&n| n <= MAX_ELEMENTS)
        })
        .map(|_| ())
        .ok_or_else(|| format!("list_reserve of shape {dims:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{text, Graph};
    use std::sync::Arc;

    fn graph(src: &str) -> Arc<Graph> {
        Arc::new(text::parse(src).unwrap())
    }

    /// `while i < n: i += 1; acc = set_item(acc, i - 1, x * i)`.
    fn counting_loop() -> Op {
        let cond = graph(
            "graph @cond(%i: i32[], %n: i32[], %acc: f32[4,?], %x: f32[2]) -> (\"c\": bool[]) {
               %0 = less(%i, %n) : bool[]
               return %0
             }",
        );
        let body = graph(
            "graph @body(%i: i32[], %n: i32[], %acc: f32[4,?], %x: f32[2]) -> (\"i\": i32[], \"n\": i32[], \"acc\": f32[4,2], \"x\": f32[2]) {
               %0 = const dense<1> : i32[]
               %1 = add(%i, %0) : i32[]
               %2 = cast(%1) {to = f32} : f32[]
               %3 = mul(%x, %2) : f32[2]
               %4 = set_item(%acc, %i, %3) : f32[4,2]
               return %1, %n, %4, %x
             }",
        );
        Op::While { cond, body }
    }

    #[test]
    fn while_refines_an_unknown_list_dim_and_runs() {
        let op = counting_loop();
        let types = [
            TensorType::scalar(DType::I32),
            TensorType::scalar(DType::I32),
            TensorType::new(DType::F32, Shape(vec![Dim::Known(4), Dim::Unknown])),
            TensorType::known(DType::F32, &[2]),
        ];
        let out = op.infer(&types, &[None; 4]).unwrap();
        assert_eq!(out[2], TensorType::known(DType::F32, &[4, 2]));
        let ins = [
            Tensor::scalar(0i32),
            Tensor::scalar(3i32),
            Tensor::zeros(DType::F32, &[4, 2]),
            Tensor::from_vec(&[2], vec![1.0f32, -2.0]),
        ];
        let refs: Vec<&Tensor> = ins.iter().collect();
        let out = op.eval(&refs).unwrap();
        assert_eq!(out[0].to_i64_vec().unwrap(), vec![3]);
        assert_eq!(
            out[2].to_f64_vec(),
            vec![1.0, -2.0, 2.0, -4.0, 3.0, -6.0, 0.0, 0.0]
        );
    }

    #[test]
    fn a_loop_round_trips_through_the_text_format() {
        let mut g = Graph::new("outer");
        let args: Vec<_> = [
            TensorType::scalar(DType::I32),
            TensorType::scalar(DType::I32),
            TensorType::new(DType::F32, Shape(vec![Dim::Known(4), Dim::Unknown])),
            TensorType::known(DType::F32, &[2]),
        ]
        .into_iter()
        .enumerate()
        .map(|(k, t)| g.add_input(format!("a{k}"), t))
        .collect();
        let id = g.add_node(counting_loop(), args, "loop").unwrap();
        g.add_output(
            "acc",
            crate::ValueId {
                node: id,
                output: 2,
            },
        )
        .unwrap();
        crate::verify(&g).unwrap();
        let printed = text::print(&g);
        assert!(
            printed.contains("while(%a0, %a1, %a2, %a3) {cond = graph @cond"),
            "{printed}"
        );
        let back = text::parse(&printed).unwrap();
        assert_eq!(back, g);
        assert_eq!(text::print(&back), printed);
    }

    #[test]
    fn while_refuses_a_body_that_changes_a_known_type() {
        let cond = graph(
            "graph @c(%x: f32[2]) -> (\"c\": bool[]) {
               %0 = const dense<true> : bool[]
               return %0
             }",
        );
        let body = graph(
            "graph @b(%x: f32[2]) -> (\"y\": f32[2,1]) {
               %0 = const dense<[2, 1]> : i32[2]
               %1 = reshape(%x, %0) : f32[2,1]
               return %1
             }",
        );
        let e = Op::While { cond, body }
            .infer(&[TensorType::known(DType::F32, &[2])], &[None])
            .unwrap_err();
        assert!(
            e.contains("enters as f32[2] but the body returns f32[2,1]"),
            "{e}"
        );
    }

    #[test]
    fn if_picks_a_branch_and_joins_types() {
        let then_branch = graph(
            "graph @t(%x: f32[3]) -> (\"y\": f32[3]) {
               %0 = neg(%x) : f32[3]
               return %0
             }",
        );
        let else_branch = graph(
            "graph @e(%x: f32[3]) -> (\"y\": f32[3]) {
               %0 = relu(%x) : f32[3]
               return %0
             }",
        );
        let op = Op::If {
            then_branch,
            else_branch,
        };
        let x = Tensor::from_vec(&[3], vec![1.0f32, -2.0, 0.5]);
        let ty = op
            .infer(&[TensorType::scalar(DType::Bool), x.ty()], &[None, None])
            .unwrap();
        assert_eq!(ty, vec![x.ty()]);
        let yes = op.eval(&[&Tensor::scalar(true), &x]).unwrap();
        let no = op.eval(&[&Tensor::scalar(false), &x]).unwrap();
        assert_eq!(yes[0].to_f64_vec(), vec![-1.0, 2.0, -0.5]);
        assert_eq!(no[0].to_f64_vec(), vec![1.0, 0.0, 0.5]);
    }

    #[test]
    fn lists_reserve_and_set_items() {
        let shape = Tensor::from_vec(&[1], vec![-1i32]);
        let n = Tensor::scalar(3i32);
        let op = Op::ListReserve { dtype: DType::F32 };
        let ty = op
            .infer(&[shape.ty(), n.ty()], &[Some(&shape), Some(&n)])
            .unwrap();
        assert_eq!(ty[0].to_string(), "f32[3,?]");
        let e = op.eval(&[&shape, &n]).unwrap_err();
        assert!(e.contains("unknown (-1)"), "{e}");
        let known = Tensor::from_vec(&[1], vec![2i32]);
        let list = op.eval(&[&known, &n]).unwrap().remove(0);
        let item = Tensor::from_vec(&[2], vec![5.0f32, 6.0]);
        let out = Op::SetItem
            .eval(&[&list, &Tensor::scalar(1i64), &item])
            .unwrap();
        assert_eq!(out[0].to_f64_vec(), vec![0.0, 0.0, 5.0, 6.0, 0.0, 0.0]);
        let e = Op::SetItem
            .eval(&[&list, &Tensor::scalar(3i64), &item])
            .unwrap_err();
        assert!(e.contains("index 3 is out of range for 3 rows"), "{e}");
        let huge = Tensor::from_vec(&[2], vec![1i64 << 20, 1 << 20]);
        let e = op.eval(&[&huge, &Tensor::scalar(1i64 << 20)]).unwrap_err();
        assert!(e.contains("too large"), "{e}");
    }
}
