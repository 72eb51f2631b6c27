//! The report's PNG plots, drawn with plotters into a memory buffer and written with the
//! `image` crate. Text uses DejaVu Sans compiled into the binary (plotters' `ab_glyph`
//! feature), never a system font: the plots render the same on a bare machine.
use std::{path::Path, sync::OnceLock};

use plotters::{
    coord::Shift,
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};

use super::{curves::EpochPoint, ReportError, Result};

static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-subset.ttf");
/// The family plotters asks for by default (captions, axis labels, legends).
const FAMILY: &str = "sans-serif";

const TRAIN: RGBColor = RGBColor(31, 119, 180);
const VAL: RGBColor = RGBColor(255, 127, 14);
const GOAL: RGBColor = RGBColor(44, 160, 44);
const GREY: RGBColor = RGBColor(150, 150, 150);
/// The darkest confusion-matrix cell (a whole row in one cell).
const DARK: RGBColor = RGBColor(8, 48, 107);

type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

/// Registers the embedded font once per process.
fn font_ready() -> std::result::Result<(), String> {
    static DONE: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        plotters::style::register_font(FAMILY, FontStyle::Normal, FONT)
            .map_err(|_| "the embedded font does not parse".to_string())
    })
    .clone()
}

fn plot_err(path: &Path, reason: impl ToString) -> ReportError {
    ReportError::Plot {
        path: path.into(),
        reason: reason.to_string(),
    }
}

/// Draws into a white `w` x `h` RGB canvas and writes it to `path` as PNG.
fn render<F>(path: &Path, (w, h): (u32, u32), draw: F) -> Result<()>
where
    F: FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> DrawResult,
{
    font_ready().map_err(|e| plot_err(path, e))?;
    let mut buf = vec![255u8; w as usize * h as usize * 3];
    {
        let backend = BitMapBackend::with_buffer_and_format(&mut buf, (w, h))
            .map_err(|e| plot_err(path, e))?;
        let root = backend.into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
        draw(&root).map_err(|e| plot_err(path, e))?;
        root.present().map_err(|e| plot_err(path, e))?;
    }
    image::save_buffer_with_format(
        path,
        &buf,
        w,
        h,
        image::ExtendedColorType::Rgb8,
        image::ImageFormat::Png,
    )
    .map_err(|e| match e {
        image::ImageError::IoError(source) => ReportError::Io {
            path: path.into(),
            source,
        },
        e => plot_err(path, e),
    })
}

/// The x range of an epoch axis (one epoch still gets a visible axis).
fn epoch_range(points: &[EpochPoint]) -> (i32, i32) {
    let lo = points.first().map_or(1, |p| p.epoch as i32);
    let hi = points.last().map_or(1, |p| p.epoch as i32);
    if hi > lo {
        (lo, hi)
    } else {
        (lo - 1, hi + 1)
    }
}

/// `[lo, hi]` padded by 5 % (and made non-empty).
fn padded(lo: f64, hi: f64) -> (f64, f64) {
    let span = (hi - lo).abs().max(1e-3 * hi.abs().max(1.0));
    (lo - 0.05 * span, hi + 0.05 * span)
}

/// Size of [`loss_curves`]' PNG.
pub const LOSS_SIZE: (u32, u32) = (1000, 640);
/// Size of [`scatter`]'s PNG.
pub const SCATTER_SIZE: (u32, u32) = (820, 820);

/// Size of [`val_metrics`]' PNG for `panels` panels (heads with metrics in the log).
pub fn val_metrics_size(panels: usize) -> (u32, u32) {
    ((520 * panels as u32).max(700), 560)
}

/// Confusion-matrix layout for `k` classes: cell side, left, top, bottom and right margins.
fn confusion_layout(k: usize) -> (u32, u32, u32, u32, u32) {
    let cell = if k <= 2 {
        170
    } else {
        (560 / k as u32).clamp(70, 120)
    };
    (cell, 190, 70, 90, 30)
}

/// Size of [`confusion`]'s PNG for `k` classes.
pub fn confusion_size(k: usize) -> (u32, u32) {
    let (cell, left, top, bottom, right) = confusion_layout(k);
    let grid = cell * k as u32;
    (2 * (left + grid + right), top + grid + bottom + 10)
}

