//! Exact top-k selection by magnitude, per tensor or across a whole model.
//!
//! Magnitudes are ranked by the bit pattern of `|x|` as f32: for non-negative floats the bits order like the
//! values, so an exact k-th largest can be found with two 16-bit histogram passes over a stream of tensors —
//! memory stays constant whatever the model size. Ties at the threshold are broken by position (tensor order,
//! then element index), so selection is deterministic and equal to a stable descending sort.

use rayon::prelude::*;

/// The ranking key of a value: bits of `|x|` as f32 (NaN never reaches here: inputs are checked first).
#[inline]
pub fn key(x: f64) -> u32 {
    (x.abs() as f32).to_bits()
}

/// Which elements to keep: those with key above `key`, plus the first `equal_quota` elements whose key equals it
/// (in stream order). `keep_all`/`keep_none` short-cut the trivial cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threshold {
    pub key: u32,
    pub equal_quota: u64,
    pub keep_all: bool,
    pub keep_none: bool,
}

impl Threshold {
    pub const ALL: Threshold = Threshold {
        key: 0,
        equal_quota: 0,
        keep_all: true,
        keep_none: false,
    };
    pub const NONE: Threshold = Threshold {
        key: 0,
        equal_quota: 0,
        keep_all: false,
        keep_none: true,
    };

    /// A keep-mask for one tensor's keys; `equal_seen` carries the tie count across tensors of a global scope.
    pub fn mask(&self, keys: &[u32], equal_seen: &mut u64) -> Vec<bool> {
        if self.keep_all {
            return vec![true; keys.len()];
        }
        if self.keep_none {
            return vec![false; keys.len()];
        }
        keys.iter()
            .map(|&k| {
                if k > self.key {
                    true
                } else if k == self.key && *equal_seen < self.equal_quota {
                    *equal_seen += 1;
                    true
                } else {
                    false
                }
            })
            .collect()
    }
}

/// Threshold keeping exactly `k` of `keys` (one tensor).
pub fn threshold_for(keys: &[u32], k: u64) -> Threshold {
    let n = keys.len() as u64;
    if k >= n {
        return Threshold::ALL;
    }
    if k == 0 {
        return Threshold::NONE;
    }
    let mut sorted = keys.to_vec();
    // The k-th largest sits at index n-k of an ascending order.
    let idx = (n - k) as usize;
    let (_, kth, _) = sorted.select_nth_unstable(idx);
    let t = *kth;
    let above = keys.par_iter().filter(|&&x| x > t).count() as u64;
    Threshold {
        key: t,
        equal_quota: k - above,
        keep_all: false,
        keep_none: false,
    }
}

/// Two-pass global threshold. Call `coarse` on every tensor's keys, then [`GlobalSelect::refine_bin`] tells the
/// bin for the second pass, where `fine` is called on every tensor's keys again.
#[derive(Debug, Clone)]
pub struct GlobalSelect {
    k: u64,
    total: u64,
    coarse: Vec<u64>,
    fine: Vec<u64>,
    bin: Option<(u32, u64)>,
}

impl GlobalSelect {
    pub fn new(k: u64) -> Self {
        Self {
            k,
            total: 0,
            coarse: vec![0; 1 << 16],
            fine: vec![0; 1 << 16],
            bin: None,
        }
    }

    /// Pass 1: histogram of the high 16 bits.
    pub fn coarse(&mut self, keys: &[u32]) {
        let local = histogram(keys, |k| Some((k >> 16) as usize));
        self.total += keys.len() as u64;
        self.coarse.iter_mut().zip(local).for_each(|(a, b)| *a += b);
    }

    /// After pass 1: the bin holding the k-th largest key and how many keys lie above that bin. `None` when no
    /// second pass is needed (k = 0 or k ≥ total).
    pub fn refine_bin(&mut self) -> Option<u32> {
        if self.k == 0 || self.k >= self.total {
            return None;
        }
        let mut above = 0u64;
        for bin in (0..self.coarse.len()).rev() {
            if above + self.coarse[bin] >= self.k {
                self.bin = Some((bin as u32, above));
                return Some(bin as u32);
            }
            above += self.coarse[bin];
        }
        unreachable!("k < total, so some bin reaches k")
    }

