//! `FlexAttention` (`ai.onnx.preview`, version 1): scaled dot-product attention whose scores
//! and probabilities pass through graphs the model supplies (`score_mod`, `prob_mod`).
//!
//! Written as the ONNX reference computes it: `Q` and `K` each scaled by `sqrt(scale)` (in
//! their dtype), their product cast to the softmax precision (`softmax_precision`, else f32
//! for narrower floats), `score_mod` applied, a softmax over the keys, `prob_mod` applied,
//! and the product with `V` (in the softmax precision) cast to `V`'s dtype. A mod graph is
//! imported in place, its one input bound to the `[B, H_q, L, S]` scores or probabilities.
//! Grouped-query attention stacks the query heads sharing a key/value head along the
//! sequence axis, as `Attention` does, so K and V are never copied per query head.

use super::attention::{reshape, transpose, Part};
use super::elementwise::{cast, mul_scalar};
use super::{preview, row, OnnxOp};
use crate::import::onnx::control_flow::in_region;
use crate::import::onnx::tensor;
use crate::import::onnx::{Builder, NodeCx};
use lathe_ir::{DType, Op, ValueId};
use lathe_proto::onnx::GraphProto;

type Out = Result<Vec<ValueId>, String>;

pub(super) fn rows() -> Vec<OnnxOp> {
    vec![preview(row(
        "FlexAttention",
        &[
            "batch_matmul",
            "softmax",
            "mul",
            "cast",
            "reshape",
            "transpose",
        ],
        import_flex_attention,
    ))]
}

fn import_flex_attention(b: &mut Builder, cx: &NodeCx) -> Out {
    let (q, k, v) = (cx.input(0)?, cx.input(1)?, cx.input(2)?);
    let (qt, kt, vt) = (b.ty(q).clone(), b.ty(k).clone(), b.ty(v).clone());
    if qt.rank() != 4 || kt.rank() != 4 || vt.rank() != 4 {
        return Err(format!(
            "Q, K and V must have rank 4 [B, H, L, E], got {qt}, {kt} and {vt}"
        ));
    }
    let dt = qt.dtype;
    if !dt.is_float() || kt.dtype != dt || vt.dtype != dt {
        return Err(format!(
            "Q, K and V must be floats of one dtype, got {qt}, {kt} and {vt}"
        ));
    }
    let (Some(hq), Some(hkv), Some(e)) = (
        qt.shape.dims()[1].known(),
        kt.shape.dims()[1].known(),
        qt.shape.dims()[3].known(),
    ) else {
        return Err(format!(
            "the head counts and the query's head size must be known, got Q {qt} and K {kt}"
        ));
    };
    if hkv == 0 || hq % hkv != 0 || vt.shape.dims()[1].known() != Some(hkv) {
        return Err(format!(
            "Q's {hq} heads must be a multiple of K's and V's {hkv}, got V {vt}"
        ));
    }
    let scale = match cx.attrs.get("scale") {
        Some(_) => cx.attrs.float_or("scale", 0.0)?,
        None => (1.0 / (e as f64).sqrt()) as f32,
    };
    let softmax_dt = match cx.attrs.get("softmax_precision") {
        Some(_) => {
            let code = cx.attrs.int("softmax_precision")?;
            match i32::try_from(code).ok().and_then(|c| tensor::dtype(c).ok()) {
                Some(d @ (DType::F16 | DType::BF16 | DType::F32 | DType::F64)) => d,
                _ => return Err(format!("softmax_precision {code} is not supported")),
            }
        }
        None if matches!(dt, DType::F16 | DType::BF16) => DType::F32,
        None => dt,
    };
    let root = f64::from(scale.sqrt());
    let qs = mul_scalar(b, q, root)?;
    let ks = mul_scalar(b, k, root)?;
    // The `group` query heads of one key/value head as one sequence of `group * L` rows.
    let stacked = [
        Part::Dim(q, 0),
        Part::K(hkv as i64),
        Part::K(-1),
        Part::K(e as i64),
    ];
    let qs = reshape(b, qs, &stacked)?;
    let kt_ = transpose(b, ks, &[0, 1, 3, 2])?;
    let scores = b.op(matmul(), &[qs, kt_])?;
    let per_head = [
        Part::Dim(q, 0),
        Part::K(hq as i64),
        Part::Dim(q, 2),
        Part::Dim(k, 2),
    ];
    let scores = reshape(b, scores, &per_head)?;
    let mut scores = cast(b, scores, softmax_dt)?;
    if cx.attrs.get("score_mod").is_some() {
        scores = apply_mod(b, cx.attrs.graph("score_mod")?, "score_mod", scores)?;
    }
    let mut probs = b.op(Op::Softmax, &[scores])?;
    if cx.attrs.get("prob_mod").is_some() {
        probs = apply_mod(b, cx.attrs.graph("prob_mod")?, "prob_mod", probs)?;
    }
    let stacked_probs = [
        Part::Dim(q, 0),
        Part::K(hkv as i64),
        Part::K(-1),
        Part::Dim(k, 2),
    ];
    let probs = reshape(b, probs, &stacked_probs)?;
    let vc = cast(b, v, softmax_dt)?;
    let y = b.op(matmul(), &[probs, vc])?;
    let ev = Part::Dim(v, 3);
    let y = reshape(
        b,
        y,
        &[Part::Dim(q, 0), Part::K(hq as i64), Part::Dim(q, 2), ev],
    )?;
    Ok(vec![cast(b, y, dt)?])
}

