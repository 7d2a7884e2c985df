//! Per-epoch metrics: `metrics.jsonl` and `metrics.csv` (rewritten whole from the run's
//! history each epoch, so they always agree with the last checkpoint, even after a resume),
//! and, with the `plots` feature, `curves.svg` / `curves.png` plotting loss and accuracy.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::io::write_atomically;

/// One epoch's results (accuracies in percent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_top1: f64,
    pub val_loss: f64,
    pub val_top1: f64,
    pub val_top5: f64,
    pub lr: f64,
    pub images_per_s: f64,
    pub seconds: f64,
}

const CSV_HEADER: &str =
    "epoch,train_loss,train_top1,val_loss,val_top1,val_top5,lr,images_per_s,seconds";

/// Writes `metrics.jsonl`, `metrics.csv` and (feature `plots`) the curves into `dir`.
pub fn write_all(dir: &Path, history: &[EpochMetrics]) -> Result<()> {
    let mut jsonl = String::new();
    let mut csv = format!("{CSV_HEADER}\n");
    for m in history {
        jsonl += &serde_json::to_string(m)
            .map_err(|e| Error::cannot_encode(&dir.join("metrics.jsonl"), e))?;
        jsonl.push('\n');
        csv += &format!(
            "{},{},{},{},{},{},{},{},{}\n",
            m.epoch,
            m.train_loss,
            m.train_top1,
            m.val_loss,
            m.val_top1,
            m.val_top5,
            m.lr,
            m.images_per_s,
            m.seconds
        );
    }
    write_text(&dir.join("metrics.jsonl"), &jsonl)?;
    write_text(&dir.join("metrics.csv"), &csv)?;
    #[cfg(feature = "plots")]
    crate::train::curves::write(dir, history)?;
    Ok(())
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    write_atomically(path, |tmp| {
        std::fs::write(tmp, text).map_err(|e| Error::io(tmp, "cannot write", e))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(epoch: usize, loss: f64, top1: f64) -> EpochMetrics {
        EpochMetrics {
            epoch,
            train_loss: loss,
            train_top1: top1,
            val_loss: loss * 1.1,
            val_top1: top1 - 1.0,
            val_top5: 99.0,
            lr: 0.01,
            images_per_s: 100.0,
            seconds: 2.0,
        }
    }

    #[test]
    fn files_hold_every_epoch_and_the_plot_has_every_series() {
        let dir = std::env::temp_dir().join(format!("vgg-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let history = [
            epoch(1, 2.0, 40.0),
            epoch(2, 1.0, 70.0),
            epoch(3, 0.5, 90.0),
        ];
        write_all(&dir, &history).unwrap();
        let jsonl = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
        let rows: Vec<EpochMetrics> = jsonl
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(rows, history);
        let csv = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
        assert_eq!(csv.lines().count(), 4);
        assert!(csv.starts_with(CSV_HEADER));
        #[cfg(feature = "plots")]
        {
            let svg = std::fs::read_to_string(dir.join("curves.svg")).unwrap();
            assert_eq!(svg.matches("<polyline").count(), 5);
            assert!(std::fs::metadata(dir.join("curves.png")).unwrap().len() > 1000);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
