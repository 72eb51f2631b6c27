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

/// One labelled image.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Where the image is.
    pub path: PathBuf,
    /// One target per contract head, in head order: the value for a regression head,
    /// the class index for a class head.
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
}

fn plural_y(n: usize) -> &'static str {
    if n == 1 {
        "y"
    } else {
        "ies"
    }
}

fn utk_targets(heads: &[HeadSpec], l: UtkLabels) -> Result<Vec<f32>> {
    heads
        .iter()
        .map(|h| match h.name.as_str() {
            "age" => Ok(l.age as f32),
            "gender" => Ok(l.gender as f32),
            "ethnicity" => Ok(l.ethnicity as f32),
            other => h
                .age_band_class(l.age as f32)
                .map(|c| c as f32)
                .ok_or_else(|| {
                    Error::InvalidContract(format!(
                        "UTKFace file names carry no label for head `{other}`; use a CSV manifest"
                    ))
                }),
        })
        .collect()
}

/// Reads a UTKFace-named folder. Malformed names are rejected (never guessed), the rest
/// become samples labelled for `heads` (which must be named `age`, `gender`, `ethnicity`).
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
    let mut scan = Scan::default();
    for path in entries {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with('.') || name.eq_ignore_ascii_case("README.md") {
            continue;
        }
        match parse_utkface_name(&name) {
            Ok(l) => scan.samples.push(Sample {
                targets: utk_targets(heads, l)?,
                path,
            }),
            Err(e) => scan.rejected.push(Rejected {
                path,
                reason: e.to_string(),
            }),
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
        HeadKind::Regression { .. } => raw
            .parse::<f32>()
            .map_err(|_| format!("{} `{raw}` is not a number", head.name))?,
        _ => match raw.parse::<u32>() {
            Ok(i) => i as f32,
            Err(_) => head
                .labels()
                .iter()
                .position(|l| l.eq_ignore_ascii_case(raw))
                .map(|i| i as f32)
                .ok_or_else(|| {
                    format!(
                        "{} `{raw}` is neither a class index nor one of {:?}",
                        head.name,
                        head.labels()
                    )
                })?,
        },
    };
    head.check_target(value)?;
    Ok(value)
}

/// Reads a CSV manifest with a header `path,<head>,<head>,…` (e.g. `path,age,gender,ethnicity`).
/// Relative paths are relative to the manifest's folder. Class columns take an index or a
/// label (case-insensitive). A bad row is rejected with its line number; a missing column
/// is an error.
pub fn read_manifest(manifest: &Path, heads: &[HeadSpec]) -> Result<Scan> {
    let base = manifest.parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_path(manifest)
        .map_err(|e| Error::Manifest {
            path: manifest.into(),
            line: 1,
            reason: e.to_string(),
        })?;
    let header = rdr
        .headers()
        .map_err(|e| Error::Manifest {
            path: manifest.into(),
            line: 1,
            reason: e.to_string(),
        })?
        .clone();
    let col = |name: &str| header.iter().position(|h| h.eq_ignore_ascii_case(name));
    let path_col = col("path").ok_or_else(|| Error::Manifest {
        path: manifest.into(),
        line: 1,
        reason: "no `path` column".into(),
    })?;
    let head_cols = heads
        .iter()
        .map(|h| {
            col(&h.name).ok_or_else(|| Error::Manifest {
                path: manifest.into(),
                line: 1,
                reason: format!(
                    "no `{}` column (header: {:?})",
                    h.name,
                    header.iter().collect::<Vec<_>>()
                ),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut scan = Scan::default();
    for (i, rec) in rdr.records().enumerate() {
        let line = i + 2;
        let row_id = PathBuf::from(format!("{}:{line}", manifest.display()));
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                scan.rejected.push(Rejected {
                    path: row_id,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        let Some(p) = rec.get(path_col).filter(|p| !p.is_empty()) else {
            scan.rejected.push(Rejected {
                path: row_id,
                reason: "empty path".into(),
            });
            continue;
        };
        let path = base.join(p);
        let targets: std::result::Result<Vec<f32>, String> = heads
            .iter()
            .zip(&head_cols)
            .map(|(h, &c)| parse_target(h, rec.get(c).unwrap_or("")))
            .collect();
        match targets {
            Ok(targets) => scan.samples.push(Sample { path, targets }),
            Err(reason) => scan.rejected.push(Rejected {
                path,
                reason: format!("line {line}: {reason}"),
            }),
        }
    }
    if scan.samples.is_empty() {
        return Err(scan.empty_error(manifest));
    }
    Ok(scan)
}

/// Reads a folder of UTKFace names, or a CSV manifest when `source` is a file.
pub fn scan_source(source: &Path, heads: &[HeadSpec]) -> Result<Scan> {
    if source.is_file() {
        read_manifest(source, heads)
    } else {
        scan_utkface_dir(source, heads)
    }
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
        let e = read_manifest(&m, &utkface_heads()).unwrap_err().to_string();
        assert!(e.contains("ethnicity") && e.contains("m.csv"), "{e}");
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
