//! Temporal smoothing of per-frame predictions, and the "steady" decision.
//!
//! A camera gives a new, slightly different answer every frame; people read a number that
//! jumps. Each head keeps the last `window` frames in a fixed-capacity ring
//! ([`heapless::HistoryBuf`], so the frame path allocates nothing per frame): regressions
//! are averaged, class probabilities are averaged, and the answer is *steady* once the
//! window is full, each regression's spread is small against its range and each class head
//! picked the averaged winner in most frames.
use heapless::{HistoryBuf, Vec as FixedVec};
use serde::Serialize;

use crate::{
    decode::{argmax, HeadOutput},
    heads::HeadKind,
    prelude::*,
    Error, HeadSpec, Prediction, Result,
};

/// Largest window a [`Smoother`] holds.
pub const MAX_WINDOW: usize = 32;
/// Largest number of classes a smoothed head may have.
pub const MAX_CLASSES: usize = 16;

/// One frame of one head: the value (regression) or the class probabilities.
type Sample = FixedVec<f32, MAX_CLASSES>;

/// When a smoothed answer counts as steady.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SmoothConfig {
    /// Frames averaged (1..=[`MAX_WINDOW`]).
    pub window: usize,
    /// Fraction of the window in which a class head must have picked the averaged winner.
    pub min_agreement: f32,
    /// Largest standard deviation of a regression, as a fraction of the head's range
    /// (`max - min`), e.g. 0.05 of 0..116 years = 5.8 years.
    pub max_spread: f32,
}

impl Default for SmoothConfig {
    fn default() -> Self {
        Self {
            window: 8,
            min_agreement: 0.75,
            max_spread: 0.05,
        }
    }
}

/// One head's smoothed answer.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum SmoothedHead {
    /// Mean and standard deviation of a regression over the window.
    Regression {
        /// Mean value, in the head's unit.
        value: f32,
        /// Standard deviation over the window, in the head's unit.
        spread: f32,
    },
    /// Averaged class probabilities.
    Class {
        /// Label with the highest averaged probability.
        label: String,
        /// Its index.
        index: usize,
        /// Its averaged probability.
        p: f32,
        /// Fraction of frames in the window whose own answer was this class.
        agreement: f32,
        /// Averaged probability of every class, in label order.
        probs: Vec<f32>,
    },
}

/// All heads smoothed over the window.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Smoothed {
    /// `(head name, answer)` in contract order.
    pub heads: Vec<(String, SmoothedHead)>,
    /// Frames in the window so far.
    pub frames: usize,
    /// Whether the answer has settled (see the module docs).
    pub steady: bool,
}

/// Per-head rings of recent frames.
#[derive(Debug, Clone)]
pub struct Smoother {
    heads: Vec<HeadSpec>,
    config: SmoothConfig,
    history: Vec<HistoryBuf<Sample, MAX_WINDOW>>,
}

impl Smoother {
    /// A smoother for these heads; refuses a window outside 1..=[`MAX_WINDOW`] or a head
    /// with more than [`MAX_CLASSES`] classes.
    pub fn new(heads: &[HeadSpec], config: SmoothConfig) -> Result<Self> {
        if !(1..=MAX_WINDOW).contains(&config.window) {
            return Err(Error::InvalidContract(format!(
                "smoothing window {} is outside 1..={MAX_WINDOW}",
                config.window
            )));
        }
        if let Some(h) = heads
            .iter()
            .find(|h| h.num_classes().unwrap_or(1) > MAX_CLASSES)
        {
            return Err(Error::InvalidContract(format!(
                "head `{}` has more than {MAX_CLASSES} classes, too many to smooth",
                h.name
            )));
        }
        Ok(Self {
            heads: heads.to_vec(),
            config,
            history: heads.iter().map(|_| HistoryBuf::new()).collect(),
        })
    }

    /// Forgets every frame (the scene changed: a camera came back, a new image).
    pub fn reset(&mut self) {
        self.history.iter_mut().for_each(|h| h.clear());
    }

    /// Adds one frame's prediction and returns the smoothed answer.
    pub fn push(&mut self, prediction: &Prediction) -> Result<Smoothed> {
        for ((spec, ring), (name, out)) in self
            .heads
            .iter()
            .zip(&mut self.history)
            .zip(&prediction.heads)
        {
            if *name != spec.name {
                return Err(Error::InvalidContract(format!(
                    "prediction has head `{name}` where `{}` was expected",
                    spec.name
                )));
            }
            let mut sample = Sample::new();
            match out {
                HeadOutput::Regression(v) => sample.push(*v).ok(),
                HeadOutput::Binary { index, p, .. } => {
                    let p1 = if *index == 1 { *p } else { 1.0 - *p };
                    sample.extend_from_slice(&[1.0 - p1, p1]).ok()
                }
                HeadOutput::Multiclass { probs, .. } => sample.extend_from_slice(probs).ok(),
            }
            .ok_or_else(|| {
                Error::InvalidContract(format!("head `{name}` has too many values to smooth"))
            })?;
            ring.write(sample);
        }
        Ok(self.current())
    }

