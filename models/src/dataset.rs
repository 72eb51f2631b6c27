//! Labelled images: UTKFace file names, CSV manifests, and the deterministic split.
//!
//! Both sides read data through here: training, and the edge's `eval` on a held-out folder.
use std::{
    fmt,
    path::{Path, PathBuf},
};

use image::DynamicImage;

use crate::{heads::HeadKind, Error, HeadSpec, Result};

/// Labels carried by a UTKFace file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtkLabels {
    /// Age in years, 1..=116.
    pub age: u8,
    /// 0 male, 1 female.
    pub gender: u8,
    /// 0 White, 1 Black, 2 Asian, 3 Indian, 4 Others.
    pub ethnicity: u8,
}

/// Why a UTKFace file name was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// The name does not end in `.jpg.chip.jpg`.
    Suffix,
    /// The stem does not have exactly four `_`-separated fields.
    FieldCount(usize),
    /// A field is empty or not all ASCII digits.
    NotANumber(&'static str),
    /// Age outside 1..=116.
    AgeRange(u32),
    /// Gender not 0 or 1.
    Gender(u32),
    /// Ethnicity not 0..=4.
    Ethnicity(u32),
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Suffix => write!(f, "name does not end in `.jpg.chip.jpg`"),
            Self::FieldCount(n) => {
                write!(f, "expected age_gender_race_date, found {n} field(s)")
            }
            Self::NotANumber(field) => write!(f, "{field} field is not a number"),
            Self::AgeRange(a) => write!(f, "age {a} outside 1..=116"),
            Self::Gender(g) => write!(f, "gender {g} is not 0 or 1"),
            Self::Ethnicity(e) => write!(f, "race {e} is not 0..=4"),
        }
    }
}

impl std::error::Error for NameError {}

fn number(field: &str, what: &'static str) -> std::result::Result<u32, NameError> {
    if field.is_empty() || field.len() > 9 || !field.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NameError::NotANumber(what));
    }
    field.parse().map_err(|_| NameError::NotANumber(what))
}

/// Parses `age_gender_race_date.jpg.chip.jpg`. Never guesses: a missing field, a stray
/// character or an out-of-range value is an error.
// Hand-written rather than a regex: four digit fields need no regex engine, and the
// error says which field is wrong.
pub fn parse_utkface_name(name: &str) -> std::result::Result<UtkLabels, NameError> {
    let stem = name
        .strip_suffix(".jpg.chip.jpg")
        .ok_or(NameError::Suffix)?;
    let fields: Vec<&str> = stem.split('_').collect();
    if fields.len() != 4 {
        return Err(NameError::FieldCount(fields.len()));
    }
    let age = number(fields[0], "age")?;
    let gender = number(fields[1], "gender")?;
    let ethnicity = number(fields[2], "race")?;
    if fields[3].is_empty() || !fields[3].bytes().all(|b| b.is_ascii_digit()) {
        return Err(NameError::NotANumber("date"));
    }
    if !(1..=116).contains(&age) {
        return Err(NameError::AgeRange(age));
    }
    if gender > 1 {
        return Err(NameError::Gender(gender));
    }
    if ethnicity > 4 {
        return Err(NameError::Ethnicity(ethnicity));
    }
    Ok(UtkLabels {
        age: age as u8,
        gender: gender as u8,
        ethnicity: ethnicity as u8,
    })
}

/// The target of a head a sample has no label for: it trains the body and the heads it is
/// labelled for, and counts in no metric of this head.
pub const UNLABELLED: f32 = f32::NAN;

/// Whether a target is a label (not [`UNLABELLED`]).
pub fn is_labelled(target: f32) -> bool {
    !target.is_nan()
}

/// One labelled image.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Where the image is.
    pub path: PathBuf,
    /// One target per contract head, in head order: the value for a regression head,
    /// the class index for a class head, [`UNLABELLED`] where the data has no label.
    pub targets: Vec<f32>,
}

impl Sample {
    /// The file name, used as the split key.
    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// An entry that was skipped, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// The file or manifest row.
    pub path: PathBuf,
    /// Why it was skipped.
    pub reason: String,
}

