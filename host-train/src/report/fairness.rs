//! The fairness table (every head's metric overall, per ethnicity, per gender, per age
//! band, from the breakdowns [`models::metrics::Report`] already holds) and the goal
//! checks of the model card.
use models::{metrics::HeadMetrics, metrics::Report, HeadSpec};
use serde::Serialize;
use serde_json::{json, Value};

/// Overall age MAE goal, years (at most).
pub const AGE_MAE_GOAL: f64 = 5.0;
/// Overall gender accuracy goal (at least).
pub const GENDER_ACC_GOAL: f64 = 0.93;
/// Overall ethnicity accuracy goal (at least).
pub const ETHNICITY_ACC_GOAL: f64 = 0.85;
/// The worst ethnicity group's gender accuracy (at least).
pub const WORST_ETHNICITY_GENDER_ACC_GOAL: f64 = 0.88;
/// The worst ethnicity group's age MAE over the overall age MAE (at most).
pub const WORST_ETHNICITY_MAE_RATIO_GOAL: f64 = 1.3;

/// The overall goal on a metric key (`age_mae`, `gender_acc`, `ethnicity_acc`), in the
/// metric's unit; MAE goals are upper bounds, accuracy goals lower bounds.
pub fn headline_goal(key: &str) -> Option<f64> {
    match key {
        "age_mae" => Some(AGE_MAE_GOAL),
        "gender_acc" => Some(GENDER_ACC_GOAL),
        "ethnicity_acc" => Some(ETHNICITY_ACC_GOAL),
        _ => None,
    }
}

/// Breakdowns shown first, in this order; any other follows alphabetically.
const GROUP_ORDER: [&str; 3] = ["ethnicity", "gender", "age_band"];

/// Which number of a head a column shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Mean absolute error (regression heads).
    Mae,
    /// Accuracy in `[0, 1]` (class heads).
    Acc,
}

/// One metric column: a head and its number.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Column {
    /// Head name.
    pub head: String,
    /// MAE or accuracy.
    pub metric: Metric,
    /// Unit of a regression head (`years`), empty otherwise.
    pub unit: String,
}

impl Column {
    /// The JSON key, as `eval --json` names it: `age_mae`, `gender_acc`.
    pub fn key(&self) -> String {
        match self.metric {
            Metric::Mae => format!("{}_mae", self.head),
            Metric::Acc => format!("{}_acc", self.head),
        }
    }

    /// The table heading: `age MAE (years)`, `gender acc`.
    pub fn title(&self) -> String {
        match (self.metric, self.unit.is_empty()) {
            (Metric::Mae, false) => format!("{} MAE ({})", self.head, self.unit),
            (Metric::Mae, true) => format!("{} MAE", self.head),
            (Metric::Acc, _) => format!("{} acc", self.head),
        }
    }

    /// A value as the table shows it: `5.12`, `91.3 %`.
    pub fn format(&self, v: Option<f64>) -> String {
        match (v, self.metric) {
            (None, _) => "–".into(),
            (Some(v), Metric::Mae) => format!("{v:.2}"),
            (Some(v), Metric::Acc) => format!("{:.1} %", v * 100.0),
        }
    }

    fn pick(&self, heads: &[HeadMetrics]) -> Option<f64> {
        let h = heads.iter().find(|h| h.name == self.head)?;
        match self.metric {
            Metric::Mae => h.mae,
            Metric::Acc => h.acc,
        }
    }
}

/// One row: everyone, or one group.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The breakdown (`ethnicity`, `gender`, `age_band`), `all` for the overall row.
    pub group: String,
    /// The group's value (`White`, `female`, `20-39`), `all` for the overall row.
    pub value: String,
    /// Samples.
    pub n: u64,
    /// One value per column.
    pub values: Vec<Option<f64>>,
}

/// The fairness table.
#[derive(Debug, Clone, PartialEq)]
pub struct Fairness {
    /// Metric columns, one per head.
    pub columns: Vec<Column>,
    /// The overall row, then every group of every breakdown.
    pub rows: Vec<Row>,
}

