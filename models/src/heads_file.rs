//! Heads files: the heads a user declares for a HydraNet, in TOML.
//!
//! ```toml
//! [[head]]
//! name = "age_group"      # the ONNX output, and the manifest column unless `column` is set
//! kind = "age_bands"      # regression | binary | multiclass | age_bands
//! edges = [0, 3, 10, 20]  # bands 0-2, 3-9, 10-19, 20+, labelled from an age column
//! column = "age"
//! weight = 0.5            # loss weight (default 1)
//! ```
//!
//! Every mistake is reported with the file, line and column of the entry at fault. Fields
//! this version does not know are refused rather than ignored: a misspelt `lables` would
//! otherwise train a head with the wrong classes.
use std::{
    ops::Range,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use toml::Spanned;

use crate::{contract::RESERVED_NAMES, heads::Labeling, Error, HeadSpec, Result};

/// The kinds a heads file may declare.
pub const KINDS: [&str; 5] = [
    "regression",
    "distribution",
    "binary",
    "multiclass",
    "age_bands",
];

/// A parsed heads file.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadsFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its text, as written (it is copied into the run folder and the contract).
    pub text: String,
    /// The heads, in file order (which is the ONNX output order).
    pub heads: Vec<HeadSpec>,
}

impl HeadsFile {
    /// Reads and checks a heads file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.into(),
            source,
        })?;
        let heads = parse_heads(&text, path)?;
        Ok(Self {
            path: path.into(),
            text,
            heads,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    head: Vec<Spanned<RawHead>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHead {
    name: Spanned<String>,
    kind: Spanned<String>,
    labels: Option<Spanned<Vec<String>>>,
    edges: Option<Spanned<Vec<i64>>>,
    unit: Option<Spanned<String>>,
    scale: Option<Spanned<f64>>,
    offset: Option<Spanned<f64>>,
    min: Option<Spanned<f64>>,
    max: Option<Spanned<f64>>,
    bins: Option<Spanned<i64>>,
    weight: Option<Spanned<f64>>,
    column: Option<Spanned<String>>,
}

/// 1-based line and column (in characters) of byte offset `at`.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

struct Ctx<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Ctx<'_> {
    fn err(&self, span: Range<usize>, reason: impl Into<String>) -> Error {
        let (line, column) = line_col(self.text, span.start);
        Error::HeadsFile {
            path: self.path.into(),
            line,
            column,
            reason: reason.into(),
        }
    }
}

/// Parses the text of a heads file; `path` names it in errors.
pub fn parse_heads(text: &str, path: &Path) -> Result<Vec<HeadSpec>> {
    let cx = Ctx { text, path };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let reason = e.message().trim().to_string();
        cx.err(e.span().unwrap_or(0..0), reason)
    })?;
    if raw.head.is_empty() {
        return Err(cx.err(
            0..0,
            "no heads: declare each one in a `[[head]]` table with `name` and `kind`",
        ));
    }
    let mut heads: Vec<(HeadSpec, usize)> = Vec::new();
    for h in &raw.head {
        let spec = head(&cx, h.get_ref())?;
        let at = h.get_ref().name.span();
        let (line, _) = line_col(text, at.start);
        // Manifest columns match case-insensitively, so names must differ in more than case.
        if let Some((first, first_line)) = heads
            .iter()
            .find(|(o, _)| o.name.eq_ignore_ascii_case(&spec.name))
        {
            return Err(cx.err(
                at,
                format!(
                    "head `{}` is declared twice (as `{}` at line {first_line})",
                    spec.name, first.name
                ),
            ));
        }
        heads.push((spec, line));
    }
    Ok(heads.into_iter().map(|(h, _)| h).collect())
}

