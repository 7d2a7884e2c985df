//! The eight variants side by side (the notebook's "appendix"): layer counts, parameters,
//! GFLOPS, activation memory and published accuracy — every number from the same summary
//! rows `vgg summary` prints — plus the paper's Table 1 view of the five stages.

use serde::Serialize;

use crate::error::Result;
use crate::model::config::{Arch, VggConfig};
use crate::model::layers::{self, Container, LayerKind, build_layers};
use crate::summary::Summary;

/// One arch's numbers at one input size (batch 1).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArchStats {
    pub arch: &'static str,
    pub config: char,
    pub conv_layers: usize,
    pub bn_layers: usize,
    /// Convolutions plus linear layers: the 11/13/16/19 in the names.
    pub weight_layers: usize,
    pub conv_params: usize,
    pub classifier_params: usize,
    pub params: usize,
    /// Multiply-accumulates without biases ×1e-9, as torchvision's metadata counts them.
    pub gflops: f64,
    /// Every layer's output for one image, in MiB (f32).
    pub activation_mb: f64,
    pub acc1: f64,
    pub acc5: f64,
    /// Convolutions per stage and their width: the paper's Table 1.
    pub stages: Vec<Stage>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Stage {
    pub convs: usize,
    pub channels: usize,
}

/// Statistics for all eight archs at a `[C, H, W]` input.
pub fn compare(chw: [usize; 3]) -> Result<Vec<ArchStats>> {
    Arch::ALL.into_iter().map(|arch| stats(arch, chw)).collect()
}

fn stats(arch: Arch, chw: [usize; 3]) -> Result<ArchStats> {
    let config = VggConfig::from_arch(arch).with_in_channels(chw[0])?;
    let summary = Summary::new(&config, 1, chw, &[])?;
    let count = |class: &str| summary.leaves().filter(|r| r.class_name == class).count();
    let params_in = |prefix: &str| -> usize {
        summary
            .leaves()
            .filter(|r| r.path.starts_with(prefix))
            .map(|r| r.params)
            .sum()
    };
    let (_, acc1, acc5) = arch.imagenet_checkpoint();
    Ok(ArchStats {
        arch: arch.name(),
        config: arch.config_letter(),
        conv_layers: count("Conv2d"),
        bn_layers: count("BatchNorm2d"),
        weight_layers: count("Conv2d") + count("Linear"),
        conv_params: params_in(Container::Features.name()),
        classifier_params: params_in(Container::Classifier.name()),
        params: summary.total_params(),
        gflops: summary.total_macs() as f64 * 1e-9,
        activation_mb: summary.activation_bytes() as f64 / (1024.0 * 1024.0),
        acc1,
        acc5,
        stages: stages(&config),
    })
}

/// The stages with convolutions: how many, and the width of the last.
fn stages(config: &VggConfig) -> Vec<Stage> {
    let layers = build_layers(config);
    (layers::stages(&layers).iter())
        .filter_map(|stage| {
            let convs: Vec<usize> = stage.convs(&layers).collect();
            match layers[*convs.last()?].kind {
                LayerKind::Conv2d { out_channels, .. } => Some(Stage {
                    convs: convs.len(),
                    channels: out_channels,
                }),
                _ => None,
            }
        })
        .collect()
}

/// The cells of one table row, in [`HEADER`] order.
fn cells(s: &ArchStats) -> Vec<String> {
    vec![
        s.arch.to_string(),
        s.config.to_string(),
        s.conv_layers.to_string(),
        s.bn_layers.to_string(),
        s.weight_layers.to_string(),
        format!("{:.3}", s.conv_params as f64 / 1e6),
        format!("{:.3}", s.classifier_params as f64 / 1e6),
        format!("{:.3}", s.params as f64 / 1e6),
        format!("{:.3}", s.gflops),
        format!("{:.1}", s.activation_mb),
        format!("{:.3}", s.acc1),
        format!("{:.3}", s.acc5),
    ]
}

const HEADER: [&str; 12] = [
    "arch",
    "cfg",
    "conv",
    "bn",
    "weight layers",
    "conv params (M)",
    "fc params (M)",
    "params (M)",
    "GFLOPS",
    "activations (MiB)",
    "acc@1",
    "acc@5",
];

/// Output formats of `vgg compare`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Markdown,
    Csv,
    Json,
}