/// An axis tick: `5`, `92`, `1.5` (no `.0` on whole numbers).
fn tick(v: &f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Size of the dashes of a dashed line, in pixels.
const DASH: u32 = 8;

/// Training and validation loss per epoch, the best epoch marked.
pub fn loss_curves(points: &[EpochPoint], best: Option<usize>, path: &Path) -> Result<()> {
    let train: Vec<(i32, f64)> = points
        .iter()
        .filter_map(|p| p.train_loss.map(|l| (p.epoch as i32, l)))
        .collect();
    let val: Vec<(i32, f64)> = points
        .iter()
        .filter_map(|p| p.val_loss.map(|l| (p.epoch as i32, l)))
        .collect();
    if train.is_empty() && val.is_empty() {
        return Err(ReportError::Empty(
            "the training log has no loss to plot".into(),
        ));
    }
    let all = train.iter().chain(&val).map(|p| p.1);
    let (lo, hi) = all.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    let (lo, hi) = padded(lo.min(0.0), hi);
    let (x0, x1) = epoch_range(points);
    render(path, LOSS_SIZE, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Loss per epoch", (FAMILY, 28))
            .margin(16)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(x0..x1, lo..hi)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("loss (sum of the head losses)")
            .label_style((FAMILY, 16))
            .axis_desc_style((FAMILY, 18))
            .light_line_style(WHITE.mix(0.0))
            .y_label_formatter(&tick)
            .draw()?;
        if let Some(b) = best {
            chart.draw_series(DashedLineSeries::new(
                [(b as i32, lo), (b as i32, hi)],
                DASH,
                DASH,
                GREY.stroke_width(1),
            ))?;
        }
        chart
            .draw_series(
                LineSeries::new(train.iter().copied(), TRAIN.stroke_width(2)).point_size(3),
            )?
            .label("train (mean over the epoch, weighted as trained)")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 24, y)], TRAIN.stroke_width(2)));
        chart
            .draw_series(LineSeries::new(val.iter().copied(), VAL.stroke_width(2)).point_size(3))?
            .label("validation (unweighted sum)")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 24, y)], VAL.stroke_width(2)));
        if let Some((b, l)) = best.and_then(|b| val.iter().find(|p| p.0 == b as i32)) {
            chart
                .draw_series([Circle::new((*b, *l), 8, BLACK.stroke_width(2))])?
                .label(format!("best: epoch {b}, validation loss {l:.3}"))
                .legend(|(x, y)| Circle::new((x + 12, y), 6, BLACK.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font((FAMILY, 16))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    })
}

/// One panel of [`val_metrics`]: a key of the log's `val` object, its title, whether it
/// is an accuracy (drawn in %), and its goal.
#[derive(Debug, Clone)]
pub struct MetricPanel {
    /// `age_mae`, `gender_acc`, …
    pub key: String,
    /// `age MAE (years)`.
    pub title: String,
    /// Drawn in percent.
    pub percent: bool,
    /// A goal line, in the metric's own unit (accuracy in `[0, 1]`).
    pub goal: Option<f64>,
}