/// The result of reading a data source: usable samples and what was skipped.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    /// Usable samples, sorted by path.
    pub samples: Vec<Sample>,
    /// Skipped entries.
    pub rejected: Vec<Rejected>,
    /// The source, for messages.
    pub source: String,
    /// Per head: why the source cannot label it at all (no such column), if so.
    pub unlabellable: Vec<Option<String>>,
}

/// How many samples carry a label for each of `heads` heads.
pub fn label_counts(samples: &[Sample], heads: usize) -> Vec<usize> {
    let mut n = vec![0; heads];
    for s in samples {
        for (c, t) in n.iter_mut().zip(&s.targets) {
            *c += usize::from(is_labelled(*t));
        }
    }
    n
}

impl Scan {
    /// One warning line per skipped entry, preceded by a count.
    pub fn rejection_report(&self) -> Option<String> {
        self.rejection_report_limited(usize::MAX)
    }

    fn rejection_report_limited(&self, limit: usize) -> Option<String> {
        if self.rejected.is_empty() {
            return None;
        }
        let mut s = format!(
            "skipped {} entr{}:",
            self.rejected.len(),
            plural_y(self.rejected.len())
        );
        for r in self.rejected.iter().take(limit) {
            s.push_str(&format!("\n  {}: {}", r.path.display(), r.reason));
        }
        if self.rejected.len() > limit {
            s.push_str(&format!("\n  ... and {} more", self.rejected.len() - limit));
        }
        Some(s)
    }

    fn empty_error(&self, path: &Path) -> Error {
        let details = self
            .rejection_report_limited(10)
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        Error::NoSamples {
            path: path.to_path_buf(),
            rejected: self.rejected.len(),
            details,
        }
    }

    /// Fails, naming the head and why, when one of `which` has no labelled sample among
    /// `samples` (this scan's, or a split of them): a head with nothing to learn from.
    pub fn require_labels(
        &self,
        heads: &[HeadSpec],
        samples: &[Sample],
        which: impl Fn(usize) -> bool,
        split: &str,
    ) -> Result<()> {
        let counts = label_counts(samples, heads.len());
        for (i, h) in heads.iter().enumerate() {
            if !which(i) || counts[i] > 0 {
                continue;
            }
            let reason = match self.unlabellable.get(i).cloned().flatten() {
                Some(r) => r,
                None => format!(
                    "every `{}` cell of the {split} is empty or was rejected ({} rows rejected)",
                    h.column(),
                    self.rejected.len()
                ),
            };
            return Err(Error::NoLabels {
                head: h.name.clone(),
                data: self.source.clone(),
                reason,
            });
        }
        Ok(())
    }
}

fn plural_y(n: usize) -> &'static str {
    if n == 1 {
        "y"
    } else {
        "ies"
    }
}

/// The UTKFace name field a head reads, if any.
#[derive(Clone, Copy)]
enum UtkField {
    Age,
    Gender,
    Ethnicity,
    AgeBand,
}

/// What UTKFace file names label: each head reads the field its column names (`age`,
/// `gender`, `ethnicity`), an age-band head the band of the age.
fn utk_field(h: &HeadSpec) -> Option<UtkField> {
    if h.labeling.from_ages {
        return Some(UtkField::AgeBand);
    }
    match h.column() {
        "age" if h.num_classes().is_none() => Some(UtkField::Age),
        "gender" => Some(UtkField::Gender),
        "ethnicity" => Some(UtkField::Ethnicity),
        // Age-band heads of contracts written before heads files, named anything.
        _ if h.is_age_bands() => Some(UtkField::AgeBand),
        _ => None,
    }
}

fn utk_target(h: &HeadSpec, field: Option<UtkField>, l: UtkLabels) -> f32 {
    match field {
        Some(UtkField::Age) => l.age as f32,
        Some(UtkField::Gender) => l.gender as f32,
        Some(UtkField::Ethnicity) => l.ethnicity as f32,
        Some(UtkField::AgeBand) => h
            .age_band_class(l.age as f32)
            .map_or(UNLABELLED, |c| c as f32),
        None => UNLABELLED,
    }
}

