//! Image files as a camera: `dir:` shows each image as a still for a while (a person
//! holding still in front of the camera), `seq:` plays one image per frame at a fixed rate
//! (a recorded clip). Files are taken in name order; a file that does not decode is
//! skipped with a warning naming it, and the rest play on.
use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::{Frame, FrameSource, SourceError, SourceOptions};

const EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// A folder of images played as frames.
pub struct Folder {
    name: String,
    files: Vec<PathBuf>,
    index: usize,
    /// Frames per image: `hold * fps` for stills, 1 for a sequence.
    hold: Duration,
    fps: f32,
    looped: bool,
    still: Option<(u32, u32, Vec<u8>, String)>,
    shown_since: Option<Instant>,
    next: Option<Instant>,
    failures_in_a_row: usize,
}

fn list(dir: &Path, name: &str) -> Result<Vec<PathBuf>, SourceError> {
    let fatal = |reason: String| SourceError::Fatal {
        source_name: name.into(),
        reason,
    };
    let entries =
        std::fs::read_dir(dir).map_err(|e| fatal(format!("cannot read the folder: {e}")))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(fatal(format!(
            "no .jpg/.jpeg/.png files in {}",
            dir.display()
        )));
    }
    Ok(files)
}

impl Folder {
    fn new(
        dir: &Path,
        opts: &SourceOptions,
        kind: &str,
        hold: Duration,
    ) -> Result<Self, SourceError> {
        let name = format!("{kind}:{}", dir.display());
        Ok(Self {
            files: list(dir, &name)?,
            name,
            index: 0,
            hold,
            fps: opts.fps,
            looped: opts.looped,
            still: None,
            shown_since: None,
            next: None,
            failures_in_a_row: 0,
        })
    }

    /// `dir:`: each image shown for `opts.hold` seconds at `opts.fps`.
    pub fn stills(dir: &Path, opts: &SourceOptions) -> Result<Self, SourceError> {
        Self::new(
            dir,
            opts,
            "dir",
            Duration::from_secs_f32(opts.hold.max(0.0)),
        )
    }

    /// `seq:`: one image per frame at `opts.fps`.
    pub fn sequence(dir: &Path, opts: &SourceOptions) -> Result<Self, SourceError> {
        Self::new(dir, opts, "seq", Duration::ZERO)
    }

    /// Decodes the current file into the still buffer, skipping files that do not decode.
    fn load_current(&mut self) -> Result<(), SourceError> {
        loop {
            if self.index >= self.files.len() {
                if !self.looped {
                    return Err(SourceError::Ended {
                        source_name: self.name.clone(),
                    });
                }
                self.index = 0;
            }
            let path = &self.files[self.index];
            match image::open(path) {
                Ok(img) => {
                    let rgb = img.into_rgb8();
                    let (w, h) = rgb.dimensions();
                    let label = path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let mut buf = self.still.take().map(|s| s.2).unwrap_or_default();
                    buf.clear();
                    buf.extend_from_slice(rgb.as_raw());
                    self.still = Some((w, h, buf, label));
                    self.failures_in_a_row = 0;
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!("{}: skipping {}: {e}", self.name, path.display());
                    self.failures_in_a_row += 1;
                    self.index += 1;
                    if self.failures_in_a_row >= self.files.len() {
                        return Err(SourceError::Fatal {
                            source_name: self.name.clone(),
                            reason: "none of its images decode".into(),
                        });
                    }
                }
            }
        }
    }
}

impl FrameSource for Folder {
    fn describe(&self) -> String {
        format!(
            "{} ({} images, {} fps{})",
            self.name,
            self.files.len(),
            self.fps,
            if self.hold.is_zero() {
                String::new()
            } else {
                format!(", {:.1} s each", self.hold.as_secs_f32())
            }
        )
    }

    fn is_live(&self) -> bool {
        self.fps > 0.0
    }

    fn next_frame(&mut self, frame: &mut Frame) -> Result<(), SourceError> {
        super::pace(&mut self.next, self.fps);
        let t0 = Instant::now();
        let due = match self.shown_since {
            None => true,
            Some(t) => t.elapsed() >= self.hold,
        };
        if due {
            if self.shown_since.is_some() {
                self.index += 1;
            }
            self.load_current()?;
            self.shown_since = Some(Instant::now());
        }
        let Some((w, h, pixels, label)) = &self.still else {
            return Err(SourceError::Ended {
                source_name: self.name.clone(),
            });
        };
        frame.resize(*w, *h).copy_from_slice(pixels);
        frame.label = Some(label.clone());
        frame.captured = Instant::now();
        frame.capture_time = t0.elapsed();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, colour: u8) {
        image::RgbImage::from_pixel(8, 6, image::Rgb([colour, 0, 0]))
            .save(dir.join(name))
            .unwrap();
    }

    #[test]
    fn a_sequence_plays_in_name_order_skips_bad_files_and_ends() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "b.png", 20);
        write(dir.path(), "a.png", 10);
        std::fs::write(dir.path().join("c.jpg"), b"not a jpeg").unwrap();
        write(dir.path(), "d.png", 40);
        std::fs::write(dir.path().join("notes.txt"), b"ignored").unwrap();
        let opts = SourceOptions {
            fps: 0.0,
            looped: false,
            ..SourceOptions::default()
        };
        let mut s = Folder::sequence(dir.path(), &opts).unwrap();
        let mut f = Frame::default();
        let mut seen = Vec::new();
        loop {
            match s.next_frame(&mut f) {
                Ok(()) => seen.push((f.label.clone().unwrap(), f.rgb[0])),
                Err(SourceError::Ended { .. }) => break,
                Err(e) => panic!("{e}"),
            }
        }
        let want = [("a.png", 10), ("b.png", 20), ("d.png", 40)];
        let want: Vec<(String, u8)> = want.iter().map(|(n, c)| (n.to_string(), *c)).collect();
        assert_eq!(seen, want);
    }

    #[test]
    fn stills_repeat_and_empty_or_hopeless_folders_are_fatal() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.png", 10);
        write(dir.path(), "b.png", 20);
        let opts = SourceOptions {
            fps: 0.0,
            hold: 3600.0,
            ..SourceOptions::default()
        };
        let mut s = Folder::stills(dir.path(), &opts).unwrap();
        let mut f = Frame::default();
        for _ in 0..3 {
            s.next_frame(&mut f).unwrap();
            assert_eq!(f.label.as_deref(), Some("a.png"));
        }
        let empty = tempfile::tempdir().unwrap();
        let err = Folder::stills(empty.path(), &opts).err().unwrap();
        assert!(
            !err.is_retryable() && err.to_string().contains("no .jpg"),
            "{err}"
        );
        std::fs::write(empty.path().join("x.png"), b"junk").unwrap();
        let mut s = Folder::stills(empty.path(), &opts).unwrap();
        let err = s.next_frame(&mut f).unwrap_err();
        assert!(
            err.to_string().contains("none of its images decode"),
            "{err}"
        );
        let missing = Folder::sequence(&dir.path().join("nope"), &opts)
            .err()
            .unwrap();
        assert!(missing.to_string().contains("nope"), "{missing}");
    }
}