/// Validation metrics per epoch, one panel per head that has values in the log, goal lines
/// dashed, the best epoch (lowest validation loss) marked.
pub fn val_metrics(
    points: &[EpochPoint],
    panels: &[MetricPanel],
    best: Option<usize>,
    path: &Path,
) -> Result<()> {
    let series: Vec<(&MetricPanel, Vec<(i32, f64)>)> = panels
        .iter()
        .map(|m| {
            let scale = if m.percent { 100.0 } else { 1.0 };
            let s = points
                .iter()
                .filter_map(|p| p.val.get(&m.key).map(|v| (p.epoch as i32, v * scale)))
                .collect::<Vec<_>>();
            (m, s)
        })
        .filter(|(_, s)| !s.is_empty())
        .collect();
    if series.is_empty() {
        return Err(ReportError::Empty(
            "the training log has no validation metrics to plot".into(),
        ));
    }
    let (x0, x1) = epoch_range(points);
    render(path, val_metrics_size(series.len()), |root| {
        let root = root.titled("Validation metrics per epoch", (FAMILY, 28))?;
        let areas = root.split_evenly((1, series.len()));
        for (area, (m, s)) in areas.iter().zip(&series) {
            let scale = if m.percent { 100.0 } else { 1.0 };
            let goal = m.goal.map(|g| g * scale);
            let vals = s.iter().map(|p| p.1).chain(goal);
            let (lo, hi) = vals.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
            let (mut lo, mut hi) = padded(lo, hi);
            if m.percent {
                hi = hi.min(100.0);
                lo = lo.max(0.0).min(hi - 1.0);
            } else {
                lo = lo.max(0.0);
            }
            let mut chart = ChartBuilder::on(area)
                .caption(&m.title, (FAMILY, 22))
                .margin(14)
                .x_label_area_size(46)
                .y_label_area_size(60)
                .build_cartesian_2d(x0..x1, lo..hi)?;
            chart
                .configure_mesh()
                .x_desc("epoch")
                .y_desc(if m.percent { "%" } else { "" })
                .label_style((FAMILY, 15))
                .axis_desc_style((FAMILY, 16))
                .light_line_style(WHITE.mix(0.0))
                .y_label_formatter(&tick)
                .draw()?;
            if let Some(b) = best {
                chart
                    .draw_series(DashedLineSeries::new(
                        [(b as i32, lo), (b as i32, hi)],
                        DASH,
                        DASH,
                        GREY.stroke_width(1),
                    ))?
                    .label(format!("best epoch ({b})"))
                    .legend(|(x, y)| PathElement::new([(x, y), (x + 24, y)], GREY.stroke_width(1)));
            }
            if let Some(g) = goal {
                let text = if m.percent {
                    format!("goal {g:.0} %")
                } else {
                    format!("goal {g:.1}")
                };
                chart
                    .draw_series(DashedLineSeries::new(
                        [(x0, g), (x1, g)],
                        DASH,
                        DASH / 2,
                        GOAL.stroke_width(2),
                    ))?
                    .label(text)
                    .legend(|(x, y)| PathElement::new([(x, y), (x + 24, y)], GOAL.stroke_width(2)));
            }
            let last = s.last().map(|p| p.1).unwrap_or(f64::NAN);
            let text = if m.percent {
                format!("last {last:.1} %")
            } else {
                format!("last {last:.2}")
            };
            chart
                .draw_series(LineSeries::new(s.iter().copied(), VAL.stroke_width(2)).point_size(3))?
                .label(text)
                .legend(|(x, y)| PathElement::new([(x, y), (x + 24, y)], VAL.stroke_width(2)));
            chart
                .configure_series_labels()
                .position(if m.percent {
                    SeriesLabelPosition::LowerRight
                } else {
                    SeriesLabelPosition::UpperRight
                })
                .label_font((FAMILY, 14))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()?;
        }
        Ok(())
    })
}

/// A cell colour: white for 0, [`DARK`] for 1.
fn shade(f: f64) -> RGBColor {
    let f = f.clamp(0.0, 1.0);
    let mix = |a: u8| (255.0 + (a as f64 - 255.0) * f).round() as u8;
    RGBColor(mix(DARK.0), mix(DARK.1), mix(DARK.2))
}