fn head(cx: &Ctx<'_>, h: &RawHead) -> Result<HeadSpec> {
    let name = h.name.get_ref().trim().to_string();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(cx.err(
            h.name.span(),
            format!("head name `{name}` must be ASCII letters, digits or `_`"),
        ));
    }
    if let Some(r) = RESERVED_NAMES
        .iter()
        .find(|r| r.eq_ignore_ascii_case(&name))
    {
        return Err(cx.err(
            h.name.span(),
            format!("head name `{name}` collides with the ONNX graph's `{r}`"),
        ));
    }
    let kind = h.kind.get_ref().as_str();
    // Fields that only some kinds take: a stray one is a mistake worth naming.
    let allowed: &[&str] = match kind {
        "regression" => &["unit", "scale", "offset", "min", "max"],
        "distribution" => &["unit", "min", "max", "bins"],
        "binary" | "multiclass" => &["labels"],
        "age_bands" => &["edges"],
        other => {
            return Err(cx.err(
                h.kind.span(),
                format!(
                    "unknown kind `{other}` for head `{name}` (kinds: {})",
                    KINDS.join(", ")
                ),
            ))
        }
    };
    let present: [(&str, Option<Range<usize>>); 8] = [
        ("bins", h.bins.as_ref().map(|v| v.span())),
        ("labels", h.labels.as_ref().map(|v| v.span())),
        ("edges", h.edges.as_ref().map(|v| v.span())),
        ("unit", h.unit.as_ref().map(|v| v.span())),
        ("scale", h.scale.as_ref().map(|v| v.span())),
        ("offset", h.offset.as_ref().map(|v| v.span())),
        ("min", h.min.as_ref().map(|v| v.span())),
        ("max", h.max.as_ref().map(|v| v.span())),
    ];
    for (field, span) in present {
        if let (Some(span), false) = (span, allowed.contains(&field)) {
            return Err(cx.err(
                span,
                format!("`{field}` does not apply to head `{name}` of kind `{kind}`"),
            ));
        }
    }
    let mut labeling = Labeling::default();
    if let Some(w) = &h.weight {
        let v = *w.get_ref();
        if !(v.is_finite() && v >= 0.0) {
            return Err(cx.err(
                w.span(),
                format!("weight {v} of head `{name}` must be finite and not negative"),
            ));
        }
        labeling.weight = v as f32;
    }
    if let Some(c) = &h.column {
        let c = c.get_ref().trim();
        if c.is_empty() || c.eq_ignore_ascii_case("path") {
            return Err(cx.err(
                h.column.as_ref().map(|c| c.span()).unwrap_or(0..0),
                format!("column `{c}` of head `{name}`: name a label column other than `path`"),
            ));
        }
        labeling.column = Some(c.to_string());
    }
    let at = |s: Option<Range<usize>>| s.unwrap_or_else(|| h.kind.span());
    let spec = match kind {
        "distribution" => {
            let num = |f: &Option<Spanned<f64>>| f.as_ref().map(|v| *v.get_ref());
            let (Some(min), Some(max)) = (num(&h.min), num(&h.max)) else {
                return Err(cx.err(
                    h.kind.span(),
                    format!("distribution head `{name}` needs `min` and `max` (its first and last bin centres)"),
                ));
            };
            if !(min.is_finite() && max.is_finite() && min < max) {
                return Err(cx.err(
                    at(h.min.as_ref().map(|v| v.span())),
                    format!("distribution head `{name}`: need finite min < max, got {min}..{max}"),
                ));
            }
            // Default: one bin per whole unit (ages 1..116: 116 bins centred on the years).
            let bins = match &h.bins {
                Some(b) => *b.get_ref(),
                None => ((max - min).round() as i64 + 1).max(2),
            };
            if !(2..=4096).contains(&bins) {
                return Err(cx.err(
                    at(h.bins.as_ref().map(|v| v.span())),
                    format!("distribution head `{name}`: bins must be in 2..=4096, got {bins}"),
                ));
            }
            let unit = h
                .unit
                .as_ref()
                .map(|u| u.get_ref().clone())
                .unwrap_or_default();
            HeadSpec::distribution(&name, &unit, min as f32, max as f32, bins as u32)
        }
        "regression" => {
            let num = |f: &Option<Spanned<f64>>| f.as_ref().map(|v| *v.get_ref());
            let (Some(min), Some(max)) = (num(&h.min), num(&h.max)) else {
                return Err(cx.err(
                    h.kind.span(),
                    format!(
                        "regression head `{name}` needs `min` and `max` (the range of its labels)"
                    ),
                ));
            };
            if !(min.is_finite() && max.is_finite() && min < max) {
                return Err(cx.err(
                    at(h.min.as_ref().map(|v| v.span())),
                    format!("regression head `{name}`: need finite min < max, got {min}..{max}"),
                ));
            }
            // Defaults put the labels near unit scale: the midpoint at 0, the range at ±2.
            let offset = num(&h.offset).unwrap_or((min + max) / 2.0);
            let scale = num(&h.scale).unwrap_or((max - min) / 4.0);
            if !(scale.is_finite() && scale != 0.0 && offset.is_finite()) {
                return Err(cx.err(
                    at(h.scale.as_ref().map(|v| v.span())),
                    format!("regression head `{name}`: scale must be finite and not zero"),
                ));
            }
            let unit = h
                .unit
                .as_ref()
                .map(|u| u.get_ref().clone())
                .unwrap_or_default();
            HeadSpec::regression(
                &name,
                &unit,
                scale as f32,
                offset as f32,
                min as f32,
                max as f32,
            )
        }
        "binary" | "multiclass" => {
            let Some(labels) = &h.labels else {
                return Err(cx.err(
                    h.kind.span(),
                    format!("{kind} head `{name}` needs `labels`"),
                ));
            };
            let list: Vec<String> = labels
                .get_ref()
                .iter()
                .map(|l| l.trim().to_string())
                .collect();
            if kind == "binary" && list.len() != 2 {
                return Err(cx.err(
                    labels.span(),
                    format!(
                        "binary head `{name}` needs exactly two labels (class 0, class 1), got {}",
                        list.len()
                    ),
                ));
            }
            if list.len() < 2 {
                return Err(cx.err(
                    labels.span(),
                    format!("multiclass head `{name}` needs at least two labels"),
                ));
            }
            for (i, l) in list.iter().enumerate() {
                if l.is_empty() {
                    return Err(cx.err(labels.span(), format!("head `{name}`: a label is empty")));
                }
                // A manifest cell matches a label case-insensitively, or reads as a class
                // index: labels must stay distinct under both readings.
                if list[..i].iter().any(|o| o.eq_ignore_ascii_case(l)) {
                    return Err(cx.err(
                        labels.span(),
                        format!("head `{name}`: label `{l}` appears twice"),
                    ));
                }
                if let Ok(n) = l.parse::<usize>() {
                    if n != i {
                        return Err(cx.err(
                            labels.span(),
                            format!(
                                "head `{name}`: label `{l}` is a number other than its index {i}, \
                                 so a manifest cell `{l}` would be ambiguous"
                            ),
                        ));
                    }
                }
            }
            let refs: Vec<&str> = list.iter().map(|s| s.as_str()).collect();
            if kind == "binary" {
                HeadSpec::binary(&name, refs[0], refs[1])
            } else {
                HeadSpec::multiclass(&name, &refs)
            }
        }
        _ => {
            let Some(edges) = &h.edges else {
                return Err(cx.err(
                    h.kind.span(),
                    format!("age_bands head `{name}` needs `edges` (ascending years)"),
                ));
            };
            let e: Option<Vec<u32>> = edges
                .get_ref()
                .iter()
                .map(|&v| u32::try_from(v).ok())
                .collect();
            let e = e.ok_or_else(|| {
                cx.err(
                    edges.span(),
                    format!("head `{name}`: edges must be whole years ≥ 0"),
                )
            })?;
            let mut spec = HeadSpec::age_bands(&name, &e).map_err(|r| cx.err(edges.span(), r))?;
            // Labelled from ages: the column defaults to the head's own name, like every kind.
            spec.labeling.column = None;
            spec
        }
    };
    let mut spec = spec;
    labeling.from_ages = spec.labeling.from_ages;
    spec.labeling = labeling;
    spec.validate()
        .map_err(|e| cx.err(h.name.span(), e.to_string()))?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUE_EXAMPLE: &str = r#"
