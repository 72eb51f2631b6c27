//! Faces followed from frame to frame: each detection is matched to the track whose last
//! box overlaps it most (greedy, best overlap first, above a minimum IoU), unmatched
//! detections start new tracks with fresh ids, and a track that goes unseen for more than
//! `max_missed` frames ends. Each track carries caller state (the per-face smoother), so
//! answers are smoothed per person, not per frame. At most `N` tracks live at once, in a
//! fixed-capacity buffer: a frame with more faces than that leaves the rest untracked.
use heapless::Vec as FixedVec;
use serde::{Deserialize, Serialize};

use crate::{detect::BoxF, prelude::*};

/// How detections become tracks.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrackConfig {
    /// Least overlap between a track's last box and a detection to be the same face.
    pub min_iou: f32,
    /// Frames a track may go unseen before it ends.
    pub max_missed: u32,
}

impl Default for TrackConfig {
    fn default() -> Self {
        Self {
            min_iou: 0.3,
            max_missed: 5,
        }
    }
}

/// One followed face.
#[derive(Debug, Clone)]
pub struct Track<S> {
    /// Stable id, never reused while the tracker lives.
    pub id: u64,
    /// The box it was last seen at.
    pub bbox: BoxF,
    /// Frames since it was last seen (0: seen in the last update).
    pub missed: u32,
    /// Frames it was seen in.
    pub seen: u64,
    /// The caller's state for this face.
    pub state: S,
}

/// The live tracks, at most `N`.
#[derive(Debug)]
pub struct Tracker<S, const N: usize> {
    tracks: FixedVec<Track<S>, N>,
    next_id: u64,
    config: TrackConfig,
}

impl<S, const N: usize> Tracker<S, N> {
    /// No tracks yet.
    pub fn new(config: TrackConfig) -> Self {
        Self {
            tracks: FixedVec::new(),
            next_id: 1,
            config,
        }
    }

    /// The live tracks.
    pub fn tracks(&self) -> &[Track<S>] {
        &self.tracks
    }

    /// Track `i` of [`Tracker::tracks`], to update its state.
    pub fn track_mut(&mut self, i: usize) -> Option<&mut Track<S>> {
        self.tracks.get_mut(i)
    }

    /// Ends every track (the camera was reopened and may point elsewhere).
    pub fn clear(&mut self) {
        self.tracks.clear();
    }

    /// Takes one frame's detections. Returns, per detection, the index of its track in
    /// [`Tracker::tracks`] (`None`: no room for a new track). `fresh` makes the state of
    /// a new track. Tracks not seen this frame count a miss and end after `max_missed`.
    pub fn update(&mut self, boxes: &[BoxF], mut fresh: impl FnMut() -> S) -> Vec<Option<usize>> {
        // Every (track, detection) pair that overlaps enough, best overlap first.
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (t, track) in self.tracks.iter().enumerate() {
            for (d, b) in boxes.iter().enumerate() {
                let iou = track.bbox.iou(b);
                if iou >= self.config.min_iou {
                    pairs.push((iou, t, d));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut track_of: Vec<Option<usize>> = vec![None; boxes.len()];
        let mut matched = vec![false; self.tracks.len()];
        for (_, t, d) in pairs {
            if matched[t] || track_of[d].is_some() {
                continue;
            }
            matched[t] = true;
            track_of[d] = Some(t);
        }
        // Age the unmatched tracks and drop the expired ones, keeping indices straight.
        let mut keep = Vec::with_capacity(self.tracks.len());
        for (t, track) in self.tracks.iter_mut().enumerate() {
            if matched[t] {
                track.missed = 0;
            } else {
                track.missed += 1;
            }
            keep.push(track.missed <= self.config.max_missed);
        }
        let mut new_index = vec![None; self.tracks.len()];
        let mut next = 0;
        for (t, k) in keep.iter().enumerate() {
            if *k {
                new_index[t] = Some(next);
                next += 1;
            }
        }
        let mut i = 0;
        self.tracks.retain(|_| {
            let k = keep[i];
            i += 1;
            k
        });
        for slot in track_of.iter_mut() {
            *slot = slot.and_then(|t| new_index[t]);
        }
        for (d, b) in boxes.iter().enumerate() {
            match track_of[d] {
                Some(t) => {
                    let track = &mut self.tracks[t];
                    track.bbox = *b;
                    track.seen += 1;
                }
                None => {
                    let track = Track {
                        id: self.next_id,
                        bbox: *b,
                        missed: 0,
                        seen: 1,
                        state: fresh(),
                    };
                    if self.tracks.push(track).is_ok() {
                        self.next_id += 1;
                        track_of[d] = Some(self.tracks.len() - 1);
                    }
                }
            }
        }
        track_of
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(x: f32) -> BoxF {
        BoxF {
            x,
            y: 10.0,
            w: 40.0,
            h: 40.0,
        }
    }

    #[test]
    fn ids_follow_moving_faces_and_expire_after_misses() {
        let mut t: Tracker<u32, 4> = Tracker::new(TrackConfig {
            min_iou: 0.3,
            max_missed: 2,
        });
        let first = t.update(&[b(0.0), b(200.0)], || 0);
        let ids: Vec<u64> = first.iter().map(|i| t.tracks()[i.unwrap()].id).collect();
        assert_eq!(ids, [1, 2]);
        // Both move a little, listed in the other order: same ids.
        let second = t.update(&[b(205.0), b(5.0)], || 0);
        let ids: Vec<u64> = second.iter().map(|i| t.tracks()[i.unwrap()].id).collect();
        assert_eq!(ids, [2, 1]);
        // The left face leaves; its track survives two misses, then ends.
        t.update(&[b(210.0)], || 0);
        t.update(&[b(215.0)], || 0);
        assert_eq!(t.tracks().len(), 2);
        let last = t.update(&[b(220.0)], || 0);
        assert_eq!(t.tracks().len(), 1);
        assert_eq!(t.tracks()[last[0].unwrap()].id, 2);
        assert_eq!(t.tracks()[0].seen, 5);
        // A face far from every track is a new one, with a new id.
        let new = t.update(&[b(220.0), b(0.0)], || 0);
        assert_eq!(t.tracks()[new[1].unwrap()].id, 3);
    }

    #[test]
    fn faces_over_the_capacity_stay_untracked() {
        let mut t: Tracker<(), 2> = Tracker::new(TrackConfig::default());
        let boxes: Vec<BoxF> = (0..5).map(|i| b(i as f32 * 100.0)).collect();
        let got = t.update(&boxes, || ());
        assert_eq!(got.iter().filter(|g| g.is_some()).count(), 2);
        assert_eq!(t.tracks().len(), 2);
        t.clear();
        assert!(t.tracks().is_empty());
    }
}