impl Fairness {
    /// Arranges `report`'s overall metrics and breakdowns (`heads`: the contract's heads,
    /// which name the columns and order the groups by label).
    pub fn from_report(report: &Report, heads: &[HeadSpec]) -> Self {
        let columns: Vec<Column> = heads
            .iter()
            .map(|h| match h.kind.value_range() {
                Some((unit, _, _)) => Column {
                    head: h.name.clone(),
                    metric: Metric::Mae,
                    unit: unit.to_string(),
                },
                None => Column {
                    head: h.name.clone(),
                    metric: Metric::Acc,
                    unit: String::new(),
                },
            })
            .collect();
        let values = |hm: &[HeadMetrics]| columns.iter().map(|c| c.pick(hm)).collect();
        let mut rows = vec![Row {
            group: "all".into(),
            value: "all".into(),
            n: report.n,
            values: values(&report.heads),
        }];
        let mut names: Vec<&String> = report.groups.keys().collect();
        names.sort_by_key(|g| {
            (
                GROUP_ORDER
                    .iter()
                    .position(|o| o == g)
                    .unwrap_or(GROUP_ORDER.len()),
                g.as_str(),
            )
        });
        for g in names {
            let mut list: Vec<_> = report.groups[g].iter().collect();
            // Class groups in label order (White, Black, …), not alphabetical; age bands
            // are already in age order.
            if let Some(spec) = heads.iter().find(|h| &h.name == g) {
                list.sort_by_key(|gm| {
                    spec.labels()
                        .iter()
                        .position(|l| *l == gm.value)
                        .unwrap_or(usize::MAX)
                });
            }
            for gm in list {
                rows.push(Row {
                    group: g.clone(),
                    value: gm.value.clone(),
                    n: gm.n,
                    values: values(&gm.heads),
                });
            }
        }
        Self { columns, rows }
    }

    /// The overall row.
    pub fn overall(&self) -> Option<&Row> {
        self.rows.iter().find(|r| r.group == "all")
    }

    /// The rows of one breakdown.
    pub fn group(&self, group: &str) -> impl Iterator<Item = &Row> {
        let g = group.to_string();
        self.rows.iter().filter(move |r| r.group == g)
    }

    /// Index of the column with this JSON key (`gender_acc`).
    pub fn column(&self, key: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.key() == key)
    }

    /// One markdown table: `| group | n | age MAE (years) | gender acc | … |`.
    pub fn markdown(&self) -> String {
        let mut s = String::from("| group | n |");
        for c in &self.columns {
            s.push_str(&format!(" {} |", c.title()));
        }
        s.push_str("\n| --- | ---: |");
        for _ in &self.columns {
            s.push_str(" ---: |");
        }
        s.push('\n');
        for r in &self.rows {
            let name = if r.group == "all" {
                "**all**".to_string()
            } else {
                format!("{}: {}", r.group.replace('_', " "), r.value)
            };
            s.push_str(&format!("| {name} | {} |", r.n));
            for (c, v) in self.columns.iter().zip(&r.values) {
                s.push_str(&format!(" {} |", c.format(*v)));
            }
            s.push('\n');
        }
        s
    }

    /// `{"columns": [...], "overall": {...}, "groups": {"ethnicity": [{"value", "n",
    /// "age_mae", …}], …}}`.
    pub fn to_json(&self) -> Value {
        let row = |r: &Row| {
            let mut m = serde_json::Map::new();
            m.insert("value".into(), json!(r.value));
            m.insert("n".into(), json!(r.n));
            for (c, v) in self.columns.iter().zip(&r.values) {
                m.insert(c.key(), json!(v));
            }
            Value::Object(m)
        };
        let mut groups = serde_json::Map::new();
        for r in self.rows.iter().filter(|r| r.group != "all") {
            let list = groups
                .entry(r.group.clone())
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(a) = list {
                a.push(row(r));
            }
        }
        json!({
            "columns": self.columns,
            "overall": self.overall().map(row),
            "groups": groups,
        })
    }
}

/// Whether a goal is met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Met.
    Pass,
    /// Not met.
    Fail,
    /// Cannot be told: a head or a breakdown is missing.
    Unavailable,
}