[[head]]
name = "age_group"          # also the manifest column (override with column = "...") and the ONNX output
kind = "multiclass"
labels = ["0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60+"]

[[head]]
name = "is_adult"
kind = "binary"
labels = ["minor", "adult"]  # class 0, class 1
weight = 1.0                 # loss weight (default 1)

[[head]]
name = "age"
kind = "regression"
unit = "years"
scale = 20.0
offset = 33.0
min = 1.0
max = 116.0
"#;

    fn parse(text: &str) -> Result<Vec<HeadSpec>> {
        parse_heads(text, Path::new("heads.toml"))
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn the_documented_file_parses() {
        let h = parse(ISSUE_EXAMPLE).unwrap();
        assert_eq!(h.len(), 3);
        assert_eq!(h[0].labels().len(), 8);
        assert_eq!(h[1], HeadSpec::binary("is_adult", "minor", "adult"));
        assert_eq!(
            h[2],
            HeadSpec::regression("age", "years", 20.0, 33.0, 1.0, 116.0)
        );
        // Multi-class labels that are age ranges still read as classes, not ages.
        assert!(!h[0].labeling.from_ages);
    }

    #[test]
    fn age_bands_weights_and_columns() {
        let h = parse(
            "[[head]]\nname = \"band\"\nkind = \"age_bands\"\nedges = [0, 18, 65]\ncolumn = \"age\"\nweight = 0.5\n",
        )
        .unwrap();
        assert_eq!(h[0].labels(), ["0-17", "18-64", "65+"]);
        assert!(h[0].labeling.from_ages);
        assert_eq!(h[0].column(), "age");
        assert_eq!(h[0].weight(), 0.5);
        let h =
            parse("[[head]]\nname = \"band\"\nkind = \"age_bands\"\nedges = [0, 18]\n").unwrap();
        assert_eq!(h[0].column(), "band");
    }

    #[test]
    fn regression_defaults_put_the_range_near_unit_scale() {
        let h = parse("[[head]]\nname = \"pitch\"\nkind = \"regression\"\nmin = -90\nmax = 90.0\n")
            .unwrap();
        assert_eq!(
            h[0],
            HeadSpec::regression("pitch", "", 45.0, 0.0, -90.0, 90.0)
        );
    }

    #[test]
    fn distribution_heads_default_to_one_bin_per_unit() {
        let h = parse("[[head]]\nname = \"age\"\nkind = \"distribution\"\nunit = \"years\"\nmin = 1\nmax = 116\n")
            .unwrap();
        assert_eq!(
            h[0],
            HeadSpec::distribution("age", "years", 1.0, 116.0, 116)
        );
        assert_eq!(h[0].output_width(), 116);
        assert_eq!(h[0].kind.centres()[29], 30.0);
        let h =
            parse("[[head]]\nname = \"a\"\nkind = \"distribution\"\nmin = 0\nmax = 1\nbins = 11\n")
                .unwrap();
        assert_eq!(h[0].kind.centres()[5], 0.5);
        for (text, says) in [
            ("min = 0\nmax = 1\nbins = 1\n", "bins must be in 2..=4096"),
            ("min = 0\nmax = 1\nscale = 2\n", "`scale` does not apply"),
            ("max = 1\n", "needs `min` and `max`"),
        ] {
            let e = err(&format!(
                "[[head]]\nname = \"a\"\nkind = \"distribution\"\n{text}"
            ));
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn mistakes_name_the_line() {
        let e = err("[[head]]\nname = \"a\"\nkind = \"ordinal\"\n");
        assert!(
            e.contains("heads.toml, line 3") && e.contains("unknown kind `ordinal`"),
            "{e}"
        );
        let e = err("[[head]]\nname = \"a\"\nkind = \"binary\"\nlabels = [\"x\", \"y\"]\n\n[[head]]\nname = \"A\"\nkind = \"binary\"\nlabels = [\"x\", \"y\"]\n");
        assert!(
            e.contains("line 7") && e.contains("declared twice") && e.contains("line 2"),
            "{e}"
        );
        let e = err("[[head]]\nname = \"image\"\nkind = \"binary\"\nlabels = [\"x\", \"y\"]\n");
        assert!(e.contains("line 2") && e.contains("collides"), "{e}");
        let e = err("[[head]]\nname = \"a\"\nkind = \"binary\"\nlables = [\"x\", \"y\"]\n");
        assert!(e.contains("line 4") && e.contains("lables"), "{e}");
        let e = err("[[head]]\nname = \"a\"\nkind = \"binary\"\nlabels = [\"x\"]\n");
        assert!(e.contains("line 4") && e.contains("exactly two"), "{e}");
        let e = err("[[head]]\nname = \"a\"\nkind = \"regression\"\nmin = 1\n");
        assert!(e.contains("line 3") && e.contains("`min` and `max`"), "{e}");
        let e =
            err("[[head]]\nname = \"a\"\nkind = \"binary\"\nlabels = [\"x\", \"y\"]\nmin = 3\n");
        assert!(e.contains("line 5") && e.contains("does not apply"), "{e}");
        let e = err("[[head]]\nname = \"a b\"\nkind = \"binary\"\nlabels = [\"x\", \"y\"]\n");
        assert!(e.contains("line 2"), "{e}");
        let e =
            err("[[head]]\nname = \"a\"\nkind = \"multiclass\"\nlabels = [\"x\", \"X\", \"z\"]\n");
        assert!(e.contains("appears twice"), "{e}");
        let e = err("[[head]]\nname = \"a\"\nkind = \"multiclass\"\nlabels = [\"1\", \"0\"]\n");
        assert!(e.contains("ambiguous"), "{e}");
        let e = err("[[head]]\nname = \"a\"\nkind = \"age_bands\"\nedges = [10, 5]\n");
        assert!(e.contains("line 4") && e.contains("ascending"), "{e}");
        let e = err(
            "[[head]]\nname = \"a\"\nkind = \"binary\"\nlabels = [\"x\", \"y\"]\nweight = -1\n",
        );
        assert!(e.contains("line 5") && e.contains("weight"), "{e}");
        let e = err("# nothing\n");
        assert!(e.contains("no heads"), "{e}");
        let e = err("[[head]]\nname = \"a\"\nkind = \"binary\"\nlabels = [\"x\", \"y\"\n");
        assert!(e.contains("heads.toml, line"), "{e}");
        let e = err("[[head]]\nkind = \"binary\"\n");
        assert!(e.contains("name"), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "(\\[\\[head\\]\\]|name|kind|labels|edges|min|max|=|\"|\\[|\\]|,|\n|[a-z0-9_. -]{0,8}){0,40}") {
            let _ = parse_heads(&text, Path::new("h.toml"));
        }
    }

    #[test]
    fn a_missing_file_is_named() {
        let e = HeadsFile::read(Path::new("/nonexistent/heads.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/heads.toml"), "{e}");
    }
}