/// A confusion matrix (rows: truth, columns: prediction) as two labelled grids: counts,
/// and each row as a share of its true class. Both are shaded by that share.
pub fn confusion(head: &str, labels: &[String], matrix: &[Vec<u64>], path: &Path) -> Result<()> {
    let k = matrix.len();
    if k == 0 || labels.len() != k || matrix.iter().any(|r| r.len() != k) {
        return Err(plot_err(
            path,
            format!(
                "a {k}-row confusion matrix does not match {} labels",
                labels.len()
            ),
        ));
    }
    let totals: Vec<u64> = matrix.iter().map(|r| r.iter().sum()).collect();
    let n: u64 = totals.iter().sum();
    let correct: u64 = (0..k).map(|i| matrix[i][i]).sum();
    let acc = correct as f64 / n.max(1) as f64;
    // Square cells; room for the row labels (with their counts) on the left.
    let (cell, left, top, _, _) = confusion_layout(k);
    let grid = cell * k as u32;
    render(path, confusion_size(k), |root| {
        let root = root.titled(
            &format!(
                "{head}: confusion matrix (n={n}, accuracy {:.1} %)",
                acc * 100.0
            ),
            (FAMILY, 26),
        )?;
        let panels = root.split_evenly((1, 2));
        for (p, normalised) in panels.iter().zip([false, true]) {
            let title = if normalised {
                "% of each true class"
            } else {
                "counts"
            };
            p.draw_text(
                title,
                &(FAMILY, 20)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Top)),
                ((left + grid / 2) as i32, 12),
            )?;
            let (gx, gy) = (left as i32, (top - 20) as i32);
            let c = cell as i32;
            let size = (cell as f64 / 5.0).clamp(14.0, 26.0);
            for (i, row) in matrix.iter().enumerate() {
                for (j, &v) in row.iter().enumerate() {
                    let f = v as f64 / totals[i].max(1) as f64;
                    let (x, y) = (gx + j as i32 * c, gy + i as i32 * c);
                    p.draw(&Rectangle::new([(x, y), (x + c, y + c)], shade(f).filled()))?;
                    p.draw(&Rectangle::new(
                        [(x, y), (x + c, y + c)],
                        GREY.stroke_width(1),
                    ))?;
                    let text = match (normalised, totals[i]) {
                        (false, _) => v.to_string(),
                        (true, 0) => "–".into(),
                        (true, _) => format!("{:.1} %", f * 100.0),
                    };
                    let color = if f > 0.5 { WHITE } else { BLACK };
                    p.draw_text(
                        &text,
                        &(FAMILY, size)
                            .into_font()
                            .color(&color)
                            .pos(Pos::new(HPos::Center, VPos::Center)),
                        (x + c / 2, y + c / 2),
                    )?;
                }
                let label = format!("{} (n={})", labels[i], totals[i]);
                p.draw_text(
                    &label,
                    &(FAMILY, 16)
                        .into_font()
                        .color(&BLACK)
                        .pos(Pos::new(HPos::Right, VPos::Center)),
                    (gx - 8, gy + i as i32 * c + c / 2),
                )?;
            }
            for (j, l) in labels.iter().enumerate() {
                p.draw_text(
                    l,
                    &(FAMILY, 16)
                        .into_font()
                        .color(&BLACK)
                        .pos(Pos::new(HPos::Center, VPos::Top)),
                    (gx + j as i32 * c + c / 2, gy + grid as i32 + 8),
                )?;
            }
            p.draw_text(
                "predicted",
                &(FAMILY, 18)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Top)),
                (gx + grid as i32 / 2, gy + grid as i32 + 36),
            )?;
            p.draw_text(
                "true",
                &(FAMILY, 18)
                    .into_font()
                    .transform(FontTransform::Rotate270)
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Top)),
                (12, gy + grid as i32 / 2),
            )?;
        }
        Ok(())
    })
}