/// Reads a UTKFace-named folder. Malformed names are rejected (never guessed), the rest
/// become samples labelled for each head the names can label (see [`utk_target`]); the
/// others are [`UNLABELLED`].
pub fn scan_utkface_dir(dir: &Path, heads: &[HeadSpec]) -> Result<Scan> {
    let io = |source| Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_type()
                .map(|t| t.is_file() || t.is_symlink())
                .unwrap_or(false)
        })
        .map(|e| e.path())
        .collect();
    entries.sort();
    let fields: Vec<Option<UtkField>> = heads.iter().map(utk_field).collect();
    let mut scan = Scan {
        source: dir.display().to_string(),
        unlabellable: heads
            .iter()
            .zip(&fields)
            .map(|(h, f)| {
                f.is_none().then(|| {
                    format!(
                        "UTKFace file names carry no `{}` label (they label age, gender and \
                         ethnicity); give its labels in a CSV manifest (--manifest)",
                        h.column()
                    )
                })
            })
            .collect(),
        ..Scan::default()
    };
    for path in entries {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with('.') || name.eq_ignore_ascii_case("README.md") {
            continue;
        }
        let labels = parse_utkface_name(&name).map_err(|e| e.to_string());
        let targets = labels.and_then(|l| {
            heads
                .iter()
                .zip(&fields)
                .map(|(h, f)| match utk_target(h, *f, l) {
                    v if is_labelled(v) => h.check_target(v).map(|_| v),
                    v => Ok(v),
                })
                .collect::<std::result::Result<Vec<f32>, String>>()
        });
        match targets {
            Ok(targets) => scan.samples.push(Sample { targets, path }),
            Err(reason) => scan.rejected.push(Rejected { path, reason }),
        }
    }
    if scan.samples.is_empty() {
        return Err(scan.empty_error(dir));
    }
    Ok(scan)
}

fn parse_target(head: &HeadSpec, raw: &str) -> std::result::Result<f32, String> {
    let raw = raw.trim();
    let value = match &head.kind {
        HeadKind::Regression { .. } | HeadKind::Distribution { .. } => raw
            .parse::<f32>()
            .map_err(|_| format!("`{raw}` is not a number"))?,
        _ if head.labeling.from_ages => {
            let age = raw
                .parse::<f32>()
                .ok()
                .filter(|a| a.is_finite())
                .ok_or_else(|| format!("`{raw}` is not an age in years"))?;
            head.age_band_class(age)
                .map(|c| c as f32)
                .ok_or_else(|| format!("age {age} is in none of the bands {:?}", head.labels()))?
        }
        _ => match raw.parse::<u32>() {
            Ok(i) => i as f32,
            Err(_) => head
                .labels()
                .iter()
                .position(|l| l.eq_ignore_ascii_case(raw))
                .map(|i| i as f32)
                .ok_or_else(|| {
                    format!(
                        "`{raw}` is neither a class index nor one of {:?}",
                        head.labels()
                    )
                })?,
        },
    };
    head.check_target(value)
        .map_err(|e| e.replacen(&format!("{} ", head.name), "", 1))?;
    Ok(value)
}

/// Where labelled images come from: a UTKFace-named folder, or CSV manifests (each
/// labelling what it has) whose relative paths start in `images` when given, else in the
/// manifest's own folder.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DataSource {
    /// Image folder: read for UTKFace names when there is no manifest.
    pub images: Option<PathBuf>,
    /// CSV manifests, `path,<column>,…`.
    pub manifests: Vec<PathBuf>,
}

impl DataSource {
    /// A folder of UTKFace-named images.
    pub fn folder(dir: &Path) -> Self {
        Self {
            images: Some(dir.into()),
            manifests: Vec::new(),
        }
    }

    /// A manifest when `path` is a file, else a folder.
    pub fn from_path(path: &Path) -> Self {
        if path.is_file() {
            Self {
                images: None,
                manifests: vec![path.into()],
            }
        } else {
            Self::folder(path)
        }
    }

    /// The source for messages: `UTKFace`, `a.csv + b.csv (images in DIR)`.
    pub fn describe(&self) -> String {
        let m: Vec<String> = self
            .manifests
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        match (&self.images, m.is_empty()) {
            (Some(d), true) => d.display().to_string(),
            (Some(d), false) => format!("{} (images in {})", m.join(" + "), d.display()),
            (None, _) => m.join(" + "),
        }
    }

