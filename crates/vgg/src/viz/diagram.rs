//! Architecture diagrams: one column per model, one block per stage (convolutions × width,
//! spatial size at the chosen input, share of the parameters), then the pool and the
//! classifier — read off the same summary rows `vgg summary` prints. SVG through the `svg`
//! crate; PNG by rasterising that SVG with `resvg`.

use std::path::Path;

use svg::Document;
use svg::node::element::{Rectangle, Text};

use crate::error::{Error, Result};
use crate::io::write_atomically;
use crate::model::VggConfig;
use crate::model::layers::{build_layers, stages};
use crate::summary::{Row, Summary};

/// Fonts for our SVGs: resvg maps the generic `sans-serif` to Arial, which a Linux machine
/// often lacks, so DejaVu (nearly always installed) comes first.
pub const FONT_FAMILY: &str = "DejaVu Sans, Arial, sans-serif";

const COLUMN: f64 = 250.0;
const BLOCK: f64 = 46.0;
const GAP: f64 = 8.0;
const TOP: f64 = 56.0;
/// One colour per stage, then the pool and the classifier.
const COLOURS: [&str; 7] = [
    "#4e79a7", "#59a14f", "#edc948", "#f28e2b", "#e15759", "#bab0ac", "#76b7b2",
];

/// One block of a column.
struct Block {
    title: String,
    detail: String,
    params: usize,
    colour: &'static str,
}

/// The stages (convolutions up to each max-pool, from the layer list of `config`, whose
/// summary is `summary`), the adaptive pool and each linear layer.
fn blocks(summary: &Summary, config: &VggConfig) -> Vec<Block> {
    let layers = build_layers(config);
    let row = |i: usize| -> &Row {
        let path = layers[i].path();
        (summary.leaves().find(|r| r.path == path)).expect("the summary has a row per layer")
    };
    let mut blocks = Vec::new();
    for stage in stages(&layers) {
        let (pool, convs) = (stage.pool.map(row), stage.convs(&layers).map(row));
        let convs: Vec<&Row> = convs.collect();
        // Convolutions after the last pool make a stage of their own, without one.
        let Some(out) = (convs.last().map(|r| &r.output_shape)).or(pool.map(|p| &p.input_shape))
        else {
            continue;
        };
        let title = match convs.len() {
            0 => "max pool".to_string(),
            n => format!("{n} × conv3-{}", out[0]),
        };
        let detail = match pool {
            Some(p) => format!(
                "{}×{} → {}×{}",
                out[1], out[2], p.output_shape[1], p.output_shape[2]
            ),
            None => format!("{}×{}", out[1], out[2]),
        };
        blocks.push(Block {
            title,
            detail,
            params: stage.layers.clone().map(|i| row(i).params).sum(),
            colour: COLOURS[blocks.len().min(4)],
        });
    }
    for row in summary.leaves() {
        match row.class_name {
            "AdaptiveAvgPool2d" => blocks.push(Block {
                title: "adaptive avg pool".into(),
                detail: format!(
                    "{}×{}×{}",
                    row.output_shape[0], row.output_shape[1], row.output_shape[2]
                ),
                params: 0,
                colour: COLOURS[5],
            }),
            "Linear" => blocks.push(Block {
                title: format!("FC-{}", row.output_shape[0]),
                detail: format!("{} → {}", row.input_shape[0], row.output_shape[0]),
                params: row.params,
                colour: COLOURS[6],
            }),
            _ => {}
        }
    }
    blocks
}

/// An SVG with one column per config, at input `[C, H, W]`.
pub fn diagram(configs: &[VggConfig], chw: [usize; 3]) -> Result<String> {
    if configs.is_empty() {
        return Err(Error::BadArgument(
            "a diagram needs at least one model".into(),
        ));
    }
    let summaries = configs
        .iter()
        .map(|c| Summary::new(&c.with_in_channels(chw[0])?, 1, chw, &[]))
        .collect::<Result<Vec<_>>>()?;
    let columns: Vec<Vec<Block>> = (summaries.iter().zip(configs))
        .map(|(summary, config)| blocks(summary, config))
        .collect();
    let rows = columns.iter().map(Vec::len).max().unwrap_or(0) as f64;
    let (width, height) = (
        COLUMN * configs.len() as f64 + GAP,
        TOP + rows * (BLOCK + GAP) + GAP,
    );
    let mut doc = Document::new()
        .set("viewBox", (0, 0, width, height))
        .set("width", width)
        .set("height", height)
        .set("font-family", FONT_FAMILY)
        .add(
            Rectangle::new()
                .set("width", width)
                .set("height", height)
                .set("fill", "white"),
        );
    for (i, (summary, column)) in summaries.iter().zip(&columns).enumerate() {
        let x = GAP + COLUMN * i as f64;
        let total = summary.total_params().max(1) as f64;
        doc = doc.add(text(x, 22.0, 16, "bold", &summary.model)).add(text(
            x,
            42.0,
            12,
            "normal",
            &format!(
                "{:.1} M params · {:.2} GFLOPS",
                total / 1e6,
                summary.total_macs() as f64 * 1e-9,
            ),
        ));
        for (j, block) in column.iter().enumerate() {
            let y = TOP + j as f64 * (BLOCK + GAP);
            let share = block.params as f64 / total;
            doc = doc
                .add(
                    Rectangle::new()
                        .set("x", x)
                        .set("y", y)
                        .set("rx", 6)
                        .set("width", COLUMN - GAP)
                        .set("height", BLOCK)
                        .set("fill", block.colour)
                        .set("fill-opacity", 0.25 + 0.75 * share.sqrt())
                        .set("stroke", block.colour),
                )
                .add(text(x + 8.0, y + 19.0, 13, "bold", &block.title))
                .add(text(
                    x + 8.0,
                    y + 37.0,
                    11,
                    "normal",
                    &format!("{} · {} params", block.detail, percent(share)),
                ));
        }
    }
    Ok(doc.to_string())
}

