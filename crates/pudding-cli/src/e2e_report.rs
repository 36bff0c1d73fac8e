//! Tables and plots of `pudding reproduce` (Markdown, and SVG drawn with plotters).

use crate::reproduce::{MethodRow, ReproduceConfig, Reproduction};
use plotters::prelude::*;
use pudding_candidates::report::PlotError;
use std::collections::BTreeMap;
use std::fmt::Write;

fn pct(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else {
        format!("{:.1}", 100.0 * v)
    }
}

/// The whole report as Markdown.
pub fn markdown(r: &Reproduction, cfg: &ReproduceConfig) -> String {
    let mut md = String::from("# End-to-end comparison\n\n");
    let limit =
        |l: Option<usize>| l.map_or("full split".to_string(), |n| format!("first {n} items"));
    let _ = writeln!(
        md,
        "Paper tasks: {} ({} per task); {}. Candidates: losses {}, {} calibration rows per task on {}; router: {} labelled rows per task. Accuracy in %, each task's reported metric (acc_norm for {}; acc otherwise).\n",
        cfg.eval_tasks.iter().map(|t| t.name()).collect::<Vec<_>>().join(", "),
        limit(cfg.eval_limit),
        if cfg.unseen_tasks.is_empty() {
            "no unseen tasks".to_string()
        } else {
            format!(
                "unseen tasks: {} ({})",
                cfg.unseen_tasks.iter().map(|t| t.name()).collect::<Vec<_>>().join(", "),
                limit(cfg.unseen_limit)
            )
        },
        cfg.losses,
        cfg.calib,
        cfg.calib_tasks.iter().map(|t| t.name()).collect::<Vec<_>>().join(", "),
        cfg.label_rows,
        cfg.eval_tasks
            .iter()
            .chain(&cfg.unseen_tasks)
            .filter(|t| t.reported_metric() == pudding_eval::tasks::Metric::AccNorm)
            .map(|t| t.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some(n) = r.eval_items.values().copied().filter(|&n| n > 0).min() {
        let _ = writeln!(
            md,
            "Sampling noise: with {n} items a task's accuracy has a standard error of at most {:.1} points (50/sqrt(n)), the average over the {} paper tasks about {:.1}; differences smaller than that are not evidence.\n",
            50.0 / (n as f64).sqrt(),
            r.eval_items.len(),
            50.0 / (n as f64).sqrt() / (r.eval_items.len().max(1) as f64).sqrt()
        );
    }
    let task_names = |tasks: &[pudding_eval::tasks::TaskName]| -> Vec<String> {
        tasks.iter().map(|t| t.name().to_string()).collect()
    };
    for (title, tasks, unseen) in [
        (
            "Accuracy on the paper's tasks",
            task_names(&cfg.eval_tasks),
            false,
        ),
        (
            "Accuracy on tasks the router never saw",
            task_names(&cfg.unseen_tasks),
            true,
        ),
    ] {
        if tasks.is_empty() {
            continue;
        }
        let _ = writeln!(md, "## {title}\n");
        let _ = write!(md, "| method | k |");
        for t in &tasks {
            let _ = write!(md, " {t} |");
        }
        md.push_str(" average |\n|---|---|");
        md.push_str(&"---|".repeat(tasks.len() + 1));
        md.push('\n');
        let mut rows: Vec<&MethodRow> = r.methods.iter().collect();
        rows.sort_by_key(|m| m.k);
        for m in rows {
            let avg = if unseen {
                m.unseen_average.unwrap_or(f64::NAN)
            } else {
                m.average
            };
            let _ = write!(md, "| {} | {} |", m.method, m.k);
            for t in &tasks {
                let _ = write!(md, " {} |", pct(*m.tasks.get(t).unwrap_or(&f64::NAN)));
            }
            let _ = writeln!(md, " **{}** |", pct(avg));
        }
        md.push('\n');
    }
    if !r.router.is_empty() {
        md.push_str("## Router quality\n\n| k | items | top-1 agreement with the oracle | regret (nats/token) | best single candidate | PuDDing | oracle | oracle gain recovered |\n|---|---|---|---|---|---|---|---|\n");
        for q in &r.router {
            let _ = writeln!(
                md,
                "| {} | {} | {:.3} | {:.4} | {} (#{}) | {} | {} | {} |",
                q.k,
                q.items,
                q.top1_agreement,
                q.regret,
                pct(q.best_single),
                q.best_single_candidate,
                pct(q.routed),
                pct(q.oracle),
                q.recovered
                    .map_or("–".into(), |f| format!("{:.0}%", 100.0 * f))
            );
        }
        md.push('\n');
    }
    for c in &r.choices {
        let _ = writeln!(md, "## How often each candidate is chosen (k = {})\n", c.k);
        md.push_str("| task |");
        for (i, s) in c.candidates.iter().enumerate() {
            let _ = write!(md, " #{i} ({s}) |");
        }
        md.push_str("\n|---|");
        md.push_str(&"---|".repeat(c.candidates.len()));
        md.push('\n');
        for (task, counts) in &c.counts {
            let _ = write!(md, "| {task} |");
            for n in counts {
                let _ = write!(md, " {n} |");
            }
            md.push('\n');
        }
        md.push('\n');
    }
    if !r.speed.is_empty() {
        md.push_str("## Speed: dense vs routed (router time included)\n\n| k | workload | dense (s) | skipped (s) | router (s) | routed total (s) | routed / dense | ideal |\n|---|---|---|---|---|---|---|---|\n");
        for s in &r.speed {
            for row in &s.bench.rows {
                let routed = row.skipped_secs + s.router_secs;
                let _ = writeln!(
                    md,
                    "| {} | {} | {:.3} | {:.3} | {:.4} | {:.3} | {:.3} | {:.3} |",
                    s.k,
                    row.workload,
                    row.dense_secs,
                    row.skipped_secs,
                    s.router_secs,
                    routed,
                    routed / row.dense_secs,
                    row.ideal_ratio
                );
            }
        }
        md.push('\n');
    }
    md
}

/// Per task (rows) and block (columns), the fraction of routed items that omit the block:
/// white never, [`HEATMAP_FULL`] always.
pub fn heatmap_svg(k: usize, freq: &BTreeMap<String, Vec<f64>>) -> Result<String, PlotError> {
    let n_blocks = freq.values().map(Vec::len).max().unwrap_or(0) as i32;
    let tasks: Vec<&String> = freq.keys().collect();
    let n_tasks = tasks.len() as i32;
    let size = (
        (190 + 18 * n_blocks.max(1)) as u32,
        (110 + 18 * n_tasks.max(1)) as u32,
    );
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(PlotError::from_plotters)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("Routed block omission frequency per task (k = {k})"),
                ("sans-serif", 13),
            )
            .margin(8)
            .x_label_area_size(36)
            .y_label_area_size(120)
            .build_cartesian_2d(0..n_blocks.max(1), n_tasks.max(1)..0)
            .map_err(PlotError::from_plotters)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("block (white: never omitted, blue: always)")
            .x_labels(n_blocks.clamp(1, 10) as usize)
            .y_labels(n_tasks.max(1) as usize)
            // Each task's name at its row (the tick below the row's centre is the row's top).
            .y_label_formatter(&|row| {
                tasks
                    .get(*row as usize)
                    .map_or(String::new(), |t| t.to_string())
            })
            .draw()
            .map_err(PlotError::from_plotters)?;
        let cells = freq.values().enumerate().flat_map(|(row, values)| {
            values.iter().enumerate().map(move |(b, &v)| {
                let (x, y) = (b as i32, row as i32);
                Rectangle::new([(x, y), (x + 1, y + 1)], heatmap_colour(v).filled())
            })
        });
        chart.draw_series(cells).map_err(PlotError::from_plotters)?;
        root.present().map_err(PlotError::from_plotters)?;
    }
    Ok(svg)
}