impl Status {
    /// `PASS`, `FAIL`, `n/a`.
    pub fn word(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Unavailable => "n/a",
        }
    }
}

/// One goal, checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GoalCheck {
    /// What is measured (`worst ethnicity group's gender accuracy`).
    pub goal: String,
    /// The target as text (`≥ 88.0 %`).
    pub target: String,
    /// The measured number (accuracy in `[0, 1]`, MAE in years, or a ratio).
    pub measured: Option<f64>,
    /// The measured number as text.
    pub shown: String,
    /// Which group, how many samples, against what.
    pub detail: String,
    /// Met or not.
    pub status: Status,
}

fn check(
    goal: &str,
    target: String,
    measured: Option<(f64, String, String)>,
    ok: impl Fn(f64) -> bool,
) -> GoalCheck {
    match measured {
        Some((m, shown, detail)) if m.is_finite() => GoalCheck {
            goal: goal.into(),
            target,
            measured: Some(m),
            shown,
            detail,
            status: if ok(m) { Status::Pass } else { Status::Fail },
        },
        _ => GoalCheck {
            goal: goal.into(),
            target,
            measured: None,
            shown: "–".into(),
            detail: "not measured".into(),
            status: Status::Unavailable,
        },
    }
}

/// The shipped model's quality goals (the model card's table): overall age MAE, gender and ethnicity accuracy; the worst ethnicity
/// group's gender accuracy and its age MAE against the overall one. "Worst" is over every
/// ethnicity group present, however small (the detail gives its size).
pub fn check_goals(f: &Fairness) -> Vec<GoalCheck> {
    let value = |r: &Row, key: &str| f.column(key).and_then(|i| r.values[i]);
    let overall = f.overall();
    let overall_of = |key: &str| {
        overall
            .and_then(|r| value(r, key).map(|v| (v, r.n)))
            .map(|(v, n)| (v, format!("n={n}")))
    };
    let mut out = Vec::new();
    let mae = overall_of("age_mae");
    out.push(check(
        "age MAE",
        format!("≤ {AGE_MAE_GOAL:.2} years"),
        mae.clone().map(|(v, d)| (v, format!("{v:.2} years"), d)),
        |m| m <= AGE_MAE_GOAL,
    ));
    for (head, goal) in [
        ("gender", GENDER_ACC_GOAL),
        ("ethnicity", ETHNICITY_ACC_GOAL),
    ] {
        out.push(check(
            &format!("{head} accuracy"),
            format!("≥ {:.1} %", goal * 100.0),
            overall_of(&format!("{head}_acc")).map(|(v, d)| (v, format!("{:.1} %", v * 100.0), d)),
            |m| m >= goal,
        ));
    }
    let worst_gender = f
        .group("ethnicity")
        .filter_map(|r| value(r, "gender_acc").map(|v| (v, r)))
        .min_by(|a, b| a.0.total_cmp(&b.0));
    out.push(check(
        "worst ethnicity group's gender accuracy",
        format!("≥ {:.1} %", WORST_ETHNICITY_GENDER_ACC_GOAL * 100.0),
        worst_gender.map(|(v, r)| {
            (
                v,
                format!("{:.1} %", v * 100.0),
                format!("{} (n={})", r.value, r.n),
            )
        }),
        |m| m >= WORST_ETHNICITY_GENDER_ACC_GOAL,
    ));
    let worst_mae = f
        .group("ethnicity")
        .filter_map(|r| value(r, "age_mae").map(|v| (v, r)))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let ratio = match (worst_mae, &mae) {
        (Some((w, r)), Some((all, _))) if *all > 0.0 => Some((
            w / all,
            format!("{:.2}x", w / all),
            format!("{}: {w:.2} vs {all:.2} years overall (n={})", r.value, r.n),
        )),
        _ => None,
    };
    out.push(check(
        "worst ethnicity group's age MAE / overall age MAE",
        format!("≤ {WORST_ETHNICITY_MAE_RATIO_GOAL:.1}x"),
        ratio,
        |m| m <= WORST_ETHNICITY_MAE_RATIO_GOAL,
    ));
    out
}

