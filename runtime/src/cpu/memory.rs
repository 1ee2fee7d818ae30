//! The memory plan: every intermediate buffer of a specialization gets an offset in one arena,
//! chosen from the buffers' lifetimes so that buffers alive at the same time never overlap.
//!
//! Lifetimes are step intervals `[first, last]`: a buffer is written by step `first` and read
//! for the last time by step `last`. Placement is the greedy-by-size heuristic (largest buffer
//! first, each at the lowest offset that does not collide with an already placed buffer whose
//! lifetime overlaps), which is what TFLite's arena planner does and lands close to the lower
//! bound (the most bytes alive at any one step) on convolutional networks.
//!
//! In-place reuse (an elementwise kernel writing over an input that dies at that step) is
//! decided before placement, by giving the output the input's buffer (see `lower.rs`).

/// Every offset and size is a multiple of this many bytes (a cache line; AVX-512 loads).
pub const ALIGN: usize = 64;

/// One buffer to place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetime {
    pub bytes: usize,
    /// The step that writes it first.
    pub first: usize,
    /// The last step that reads it (≥ `first`).
    pub last: usize,
}

/// The placement: an offset per buffer and the arena size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArenaPlan {
    pub offsets: Vec<usize>,
    /// Bytes of the arena: the end of the highest-placed buffer.
    pub bytes: usize,
}

fn round_up(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// Places `buffers` (greedy by size) so that buffers with overlapping lifetimes are disjoint.
pub fn plan(buffers: &[Lifetime]) -> ArenaPlan {
    let mut order: Vec<usize> = (0..buffers.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(buffers[i].bytes), buffers[i].first, i));
    let mut offsets = vec![0; buffers.len()];
    // Placed buffers as (offset, end, first, last), kept sorted by offset.
    let mut placed: Vec<(usize, usize, usize, usize)> = Vec::with_capacity(buffers.len());
    let mut total = 0;
    for i in order {
        let b = buffers[i];
        let size = round_up(b.bytes.max(1));
        let mut offset = 0;
        for &(o, e, f, l) in &placed {
            let overlaps_in_time = f <= b.last && b.first <= l;
            if !overlaps_in_time {
                continue;
            }
            if o >= offset + size {
                // `placed` is sorted by offset: the gap before this one fits.
                break;
            }
            offset = offset.max(e);
        }
        offsets[i] = offset;
        let entry = (offset, offset + size, b.first, b.last);
        let at = placed.partition_point(|p| p.0 <= offset);
        placed.insert(at, entry);
        total = total.max(offset + size);
    }
    ArenaPlan {
        offsets,
        bytes: total,
    }
}

/// The most bytes alive at any one step: the lower bound any placement can reach.
pub fn lower_bound(buffers: &[Lifetime]) -> usize {
    let steps = buffers.iter().map(|b| b.last + 1).max().unwrap_or(0);
    let mut live = vec![0i64; steps + 1];
    for b in buffers {
        live[b.first] += round_up(b.bytes.max(1)) as i64;
        live[b.last + 1] -= round_up(b.bytes.max(1)) as i64;
    }
    let (mut acc, mut best) = (0i64, 0i64);
    for d in live {
        acc += d;
        best = best.max(acc);
    }
    best as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lt(bytes: usize, first: usize, last: usize) -> Lifetime {
        Lifetime { bytes, first, last }
    }

    #[test]
    fn disjoint_lifetimes_share_memory() {
        // A chain: each buffer dies when the next is written.
        let bufs = [lt(1000, 0, 1), lt(1000, 1, 2), lt(1000, 2, 3)];
        let p = plan(&bufs);
        assert_eq!(p.bytes, 2 * round_up(1000));
        assert_eq!(p.offsets[0], p.offsets[2]);
        assert_ne!(p.offsets[0], p.offsets[1]);
    }

    #[test]
    fn offsets_are_aligned() {
        let p = plan(&[lt(3, 0, 0), lt(5, 0, 0), lt(130, 0, 0)]);
        assert!(p.offsets.iter().all(|o| o % ALIGN == 0));
        assert_eq!(p.bytes, 192 + 64 + 64);
    }

    proptest! {
        #[test]
        fn overlapping_lifetimes_never_overlap_in_memory(
            raw in proptest::collection::vec((1usize..5000, 0usize..20, 0usize..6), 0..40)
        ) {
            let bufs: Vec<Lifetime> = raw.iter().map(|&(b, f, len)| lt(b, f, f + len)).collect();
            let p = plan(&bufs);
            for i in 0..bufs.len() {
                prop_assert_eq!(p.offsets[i] % ALIGN, 0);
                prop_assert!(p.offsets[i] + bufs[i].bytes <= p.bytes);
                for j in 0..i {
                    let (a, b) = (bufs[i], bufs[j]);
                    if a.first <= b.last && b.first <= a.last {
                        let (ai, bi) = (p.offsets[i], p.offsets[j]);
                        prop_assert!(ai + a.bytes <= bi || bi + b.bytes <= ai,
                            "buffers {} and {} overlap", i, j);
                    }
                }
            }
            prop_assert!(p.bytes >= lower_bound(&bufs));
        }
    }
}
