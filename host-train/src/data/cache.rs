//! Decoded images at the training size, as RGB8: in one buffer in memory, or in one
//! memory-mapped file on disk ([`super::cache_file`]) when the set is larger than RAM.
use std::{
    path::{Path, PathBuf},
    sync::atomic::AtomicUsize,
    time::Instant,
};

use models::{
    dataset::{load_image, Rejected, Sample},
    preprocess::resize_rgb,
    PreprocessSpec,
};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::cache_file;

/// Where decoded images are kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum CacheMode {
    /// On disk when the set's pixels would take more than a quarter of the machine's RAM.
    #[default]
    Auto,
    /// In memory (fastest to build; needs the whole set's pixels in RAM).
    Memory,
    /// In one memory-mapped file per set and size, reused by later runs.
    Disk,
}

/// How a run caches its images: a "how to run" setting, like the kernels (a resumed run
/// takes the command line's).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachePolicy {
    pub mode: CacheMode,
    /// Folder of the cache files (default: `$XDG_CACHE_HOME/hydranet-edge/images`, or
    /// `~/.cache/hydranet-edge/images`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
}

impl CachePolicy {
    /// The folder cache files go to.
    pub fn dir(&self) -> PathBuf {
        if let Some(d) = &self.dir {
            return d.clone();
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir);
        base.join("hydranet-edge").join("images")
    }

    /// Whether `n` images of `per` bytes go to disk.
    pub fn on_disk(&self, n: usize, per: usize) -> bool {
        match self.mode {
            CacheMode::Memory => false,
            CacheMode::Disk => true,
            CacheMode::Auto => total_ram().is_some_and(|ram| (n * per) as u64 > ram / 4),
        }
    }
}

/// `MemTotal` of /proc/meminfo in bytes (`None` where there is no such file: memory then).
fn total_ram() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

enum Store {
    /// `len * per` bytes, HWC per image.
    Memory(Vec<u8>),
    /// Images at `stride` from `cache_file::HEADER` in the mapped file.
    Mapped {
        map: memmap2::Mmap,
        stride: usize,
        path: PathBuf,
    },
}