/// The goal checks as a markdown table.
pub fn goals_markdown(checks: &[GoalCheck]) -> String {
    let mut s = String::from(
        "| goal | target | measured | detail | result |\n| --- | --- | ---: | --- | --- |\n",
    );
    for c in checks {
        s.push_str(&format!(
            "| {} | {} | {} | {} | **{}** |\n",
            c.goal,
            c.target,
            c.shown,
            c.detail,
            c.status.word()
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use models::{decode::decode, heads::utkface_heads, metrics::Evaluator, HeadKind};

    /// A prediction of (age, gender class, ethnicity class) through the real decoder.
    fn pred(age: f32, gender: usize, eth: usize) -> models::Prediction {
        let heads = utkface_heads();
        let HeadKind::Regression { scale, offset, .. } = heads[0].kind else {
            panic!("age is a regression head")
        };
        let raw_age = (age - offset) / scale;
        let g = if gender == 1 { 4.0 } else { -4.0 };
        let mut e = [0.0f32; 5];
        e[eth] = 6.0;
        decode(&heads, &[&[raw_age], &[g], &e]).unwrap()
    }

    /// Ten White (0) faces all right; five Black (1) faces with gender wrong on two and
    /// age off by 10 on all; age bands and genders from the truth.
    fn report() -> Report {
        let heads = utkface_heads();
        let mut ev = Evaluator::new(&heads);
        for i in 0..10 {
            let age = 20.0 + i as f32;
            let g = i % 2;
            ev.add(&[age, g as f32, 0.0], &pred(age, g, 0));
        }
        for i in 0..5 {
            let age = 5.0 + 15.0 * i as f32; // 5, 20, 35, 50, 65
            let g = i % 2;
            let guess = if i < 2 { 1 - g } else { g };
            ev.add(&[age, g as f32, 1.0], &pred(age + 10.0, guess, 1));
        }
        ev.report()
    }

    #[test]
    fn the_table_has_every_group_with_hand_counted_metrics() {
        let heads = utkface_heads();
        let f = Fairness::from_report(&report(), &heads);
        let keys: Vec<String> = f.columns.iter().map(|c| c.key()).collect();
        assert_eq!(keys, ["age_mae", "gender_acc", "ethnicity_acc"]);
        let all = f.overall().unwrap();
        assert_eq!(all.n, 15);
        // 5 of 15 off by 10 years.
        assert!((all.values[0].unwrap() - 50.0 / 15.0).abs() < 1e-3);
        assert!((all.values[1].unwrap() - 13.0 / 15.0).abs() < 1e-9);
        assert_eq!(all.values[2], Some(1.0));
        // Ethnicity groups in label order, then gender, then age bands in age order.
        let names: Vec<String> = f.rows[1..]
            .iter()
            .map(|r| format!("{}={}", r.group, r.value))
            .collect();
        let (m, fe) = (&heads[1].labels()[0], &heads[1].labels()[1]);
        assert_eq!(
            names,
            [
                "ethnicity=White".to_string(),
                "ethnicity=Black".into(),
                format!("gender={m}"),
                format!("gender={fe}"),
                "age_band=0-12".into(),
                "age_band=20-39".into(),
                "age_band=40-59".into(),
                "age_band=60+".into(),
            ]
        );
        let black = f.group("ethnicity").nth(1).unwrap();
        assert_eq!(black.n, 5);
        assert!((black.values[0].unwrap() - 10.0).abs() < 1e-3);
        assert!((black.values[1].unwrap() - 0.6).abs() < 1e-9);
        let white = f.group("ethnicity").next().unwrap();
        assert!(white.values[0].unwrap() < 1e-3);
        // 20-39: ten White at 20..29 plus Black at 20 and 35.
        let band = f.group("age_band").nth(1).unwrap();
        assert_eq!((band.value.as_str(), band.n), ("20-39", 12));

        let md = f.markdown();
        assert!(md.starts_with(
            "| group | n | age MAE (years) | gender acc | ethnicity acc |\n| --- | ---: |"
        ));
        assert!(
            md.contains("| ethnicity: Black | 5 | 10.00 | 60.0 % | 100.0 % |"),
            "{md}"
        );
        assert!(md.contains("| age band: 60+ | 1 |"), "{md}");
        let j = f.to_json();
        assert_eq!(j["overall"]["n"], 15);
        assert_eq!(j["groups"]["ethnicity"][1]["value"], "Black");
        assert!((j["groups"]["ethnicity"][1]["gender_acc"].as_f64().unwrap() - 0.6).abs() < 1e-9);
        assert_eq!(j["groups"]["age_band"].as_array().unwrap().len(), 4);
    }

    #[test]
    fn goals_take_the_worst_ethnicity_group() {
        let f = Fairness::from_report(&report(), &utkface_heads());
        let g = check_goals(&f);
        let by = |name: &str| g.iter().find(|c| c.goal == name).unwrap();
        // Overall MAE 3.33 ≤ 5: pass; gender 86.7 % < 93 %: fail; ethnicity 100 %: pass.
        assert_eq!(by("age MAE").status, Status::Pass);
        assert_eq!(by("gender accuracy").status, Status::Fail);
        assert_eq!(by("ethnicity accuracy").status, Status::Pass);
        let wg = by("worst ethnicity group's gender accuracy");
        assert_eq!(wg.status, Status::Fail);
        assert!((wg.measured.unwrap() - 0.6).abs() < 1e-9);
        assert!(wg.detail.starts_with("Black (n=5)"), "{}", wg.detail);
        let wm = by("worst ethnicity group's age MAE / overall age MAE");
        // 10 / (50/15) = 3.0.
        assert!((wm.measured.unwrap() - 3.0).abs() < 1e-3);
        assert_eq!(wm.status, Status::Fail);
        assert!(
            wm.detail.starts_with("Black: 10.00 vs 3.33"),
            "{}",
            wm.detail
        );
        let md = goals_markdown(&g);
        assert!(md.contains("| worst ethnicity group's gender accuracy | ≥ 88.0 % | 60.0 % |"));
        assert!(md.contains("**FAIL**") && md.contains("**PASS**"));
    }

    fn table(rows: Vec<(&str, &str, [Option<f64>; 3])>) -> Fairness {
        Fairness {
            columns: Fairness::from_report(
                &Evaluator::new(&utkface_heads()).report(),
                &utkface_heads(),
            )
            .columns,
            rows: rows
                .into_iter()
                .map(|(g, v, values)| Row {
                    group: g.into(),
                    value: v.into(),
                    n: 100,
                    values: values.to_vec(),
                })
                .collect(),
        }
    }

    #[test]
    fn goals_on_the_boundary_pass_and_missing_groups_are_unavailable() {
        let f = table(vec![
            ("all", "all", [Some(5.0), Some(0.93), Some(0.85)]),
            ("ethnicity", "A", [Some(6.5), Some(0.88), Some(0.9)]),
            ("ethnicity", "B", [Some(4.0), Some(0.99), Some(0.9)]),
            ("gender", "x", [Some(9.0), Some(0.10), Some(0.1)]),
        ]);
        let g = check_goals(&f);
        assert!(g.iter().all(|c| c.status == Status::Pass), "{g:#?}");
        assert!((g[4].measured.unwrap() - 1.3).abs() < 1e-12);
        // Just past the boundary fails.
        let f = table(vec![
            ("all", "all", [Some(5.01), Some(0.95), Some(0.9)]),
            ("ethnicity", "A", [Some(6.6), Some(0.879), Some(0.9)]),
        ]);
        let s: Vec<Status> = check_goals(&f).iter().map(|c| c.status).collect();
        assert_eq!(
            s,
            [
                Status::Fail,
                Status::Pass,
                Status::Pass,
                Status::Fail,
                Status::Fail
            ]
        );
        // No ethnicity breakdown, no age head value: the group goals cannot be told.
        let f = table(vec![("all", "all", [None, Some(0.95), Some(0.9)])]);
        let s: Vec<Status> = check_goals(&f).iter().map(|c| c.status).collect();
        assert_eq!(
            s,
            [
                Status::Unavailable,
                Status::Pass,
                Status::Pass,
                Status::Unavailable,
                Status::Unavailable
            ]
        );
    }
}
