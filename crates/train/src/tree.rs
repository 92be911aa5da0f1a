//! The shape of the kissing-spheres tree and the order its gradients are
//! added in: sphere 0 is the root, sphere i > 0 has parent (i - 1) / 12; a
//! buffer is cut into one near-equal slice per sphere, and the reduction
//! adds children into parents in a fixed order, so a run's sums depend only
//! on the number of spheres.

use std::ops::Range;

/// Children per sphere.
pub const FANOUT: usize = 12;

pub fn parent_of(id: usize) -> Option<usize> {
    (id > 0).then(|| (id - 1) / FANOUT)
}

/// Depth in the tree: 0 for the root.
pub fn level_of(mut id: usize) -> usize {
    let mut level = 0;
    while id > 0 {
        id = (id - 1) / FANOUT;
        level += 1;
    }
    level
}

/// The children of `id` in a tree of `n` spheres, in index order.
pub fn children_of(id: usize, n: usize) -> Range<usize> {
    let first = (id * FANOUT + 1).min(n);
    let end = (id * FANOUT + FANOUT + 1).min(n);
    first..end
}

/// The `i`-th of `parts` near-equal contiguous shares of `0..len`
/// (the first `len % parts` shares get one more).
pub fn share(len: usize, parts: usize, i: usize) -> Range<usize> {
    let base = len / parts;
    let extra = len % parts;
    let start = i * base + i.min(extra);
    start..start + base + usize::from(i < extra)
}

/// `buf` cut into the `parts` slices of [`share`], in order: the slices the
/// spheres reduce and update side by side.
pub fn shares_mut(buf: &mut [f32], parts: usize) -> Vec<&mut [f32]> {
    let len = buf.len();
    let mut rest = buf;
    let mut slices = Vec::with_capacity(parts);
    for s in 0..parts {
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(share(len, parts, s).len());
        slices.push(head);
        rest = tail;
    }
    slices
}

/// The tree reduction on one slice of every sphere's buffer: parents from
/// the deepest (highest index) to the root, each adding its children's
/// totals in index order. Children always have higher indices than their
/// parent, so a child's total is complete before it is added.
pub fn tree_reduce(bufs: &mut [&mut [f32]]) {
    let n = bufs.len();
    for parent in (0..n).rev() {
        for child in children_of(parent, n) {
            let (head, tail) = bufs.split_at_mut(child);
            let dst = &mut head[parent];
            let src = &tail[0];
            for (d, s) in dst.iter_mut().zip(src.iter()) {
                *d += *s;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_shape() {
        assert_eq!(parent_of(0), None);
        assert_eq!(parent_of(1), Some(0));
        assert_eq!(parent_of(12), Some(0));
        assert_eq!(parent_of(13), Some(1));
        assert_eq!(parent_of(24), Some(1));
        assert_eq!(parent_of(25), Some(2));
        assert_eq!(level_of(0), 0);
        assert_eq!(level_of(12), 1);
        assert_eq!(level_of(13), 2);
        assert_eq!(level_of(156), 2);
        assert_eq!(level_of(157), 3);
        assert_eq!(children_of(0, 13), 1..13);
        assert_eq!(children_of(0, 5), 1..5);
        assert_eq!(children_of(1, 30), 13..25);
        assert_eq!(children_of(3, 30), 30..30);
        for n in 1..200 {
            for id in 1..n {
                assert!(children_of(parent_of(id).unwrap(), n).contains(&id));
            }
        }
    }

    #[test]
    fn shares_mut_cuts_like_share() {
        for len in [0usize, 1, 7, 40] {
            for parts in 1..9 {
                let mut buf: Vec<f32> = (0..len).map(|i| i as f32).collect();
                let slices = shares_mut(&mut buf, parts);
                assert_eq!(slices.len(), parts);
                for (s, slice) in slices.iter().enumerate() {
                    let r = share(len, parts, s);
                    let want: Vec<f32> = r.map(|i| i as f32).collect();
                    assert_eq!(&slice[..], &want[..]);
                }
            }
        }
    }

    #[test]
    fn shares_cover_exactly() {
        for len in [0, 1, 5, 12, 13, 100] {
            for parts in 1..20 {
                let mut next = 0;
                for i in 0..parts {
                    let r = share(len, parts, i);
                    assert_eq!(r.start, next);
                    assert!(r.len() <= len / parts + 1);
                    next = r.end;
                }
                assert_eq!(next, len);
            }
        }
    }

    /// The sliced reduction must equal a plain sequential tree reduction,
    /// bit for bit, and the sum must be right.
    #[test]
    fn tree_reduce_matches_sequential_tree() {
        for n in [1usize, 2, 3, 13, 14, 40] {
            let len = 37;
            let make = |j: usize| -> Vec<f32> {
                (0..len)
                    .map(|i| ((i * 31 + j * 17) % 23) as f32 * 0.37 - 3.1 + 1e-4 * j as f32)
                    .collect()
            };
            let mut seq: Vec<Vec<f32>> = (0..n).map(make).collect();
            // Sequential reference: recursion in tree order.
            fn total(id: usize, n: usize, bufs: &mut Vec<Vec<f32>>) {
                for c in children_of(id, n) {
                    total(c, n, bufs);
                    let child = bufs[c].clone();
                    for (d, s) in bufs[id].iter_mut().zip(child) {
                        *d += s;
                    }
                }
            }
            total(0, n, &mut seq);
            let mut bufs: Vec<Vec<f32>> = (0..n).map(make).collect();
            let mut views: Vec<&mut [f32]> = bufs.iter_mut().map(|b| &mut b[..]).collect();
            tree_reduce(&mut views);
            assert_eq!(bufs[0], seq[0], "n = {n}");
            let expect: Vec<f64> = (0..len)
                .map(|i| (0..n).map(|j| make(j)[i] as f64).sum())
                .collect();
            for (a, b) in bufs[0].iter().zip(expect) {
                assert!((*a as f64 - b).abs() < 1e-3);
            }
        }
    }
}