    /// Pass 2: histogram of the low 16 bits within the refine bin.
    pub fn fine(&mut self, keys: &[u32]) {
        let Some((bin, _)) = self.bin else { return };
        let local = histogram(keys, |k| ((k >> 16) == bin).then_some((k & 0xFFFF) as usize));
        self.fine.iter_mut().zip(local).for_each(|(a, b)| *a += b);
    }

    /// The exact threshold.
    pub fn threshold(&self) -> Threshold {
        if self.k == 0 {
            return Threshold::NONE;
        }
        if self.k >= self.total {
            return Threshold::ALL;
        }
        let (bin, mut above) = self.bin.expect("refine_bin and fine passes ran before threshold");
        for low in (0..self.fine.len()).rev() {
            if above + self.fine[low] >= self.k {
                return Threshold {
                    key: (bin << 16) | low as u32,
                    equal_quota: self.k - above,
                    keep_all: false,
                    keep_none: false,
                };
            }
            above += self.fine[low];
        }
        unreachable!("the refine bin holds the k-th key")
    }

    /// Number of elements seen in pass 1.
    pub fn total(&self) -> u64 {
        self.total
    }
}

fn histogram(keys: &[u32], bin: impl Fn(u32) -> Option<usize> + Sync) -> Vec<u64> {
    keys.par_chunks(1 << 16)
        .fold(
            || vec![0u64; 1 << 16],
            |mut h, chunk| {
                for &k in chunk {
                    if let Some(b) = bin(k) {
                        h[b] += 1;
                    }
                }
                h
            },
        )
        .reduce(
            || vec![0u64; 1 << 16],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                a
            },
        )
}

/// `k` for a density (fraction kept, floored as mergekit's `int(density * n)`) or a count.
pub fn k_of(topk: crate::TopK, n: u64) -> u64 {
    match topk {
        crate::TopK::Density(d) => ((d * n as f64).floor() as u64).min(n),
        crate::TopK::Count(c) => c.min(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keep_by_sort(values: &[f64], k: usize) -> Vec<bool> {
        let mut idx: Vec<usize> = (0..values.len()).collect();
        idx.sort_by_key(|&i| std::cmp::Reverse(key(values[i]))); // stable: ties keep index order
        let mut mask = vec![false; values.len()];
        idx[..k].iter().for_each(|&i| mask[i] = true);
        mask
    }

    #[test]
    fn per_tensor_threshold_equals_a_stable_sort_with_ties() {
        let values: Vec<f64> = (0..1000).map(|i| ((i * 7919) % 97) as f64 - 48.0).collect();
        let keys: Vec<u32> = values.iter().map(|&v| key(v)).collect();
        for k in [0, 1, 5, 33, 500, 999, 1000, 5000] {
            let t = threshold_for(&keys, k as u64);
            let mask = t.mask(&keys, &mut 0);
            assert_eq!(mask, keep_by_sort(&values, k.min(1000)), "k={k}");
        }
    }

    #[test]
    fn global_two_pass_equals_per_tensor_on_the_concatenation() {
        let chunks: Vec<Vec<f64>> = (0..4)
            .map(|c| {
                (0..777)
                    .map(|i| (((i + c * 31) * 104729) % 1013) as f64 / 7.0 - 70.0)
                    .collect()
            })
            .collect();
        let all: Vec<f64> = chunks.concat();
        for k in [0u64, 1, 100, 1554, 3107, 3108, 9999] {
            let mut g = GlobalSelect::new(k);
            let keys: Vec<Vec<u32>> = chunks
                .iter()
                .map(|c| c.iter().map(|&v| key(v)).collect())
                .collect();
            keys.iter().for_each(|kk| g.coarse(kk));
            if g.refine_bin().is_some() {
                keys.iter().for_each(|kk| g.fine(kk));
            }
            let t = g.threshold();
            let mut seen = 0;
            let mask: Vec<bool> = keys.iter().flat_map(|kk| t.mask(kk, &mut seen)).collect();
            assert_eq!(mask, keep_by_sort(&all, (k as usize).min(all.len())), "k={k}");
        }
    }

    #[test]
    fn density_floors_like_mergekit() {
        assert_eq!(k_of(crate::TopK::Density(0.1), 25), 2);
        assert_eq!(k_of(crate::TopK::Density(1.0), 25), 25);
        assert_eq!(k_of(crate::TopK::Count(40), 25), 25);
    }
}