/// Renders both views (per-arch numbers, then the stages) in `format`; JSON is a list of
/// objects, one per arch, stages included.
pub fn render(stats: &[ArchStats], format: Format) -> String {
    let rows: Vec<Vec<String>> = stats.iter().map(cells).collect();
    let header: Vec<String> = HEADER.iter().map(|h| h.to_string()).collect();
    let stage_header: Vec<String> = std::iter::once("arch".to_string())
        .chain((1..=5).map(|i| format!("stage {i}")))
        .collect();
    let stage_rows: Vec<Vec<String>> = stats
        .iter()
        .map(|s| {
            std::iter::once(s.arch.to_string())
                .chain(
                    s.stages
                        .iter()
                        .map(|st| format!("{}×conv3-{}", st.convs, st.channels)),
                )
                .collect()
        })
        .collect();
    match format {
        Format::Json => serde_json::to_string_pretty(stats).expect("serialisable") + "\n",
        Format::Csv => csv(&header, &rows),
        Format::Markdown => markdown(&header, &rows) + "\n" + &markdown(&stage_header, &stage_rows),
        Format::Table => table(&header, &rows) + "\n" + &table(&stage_header, &stage_rows),
    }
}

fn csv(header: &[String], rows: &[Vec<String>]) -> String {
    std::iter::once(header)
        .chain(rows.iter().map(Vec::as_slice))
        .map(|r| r.join(",") + "\n")
        .collect()
}

fn markdown(header: &[String], rows: &[Vec<String>]) -> String {
    let line = |r: &[String]| format!("| {} |\n", r.join(" | "));
    let rule = format!("|{}\n", "---|".repeat(header.len()));
    line(header) + &rule + &rows.iter().map(|r| line(r)).collect::<String>()
}

/// Right-aligned columns sized to their widest cell.
fn table(header: &[String], rows: &[Vec<String>]) -> String {
    let width = |i: usize| {
        std::iter::once(header)
            .chain(rows.iter().map(Vec::as_slice))
            .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..header.len()).map(width).collect();
    std::iter::once(header)
        .chain(rows.iter().map(Vec::as_slice))
        .map(|r| {
            let cells: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(c, &w)| format!("{c:>w$}"))
                .collect();
            cells.join("  ") + "\n"
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_torchvision_metadata_and_summaries() {
        let all = compare([3, 224, 224]).unwrap();
        let gflops = [7.609, 7.609, 11.308, 11.308, 15.470, 15.470, 19.632, 19.632];
        let weight_layers = [11, 11, 13, 13, 16, 16, 19, 19];
        for ((s, g), w) in all.iter().zip(gflops).zip(weight_layers) {
            let arch: Arch = s.arch.parse().unwrap();
            let summary = Summary::new(&VggConfig::from_arch(arch), 1, [3, 224, 224], &[]).unwrap();
            assert_eq!(s.params, summary.total_params());
            assert_eq!(s.conv_params + s.classifier_params, s.params);
            assert!((s.gflops - g).abs() < 5e-4, "{} {}", s.arch, s.gflops);
            assert_eq!(s.weight_layers, w);
            assert_eq!(
                s.bn_layers,
                if arch.batch_norm() { s.conv_layers } else { 0 }
            );
            assert_eq!(s.stages.len(), 5);
            assert_eq!(
                s.stages.iter().map(|st| st.convs).sum::<usize>(),
                s.conv_layers
            );
        }
        assert_eq!(all[4].params, 138_357_544);
        assert_eq!(all[4].acc1, 71.592);
        assert_eq!(
            all[7].stages[4],
            Stage {
                convs: 4,
                channels: 512
            }
        );
    }

    #[test]
    fn formats() {
        let all = compare([3, 64, 64]).unwrap();
        let json: serde_json::Value = serde_json::from_str(&render(&all, Format::Json)).unwrap();
        let first = &json.as_array().unwrap()[0];
        for key in [
            "arch",
            "params",
            "gflops",
            "conv_layers",
            "weight_layers",
            "activation_mb",
            "acc1",
            "acc5",
        ] {
            assert!(first.get(key).is_some(), "{key}");
        }
        let csv = render(&all, Format::Csv);
        assert_eq!(csv.lines().count(), 9);
        assert!(render(&all, Format::Markdown).contains("| vgg19_bn | E |"));
    }
}
