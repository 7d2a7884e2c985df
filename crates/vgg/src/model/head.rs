//! The classifier head as a list of items, as the config describes it: torchvision's
//! `Linear-ReLU-Dropout ×2 + Linear` is one such list, a Keras transfer-learning head
//! (`Dense(64) → BatchNorm → Dense(4) → Softmax`) another. The layer list expands it into
//! modules `classifier.0`, `classifier.1`, … in order, so every consumer follows.

use std::fmt;

use crate::error::{Error, Result};

/// One module of the classifier, in `--head` syntax: `N` (a `Linear` to N features),
/// `relu`, `dropout` / `dropout=P`, `bn` (`BatchNorm1d`), `softmax`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HeadItem {
    Linear(usize),
    ReLU,
    Dropout(f64),
    BatchNorm1d,
    /// Over the classes; only as the last item. Training optimises the cross-entropy of the
    /// logits before it (what Keras computes for a softmax output), inference outputs
    /// probabilities.
    Softmax,
}

/// `nn.Dropout`'s default probability, used by a bare `dropout` item.
pub const DEFAULT_DROPOUT: f64 = 0.5;

/// torchvision's head: `Linear(hidden) ReLU Dropout(p)` twice, then `Linear(classes)`.
pub fn torchvision_head(hidden: usize, dropout: f64, num_classes: usize) -> Vec<HeadItem> {
    let block = [
        HeadItem::Linear(hidden),
        HeadItem::ReLU,
        HeadItem::Dropout(dropout),
    ];
    [&block[..], &block[..], &[HeadItem::Linear(num_classes)]].concat()
}

/// The hidden width and dropout of a head that is torchvision's shape, if it is.
pub fn as_torchvision(head: &[HeadItem]) -> Option<(usize, f64)> {
    match *head {
        [
            HeadItem::Linear(hidden),
            _,
            HeadItem::Dropout(p),
            _,
            _,
            _,
            HeadItem::Linear(classes),
        ] if head == torchvision_head(hidden, p, classes).as_slice() => Some((hidden, p)),
        _ => None,
    }
}

/// Parses `--head` text such as `4096,relu,dropout,4096,relu,dropout,1000` or
/// `64,relu,bn,32,relu,bn,4,softmax`.
pub fn parse_head(text: &str) -> Result<Vec<HeadItem>> {
    let bad = |why: String| {
        Error::BadArgument(format!(
            "bad --head `{text}`: {why}; items are N (a Linear to N features), relu, dropout, \
             dropout=P, bn, softmax"
        ))
    };
    text.split(',')
        .map(|item| {
            let item = item.trim().to_ascii_lowercase();
            match item.as_str() {
                "relu" => Ok(HeadItem::ReLU),
                "bn" | "batchnorm" | "batchnorm1d" => Ok(HeadItem::BatchNorm1d),
                "softmax" => Ok(HeadItem::Softmax),
                "dropout" => Ok(HeadItem::Dropout(DEFAULT_DROPOUT)),
                _ => match item.strip_prefix("dropout=") {
                    // In range here: NaN would also make the head unequal to itself.
                    Some(p) => (p.parse::<f64>().ok())
                        .filter(|p| (0.0..1.0).contains(p))
                        .map(HeadItem::Dropout)
                        .ok_or_else(|| {
                            bad(format!("`{p}` is not a dropout probability in [0, 1)"))
                        }),
                    None => item
                        .parse()
                        .map(HeadItem::Linear)
                        .map_err(|_| bad(format!("`{item}` is not an item"))),
                },
            }
        })
        .collect()
}

/// The head in `--head` syntax.
pub fn head_string(head: &[HeadItem]) -> String {
    let items: Vec<String> = head.iter().map(HeadItem::to_string).collect();
    items.join(",")
}

impl fmt::Display for HeadItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadItem::Linear(n) => write!(f, "{n}"),
            HeadItem::ReLU => f.write_str("relu"),
            HeadItem::Dropout(p) => write!(f, "dropout={p}"),
            HeadItem::BatchNorm1d => f.write_str("bn"),
            HeadItem::Softmax => f.write_str("softmax"),
        }
    }
}

/// What a buildable head looks like: at least one Linear (the last one gives the classes),
/// widths and probabilities in range, a batch norm only once there are features to
/// normalise per unit (after the first Linear), a softmax only at the end.
pub fn check_head(head: &[HeadItem], max_width: usize, max_items: usize) -> Result<()> {
    let bad = |why: String| Err(Error::BadConfig(format!("the head: {why}")));
    if head.len() > max_items {
        return bad(format!("{} items; at most {max_items}", head.len()));
    }
    let Some(first_linear) = head.iter().position(|i| matches!(i, HeadItem::Linear(_))) else {
        return bad("needs at least one Linear (its width is the class count)".into());
    };
    for (index, item) in head.iter().enumerate() {
        match *item {
            HeadItem::Linear(n) if !(1..=max_width).contains(&n) => {
                return bad(format!("a Linear needs 1..={max_width} features, got {n}"));
            }
            HeadItem::Dropout(p) if !(0.0..1.0).contains(&p) => {
                return bad(format!("dropout must be in [0, 1), got {p}"));
            }
            HeadItem::BatchNorm1d if index < first_linear => {
                return bad("a batch norm needs a Linear before it".into());
            }
            HeadItem::Softmax if index + 1 != head.len() => {
                return bad("softmax can only be the last item".into());
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_text_round_trips() {
        for text in [
            "4096,relu,dropout=0.5,4096,relu,dropout=0.5,1000",
            "64,relu,bn,32,relu,bn,4,softmax",
            "10",
        ] {
            assert_eq!(head_string(&parse_head(text).unwrap()), text);
        }
        assert_eq!(
            parse_head("4096,relu,dropout,4096,relu,dropout,1000").unwrap(),
            torchvision_head(4096, 0.5, 1000)
        );
        assert_eq!(
            as_torchvision(&torchvision_head(256, 0.2, 10)),
            Some((256, 0.2))
        );
        assert_eq!(as_torchvision(&parse_head("64,bn,4").unwrap()), None);
    }

    #[test]
    fn bad_heads_are_explained() {
        for (head, why) in [
            ("64,tanh,4", "`tanh` is not an item"),
            ("10,dropout=1", "`1` is not a dropout probability in [0, 1)"),
            ("10,dropout=nan", "`nan` is not a dropout probability"),
        ] {
            let err = parse_head(head).unwrap_err().to_string();
            assert!(err.contains(why), "{head}: {err}");
        }
        let err = check_head(&[HeadItem::Linear(4), HeadItem::Dropout(f64::NAN)], 8, 8);
        assert!(err.unwrap_err().to_string().contains("dropout must be in"));
        for (head, why) in [
            ("relu", "at least one Linear"),
            ("bn,10", "needs a Linear before it"),
            ("10,softmax,relu", "only be the last"),
            ("0", "1..="),
        ] {
            let err = check_head(&parse_head(head).unwrap(), 1 << 20, 1024)
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{head}: {err}");
        }
    }
}
