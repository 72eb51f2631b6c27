//! The on-disk form of the image cache: one file per (images, size), written once and
//! memory-mapped by every later run, so a data set larger than RAM trains with bounded RSS.
//!
//! Layout: a 4 KiB header page (`MAGIC`, then the offset and length of a JSON index), the
//! images at a page-aligned stride (so one image's pages can be handed back to the kernel
//! after use, see [`super::ImageCache::release`]), then the index: the key, the geometry,
//! which input samples were kept and why the others were skipped. The file is written to a
//! `.partial-PID` name and renamed when complete, so a crash or a full disk never leaves a
//! file that looks finished; a file that does not match its key or geometry is rebuilt.
use std::{
    fs::File,
    io::{BufWriter, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    sync::atomic::AtomicUsize,
};

use memmap2::Mmap;
use models::{
    dataset::{stable_hash, Sample},
    PreprocessSpec,
};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

const MAGIC: &[u8; 8] = b"HNIMGC01";
/// Bytes before the first image.
pub const HEADER: usize = 4096;
/// Image stride alignment: the page size of the hosts this trains on (x86-64, arm64 with
/// 4 KiB pages). On a 16/64 KiB-page kernel the release advice fails and is ignored: the
/// cache still works, its pages are only reclaimed by the kernel instead.
pub const ALIGN: usize = 4096;
/// Images decoded in parallel before they are written: bounds the build's memory.
const CHUNK: usize = 1024;

/// Bytes from one image to the next in the file.
pub fn stride(per: usize) -> usize {
    per.div_ceil(ALIGN) * ALIGN
}

#[derive(Debug, Serialize, Deserialize)]
struct Index {
    key: String,
    width: u32,
    height: u32,
    per: usize,
    stride: usize,
    /// Input positions of the cached images, in file order.
    kept: Vec<u32>,
    /// Input positions that failed, with the reason.
    skipped: Vec<(u32, String)>,
}

/// What identifies a cache's content: every image's path, length and modification time
/// (a replaced or edited file changes it), and the pixel geometry. Labels are not part of
/// it: the same images relabelled reuse the file.
pub fn key(samples: &[Sample], spec: &PreprocessSpec) -> String {
    let mut bytes = Vec::with_capacity(samples.len() * 80 + 64);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(
        format!("{}x{} {:?}\0", spec.width, spec.height, spec.resize).as_bytes(),
    );
    for s in samples {
        bytes.extend_from_slice(s.path.as_os_str().as_encoded_bytes());
        bytes.push(0);
        if let Ok(m) = std::fs::metadata(&s.path) {
            bytes.extend_from_slice(&m.len().to_le_bytes());
            let mtime = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            bytes.extend_from_slice(&mtime.to_le_bytes());
        }
    }
    format!(
        "{}x{}-{}-{:016x}",
        spec.width,
        spec.height,
        samples.len(),
        stable_hash(&bytes)
    )
}

/// The cache file for `key` in `dir`.
pub fn path_for(dir: &Path, key: &str) -> PathBuf {
    dir.join(format!("images-{key}.u8"))
}

/// A finished cache file, mapped.
pub struct Mapped {
    pub map: Mmap,
    pub stride: usize,
    pub kept: Vec<usize>,
    pub skipped: Vec<(usize, String)>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Maps `path` and checks it against `key`, the geometry and the `n` input samples.
/// `Ok(None)`: no such file. `Err`: a file that cannot be used (the caller rebuilds it).
pub fn open(
    path: &Path,
    key: &str,
    spec: &PreprocessSpec,
    n: usize,
) -> std::result::Result<Option<Mapped>, String> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    // SAFETY: the file is only ever written under a `.partial` name and renamed when
    // complete; nothing writes to a finished cache file, so the mapping does not change
    // under the slices handed out.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| e.to_string())?;
    if map.len() < HEADER || &map[..8] != MAGIC {
        return Err("not a HydraNet image cache (bad header)".into());
    }
    let word = |at: usize| u64::from_le_bytes(map[at..at + 8].try_into().unwrap_or_default());
    let (off, len) = (word(8) as usize, word(16) as usize);
    let end = off.checked_add(len).ok_or("index beyond the file")?;
    if off < HEADER || end != map.len() {
        return Err(format!(
            "truncated: index at {off}+{len}, file {} bytes",
            map.len()
        ));
    }
    let index: Index =
        serde_json::from_slice(&map[off..end]).map_err(|e| format!("index unreadable: {e}"))?;
    let per = spec.input_len();
    if index.key != key
        || index.width != spec.width
        || index.height != spec.height
        || index.per != per
        || index.stride != stride(per)
    {
        return Err(format!("made for another set or size (key {})", index.key));
    }
    if HEADER + index.kept.len() * index.stride != off {
        return Err("image area and index disagree".into());
    }
    let increasing = index.kept.windows(2).all(|w| w[0] < w[1]);
    let in_range = index
        .kept
        .iter()
        .chain(index.skipped.iter().map(|(i, _)| i))
        .all(|&i| (i as usize) < n);
    if !increasing || !in_range || index.kept.len() + index.skipped.len() != n {
        return Err("index does not cover the samples".into());
    }
    // Training reads images in shuffled order: read-ahead would only fill memory.
    let _ = map.advise(memmap2::Advice::Random);
    Ok(Some(Mapped {
        map,
        stride: index.stride,
        kept: index.kept.iter().map(|&i| i as usize).collect(),
        skipped: index
            .skipped
            .into_iter()
            .map(|(i, r)| (i as usize, r))
            .collect(),
    }))
}

/// Decodes `samples` (in parallel, `CHUNK` at a time) straight into a new cache file at
/// `path`; at most one chunk of pixels is in memory.
pub fn write(
    samples: &[Sample],
    spec: &PreprocessSpec,
    key: &str,
    path: &Path,
    progress: Option<&AtomicUsize>,
) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let tmp = path.with_extension(format!("u8.partial-{}", std::process::id()));
    let r = write_to(samples, spec, key, &tmp, progress)
        .and_then(|()| std::fs::rename(&tmp, path).map_err(io(path)));
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

fn write_to(
    samples: &[Sample],
    spec: &PreprocessSpec,
    key: &str,
    tmp: &Path,
    progress: Option<&AtomicUsize>,
) -> Result<()> {
    let per = spec.input_len();
    let stride = stride(per);
    let pad = vec![0u8; stride - per];
    let mut out = BufWriter::with_capacity(1 << 20, File::create(tmp).map_err(io(tmp))?);
    out.write_all(&[0u8; HEADER]).map_err(io(tmp))?;
    let (mut kept, mut skipped) = (Vec::new(), Vec::new());
    for (c, chunk) in samples.chunks(CHUNK).enumerate() {
        let decoded: Vec<std::result::Result<Vec<u8>, String>> = chunk
            .par_iter()
            .map(|s| super::cache::decode(s, spec, progress))
            .collect();
        for (j, r) in decoded.into_iter().enumerate() {
            let i = (c * CHUNK + j) as u32;
            match r {
                Ok(px) => {
                    out.write_all(&px).map_err(io(tmp))?;
                    out.write_all(&pad).map_err(io(tmp))?;
                    kept.push(i);
                }
                Err(reason) => skipped.push((i, reason)),
            }
        }
    }
    let index = Index {
        key: key.to_string(),
        width: spec.width,
        height: spec.height,
        per,
        stride,
        kept,
        skipped,
    };
    let json = serde_json::to_vec(&index).map_err(|e| Error::Io {
        path: tmp.to_path_buf(),
        source: e.into(),
    })?;
    let offset = (HEADER + index.kept.len() * stride) as u64;
    out.write_all(&json).map_err(io(tmp))?;
    let mut file = out.into_inner().map_err(|e| Error::Io {
        path: tmp.to_path_buf(),
        source: e.into_error(),
    })?;
    file.seek(SeekFrom::Start(0)).map_err(io(tmp))?;
    let mut head = [0u8; 24];
    head[..8].copy_from_slice(MAGIC);
    head[8..16].copy_from_slice(&offset.to_le_bytes());
    head[16..].copy_from_slice(&(json.len() as u64).to_le_bytes());
    file.write_all(&head).map_err(io(tmp))?;
    file.sync_all().map_err(io(tmp))
}