    /// Reads every sample. Several manifests may label the same image (by its resolved
    /// path): their labels are merged, and a head labelled twice with different values
    /// rejects the later row.
    pub fn scan(&self, heads: &[HeadSpec]) -> Result<Scan> {
        match (&self.images, self.manifests.is_empty()) {
            (Some(dir), true) => scan_utkface_dir(dir, heads),
            (None, true) => Err(Error::NoSamples {
                path: PathBuf::new(),
                rejected: 0,
                details: ": no image folder and no manifest given".into(),
            }),
            _ => read_manifests(self.images.as_deref(), &self.manifests, heads),
        }
    }
}

/// Reads `source` as a folder of UTKFace names, or as a CSV manifest when it is a file.
pub fn scan_source(source: &Path, heads: &[HeadSpec]) -> Result<Scan> {
    DataSource::from_path(source).scan(heads)
}

/// Reads one CSV manifest (see [`read_manifests`]).
pub fn read_manifest(manifest: &Path, heads: &[HeadSpec]) -> Result<Scan> {
    read_manifests(None, &[manifest.to_path_buf()], heads)
}

/// Where a merged sample's labels came from: per head, `file:line`.
type Origins = Vec<Option<String>>;

/// Reads CSV manifests with a header `path,<column>,…` (the columns of the heads, e.g.
/// `path,age,gender,ethnicity`; a manifest may lack some). An empty cell leaves the head
/// unlabelled for that image. Class columns take an index or a label (case-insensitive);
/// an age-band head takes an age in years. A bad cell rejects its row with the file, line
/// and column; a row that labels no head is rejected too.
pub fn read_manifests(
    images: Option<&Path>,
    manifests: &[PathBuf],
    heads: &[HeadSpec],
) -> Result<Scan> {
    let source = DataSource {
        images: images.map(Path::to_path_buf),
        manifests: manifests.to_vec(),
    }
    .describe();
    let mut scan = Scan {
        source: source.clone(),
        ..Scan::default()
    };
    let mut seen_column = vec![false; heads.len()];
    let mut headers: Vec<String> = Vec::new();
    let mut by_path: std::collections::HashMap<PathBuf, (usize, Origins)> = Default::default();
    for manifest in manifests {
        let base = images
            .map(Path::to_path_buf)
            .unwrap_or_else(|| manifest.parent().unwrap_or(Path::new(".")).to_path_buf());
        let bad_file = |line, reason: String| Error::Manifest {
            path: manifest.into(),
            line,
            reason,
        };
        let mut rdr = csv::ReaderBuilder::new()
            .flexible(true)
            .trim(csv::Trim::All)
            .from_path(manifest)
            .map_err(|e| bad_file(1, e.to_string()))?;
        let header = rdr
            .headers()
            .map_err(|e| bad_file(1, e.to_string()))?
            .clone();
        headers.push(format!(
            "{}: {}",
            manifest.display(),
            header.iter().collect::<Vec<_>>().join(",")
        ));
        let col = |name: &str| header.iter().position(|h| h.eq_ignore_ascii_case(name));
        let path_col = col("path").ok_or_else(|| {
            bad_file(
                1,
                format!(
                    "no `path` column (header: {})",
                    header.iter().collect::<Vec<_>>().join(",")
                ),
            )
        })?;
        let head_cols: Vec<Option<usize>> = heads.iter().map(|h| col(h.column())).collect();
        for (seen, c) in seen_column.iter_mut().zip(&head_cols) {
            *seen |= c.is_some();
        }
        for (i, rec) in rdr.records().enumerate() {
            let line = i + 2;
            let at = format!("{}:{line}", manifest.display());
            let rec = match rec {
                Ok(r) => r,
                Err(e) => {
                    scan.rejected.push(Rejected {
                        path: at.into(),
                        reason: e.to_string(),
                    });
                    continue;
                }
            };
            let Some(p) = rec.get(path_col).filter(|p| !p.is_empty()) else {
                scan.rejected.push(Rejected {
                    path: at.into(),
                    reason: "empty path".into(),
                });
                continue;
            };
            let path = base.join(p);
            let row = heads
                .iter()
                .zip(&head_cols)
                .map(|(h, c)| match c.and_then(|c| rec.get(c)).map(str::trim) {
                    None | Some("") => Ok(UNLABELLED),
                    Some(cell) => parse_target(h, cell).map_err(|r| {
                        format!(
                            "{}, line {line}, column `{}` (head `{}`): {r}",
                            manifest.display(),
                            h.column(),
                            h.name
                        )
                    }),
                })
                .collect::<std::result::Result<Vec<f32>, String>>();
            let targets = match row {
                Ok(t) if t.iter().any(|v| is_labelled(*v)) => t,
                Ok(_) => {
                    scan.rejected.push(Rejected {
                        path,
                        reason: format!(
                            "{}, line {line}: labels none of the heads",
                            manifest.display()
                        ),
                    });
                    continue;
                }
                Err(reason) => {
                    scan.rejected.push(Rejected { path, reason });
                    continue;
                }
            };
            match by_path.get_mut(&path) {
                None => {
                    let origins = targets
                        .iter()
                        .map(|t| is_labelled(*t).then(|| at.clone()))
                        .collect();
                    by_path.insert(path.clone(), (scan.samples.len(), origins));
                    scan.samples.push(Sample { path, targets });
                }
                Some((idx, origins)) => {
                    let merged = &mut scan.samples[*idx].targets;
                    let conflict = heads.iter().enumerate().find(|&(k, _)| {
                        is_labelled(targets[k]) && is_labelled(merged[k]) && targets[k] != merged[k]
                    });
                    if let Some((k, h)) = conflict {
                        scan.rejected.push(Rejected {
                            path,
                            reason: format!(
                                "{}, line {line}: head `{}` labelled {} here but {} at {}",
                                manifest.display(),
                                h.name,
                                targets[k],
                                merged[k],
                                origins[k].as_deref().unwrap_or("?")
                            ),
                        });
                        continue;
                    }
                    for k in 0..heads.len() {
                        if is_labelled(targets[k]) && !is_labelled(merged[k]) {
                            merged[k] = targets[k];
                            origins[k] = Some(at.clone());
                        }
                    }
                }
            }
        }
    }
    scan.unlabellable = heads
        .iter()
        .zip(&seen_column)
        .map(|(h, seen)| {
            (!seen).then(|| {
                format!(
                    "no manifest has a column `{}` (headers: {})",
                    h.column(),
                    headers.join("; ")
                )
            })
        })
        .collect();
    scan.samples.sort_by(|a, b| a.path.cmp(&b.path));
    if scan.samples.is_empty() {
        return Err(scan.empty_error(Path::new(&source)));
    }
    Ok(scan)
}