/// A share as a percentage with two significant decimals below 1%.
fn percent(share: f64) -> String {
    let p = 100.0 * share;
    if p > 0.0 && p < 1.0 {
        format!("{p:.2}%")
    } else {
        format!("{p:.1}%")
    }
}

fn text(x: f64, y: f64, size: u32, weight: &str, content: &str) -> Text {
    Text::new(content)
        .set("x", x)
        .set("y", y)
        .set("font-size", size)
        .set("font-weight", weight)
        .set("fill", "#222")
}

/// Writes the SVG, or a PNG rendering of it when `path` ends in `.png`.
pub fn write(path: &Path, svg: &str) -> Result<()> {
    match crate::io::extension(path).as_deref() {
        Some("svg") => write_atomically(path, |tmp| {
            std::fs::write(tmp, svg).map_err(|e| Error::io(tmp, "cannot write", e))
        }),
        Some("png") => {
            let pixmap = rasterise(svg, path)?;
            write_atomically(path, |tmp| {
                (pixmap.save_png(tmp)).map_err(|e| Error::cannot_encode(tmp, e))
            })
        }
        _ => Err(Error::BadArgument(format!(
            "{}: expected a .svg or .png file for the picture",
            path.display()
        ))),
    }
}

/// The picture `svg` draws, in pixels; `path` (where it goes) names it in errors. Its size
/// is checked against the memory budget first: an SVG may claim any width and height.
fn rasterise(svg: &str, path: &Path) -> Result<resvg::tiny_skia::Pixmap> {
    let mut options = resvg::usvg::Options::default();
    options.fontdb_mut().load_system_fonts();
    let tree = resvg::usvg::Tree::from_str(svg, &options)
        .map_err(|e| Error::cannot_encode(path, format!("cannot render the diagram: {e}")))?;
    let size = tree.size().to_int_size();
    let (width, height) = (size.width(), size.height());
    crate::limits::reserve(
        crate::limits::array_bytes(&[width as usize, height as usize], 4),
        || format!("{}: a {width}x{height} picture", path.display()),
    )?;
    let mut pixmap = resvg::tiny_skia::Pixmap::new(width, height)
        .ok_or_else(|| Error::cannot_encode(path, "the diagram is empty"))?;
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::default(),
        &mut pixmap.as_mut(),
    );
    Ok(pixmap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Arch;

    #[test]
    fn vgg16_blocks_and_shares() {
        let config = VggConfig::from_arch(Arch::Vgg16);
        let summary = Summary::new(&config, 1, [3, 224, 224], &[]).unwrap();
        let blocks = blocks(&summary, &config);
        let titles: Vec<&str> = blocks.iter().map(|b| b.title.as_str()).collect();
        assert_eq!(
            titles,
            [
                "2 × conv3-64",
                "2 × conv3-128",
                "3 × conv3-256",
                "3 × conv3-512",
                "3 × conv3-512",
                "adaptive avg pool",
                "FC-4096",
                "FC-4096",
                "FC-1000"
            ]
        );
        assert_eq!(blocks.iter().map(|b| b.params).sum::<usize>(), 138_357_544);
        assert_eq!(blocks[0].detail, "224×224 → 112×112");
    }

    #[test]
    fn svg_has_a_column_per_model() {
        let configs: Vec<VggConfig> = Arch::ALL.into_iter().map(VggConfig::from_arch).collect();
        let svg = diagram(&configs, [3, 224, 224]).unwrap();
        assert!(svg.starts_with("<svg"));
        for arch in Arch::ALL {
            assert!(
                svg.contains(&format!("\n{}\n</text>", arch.name())),
                "{arch}"
            );
        }
    }

    /// Every convolution is drawn, those after the last pool too.
    #[test]
    fn convolutions_after_the_last_pool_are_drawn() {
        let config = VggConfig::custom("8,M,16,32", false).unwrap();
        let summary = Summary::new(&config, 1, [3, 32, 32], &[]).unwrap();
        let titles: Vec<String> = (blocks(&summary, &config).into_iter())
            .map(|b| b.title)
            .collect();
        assert_eq!(titles[..2], ["1 × conv3-8", "2 × conv3-32"]);
    }

    /// An SVG may claim any size: its pixels are checked against the memory budget before
    /// they are allocated, and the error names the output, not a temporary file.
    #[test]
    fn a_huge_picture_is_refused_before_it_is_allocated() {
        let svg = r#"<svg xmlns="http://www.w3.org/2000/svg" width="1000000" height="1000000"/>"#;
        let path = std::env::temp_dir().join(format!("vgg-huge-{}.png", std::process::id()));
        let err = write(&path, svg).unwrap_err();
        assert!(matches!(err, Error::OverBudget { .. }), "{err}");
        assert!(
            err.to_string().starts_with(&path.display().to_string()),
            "{err}"
        );
        assert!(!path.exists());
    }
}