/// One sample's pixels at the cache's size, or why they could not be had; bumps
/// `progress`. Both cache forms decode through it.
pub(super) fn decode(
    s: &Sample,
    spec: &PreprocessSpec,
    progress: Option<&AtomicUsize>,
) -> Result<Vec<u8>, String> {
    let r = load_image(&s.path)
        .map(|img| resize_rgb(&img, spec).into_raw())
        .map_err(|e| e.to_string());
    if let Some(p) = progress {
        p.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    r
}

/// Every usable sample's pixels, decoded and resized once.
pub struct ImageCache {
    /// Width = height of the cached images.
    pub spec: PreprocessSpec,
    /// Samples whose image decoded, in input order.
    pub samples: Vec<Sample>,
    store: Store,
    /// Samples whose image could not be read or decoded.
    pub skipped: Vec<Rejected>,
    /// Wall time of the build in seconds.
    pub build_seconds: f64,
}

impl ImageCache {
    /// Decodes and resizes `samples` in parallel (rayon). Images that fail are skipped and
    /// reported in `skipped`; `progress` is bumped once per image.
    pub fn build(
        samples: &[Sample],
        spec: &PreprocessSpec,
        progress: Option<&AtomicUsize>,
    ) -> Self {
        let t0 = Instant::now();
        let results: Vec<Result<Vec<u8>, String>> = samples
            .par_iter()
            .map(|s| decode(s, spec, progress))
            .collect();
        let per = spec.input_len();
        let mut pixels = Vec::with_capacity(per * samples.len());
        let mut kept = Vec::with_capacity(samples.len());
        let mut skipped = Vec::new();
        for (s, r) in samples.iter().zip(results) {
            match r {
                Ok(px) => {
                    pixels.extend_from_slice(&px);
                    kept.push(s.clone());
                }
                Err(reason) => skipped.push(Rejected {
                    path: s.path.clone(),
                    reason,
                }),
            }
        }
        Self {
            spec: spec.clone(),
            samples: kept,
            store: Store::Memory(pixels),
            skipped,
            build_seconds: t0.elapsed().as_secs_f64(),
        }
    }

    /// The cache `policy` asks for: in memory, or the cache file of these samples at this
    /// size, written first when no usable one exists (an unusable one, e.g. truncated by a
    /// crash of an older version, is rebuilt with a warning naming it).
    pub fn load(
        samples: &[Sample],
        spec: &PreprocessSpec,
        policy: &CachePolicy,
        progress: Option<&AtomicUsize>,
    ) -> crate::Result<Self> {
        if !policy.on_disk(samples.len(), cache_file::stride(spec.input_len())) {
            return Ok(Self::build(samples, spec, progress));
        }
        let t0 = Instant::now();
        let key = cache_file::key(samples, spec);
        let path = cache_file::path_for(&policy.dir(), &key);
        let mapped = match cache_file::open(&path, &key, spec, samples.len()) {
            Ok(Some(m)) => {
                tracing::info!("image cache {}: reused", path.display());
                m
            }
            found => {
                if let Err(reason) = found {
                    tracing::warn!(
                        "image cache {} is unusable ({reason}): rebuilding it",
                        path.display()
                    );
                }
                tracing::info!(
                    "image cache {}: decoding {} images",
                    path.display(),
                    samples.len()
                );
                cache_file::write(samples, spec, &key, &path, progress)?;
                cache_file::open(&path, &key, spec, samples.len())
                    .map_err(|reason| {
                        crate::Error::Config(format!("{}: {reason}", path.display()))
                    })?
                    .ok_or_else(|| {
                        crate::Error::Config(format!("{}: vanished after writing", path.display()))
                    })?
            }
        };
        Ok(Self {
            spec: spec.clone(),
            samples: mapped.kept.iter().map(|&i| samples[i].clone()).collect(),
            skipped: mapped
                .skipped
                .iter()
                .map(|(i, reason)| Rejected {
                    path: samples[*i].path.clone(),
                    reason: reason.clone(),
                })
                .collect(),
            store: Store::Mapped {
                map: mapped.map,
                stride: mapped.stride,
                path,
            },
            build_seconds: t0.elapsed().as_secs_f64(),
        })
    }

    /// The cache file behind this cache, if it is on disk.
    pub fn file(&self) -> Option<&Path> {
        match &self.store {
            Store::Memory(_) => None,
            Store::Mapped { path, .. } => Some(path),
        }
    }

    /// Says image `i` will be read soon: on disk, the kernel starts reading its pages in
    /// the background, so a batch built while the previous step computes does not wait for
    /// them one page fault at a time (the mapping is advised random-access, so nothing
    /// else is read ahead).
    pub fn prefetch(&self, i: usize) {
        if let Store::Mapped { map, stride, .. } = &self.store {
            let _ = map.advise_range(
                memmap2::Advice::WillNeed,
                cache_file::HEADER + i * stride,
                *stride,
            );
        }
    }

    /// Says image `i` will not be read again soon. On disk, its pages leave this process's
    /// resident set (they stay in the kernel's page cache while memory allows): without
    /// this, an epoch over a mapped set larger than RAM would grow RSS to the whole file.
    pub fn release(&self, i: usize) {
        if let Store::Mapped { map, stride, .. } = &self.store {
            // SAFETY: the mapping is read-only and the file never changes (see
            // `cache_file::open`), so dropped pages read back the same bytes; images sit on
            // whole pages of their own, so no other image's pages are touched.
            let _ = unsafe {
                map.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    cache_file::HEADER + i * stride,
                    *stride,
                )
            };
        }
    }

    /// Number of cached images.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The HWC pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let per = self.spec.input_len();
        match &self.store {
            Store::Memory(px) => &px[i * per..(i + 1) * per],
            Store::Mapped { map, stride, .. } => {
                let at = cache_file::HEADER + i * stride;
                &map[at..at + per]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use models::Contract;

    fn faces(dir: &Path, n: usize) -> Vec<Sample> {
        crate::synth::generate(dir, n, 40, 7).unwrap();
        let heads = Contract::utkface(24, "resnet18").heads;
        models::dataset::scan_utkface_dir(dir, &heads)
            .unwrap()
            .samples
    }

    fn disk(dir: &Path) -> CachePolicy {
        CachePolicy {
            mode: CacheMode::Disk,
            dir: Some(dir.to_path_buf()),
        }
    }

    #[test]
    fn the_disk_cache_holds_the_memory_caches_pixels_and_is_reused() {
        let tmp = tempfile::tempdir().unwrap();
        let mut samples = faces(&tmp.path().join("faces"), 9);
        // One unreadable image among them: skipped by both, with its name.
        let bad = tmp
            .path()
            .join("faces/30_1_2_20170101000000999.jpg.chip.jpg");
        std::fs::write(&bad, b"not a jpeg").unwrap();
        samples.insert(
            4,
            Sample {
                path: bad.clone(),
                targets: samples[0].targets.clone(),
            },
        );
        let spec = PreprocessSpec::new(24);
        let mem = ImageCache::build(&samples, &spec, None);
        let policy = disk(&tmp.path().join("cache"));
        let on_disk = ImageCache::load(&samples, &spec, &policy, None).unwrap();
        let file = on_disk.file().unwrap().to_path_buf();
        assert_eq!(on_disk.len(), 9);
        assert_eq!(on_disk.skipped.len(), 1);
        assert_eq!(on_disk.skipped[0].path, bad);
        for i in 0..mem.len() {
            assert_eq!(on_disk.samples[i].path, mem.samples[i].path);
            assert_eq!(on_disk.image(i), mem.image(i), "image {i}");
            on_disk.release(i);
            assert_eq!(on_disk.image(i), mem.image(i), "image {i} after release");
        }
        // A second run maps the same file instead of writing it again.
        let written = std::fs::metadata(&file).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let again = ImageCache::load(&samples, &spec, &policy, None).unwrap();
        assert_eq!(again.file(), Some(file.as_path()));
        assert_eq!(
            std::fs::metadata(&file).unwrap().modified().unwrap(),
            written
        );
        assert_eq!(again.image(8), mem.image(8));
        // Another size or another set of images is another file.
        let other = ImageCache::load(&samples, &PreprocessSpec::new(16), &policy, None).unwrap();
        assert_ne!(other.file(), Some(file.as_path()));
        let fewer = ImageCache::load(&samples[..5], &spec, &policy, None).unwrap();
        assert_ne!(fewer.file(), Some(file.as_path()));
        assert_eq!(fewer.image(3), mem.image(3));
    }

    #[test]
    fn a_truncated_or_foreign_cache_file_is_rebuilt() {
        let tmp = tempfile::tempdir().unwrap();
        let samples = faces(&tmp.path().join("faces"), 4);
        let spec = PreprocessSpec::new(24);
        let policy = disk(&tmp.path().join("cache"));
        let first = ImageCache::load(&samples, &spec, &policy, None).unwrap();
        let file = first.file().unwrap().to_path_buf();
        let want: Vec<Vec<u8>> = (0..4).map(|i| first.image(i).to_vec()).collect();
        drop(first);
        let full = std::fs::read(&file).unwrap();
        for broken in [
            full[..full.len() - 3].to_vec(),
            full[..cache_file::HEADER + 100].to_vec(),
            b"PK\x03\x04 a zip file, not a cache".to_vec(),
            Vec::new(),
        ] {
            std::fs::write(&file, &broken).unwrap();
            let c = ImageCache::load(&samples, &spec, &policy, None).unwrap();
            for (i, w) in want.iter().enumerate() {
                assert_eq!(c.image(i), w.as_slice());
            }
            assert_eq!(std::fs::read(&file).unwrap(), full);
        }
        // No partial file is left behind.
        let names: Vec<_> = std::fs::read_dir(file.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn a_replaced_image_changes_the_key() {
        let tmp = tempfile::tempdir().unwrap();
        let samples = faces(&tmp.path().join("faces"), 3);
        let spec = PreprocessSpec::new(24);
        let before = cache_file::key(&samples, &spec);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let bytes = std::fs::read(&samples[1].path).unwrap();
        std::fs::write(&samples[1].path, [bytes.as_slice(), b"\0"].concat()).unwrap();
        assert_ne!(cache_file::key(&samples, &spec), before);
    }

    #[test]
    fn auto_keeps_small_sets_in_memory() {
        let auto = CachePolicy::default();
        assert!(!auto.on_disk(1000, 37632));
        if let Some(ram) = total_ram() {
            assert!(auto.on_disk((ram / 4 / 37632) as usize + 1, 37632));
        }
    }
}
