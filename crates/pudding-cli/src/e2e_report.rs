//! Tables and plots of `pudding reproduce` (Markdown and SVG, no plotting dependency).

use crate::reproduce::{MethodRow, ReproduceConfig, Reproduction};
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

/// Per task (rows) and block (columns), the fraction of routed items that omit the block.
pub fn heatmap_svg(k: usize, freq: &BTreeMap<String, Vec<f64>>) -> String {
    let n_blocks = freq.values().map(Vec::len).max().unwrap_or(0);
    let (cell, left, top) = (18.0, 130.0, 40.0);
    let width = left + cell * n_blocks as f64 + 20.0;
    let height = top + cell * freq.len() as f64 + 40.0;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">
<text x="{left}" y="16">Routed block omission frequency per task (k = {k})</text>
"#
    );
    for b in 0..n_blocks {
        let x = left + cell * b as f64 + cell / 2.0;
        let _ = writeln!(
            svg,
            r#"<text x="{x}" y="{}" text-anchor="middle">{b}</text>"#,
            top - 4.0
        );
    }
    for (row, (task, values)) in freq.iter().enumerate() {
        let y = top + cell * row as f64;
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="end">{task}</text>"#,
            left - 6.0,
            y + cell * 0.7
        );
        for (b, &v) in values.iter().enumerate() {
            let shade = (255.0 * (1.0 - v.clamp(0.0, 1.0))).round() as u8;
            let _ = writeln!(
                svg,
                r##"<rect x="{}" y="{y}" width="{cell}" height="{cell}" fill="rgb({shade},{shade},255)" stroke="#ccc"><title>{task} block {b}: {:.2}</title></rect>"##,
                left + cell * b as f64,
                v
            );
        }
    }
    let _ = writeln!(
        svg,
        r#"<text x="{left}" y="{}">white: never omitted, blue: always omitted</text></svg>"#,
        height - 12.0
    );
    svg
}

/// Average accuracy (paper tasks) against the number of skipped blocks, one line per
/// method; dense is the shared point at k = 0.
pub fn accuracy_svg(methods: &[MethodRow]) -> String {
    let dense = methods.iter().find(|m| m.k == 0).map(|m| m.average);
    let mut lines: BTreeMap<&str, Vec<(usize, f64)>> = BTreeMap::new();
    for m in methods.iter().filter(|m| m.k > 0 && !m.average.is_nan()) {
        lines.entry(&m.method).or_default().push((m.k, m.average));
    }
    let max_k = methods.iter().map(|m| m.k).max().unwrap_or(1).max(1) as f64;
    let values: Vec<f64> = methods
        .iter()
        .map(|m| m.average)
        .filter(|v| !v.is_nan())
        .collect();
    let lo = values
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .min(0.25);
    let hi = values
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max)
        .max(lo + 0.05);
    let (w, h, left, top, bottom) = (560.0, 340.0, 60.0, 30.0, 50.0);
    let x = |k: f64| left + (w - left - 200.0) * k / max_k;
    let y = |v: f64| top + (h - top - bottom) * (hi - v) / (hi - lo);
    let colours = [
        "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
    ];
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">
<text x="{left}" y="16">Average accuracy (paper tasks) vs skipped blocks</text>
<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="black"/>
<line x1="{left}" y1="{top}" x2="{left}" y2="{}" stroke="black"/>
"##,
        h - bottom,
        x(max_k),
        h - bottom,
        h - bottom
    );
    for k in 0..=(max_k as usize) {
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">{k}</text>"#,
            x(k as f64),
            h - bottom + 14.0
        );
    }
    for i in 0..=4 {
        let v = lo + (hi - lo) * i as f64 / 4.0;
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="end">{:.1}</text>"#,
            left - 4.0,
            y(v) + 4.0,
            100.0 * v
        );
    }
    for (i, (name, mut points)) in lines.into_iter().enumerate() {
        let colour = colours[i % colours.len()];
        if let Some(d) = dense {
            points.insert(0, (0, d));
        }
        points.sort_by_key(|p| p.0);
        let path: Vec<String> = points
            .iter()
            .map(|&(k, v)| format!("{:.1},{:.1}", x(k as f64), y(v)))
            .collect();
        let _ = writeln!(
            svg,
            r##"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"##,
            path.join(" ")
        );
        for &(k, v) in &points {
            let _ = writeln!(
                svg,
                r##"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"/>"##,
                x(k as f64),
                y(v)
            );
        }
        let ly = top + 16.0 * i as f64;
        let _ = writeln!(
            svg,
            r##"<rect x="{}" y="{}" width="10" height="10" fill="{colour}"/><text x="{}" y="{}">{name}</text>"##,
            w - 190.0,
            ly,
            w - 175.0,
            ly + 9.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">skipped blocks (k)</text></svg>"#,
        x(max_k / 2.0),
        h - 12.0
    );
    svg
}
