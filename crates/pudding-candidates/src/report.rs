//! Reports of a candidate pool: a Markdown table and an SVG grid of the omitted blocks.

use plotters::prelude::*;
use pudding_core::CandidatePool;

/// One row per candidate: index, skipped blocks, provenance sources (task/loss).
pub fn pool_markdown(pool: &CandidatePool) -> String {
    let mut out = format!(
        "model: {}; {} candidates\n\n| # | skipped blocks | k | found by |\n|---|---|---|---|\n",
        pool.fingerprint,
        pool.len()
    );
    for (i, c) in pool.candidates.iter().enumerate() {
        let sources: Vec<String> = c.provenance["sources"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| {
                        format!(
                            "{}/{}",
                            s["task"]
                                .as_str()
                                .unwrap_or(s["method"].as_str().unwrap_or("?")),
                            s["loss"].as_str().unwrap_or("?")
                        )
                    })
                    .collect()
            })
            .unwrap_or_else(|| vec![c.provenance["method"].as_str().unwrap_or("-").to_string()]);
        out.push_str(&format!(
            "| {i} | {} | {} | {} |\n",
            c.set,
            c.set.len(),
            sources.join(", ")
        ));
    }
    out
}

/// A plot that could not be drawn (plotters' error, as text: its type is generic over the
/// drawing backend).
#[derive(Debug, thiserror::Error)]
#[error("drawing the plot failed: {0}")]
pub struct PlotError(pub String);

impl PlotError {
    /// Wraps any plotters error.
    pub fn from_plotters(e: impl std::fmt::Display) -> Self {
        PlotError(e.to_string())
    }
}

/// The colour of an omitted block in [`pool_svg`].
pub const OMITTED_COLOUR: RGBColor = RGBColor(0xc0, 0x39, 0x2b);
/// The colour of a kept block in [`pool_svg`].
pub const KEPT_COLOUR: RGBColor = RGBColor(0xec, 0xf0, 0xf1);

/// An SVG grid drawn with plotters: one row per candidate (0 at the top), one column per
/// block, filled with [`OMITTED_COLOUR`] where the block is omitted.
pub fn pool_svg(pool: &CandidatePool) -> Result<String, PlotError> {
    let n_blocks = pool.fingerprint.n_blocks as i32;
    let n_candidates = pool.len() as i32;
    let size = (
        (70 + 18 * n_blocks.max(1)) as u32,
        (70 + 18 * n_candidates.max(1)) as u32,
    );
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(PlotError::from_plotters)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(32)
            // Candidate 0 on the top row, as the Markdown table lists them.
            .build_cartesian_2d(0..n_blocks, n_candidates..0)
            .map_err(PlotError::from_plotters)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("block")
            .y_desc("candidate")
            .x_labels(n_blocks.clamp(1, 7) as usize)
            .y_labels(n_candidates.clamp(1, 10) as usize)
            .draw()
            .map_err(PlotError::from_plotters)?;
        let cells = pool.candidates.iter().enumerate().flat_map(|(i, c)| {
            (0..pool.fingerprint.n_blocks).map(move |b| {
                let colour = if c.set.skips(b) {
                    OMITTED_COLOUR
                } else {
                    KEPT_COLOUR
                };
                let (x, y) = (b as i32, i as i32);
                Rectangle::new([(x, y), (x + 1, y + 1)], colour.filled())
            })
        });
        chart.draw_series(cells).map_err(PlotError::from_plotters)?;
        root.present().map_err(PlotError::from_plotters)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pudding_core::{Candidate, FingerprintBuilder, OmissionSet};

    #[test]
    fn table_and_grid_list_every_candidate() {
        let fp = FingerprintBuilder::new("llama", 6, 8, 16, "{}").finish();
        let c = |s: &str| Candidate {
            set: OmissionSet::parse(s, 6).unwrap(),
            provenance: serde_json::json!({"sources": [{"task": "piqa", "loss": "tl"}]}),
        };
        let pool = CandidatePool::new(fp, vec![c("1,2"), c("3")]).unwrap();
        let md = pool_markdown(&pool);
        assert!(md.contains("| 0 | 1,2 | 2 | piqa/tl |") && md.contains("| 1 | 3 | 1 |"));
        let svg = pool_svg(&pool).unwrap();
        // Opened as XML: one rectangle per (candidate, block), the omitted ones coloured.
        let doc = roxmltree::Document::parse(&svg).expect("the SVG parses");
        let fills: Vec<String> = doc
            .descendants()
            .filter(|n| n.has_tag_name("rect"))
            .filter_map(|n| n.attribute("fill").map(str::to_ascii_lowercase))
            .collect();
        assert_eq!(fills.iter().filter(|f| *f == "#c0392b").count(), 3);
        assert_eq!(fills.iter().filter(|f| *f == "#ecf0f1").count(), 12 - 3);
    }
}