/// FNV-1a, 64 bit. Written here because the split must never change between Rust releases
/// or crate versions, which std's hasher does not promise.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Whether a file of this name belongs to the validation split. Depends on the name alone,
/// so adding files never moves others between splits.
pub fn is_validation(file_name: &str, val_fraction: f64) -> bool {
    let bucket = stable_hash(file_name.as_bytes()) % 1_000_000;
    (bucket as f64) < val_fraction.clamp(0.0, 1.0) * 1_000_000.0
}

/// Splits samples into (train, validation) by [`is_validation`] of each file name.
pub fn split(samples: &[Sample], val_fraction: f64) -> (Vec<Sample>, Vec<Sample>) {
    samples
        .iter()
        .cloned()
        .partition(|s| !is_validation(&s.file_name(), val_fraction))
}

/// Opens and decodes an image, guessing the format from its content (not its extension).
pub fn load_image(path: &Path) -> Result<DynamicImage> {
    let reader = image::ImageReader::open(path)
        .map_err(|source| Error::Io {
            path: path.into(),
            source,
        })?
        .with_guessed_format()
        .map_err(|source| Error::Io {
            path: path.into(),
            source,
        })?;
    reader.decode().map_err(|e| Error::Image {
        path: path.into(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heads::utkface_heads;
    use proptest::prelude::*;

    #[test]
    fn parses_the_documented_example() {
        let l = parse_utkface_name("30_0_3_20170117145159065.jpg.chip.jpg").unwrap();
        assert_eq!(
            l,
            UtkLabels {
                age: 30,
                gender: 0,
                ethnicity: 3
            }
        );
    }

    #[test]
    fn rejects_the_real_sets_defects() {
        for (name, want) in [
            (
                "39_1_20170116174525125.jpg.chip.jpg",
                NameError::FieldCount(3),
            ),
            (
                "24_0_1_20170116220224657 .jpg.chip.jpg",
                NameError::NotANumber("date"),
            ),
            ("55_0_0_20170116232725357jpg.chip.jpg", NameError::Suffix),
            (
                "0_0_0_20170116232725357.jpg.chip.jpg",
                NameError::AgeRange(0),
            ),
            (
                "117_0_0_20170116232725357.jpg.chip.jpg",
                NameError::AgeRange(117),
            ),
            (
                "30_2_0_20170116232725357.jpg.chip.jpg",
                NameError::Gender(2),
            ),
            (
                "30_0_5_20170116232725357.jpg.chip.jpg",
                NameError::Ethnicity(5),
            ),
            (
                "30_0_-1_20170116232725357.jpg.chip.jpg",
                NameError::NotANumber("race"),
            ),
            (
                "_0_1_20170116232725357.jpg.chip.jpg",
                NameError::NotANumber("age"),
            ),
        ] {
            assert_eq!(parse_utkface_name(name), Err(want), "{name}");
        }
    }

    proptest! {
        #[test]
        fn valid_names_parse_to_their_fields(age in 1u32..=116, g in 0u32..2, e in 0u32..5, d in 0u64..99_999_999_999_999_999) {
            let name = format!("{age}_{g}_{e}_{d}.jpg.chip.jpg");
            let l = parse_utkface_name(&name).unwrap();
            prop_assert_eq!((l.age as u32, l.gender as u32, l.ethnicity as u32), (age, g, e));
        }

        #[test]
        fn arbitrary_strings_never_panic(s in ".{0,60}") {
            let _ = parse_utkface_name(&s);
        }

        #[test]
        fn out_of_range_fields_are_rejected(age in 117u32..100_000, g in 2u32..10, e in 5u32..10) {
            let names = [
                format!("{age}_0_0_1.jpg.chip.jpg"),
                format!("30_{g}_0_1.jpg.chip.jpg"),
                format!("30_0_{e}_1.jpg.chip.jpg"),
            ];
            for n in names {
                prop_assert!(parse_utkface_name(&n).is_err(), "accepted {}", n);
            }
        }

        #[test]
        fn a_dropped_field_is_never_guessed(age in 1u32..=116, g in 0u32..2, e in 0u32..5, drop in 0usize..4) {
            let mut fields = vec![age.to_string(), g.to_string(), e.to_string(), "20170117145159065".into()];
            fields.remove(drop);
            let name = format!("{}.jpg.chip.jpg", fields.join("_"));
            prop_assert!(parse_utkface_name(&name).is_err());
        }

        #[test]
        fn the_split_depends_on_the_name_only(names in proptest::collection::vec("[a-z0-9_]{1,20}", 1..50), extra in "[a-z0-9_]{1,20}") {
            let before: Vec<bool> = names.iter().map(|n| is_validation(n, 0.1)).collect();
            let mut more = names.clone();
            more.push(extra);
            let after: Vec<bool> = more.iter().take(names.len()).map(|n| is_validation(n, 0.1)).collect();
            prop_assert_eq!(before, after);
        }
    }

    #[test]
    fn split_fraction_is_respected_and_stable() {
        let heads = utkface_heads();
        let samples: Vec<Sample> = (0..20_000)
            .map(|i| Sample {
                path: format!("x/{}_0_0_{i}.jpg.chip.jpg", i % 90 + 1).into(),
                targets: vec![0.0; heads.len()],
            })
            .collect();
        let (tr, va) = split(&samples, 0.1);
        assert_eq!(tr.len() + va.len(), 20_000);
        let frac = va.len() as f64 / 20_000.0;
        assert!((0.09..0.11).contains(&frac), "{frac}");
        let (tr2, va2) = split(&samples, 0.1);
        assert_eq!((tr, va), (tr2, va2));
        // Pinned: a change of hash would silently reshuffle every user's split.
        // Values from the FNV-1a reference (Python: h ^= b; h *= 0x100000001b3 mod 2^64).
        assert_eq!(stable_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(
            stable_hash(b"30_0_3_20170117145159065.jpg.chip.jpg"),
            0xc114_6cc2_9e5e_1c2d
        );
    }

    #[test]
    fn manifest_rows_are_read_and_bad_rows_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("m.csv");
        std::fs::write(
            &m,
            "path,age,gender,ethnicity\na.jpg,30,1,Asian\nb.jpg,abc,0,0\nc.jpg,40,female,4\nd.jpg,40,0,Martian\n,1,1,1\n",
        )
        .unwrap();
        let s = read_manifest(&m, &utkface_heads()).unwrap();
        assert_eq!(s.samples.len(), 2);
        assert_eq!(s.samples[0].targets, vec![30.0, 1.0, 2.0]);
        assert_eq!(s.samples[1].targets, vec![40.0, 1.0, 4.0]);
        assert_eq!(s.samples[0].path, dir.path().join("a.jpg"));
        assert_eq!(s.rejected.len(), 3);
        assert!(s.rejection_report().unwrap().contains("Martian"));
    }

    #[test]
    fn manifest_without_a_head_column_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("m.csv");
        std::fs::write(&m, "path,age,gender\na.jpg,30,1\n").unwrap();
        let heads = utkface_heads();
        let scan = read_manifest(&m, &heads).unwrap();
        assert!(is_labelled(scan.samples[0].targets[0]));
        assert!(!is_labelled(scan.samples[0].targets[2]));
        let e = scan
            .require_labels(&heads, &scan.samples, |_| true, "data")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ethnicity")
                && e.contains("m.csv")
                && e.contains("no manifest has a column"),
            "{e}"
        );
        // Only the heads asked for are required.
        scan.require_labels(&heads, &scan.samples, |i| i < 2, "data")
            .unwrap();
    }

    fn custom_heads() -> Vec<HeadSpec> {
        crate::heads_file::parse_heads(
            "[[head]]\nname = \"age_group\"\nkind = \"age_bands\"\nedges = [0, 13, 20, 60]\ncolumn = \"age\"\n\
             [[head]]\nname = \"is_adult\"\nkind = \"binary\"\nlabels = [\"minor\", \"adult\"]\n\
             [[head]]\nname = \"smile\"\nkind = \"regression\"\nmin = 0\nmax = 1\n",
            Path::new("heads.toml"),
        )
        .unwrap()
    }

    #[test]
    fn partial_labels_from_several_manifests_are_merged() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
        std::fs::write(
            &a,
            "path,age,is_adult\nx.jpg,30,\ny.jpg,,minor\nz.jpg,,\nw.jpg,-5,adult\n",
        )
        .unwrap();
        std::fs::write(
            &b,
            "path,is_adult,smile\nx.jpg,adult,0.5\ny.jpg,adult,\nv.jpg,,1.5\n",
        )
        .unwrap();
        let heads = custom_heads();
        let root = dir.path().join("images");
        let scan = read_manifests(Some(&root), &[a.clone(), b.clone()], &heads).unwrap();
        let by_name = |n: &str| {
            scan.samples
                .iter()
                .find(|s| s.file_name() == n)
                .map(|s| s.targets.clone())
        };
        assert_eq!(by_name("x.jpg").unwrap(), vec![2.0, 1.0, 0.5]);
        let y = by_name("y.jpg").unwrap();
        assert!(!is_labelled(y[0]) && y[1] == 0.0 && !is_labelled(y[2]));
        assert_eq!(scan.samples[0].path.parent().unwrap(), root);
        assert_eq!(scan.samples.len(), 2, "{:?}", scan.samples);
        let reasons: Vec<String> = scan
            .rejected
            .iter()
            .map(|r| format!("{}: {}", r.path.display(), r.reason))
            .collect();
        let all = reasons.join("\n");
        assert_eq!(reasons.len(), 4, "{all}");
        assert!(
            all.contains("z.jpg: ") && all.contains("a.csv, line 4: labels none"),
            "{all}"
        );
        assert!(
            all.contains("line 5, column `age` (head `age_group`): age -5 is in none"),
            "{all}"
        );
        assert!(
            all.contains("line 3: head `is_adult` labelled 1 here but 0 at"),
            "{all}"
        );
        assert!(all.contains("a.csv:3"), "{all}");
        assert!(
            all.contains("line 4, column `smile` (head `smile`): 1.5 outside 0..=1"),
            "{all}"
        );
        assert_eq!(label_counts(&scan.samples, 3), vec![1, 2, 1]);
        scan.require_labels(&heads, &scan.samples, |_| true, "data")
            .unwrap();
    }

    #[test]
    fn a_head_with_no_labelled_sample_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.csv");
        std::fs::write(
            &a,
            "path,age,is_adult,smile\nx.jpg,30,,\ny.jpg,40,,0.2\nz.jpg,40,maybe,0.2\n",
        )
        .unwrap();
        let heads = custom_heads();
        let scan = read_manifest(&a, &heads).unwrap();
        let e = scan
            .require_labels(&heads, &scan.samples, |_| true, "training split")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`is_adult`")
                && e.contains("a.csv")
                && e.contains("every `is_adult` cell of the training split"),
            "{e}"
        );
        assert!(scan
            .rejection_report()
            .unwrap()
            .contains("`maybe` is neither"));
    }

    #[test]
    fn utkface_names_label_what_they_can() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("30_0_3_1.jpg.chip.jpg"), b"x").unwrap();
        let heads = custom_heads();
        let scan = scan_utkface_dir(dir.path(), &heads).unwrap();
        let t = &scan.samples[0].targets;
        assert_eq!(t[0], 2.0);
        assert!(!is_labelled(t[1]) && !is_labelled(t[2]));
        let e = scan
            .require_labels(&heads, &scan.samples, |_| true, "data")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("UTKFace file names carry no `is_adult` label"),
            "{e}"
        );
    }

    proptest! {
        /// Any grid of labels and holes written as a manifest reads back as written.
        #[test]
        fn manifests_read_back_what_was_written(rows in proptest::collection::vec(
            (proptest::option::of(1u32..=116), proptest::option::of(0usize..2), proptest::option::of(0usize..5)), 1..40)) {
            let dir = tempfile::tempdir().unwrap();
            let m = dir.path().join("m.csv");
            let heads = utkface_heads();
            let mut text = String::from("path,ethnicity,age,gender\n");
            for (i, (a, g, e)) in rows.iter().enumerate() {
                let cell = |v: Option<String>| v.unwrap_or_default();
                text.push_str(&format!("{i}.jpg,{},{},{}\n",
                    cell(e.map(|e| heads[2].labels()[e].to_lowercase())),
                    cell(a.map(|a| a.to_string())),
                    cell(g.map(|g| g.to_string()))));
            }
            std::fs::write(&m, &text).unwrap();
            let want: Vec<(usize, [Option<f32>; 3])> = rows.iter().enumerate()
                .filter(|(_, (a, g, e))| a.is_some() || g.is_some() || e.is_some())
                .map(|(i, (a, g, e))| (i, [a.map(|a| a as f32), g.map(|g| g as f32), e.map(|e| e as f32)]))
                .collect();
            match read_manifest(&m, &heads) {
                Err(Error::NoSamples { .. }) => prop_assert!(want.is_empty()),
                Err(e) => prop_assert!(false, "{e}"),
                Ok(scan) => {
                    prop_assert_eq!(scan.samples.len(), want.len());
                    for (i, t) in want {
                        let s = scan.samples.iter().find(|s| s.file_name() == format!("{i}.jpg")).unwrap();
                        let got: Vec<Option<f32>> = s.targets.iter().map(|v| is_labelled(*v).then_some(*v)).collect();
                        prop_assert_eq!(got, t.to_vec());
                    }
                }
            }
        }

        #[test]
        fn arbitrary_manifests_never_panic(text in "(path|age|gender|,|\n|[a-z0-9 ]{0,6}|\"){0,40}") {
            let dir = tempfile::tempdir().unwrap();
            let m = dir.path().join("m.csv");
            std::fs::write(&m, &text).unwrap();
            let _ = read_manifest(&m, &utkface_heads());
        }
    }

    #[test]
    fn empty_and_missing_folders_are_errors_naming_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("not_a_face.txt"), "x").unwrap();
        let e = scan_utkface_dir(dir.path(), &utkface_heads()).unwrap_err();
        assert!(matches!(e, Error::NoSamples { rejected: 1, .. }), "{e}");
        let missing = dir.path().join("nope");
        let e = scan_utkface_dir(&missing, &utkface_heads())
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope"), "{e}");
    }

    #[test]
    fn undecodable_images_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("30_0_0_1.jpg.chip.jpg");
        std::fs::write(&p, b"\xff\xd8\xff\xe0 truncated").unwrap();
        let e = load_image(&p).unwrap_err().to_string();
        assert!(e.contains("30_0_0_1.jpg.chip.jpg"), "{e}");
    }
}