    /// The smoothed answer over the frames seen so far.
    pub fn current(&self) -> Smoothed {
        let window = self.config.window;
        let mut steady = true;
        let mut frames = usize::MAX;
        let heads = self
            .heads
            .iter()
            .zip(&self.history)
            .map(|(spec, ring)| {
                let recent: FixedVec<&Sample, MAX_WINDOW> =
                    ring.oldest_ordered().rev().take(window).collect();
                let n = recent.len().max(1) as f32;
                frames = frames.min(recent.len());
                let head = match &spec.kind {
                    HeadKind::Regression { min, max, .. }
                    | HeadKind::Distribution { min, max, .. } => {
                        let mean = recent.iter().map(|s| s[0]).sum::<f32>() / n;
                        let var = recent
                            .iter()
                            .map(|s| (s[0] - mean) * (s[0] - mean))
                            .sum::<f32>()
                            / n;
                        let spread = libm::sqrtf(var);
                        steady &= spread <= self.config.max_spread * (max - min);
                        SmoothedHead::Regression {
                            value: mean,
                            spread,
                        }
                    }
                    HeadKind::Binary { .. } | HeadKind::Multiclass { .. } => {
                        let k = spec.num_classes().unwrap_or(0);
                        let mut probs = vec![0f32; k];
                        for s in &recent {
                            for (acc, p) in probs.iter_mut().zip(s.iter()) {
                                *acc += p / n;
                            }
                        }
                        let index = argmax(&probs);
                        let agreeing = recent.iter().filter(|s| argmax(s) == index).count();
                        let agreement = agreeing as f32 / n;
                        steady &= agreement >= self.config.min_agreement;
                        SmoothedHead::Class {
                            label: spec.labels().get(index).cloned().unwrap_or_default(),
                            index,
                            p: probs.get(index).copied().unwrap_or(0.0),
                            agreement,
                            probs,
                        }
                    }
                };
                (spec.name.clone(), head)
            })
            .collect();
        let frames = if self.heads.is_empty() { 0 } else { frames };
        Smoothed {
            heads,
            frames,
            steady: steady && frames >= window,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode::decode, heads::utkface_heads};

    fn frame(age_raw: f32, gender_logit: f32, eth: [f32; 5]) -> Prediction {
        let heads = utkface_heads();
        decode(&heads, &[&[age_raw], &[gender_logit], &eth]).unwrap()
    }

    #[test]
    fn averages_and_becomes_steady_only_when_full_and_agreeing() {
        let heads = utkface_heads();
        let cfg = SmoothConfig {
            window: 4,
            ..SmoothConfig::default()
        };
        let mut s = Smoother::new(&heads, cfg).unwrap();
        let mut last = None;
        for i in 0..4 {
            let out = s.push(&frame(0.0, 3.0, [4.0, 0.0, 0.0, 0.0, 0.0])).unwrap();
            assert_eq!(out.frames, i + 1);
            assert_eq!(out.steady, i == 3, "frame {i}");
            last = Some(out);
        }
        let settled = last.take().unwrap();
        let SmoothedHead::Class {
            index, agreement, ..
        } = &settled.heads[2].1
        else {
            panic!("ethnicity is a class head")
        };
        assert_eq!((*index, *agreement), (0, 1.0));
        // A flip-flopping class is not steady even with a full window.
        for i in 0..4 {
            let logits = if i % 2 == 0 {
                [4.0, 0.0, 0.0, 0.0, 0.0]
            } else {
                [0.0, 4.0, 0.0, 0.0, 0.0]
            };
            last = Some(s.push(&frame(0.0, 3.0, logits)).unwrap());
        }
        assert!(!last.unwrap().steady);
    }

    #[test]
    fn regression_is_the_window_mean_and_a_wide_spread_is_not_steady() {
        let heads = utkface_heads();
        let HeadKind::Regression { scale, offset, .. } = heads[0].kind else {
            panic!("age is a regression")
        };
        let raw = |years: f32| (years - offset) / scale;
        let cfg = SmoothConfig {
            window: 2,
            ..SmoothConfig::default()
        };
        let mut s = Smoother::new(&heads, cfg).unwrap();
        s.push(&frame(raw(90.0), 0.0, [0.0; 5])).unwrap();
        s.push(&frame(raw(20.0), 0.0, [0.0; 5])).unwrap();
        let out = s.push(&frame(raw(30.0), 0.0, [0.0; 5])).unwrap();
        let SmoothedHead::Regression { value, spread } = out.heads[0].1 else {
            panic!("age is a regression")
        };
        assert!((value - 25.0).abs() < 1e-3, "{value}");
        assert!((spread - 5.0).abs() < 1e-3, "{spread}");
        assert!(out.steady);
        let out = s.push(&frame(raw(80.0), 0.0, [0.0; 5])).unwrap();
        assert!(!out.steady, "30 and 80 years in one window");
        s.reset();
        assert_eq!(s.current().frames, 0);
    }

    #[test]
    fn refuses_bad_windows() {
        let heads = utkface_heads();
        for window in [0, MAX_WINDOW + 1] {
            let cfg = SmoothConfig {
                window,
                ..SmoothConfig::default()
            };
            assert!(Smoother::new(&heads, cfg).is_err());
        }
    }
}