fn matmul() -> Op {
    Op::BatchMatMul {
        adj_x: false,
        adj_y: false,
    }
}

/// The mod graph `gp` (one input, one output) imported in place on `x`.
fn apply_mod(b: &mut Builder, gp: &GraphProto, what: &str, x: ValueId) -> Result<ValueId, String> {
    if gp.input.len() != 1 || gp.output.len() != 1 {
        return Err(format!(
            "its {what} must take one input and return one output, got {} and {}",
            gp.input.len(),
            gp.output.len()
        ));
    }
    // The mod graph's names stay its own, and the node's IR nodes keep its name.
    let saved = (b.values.clone(), b.current.clone(), b.added);
    let input = gp.input[0].name.as_deref().unwrap_or("");
    b.bind(input, x);
    let result = (|| {
        b.initializers(gp).map_err(|e| in_region(b, what, e))?;
        b.nodes(gp).map_err(|e| in_region(b, what, e))?;
        let out = gp.output[0].name.as_deref().unwrap_or("");
        b.lookup(out)
            .ok_or_else(|| format!("its {what}'s output `{out}` is not produced by any node"))
    })();
    (b.values, b.current, b.added) = saved;
    let y = result?;
    if b.ty(y) != b.ty(x) {
        return Err(format!(
            "its {what} must keep its input's type {}, got {}",
            b.ty(x),
            b.ty(y)
        ));
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    use crate::import::onnx::control_flow::testing::*;
    use crate::import::onnx::{import_bytes, tensor};
    use crate::import::ImportError;
    use lathe_ir::{Graph, Tensor};
    use lathe_proto::onnx::{GraphProto, ModelProto, NodeProto, OperatorSetIdProto};
    use prost::Message;
    use std::path::Path;

    /// A model of `g` importing the default operator set 26 and the preview domain.
    fn import_preview(g: GraphProto) -> Result<Graph, ImportError> {
        let set = |d: &str, v| OperatorSetIdProto {
            domain: Some(d.into()),
            version: Some(v),
        };
        let m = ModelProto {
            ir_version: Some(10),
            opset_import: vec![set("", 26), set("ai.onnx.preview", 1)],
            graph: Some(g),
            ..Default::default()
        };
        import_bytes(&m.encode_to_vec(), Path::new("test.onnx"))
    }

    /// A mod graph `x -> x * k`.
    fn times(name: &str, k: f32) -> GraphProto {
        let kt = Tensor::from_vec(&[], vec![k]);
        let n = node(
            "Mul",
            &[&format!("{name}_in"), &format!("{name}_k")],
            &[&format!("{name}_out")],
        );
        let mut g = graph(
            name,
            vec![n],
            vec![value(&format!("{name}_in"), F32, &[1, 2, 1, 2])],
            vec![value(&format!("{name}_out"), F32, &[1, 2, 1, 2])],
            &[],
        );
        g.initializer = vec![tensor::to_proto(&kt, &format!("{name}_k"))];
        g
    }

    fn flex(domain: &str) -> NodeProto {
        let mut n = node("FlexAttention", &["q", "k", "v"], &["y"]);
        n.domain = Some(domain.into());
        n
    }

    fn model(n: NodeProto) -> GraphProto {
        graph(
            "g",
            vec![n],
            vec![
                value("q", F32, &[1, 2, 1, 1]),
                value("k", F32, &[1, 1, 2, 1]),
                value("v", F32, &[1, 1, 2, 1]),
            ],
            vec![value("y", F32, &[1, 2, 1, 1])],
            &[],
        )
    }

    #[test]
    fn mods_rewrite_the_scores_and_the_probabilities() {
        // Two query heads share one key/value head; scores q_h * k_j are [0, 1] and [0, 2],
        // doubled by score_mod; prob_mod halves the probabilities.
        let n = flex("ai.onnx.preview");
        let n = graph_attr(n, "score_mod", times("s", 2.0));
        let n = graph_attr(n, "prob_mod", times("p", 0.5));
        let mut n = n;
        n.attribute.push(lathe_proto::onnx::AttributeProto {
            name: Some("scale".into()),
            r#type: Some(lathe_proto::onnx::attribute_proto::AttributeType::Float as i32),
            f: Some(1.0),
            ..Default::default()
        });
        let g = import_preview(model(n)).unwrap();
        let q = Tensor::from_vec(&[1, 2, 1, 1], vec![1.0f32, 2.0]);
        let k = Tensor::from_vec(&[1, 1, 2, 1], vec![0.0f32, 1.0]);
        let v = Tensor::from_vec(&[1, 1, 2, 1], vec![10.0f32, 20.0]);
        let y = vals(&run(&g, &[q, k, v])[0]);
        let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
        let want = [2.0, 4.0].map(|s| 0.5 * (10.0 + 10.0 * sigmoid(s)));
        for (a, b) in y.iter().zip(want) {
            assert!((a - b).abs() < 1e-5, "{y:?} vs {want:?}");
        }
    }

    #[test]
    fn only_the_preview_domain_has_flex_attention() {
        let e = import_preview(model(flex(""))).unwrap_err().to_string();
        assert!(e.contains("op is not supported"), "{e}");
        let e = import_preview(model(flex("com.example")))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("operator domain `com.example` is not supported"),
            "{e}"
        );
    }
}