/// Predicted against true values of a regression head, one dot per sample, the diagonal,
/// and the mean prediction per 5-unit bin of the truth; MAE and n in the title.
pub fn scatter(head: &str, unit: &str, pairs: &[(f32, f32)], path: &Path) -> Result<()> {
    let pairs: Vec<(f64, f64)> = pairs
        .iter()
        .filter(|(t, p)| t.is_finite() && p.is_finite())
        .map(|&(t, p)| (t as f64, p as f64))
        .collect();
    if pairs.is_empty() {
        return Err(ReportError::Empty(format!("no {head} predictions to plot")));
    }
    let n = pairs.len();
    let mae = pairs.iter().map(|(t, p)| (t - p).abs()).sum::<f64>() / n as f64;
    let top = pairs.iter().fold(0.0f64, |m, (t, p)| m.max(*t).max(*p));
    let top = ((top / 10.0).ceil() * 10.0).max(10.0);
    let lo = pairs
        .iter()
        .fold(0.0f64, |m, (t, p)| m.min(*t).min(*p))
        .floor();
    // Mean prediction per bin of the truth.
    let bin = 5.0;
    let mut bins = std::collections::BTreeMap::<i64, (f64, usize)>::new();
    for (t, p) in &pairs {
        let e = bins.entry((t / bin).floor() as i64).or_insert((0.0, 0));
        e.0 += p;
        e.1 += 1;
    }
    let means: Vec<(f64, f64)> = bins
        .iter()
        .map(|(b, (s, c))| ((*b as f64 + 0.5) * bin, s / *c as f64))
        .collect();
    // Many points: smaller and fainter dots.
    let (radius, alpha) = if n > 5000 {
        (2, 0.18)
    } else if n > 500 {
        (2, 0.3)
    } else {
        (3, 0.6)
    };
    let (u, unit_word) = if unit.is_empty() {
        (String::new(), String::new())
    } else {
        (format!(" ({unit})"), format!(" {unit}"))
    };
    render(path, SCATTER_SIZE, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(
                format!("{head}: predicted vs true, MAE {mae:.2}{unit_word} (n={n})"),
                (FAMILY, 24),
            )
            .margin(16)
            .margin_right(32)
            .x_label_area_size(50)
            .y_label_area_size(60)
            .build_cartesian_2d(lo..top, lo..top)?;
        chart
            .configure_mesh()
            .x_desc(format!("true {head}{u}"))
            .x_label_formatter(&tick)
            .y_desc(format!("predicted {head}{u}"))
            .label_style((FAMILY, 16))
            .axis_desc_style((FAMILY, 18))
            .light_line_style(WHITE.mix(0.0))
            .y_label_formatter(&tick)
            .draw()?;
        // Whole-number truths (UTKFace ages) stack into columns: spread each dot by up to
        // ±0.4 sideways, deterministically, so the density shows.
        let whole = pairs.iter().all(|(t, _)| t.fract() == 0.0);
        let jitter = |i: usize| {
            if whole {
                ((i as f64 * 0.618_033_988_75).fract() - 0.5) * 0.8
            } else {
                0.0
            }
        };
        let dots = if whole {
            format!("one dot per sample (true {head} spread ±0.4)")
        } else {
            "one dot per sample".to_string()
        };
        chart
            .draw_series(pairs.iter().enumerate().map(|(i, &(t, p))| {
                Circle::new((t + jitter(i), p), radius, TRAIN.mix(alpha).filled())
            }))?
            .label(dots)
            .legend(|(x, y)| Circle::new((x + 12, y), 4, TRAIN.filled()));
        chart
            .draw_series(LineSeries::new(
                [(lo, lo), (top, top)],
                BLACK.stroke_width(1),
            ))?
            .label("predicted = true")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 24, y)], BLACK.stroke_width(1)));
        chart
            .draw_series(LineSeries::new(means, VAL.stroke_width(3)))?
            .label(format!(
                "mean prediction per {bin:.0}{unit_word} of true {head}"
            ))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 24, y)], VAL.stroke_width(3)));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FAMILY, 16))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn distinct_colours(path: &Path) -> (u32, u32, usize) {
        let img = image::open(path).unwrap().to_rgb8();
        let mut c: Vec<[u8; 3]> = img.pixels().map(|p| p.0).collect();
        c.sort_unstable();
        c.dedup();
        (img.width(), img.height(), c.len())
    }

    #[test]
    fn the_embedded_font_draws_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.png");
        render(&path, (200, 60), |root| {
            root.draw_text(
                "Asian ≤ 5 – 93 %",
                &(FAMILY, 24).into_font().color(&BLACK),
                (5, 15),
            )?;
            Ok(())
        })
        .unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        let dark = img.pixels().filter(|p| p.0[0] < 128).count();
        assert!(dark > 200, "text left {dark} dark pixels");
        // Anti-aliased glyph edges: grey levels, not only black and white.
        assert!(distinct_colours(&path).2 > 10);
    }

    #[test]
    fn a_confusion_matrix_and_a_scatter_are_drawn() {
        let dir = tempfile::tempdir().unwrap();
        let labels: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let p = dir.path().join("c.png");
        confusion(
            "x",
            &labels,
            &[vec![5, 1, 0], vec![0, 0, 0], vec![2, 2, 9]],
            &p,
        )
        .unwrap();
        let (w, h, colours) = distinct_colours(&p);
        assert!(
            w > 600 && h > 300 && colours > 20,
            "{w}x{h}, {colours} colours"
        );
        let bad = confusion("x", &labels, &[vec![1, 2]], &p).unwrap_err();
        assert!(bad.to_string().contains("does not match"), "{bad}");

        let p = dir.path().join("s.png");
        let pairs: Vec<(f32, f32)> = (1..60).map(|a| (a as f32, a as f32 * 0.9 + 3.0)).collect();
        scatter("age", "years", &pairs, &p).unwrap();
        assert_eq!(distinct_colours(&p).0, 820);
        assert!(scatter("age", "years", &[], &p).is_err());
    }
}