/// The heatmap's colour at frequency 1.
pub const HEATMAP_FULL: RGBColor = RGBColor(0, 0, 255);

/// White at 0, [`HEATMAP_FULL`] at 1, linear between.
pub fn heatmap_colour(frequency: f64) -> RGBColor {
    let shade = (255.0 * (1.0 - frequency.clamp(0.0, 1.0))).round() as u8;
    RGBColor(shade, shade, 255)
}

/// The line colours of [`accuracy_svg`], one per method in name order (cycled).
pub const METHOD_COLOURS: [RGBColor; 7] = [
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
];

/// Average accuracy (paper tasks, %) against the number of skipped blocks, one line per
/// method (in name order, [`METHOD_COLOURS`]) with its points marked and a legend; dense
/// is every line's point at k = 0.
pub fn accuracy_svg(methods: &[MethodRow]) -> Result<String, PlotError> {
    let dense = methods.iter().find(|m| m.k == 0).map(|m| m.average);
    let mut lines: BTreeMap<&str, Vec<(usize, f64)>> = BTreeMap::new();
    for m in methods.iter().filter(|m| m.k > 0 && !m.average.is_nan()) {
        lines.entry(&m.method).or_default().push((m.k, m.average));
    }
    let max_k = methods.iter().map(|m| m.k).max().unwrap_or(1).max(1) as f64;
    let values: Vec<f64> = methods
        .iter()
        .map(|m| 100.0 * m.average)
        .filter(|v| !v.is_nan())
        .collect();
    let lo = values
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .min(25.0);
    let hi = values
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max)
        .max(lo + 5.0);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (600, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(PlotError::from_plotters)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Average accuracy (paper tasks) vs skipped blocks",
                ("sans-serif", 13),
            )
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d(-0.2..max_k + 0.2, lo - 1.0..hi + 1.0)
            .map_err(PlotError::from_plotters)?;
        chart
            .configure_mesh()
            .x_desc("skipped blocks (k)")
            .y_desc("accuracy (%)")
            .x_labels(max_k as usize + 1)
            .x_label_formatter(&|k| format!("{k:.0}"))
            .y_label_formatter(&|v| format!("{v:.1}"))
            .draw()
            .map_err(PlotError::from_plotters)?;
        for (i, (name, mut points)) in lines.into_iter().enumerate() {
            let colour = METHOD_COLOURS[i % METHOD_COLOURS.len()];
            if let Some(d) = dense {
                points.insert(0, (0, d));
            }
            points.sort_by_key(|p| p.0);
            let xy: Vec<(f64, f64)> = points.iter().map(|&(k, v)| (k as f64, 100.0 * v)).collect();
            chart
                .draw_series(LineSeries::new(xy.clone(), colour.stroke_width(2)))
                .map_err(PlotError::from_plotters)?
                .label(name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 4), (x + 10, y + 4)], colour.filled())
                });
            chart
                .draw_series(xy.into_iter().map(|p| Circle::new(p, 3, colour.filled())))
                .map_err(PlotError::from_plotters)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(PlotError::from_plotters)?;
        root.present().map_err(PlotError::from_plotters)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(c: RGBColor) -> String {
        format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
    }

    /// `(tag, lower-case attribute value)` of every element with attribute `attr`.
    fn attrs(svg: &str, attr: &str) -> Vec<(String, String)> {
        let doc = roxmltree::Document::parse(svg).expect("the SVG parses");
        doc.descendants()
            .filter_map(|n| {
                n.attribute(attr)
                    .map(|v| (n.tag_name().name().to_string(), v.to_ascii_lowercase()))
            })
            .collect()
    }

    fn texts(svg: &str) -> Vec<String> {
        let doc = roxmltree::Document::parse(svg).expect("the SVG parses");
        doc.descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text().map(|t| t.trim().to_string()))
            .collect()
    }

    #[test]
    fn the_heatmap_has_one_cell_per_task_and_block_in_its_colour() {
        let freq: BTreeMap<String, Vec<f64>> = [
            ("arc_easy".to_string(), vec![0.0, 1.0, 0.25, 0.0]),
            ("piqa".to_string(), vec![0.5, 1.0, 0.0, 0.0]),
        ]
        .into();
        let svg = heatmap_svg(3, &freq).unwrap();
        let fills: Vec<String> = attrs(&svg, "fill")
            .into_iter()
            .filter(|(tag, _)| tag == "rect")
            .map(|(_, f)| f)
            .collect();
        for (v, n) in [(1.0, 2), (0.25, 1), (0.5, 1)] {
            let want = hex(heatmap_colour(v));
            assert_eq!(fills.iter().filter(|f| **f == want).count(), n, "{want}");
        }
        let names = texts(&svg);
        for label in ["arc_easy", "piqa"] {
            assert!(names.iter().any(|t| t == label), "{label} in {names:?}");
        }
        assert!(names.iter().any(|t| t.contains("(k = 3)")));
    }

    #[test]
    fn the_accuracy_plot_has_a_line_and_points_per_method_and_a_legend() {
        let row = |method: &str, k: usize, average: f64| MethodRow {
            method: method.into(),
            k,
            set: None,
            tasks: BTreeMap::new(),
            average,
            unseen_average: None,
        };
        let methods = [
            row("dense", 0, 0.50),
            row("pudding", 3, 0.47),
            row("pudding", 6, 0.44),
            row("sleb", 3, 0.46),
            row("sleb", 6, f64::NAN), // not run: no point
        ];
        let svg = accuracy_svg(&methods).unwrap();
        let strokes = attrs(&svg, "stroke");
        // Methods in name order: pudding, sleb.
        for (i, points) in [(0, 3), (1, 2)] {
            let colour = hex(METHOD_COLOURS[i]);
            let lines = strokes
                .iter()
                .filter(|(tag, s)| tag == "polyline" && *s == colour)
                .count();
            assert_eq!(lines, 1, "one line in {colour}");
            let circles = attrs(&svg, "fill")
                .into_iter()
                .filter(|(tag, f)| tag == "circle" && *f == colour)
                .count();
            assert_eq!(circles, points, "points of the line in {colour}");
        }
        let names = texts(&svg);
        for label in ["pudding", "sleb", "skipped blocks (k)"] {
            assert!(names.iter().any(|t| t == label), "{label} in {names:?}");
        }
    }
}
