//! Weights held once across a model's specializations.
//!
//! Specializing shares the model's constants (`Arc`), but passes derive new ones: folding a
//! batch norm into a convolution makes a new filter in every specialization. A model's
//! [`WeightPool`] remembers the f32 constants of the specializations it compiled, and a new
//! specialization whose passes derived an equal tensor takes the one already held instead, so
//! two specializations (batch 1 and batch 8, say) hold one copy of each weight.

use lathe_ir::ops::Op;
use lathe_ir::{Graph, Tensor};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

/// Constants smaller than this are not worth pooling (a comparison costs more than the copy).
const MIN_POOLED_BYTES: usize = 4096;

/// Elements sampled for a constant's key: equal tensors have equal keys, and unequal ones of
/// one shape rarely do (a collision only costs one full comparison).
const SAMPLES: usize = 64;

/// The f32 constants of a model's specializations, by a key of their dtype, shape and a sample
/// of their values. Holds them weakly: a weight lives as long as a specialization uses it.
#[derive(Debug, Default)]
pub(crate) struct WeightPool {
    held: Mutex<HashMap<Key, Vec<Weak<Tensor>>>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    shape: Vec<usize>,
    sample: Vec<u32>,
}

impl WeightPool {
    /// Replaces each large f32 constant of `g` (and of its fused bodies) with an equal tensor
    /// the pool already holds, and adds the others to the pool. Returns how many it replaced.
    pub fn share(&self, g: &mut Graph) -> usize {
        let mut held = crate::cache::lock(&self.held);
        held.retain(|_, v| {
            v.retain(|w| w.strong_count() > 0);
            !v.is_empty()
        });
        share_in(g, &mut held)
    }
}

fn share_in(g: &mut Graph, held: &mut HashMap<Key, Vec<Weak<Tensor>>>) -> usize {
    let mut shared = 0;
    for id in g.node_ids() {
        let node = g.node(id);
        match &node.op {
            Op::Const(t) => {
                let Some((key, values)) = key_of(t) else {
                    continue;
                };
                let candidates = held.entry(key).or_default();
                let same = candidates.iter().filter_map(Weak::upgrade).find(|h| {
                    !Arc::ptr_eq(h, t) && key_of(h).is_some_and(|(_, hv)| bitwise_eq(hv, values))
                });
                match same {
                    Some(h) => {
                        let outputs = node.outputs.clone();
                        g.set_op(id, Op::Const(h), outputs);
                        shared += 1;
                    }
                    None => {
                        if !candidates.iter().any(|w| w.as_ptr() == Arc::as_ptr(t)) {
                            candidates.push(Arc::downgrade(t));
                        }
                    }
                }
            }
            Op::Fused { kind, body } => {
                let (kind, mut body) = (*kind, Arc::clone(body));
                // Copy-on-write: a body shared with another graph is cloned (its constants
                // are `Arc`s, so the clone copies no weights) before it is changed.
                let n = share_in(Arc::make_mut(&mut body), held);
                if n > 0 {
                    let outputs = node.outputs.clone();
                    g.set_op(id, Op::Fused { kind, body }, outputs);
                    shared += n;
                }
            }
            _ => {}
        }
    }
    shared
}

/// The pool's key of a large, dense f32 constant, and its values.
fn key_of(t: &Tensor) -> Option<(Key, &[f32])> {
    if t.size_bytes() < MIN_POOLED_BYTES {
        return None;
    }
    let values = t.as_array::<f32>()?.as_slice()?;
    let step = (values.len() / SAMPLES).max(1);
    let sample = values.iter().step_by(step).map(|v| v.to_bits()).collect();
    let key = Key {
        shape: t.shape().to_vec(),
        sample,
    };
    Some((key, values))
}

/// Equal bit for bit (so `-0.0` and `0.0` differ, and a NaN equals the same NaN).
fn bitwise_eq(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lathe_ir::{DType, TensorType};

    fn weights(seed: f32) -> Tensor {
        Tensor::from_vec(&[32, 64], (0..2048).map(|i| i as f32 * seed).collect())
    }

    fn graph(w: Tensor) -> (Graph, Arc<Tensor>) {
        let mut g = Graph::new("g");
        let x = g.add_input("x", TensorType::known(DType::F32, &[4, 32]));
        let w = g.add_const(w, "w");
        let mm = Op::MatMul {
            transpose_a: false,
            transpose_b: false,
        };
        let y = g.add_node(mm, vec![x, w], "y").unwrap();
        g.add_output("y", lathe_ir::ValueId::first(y)).unwrap();
        let t = match &g.node(w.node).op {
            Op::Const(t) => Arc::clone(t),
            _ => unreachable!("w is a constant"),
        };
        (g, t)
    }

    #[test]
    fn equal_weights_of_two_graphs_become_one_tensor() {
        let pool = WeightPool::default();
        let (mut a, wa) = graph(weights(0.5));
        let (mut b, wb) = graph(weights(0.5));
        let (mut c, wc) = graph(weights(0.25));
        assert!(!Arc::ptr_eq(&wa, &wb));
        assert_eq!(pool.share(&mut a), 0);
        assert_eq!(pool.share(&mut b), 1, "b's weight equals a's");
        assert_eq!(pool.share(&mut c), 0, "c's weight differs");
        let held = |g: &Graph| match &g.node(g.node_ids()[1]).op {
            Op::Const(t) => Arc::clone(t),
            _ => unreachable!("node 1 is the weight"),
        };
        assert!(Arc::ptr_eq(&held(&b), &wa));
        assert!(Arc::ptr_eq(&held(&c), &wc));
        lathe_ir::verify(&b).unwrap();
    }

    #[test]
    fn a_dropped_weight_leaves_the_pool() {
        let pool = WeightPool::default();
        let (mut a, wa) = graph(weights(0.5));
        pool.share(&mut a);
        drop((a, wa));
        let (mut b, wb) = graph(weights(0.5));
        assert_eq!(pool.share(&mut b), 0, "nothing alive to share with");
        drop(wb);
    }
}
