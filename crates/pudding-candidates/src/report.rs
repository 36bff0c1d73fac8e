//! Reports of a candidate pool: a Markdown table and an SVG grid of the omitted blocks.

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

/// An SVG grid: one row per candidate, one column per block, filled where the block is
/// omitted.
pub fn pool_svg(pool: &CandidatePool) -> String {
    let n_blocks = pool.fingerprint.n_blocks;
    let (cell, left, top) = (18usize, 40usize, 24usize);
    let width = left + n_blocks * cell + 10;
    let height = top + pool.len() * cell + 10;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"10\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    for b in 0..n_blocks {
        if b % 5 == 0 {
            svg.push_str(&format!(
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{b}</text>\n",
                left + b * cell + cell / 2,
                top - 8
            ));
        }
    }
    for (i, c) in pool.candidates.iter().enumerate() {
        let y = top + i * cell;
        svg.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{i}</text>\n",
            left - 6,
            y + cell - 5
        ));
        for b in 0..n_blocks {
            let fill = if c.set.skips(b) { "#c0392b" } else { "#ecf0f1" };
            svg.push_str(&format!(
                "<rect x=\"{}\" y=\"{y}\" width=\"{}\" height=\"{}\" fill=\"{fill}\" stroke=\"white\"/>\n",
                left + b * cell,
                cell,
                cell
            ));
        }
    }
    svg.push_str("</svg>\n");
    svg
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
        let svg = pool_svg(&pool);
        assert_eq!(svg.matches("#c0392b").count(), 3);
        assert_eq!(svg.matches("<rect ").count(), 1 + 12);
    }
}
