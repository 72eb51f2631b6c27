//! Batches from the cache: shuffled order, augmentation and normalisation, Candle tensors.
use candle_core::{Device, Result, Tensor};
use models::{dataset::is_labelled, preprocess::normalize_hwc_into, HeadKind, HeadSpec};
use rand::{seq::SliceRandom, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::{augment::augment, AugmentConfig, ImageCache};
use crate::train::loss::two_hot;

/// Mixes seeds (SplitMix64 finaliser) so nearby inputs give unrelated streams.
pub fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(0x632b_e59b_d9b4_e019);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The sample order of an epoch: a permutation that depends only on `(seed, epoch)`, so a
/// resumed run sees exactly the batches the uninterrupted run would have.
pub fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(mix(seed, epoch)));
    order
}

/// One batch, ready for the network.
pub struct Batch {
    /// `[N, 3, H, W]` normalised input.
    pub input: Tensor,
    /// One tensor per head: `[N]` f32 (regression target normalised by the head's
    /// scale/offset; binary target 0/1) or `[N]` u32 (class index). An unlabelled sample
    /// holds 0 here, and 0 in the head's mask.
    pub targets: Vec<Tensor>,
    /// Per head: `[N]` f32, 1 for a labelled sample and 0 for an unlabelled one; `None`
    /// when every sample of the batch is labelled (the unmasked loss, as before partial
    /// labels, bit for bit).
    pub masks: Vec<Option<Tensor>>,
    /// Per head: how many samples of the batch are labelled.
    pub labelled: Vec<usize>,
    /// Raw per-sample targets (head order), for metrics.
    pub raw_targets: Vec<Vec<f32>>,
}

/// Turns cache indices into batches.
pub struct Batcher<'a> {
    cache: &'a ImageCache,
    heads: &'a [HeadSpec],
    augment: AugmentConfig,
    seed: u64,
}

impl<'a> Batcher<'a> {
    /// A batcher over `cache` for `heads`; `augment` applies to training batches.
    pub fn new(
        cache: &'a ImageCache,
        heads: &'a [HeadSpec],
        augment: AugmentConfig,
        seed: u64,
    ) -> Self {
        Self {
            cache,
            heads,
            augment,
            seed,
        }
    }

    /// Starts reading the images of a coming batch (see [`ImageCache::prefetch`]).
    pub fn prefetch(&self, indices: &[usize]) {
        for &i in indices {
            self.cache.prefetch(i);
        }
    }

    /// Builds the batch of cache entries `indices`. With `train`, each image is augmented by
    /// a stream seeded from `(seed, epoch, index)`.
    pub fn batch(
        &self,
        indices: &[usize],
        epoch: u64,
        train: bool,
        device: &Device,
    ) -> Result<Batch> {
        let spec = &self.cache.spec;
        let per = spec.input_len();
        let (w, h) = (spec.width as usize, spec.height as usize);
        let mut input = vec![0f32; per * indices.len()];
        input
            .par_chunks_mut(per)
            .zip(indices.par_iter())
            .try_for_each(|(out, &i)| {
                let src = self.cache.image(i);
                let norm = |px: &[u8], out: &mut [f32]| {
                    normalize_hwc_into(px, spec, out)
                        .map_err(|e| candle_core::Error::Msg(e.to_string()))
                };
                let r = if train && !self.augment.is_identity() {
                    let mut rng = ChaCha8Rng::seed_from_u64(mix(mix(self.seed, epoch), i as u64));
                    let mut buf = vec![0u8; per];
                    augment(src, &mut buf, w, h, &self.augment, &mut rng);
                    norm(&buf, out)
                } else {
                    norm(src, out)
                };
                self.cache.release(i);
                r
            })?;
        let input = Tensor::from_vec(input, spec.input_shape(indices.len()).to_vec(), device)?;
        let raw_targets: Vec<Vec<f32>> = indices
            .iter()
            .map(|&i| self.cache.samples[i].targets.clone())
            .collect();
        let labelled: Vec<usize> = (0..self.heads.len())
            .map(|k| raw_targets.iter().filter(|t| is_labelled(t[k])).count())
            .collect();
        let masks = labelled
            .iter()
            .enumerate()
            .map(|(k, &n)| {
                (n < indices.len())
                    .then(|| {
                        let m: Vec<f32> = raw_targets
                            .iter()
                            .map(|t| f32::from(u8::from(is_labelled(t[k]))))
                            .collect();
                        Tensor::from_vec(m, indices.len(), device)
                    })
                    .transpose()
            })
            .collect::<Result<Vec<_>>>()?;
        let targets = self
            .heads
            .iter()
            .enumerate()
            .map(|(k, head)| {
                // Unlabelled: a placeholder that the mask zeroes (0, never NaN: NaN * 0 is NaN).
                let col = raw_targets.iter().map(|t| match t[k] {
                    v if is_labelled(v) => v,
                    _ => match &head.kind {
                        HeadKind::Regression { offset, .. } => *offset,
                        HeadKind::Distribution { min, .. } => *min,
                        _ => 0.0,
                    },
                });
                match &head.kind {
                    HeadKind::Regression { scale, offset, .. } => Tensor::from_vec(
                        col.map(|v| (v - offset) / scale).collect::<Vec<f32>>(),
                        indices.len(),
                        device,
                    ),
                    HeadKind::Binary { .. } => {
                        Tensor::from_vec(col.collect::<Vec<f32>>(), indices.len(), device)
                    }
                    HeadKind::Multiclass { .. } => Tensor::from_vec(
                        col.map(|v| v as u32).collect::<Vec<u32>>(),
                        indices.len(),
                        device,
                    ),
                    HeadKind::Distribution { .. } => {
                        let centres = head.kind.centres();
                        let b = centres.len();
                        let mut q = vec![0f32; indices.len() * b];
                        for (row, v) in q.chunks_mut(b).zip(col) {
                            two_hot(&centres, v, row);
                        }
                        Tensor::from_vec(q, (indices.len(), b), device)
                    }
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Batch {
            input,
            targets,
            masks,
            labelled,
            raw_targets,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_order_is_a_seeded_permutation() {
        let a = epoch_order(100, 1, 0);
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(100, 1, 0));
        assert_ne!(a, epoch_order(100, 1, 1));
        assert_ne!(a, epoch_order(100, 2, 0));
    }
}
