//! `vgg train` end to end on a small synthetic CIFAR-10 folder: resume is exact, a crash
//! during a checkpoint write leaves the previous checkpoint usable, checkpoints load in the
//! other commands, and bad input is refused clearly.

use std::collections::HashMap;
use std::path::Path;
use std::process::Output;

use candle_core::{Device, Tensor};
use common::{Scratch, vgg_with_env};

mod common;

/// `vgg` on two threads, whatever the machine (results must not depend on it).
fn vgg(args: &[&str], envs: &[(&str, &str)]) -> Output {
    vgg_with_env(&[&["--threads", "2"], args].concat(), envs)
}

/// A CIFAR-10 binary folder: `train` records in data_batch_1…5, `test` in test_batch; each
/// class a different colour blob on noise, so there is something to learn.
fn cifar(dir: &Path, train: usize, test: usize) {
    let record = |i: usize| {
        let label = (i % 10) as u8;
        let mut bytes = vec![label];
        for channel in 0..3 {
            for p in 0..1024 {
                let (y, x) = (p / 32, p % 32);
                let blob = (y / 8 + x / 8 + channel) % 10 == label as usize;
                let noise = ((i * 7919 + p * 104_729 + channel * 31) % 97) as u8;
                bytes.push(if blob { 200 } else { noise });
            }
        }
        bytes
    };
    for (b, name) in (1..=5).map(|b| (b, format!("data_batch_{b}.bin"))) {
        let records: Vec<u8> = (0..train)
            .filter(|i| i % 5 == b - 1)
            .flat_map(record)
            .collect();
        std::fs::write(dir.join(name), records).unwrap();
    }
    let records: Vec<u8> = (train..train + test).flat_map(record).collect();
    std::fs::write(dir.join("test_batch.bin"), records).unwrap();
}

fn ok(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "vgg failed: {stderr}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A run of a small batch-norm network with dropout, augmentation and flips: every source
/// of randomness that resume must reproduce. The rate halves every epoch (a schedule that
/// does not depend on the total, so 2 epochs then 2 more follow the 4-epoch schedule).
fn train(data: &Path, out: &Path, epochs: &str, envs: &[(&str, &str)]) -> Output {
    let (data, out) = (data.to_str().unwrap(), out.to_str().unwrap());
    vgg(
        &[
            "train",
            "--arch",
            "custom",
            "--cfg",
            "8,M,16,M",
            "--batch-norm",
            "--hidden",
            "32",
            "--pool",
            "2",
            "--num-classes",
            "10",
            "--dropout",
            "0.3",
            "--data",
            data,
            "--out",
            out,
            "--epochs",
            epochs,
            "--batch-size",
            "16",
            "--lr",
            "0.05",
            "--schedule",
            "step",
            "--step-size",
            "1",
            "--gamma",
            "0.5",
            "--nesterov",
            "--label-smoothing",
            "0.1",
            "--seed",
            "7",
        ],
        envs,
    )
}

fn tensors(path: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

fn assert_identical(a: &Path, b: &Path) {
    let (a, b) = (tensors(a), tensors(b));
    assert_eq!(a.len(), b.len());
    assert!(
        a.keys().any(|k| k.starts_with("optimizer.")),
        "optimiser state saved"
    );
    for (key, ta) in &a {
        let (ta, tb) = (ta.flatten_all().unwrap(), b[key].flatten_all().unwrap());
        if ta.dtype() == candle_core::DType::I64 {
            assert_eq!(
                ta.to_vec1::<i64>().unwrap(),
                tb.to_vec1::<i64>().unwrap(),
                "{key}"
            );
        } else {
            assert_eq!(
                ta.to_vec1::<f32>().unwrap(),
                tb.to_vec1::<f32>().unwrap(),
                "{key}"
            );
        }
    }
}

/// The metrics without the timing columns.
fn learning_curve(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|line| {
            let mut row: serde_json::Value = serde_json::from_str(line).unwrap();
            let row_map = row.as_object_mut().unwrap();
            row_map.remove("seconds");
            row_map.remove("images_per_s");
            row
        })
        .collect()
}

/// `metrics.csv` without its timing columns (the last two).
fn metrics_text(run: &std::path::Path) -> Vec<String> {
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    (csv.lines())
        .map(|line| line.rsplitn(3, ',').last().unwrap().to_string())
        .collect()
}

#[test]
fn four_epochs_equal_two_plus_resumed_two() {
    let dir = Scratch::new("resume");
    cifar(&dir, 60, 20);
    let (straight, split) = (dir.join("straight"), dir.join("split"));
    ok(&train(&dir, &straight, "4", &[]));
    ok(&train(&dir, &split, "2", &[]));
    assert_eq!(learning_curve(&split).len(), 2);
    ok(&vgg(
        &[
            "train",
            "--resume",
            split.to_str().unwrap(),
            "--epochs",
            "4",
        ],
        &[],
    ));
    let again = ok(&vgg(&["train", "--resume", split.to_str().unwrap()], &[]));
    assert!(
        again.starts_with("nothing to do: the run has trained 4 of 4 epochs"),
        "{again}"
    );
    // Classes renamed since (a label file added): every label would change meaning.
    let names: Vec<String> = (0..10).map(|i| format!("kind {i}")).collect();
    std::fs::write(dir.join("batches.meta.txt"), names.join("\n")).unwrap();
    let renamed = vgg(
        &[
            "train",
            "--resume",
            split.to_str().unwrap(),
            "--epochs",
            "5",
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&renamed.stderr);
    assert_eq!(renamed.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("class 0 is now `kind 0`, was `class 0`"),
        "{stderr}"
    );
    std::fs::remove_file(dir.join("batches.meta.txt")).unwrap();
    assert_identical(
        &straight.join("last.safetensors"),
        &split.join("last.safetensors"),
    );
    assert_eq!(learning_curve(&straight), learning_curve(&split));
    // As text too: a value read back from the checkpoint 1 ulp off would print differently.
    assert_eq!(metrics_text(&straight), metrics_text(&split));
    for file in [
        "metrics.csv",
        "curves.svg",
        "curves.png",
        "best.safetensors",
    ] {
        assert!(split.join(file).is_file(), "{file}");
    }
}

#[test]
fn a_crash_while_writing_a_checkpoint_leaves_the_previous_one() {
    let dir = Scratch::new("fault");
    cifar(&dir, 40, 20);
    let (crashed, reference) = (dir.join("crashed"), dir.join("reference"));
    // The second checkpoint write (after epoch 2) aborts the process mid-write.
    let output = train(&dir, &crashed, "3", &[("VGG_FAULT_CHECKPOINT_WRITE", "2")]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("injected fault"));
    assert_eq!(learning_curve(&crashed).len(), 1, "metrics of epoch 1 only");
    let state = vgg::train::checkpoint::load(&crashed.join("last.safetensors")).unwrap();
    assert_eq!(state.run.epoch, 1, "the epoch-1 checkpoint is intact");
    assert_eq!(
        temporaries(&crashed),
        1,
        "the abort left its temporary file"
    );
    // Resuming after the crash gives exactly the uninterrupted run, and removes the
    // temporary file of the dead process.
    ok(&vgg(&["train", "--resume", crashed.to_str().unwrap()], &[]));
    assert_eq!(temporaries(&crashed), 0);
    ok(&train(&dir, &reference, "3", &[]));
    assert_identical(
        &reference.join("last.safetensors"),
        &crashed.join("last.safetensors"),
    );
}

fn temporaries(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().ends_with(".tmp")
        })
        .count()
}

#[test]
fn a_new_run_never_overwrites_files_it_did_not_write() {
    let dir = Scratch::new("foreign");
    cifar(&dir, 20, 10);
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("metrics.csv"), "the user's own table\n").unwrap();
    let refused = train(&dir, &out, "1", &[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("metrics.csv") && stderr.contains("--force"),
        "{stderr}"
    );
    let kept = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(kept, "the user's own table\n");
    // A finished run in the folder: refused too, pointing at --resume.
    let run = dir.join("run");
    ok(&train(&dir, &run, "1", &[]));
    let again = train(&dir, &run, "1", &[]);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("--resume"), "{stderr}");
    // --force replaces them.
    let (data, out) = (dir.to_str().unwrap(), out.to_str().unwrap());
    let forced = [
        "train",
        "--arch",
        "custom",
        "--cfg",
        "8,M",
        "--hidden",
        "8",
        "--pool",
        "1",
        "--num-classes",
        "10",
        "--data",
        data,
        "--out",
        out,
        "--epochs",
        "1",
        "--force",
    ];
    ok(&vgg(&forced, &[]));
    let replaced = std::fs::read_to_string(dir.join("out/metrics.csv")).unwrap();
    assert!(replaced.starts_with("epoch"), "{replaced}");
}

#[test]
fn checkpoints_load_in_the_other_commands() {
    let dir = Scratch::new("load");
    cifar(&dir, 30, 10);
    let run = dir.join("run");
    ok(&train(&dir, &run, "1", &[]));
    let best = run.join("best.safetensors");
    let best = best.to_str().unwrap();
    let summary = ok(&vgg(&["weights", best], &[]));
    assert!(
        summary.contains("custom --cfg 8,M,16,M --batch-norm"),
        "{summary}"
    );
    let converted = dir.join("model.safetensors");
    ok(&vgg(&["convert", best, converted.to_str().unwrap()], &[]));
    assert!(
        !tensors(&converted)
            .keys()
            .any(|k| k.starts_with("optimizer."))
    );
    let table = ok(&vgg(
        &["summary", "auto", "--weights", best, "--input", "3x32x32"],
        &[],
    ));
    assert!(
        table.contains("Conv2d-1") && table.contains("Linear-"),
        "{table}"
    );
    let as_pth = dir.join("model.pth");
    ok(&vgg(&["convert", best, as_pth.to_str().unwrap()], &[]));
    let model_keys: Vec<String> = vgg::weights::read(&as_pth)
        .unwrap()
        .tensors
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(model_keys.len(), tensors(&converted).len());
    assert!(model_keys.iter().all(|k| !k.starts_with("optimizer.")));
    let image = dir.join("image.png");
    image::RgbImage::from_pixel(32, 32, image::Rgb([200, 10, 10]))
        .save(&image)
        .unwrap();
    let classified = ok(&vgg(
        &[
            "classify",
            "--weights",
            best,
            "--crop",
            "32",
            "--resize",
            "32",
            image.to_str().unwrap(),
        ],
        &[],
    ));
    // The CIFAR class names come from the checkpoint (the synthetic folder has no
    // batches.meta.txt, so they are `class 0…9`); the top row names one of them.
    assert!(
        classified.lines().nth(1).unwrap().contains("class "),
        "{classified}"
    );
}

#[test]
fn bad_training_input_is_refused_clearly() {
    let dir = Scratch::new("errors");
    cifar(&dir, 20, 10);
    let run = dir.join("run");
    let (data, out) = (dir.to_str().unwrap(), run.to_str().unwrap());
    let base = [
        "train", "--arch", "custom", "--cfg", "8,M", "--hidden", "8", "--data", data, "--out", out,
    ];
    let cases: [(&[&str], &str); 15] = [
        (
            &["--num-classes", "10", "--schedule", "multistep"],
            "--schedule multistep needs --milestones",
        ),
        (
            &["--num-classes", "10", "--milestones", "2,4"],
            "--milestones go with --schedule multistep",
        ),
        (
            &[
                "--num-classes",
                "10",
                "--epochs",
                "2",
                "--warmup-epochs",
                "3",
            ],
            "--warmup-epochs 3 is longer than the run (--epochs 2)",
        ),
        (
            &["--num-classes", "10", "--scale", "8"],
            "--scale 8: expected at least the crop (32)",
        ),
        (
            &[],
            "has 10 classes but the model has 1000 outputs: pass --num-classes 10",
        ),
        (
            &["--num-classes", "10", "--lr", "0"],
            "--lr must be a positive number",
        ),
        (
            &["--num-classes", "10", "--augment", "mixup"],
            "unknown augmentation `mixup`",
        ),
        (
            &["--num-classes", "10", "--label-smoothing", "1.5"],
            "--label-smoothing must be in [0, 1)",
        ),
        (
            &["--num-classes", "10", "--batch-size", "0"],
            "--batch-size must be at least 1",
        ),
        (
            &["--num-classes", "10", "--momentum", "nan"],
            "--momentum must be a non-negative number, got NaN",
        ),
        (
            &["--num-classes", "10", "--weight-decay=-1"],
            "--weight-decay must be a non-negative number, got -1",
        ),
        (
            &["--num-classes", "10", "--dampening", "5"],
            "--dampening must be in [0, 1], got 5",
        ),
        (
            &[
                "--num-classes",
                "10",
                "--schedule",
                "step",
                "--step-size",
                "0",
            ],
            "--step-size must be at least 1",
        ),
        (
            &["--num-classes", "10", "--gamma", "1.5"],
            "--gamma must be in (0, 1) for --schedule plateau, got 1.5",
        ),
        (
            &["--num-classes", "10", "--lr", "1e30", "--epochs", "1"],
            "the weights diverged in epoch 1: the validation loss is NaN",
        ),
    ];
    for (extra, message) in cases {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let output = vgg(&args, &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(stderr.contains(message), "{extra:?}: {stderr}");
    }
    let missing = vgg(
        &["train", "--resume", dir.join("nothing").to_str().unwrap()],
        &[],
    );
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no run to resume"));
    // A resumed run keeps its own options: a flag that would change one is refused, never
    // ignored (only --epochs goes with --resume).
    let resume = dir.join("nothing");
    for flag in [
        &["--momentum", "0"][..],
        &["--out", out],
        &["--crop", "16"],
        &["--hidden", "8"],
    ] {
        let args = [&["train", "--resume", resume.to_str().unwrap()][..], flag].concat();
        let output = vgg(&args, &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flag:?}: {stderr}");
        assert!(stderr.contains("cannot be used with"), "{flag:?}: {stderr}");
    }
    let folder = Scratch::new("no-val");
    std::fs::create_dir_all(folder.join("a")).unwrap();
    let no_val = vgg(
        &[
            "train",
            "--arch",
            "vgg11",
            "--data",
            folder.to_str().unwrap(),
            "--out",
            out,
        ],
        &[],
    );
    assert!(String::from_utf8_lossy(&no_val.stderr).contains("--val-split"));
}

/// An ImageFolder with `train/` and `val/`, three classes of solid colours.
fn image_folder(dir: &Path) {
    let colours = [[220, 30, 30], [30, 220, 30], [30, 30, 220]];
    for (split, count) in [("train", 6), ("val", 2)] {
        for (class, colour) in colours.iter().enumerate() {
            let folder = dir.join(split).join(format!("colour{class}"));
            std::fs::create_dir_all(&folder).unwrap();
            for i in 0..count {
                let shade = colour.map(|c: u8| c.saturating_sub(i as u8 * 10));
                image::RgbImage::from_pixel(32, 32, image::Rgb(shade))
                    .save(folder.join(format!("{i}.png")))
                    .unwrap();
            }
        }
    }
}

/// `vgg train` of a small network on the 3-class colour folder: the arguments before the
/// data, run directory and the options a test is about.
fn small_net(cfg: &'static str, epochs: &'static str) -> Vec<&'static str> {
    vec![
        "train",
        "--arch",
        "custom",
        "--cfg",
        cfg,
        "--hidden",
        "16",
        "--pool",
        "1",
        "--num-classes",
        "3",
        "--batch-size",
        "6",
        "--epochs",
        epochs,
    ]
}

#[test]
fn fine_tuning_reinitialises_the_last_layer_and_freezes_the_features() {
    let dir = Scratch::new("finetune");
    cifar(&dir, 30, 10);
    let pretrained = dir.join("pretrained");
    ok(&train(&dir, &pretrained, "1", &[]));
    let folder = dir.join("colours");
    image_folder(&folder);
    let tuned = dir.join("tuned");
    let pretrained_best = pretrained.join("best.safetensors");
    let output = vgg(
        &[
            "train",
            "--arch",
            "auto",
            "--weights",
            pretrained_best.to_str().unwrap(),
            "--num-classes",
            "3",
            "--freeze",
            "features",
            "--data",
            folder.to_str().unwrap(),
            "--out",
            tuned.to_str().unwrap(),
            "--epochs",
            "2",
            "--batch-size",
            "6",
            "--crop",
            "32",
        ],
        &[],
    );
    ok(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let note = stderr
        .lines()
        .find(|l| l.starts_with("fine-tuning:"))
        .unwrap_or_default();
    assert!(
        note.contains("classifier.6.weight") && note.contains("classifier.6.bias"),
        "{stderr}"
    );
    assert!(note.ends_with("re-initialised for 3 classes"), "{stderr}");
    let (before, after) = (
        tensors(&pretrained_best),
        tensors(&tuned.join("last.safetensors")),
    );
    let values = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(after["classifier.6.weight"].dims(), [3, 32]);
    for key in [
        "features.0.weight",
        "features.4.weight",
        "features.1.weight",
    ] {
        assert_eq!(values(&before[key]), values(&after[key]), "{key} is frozen");
    }
    assert_ne!(
        values(&before["classifier.0.weight"]),
        values(&after["classifier.0.weight"])
    );
    assert!(!after.keys().any(|k| k.starts_with("optimizer.features")));
    let classes = vgg::weights::safetensors::class_names(&tuned.join("best.safetensors"));
    assert_eq!(classes.unwrap().unwrap(), ["colour0", "colour1", "colour2"]);
}

/// The paper's training options end to end: scale jittering and the colour shift train a
/// shallow net; `--init-from` starts a deeper one from it with the matched layers equal to
/// the source's and the others fresh.
#[test]
fn scale_jitter_colour_shift_and_init_from_a_shallower_net() {
    let dir = Scratch::new("paper-training");
    let folder = dir.join("colours");
    image_folder(&folder);
    let net = |cfg| [small_net(cfg, "1"), vec!["--crop", "16"]].concat();
    let (data, shallow) = (folder.to_str().unwrap(), dir.join("a"));
    let mut args = net("8,M,16,M");
    args.extend(["--data", data, "--out", shallow.to_str().unwrap()]);
    args.extend(["--scale-jitter", "16,24", "--color-shift"]);
    ok(&vgg(&args, &[]));
    let source = shallow.join("best.safetensors");

    let config = vgg::VggConfig::custom("8,8,M,16,16,M", false)
        .unwrap()
        .with_overrides(&vgg::ConfigOverrides {
            num_classes: Some(3),
            hidden: Some(16),
            pool: Some(1),
            ..Default::default()
        })
        .unwrap();
    let fresh = vgg::Vgg::new(config, 5, &Device::Cpu).unwrap();
    let (deeper, copied) =
        vgg::train::init_from::init_from(&fresh, &source, 4, 5, &Device::Cpu).unwrap();
    let pairs: Vec<(&str, &str)> = copied
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("features.0", "features.0"),
            ("features.3", "features.5"),
            ("classifier.0", "classifier.0"),
            ("classifier.3", "classifier.3"),
            ("classifier.6", "classifier.6")
        ]
    );
    let (from, before) = (tensors(&source), fresh.state_dict().unwrap());
    let before: HashMap<String, Tensor> = before.into_iter().collect();
    let values = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for (key, tensor) in deeper.state_dict().unwrap() {
        let copied_from = copied.iter().find_map(|(a, b)| {
            key.strip_prefix(&format!("{b}."))
                .map(|name| format!("{a}.{name}"))
        });
        match copied_from {
            Some(source_key) => assert_eq!(values(&tensor), values(&from[&source_key]), "{key}"),
            None => assert_eq!(values(&tensor), values(&before[&key]), "{key} stays fresh"),
        }
    }

    let deep = dir.join("d");
    let mut args = net("8,8,M,16,16,M");
    args.extend(["--data", data, "--out", deep.to_str().unwrap()]);
    args.extend(["--init-from", source.to_str().unwrap(), "--scale", "20"]);
    let output = vgg(&args, &[]);
    ok(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("features.3→features.5"), "{stderr}");
    let (mut args, refused) = (net("8,M,16,M"), dir.join("e"));
    args.extend(["--data", data, "--out", refused.to_str().unwrap()]);
    args.extend(["--scale-jitter", "8,24"]);
    let output = vgg(&args, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("both at least the crop (16)"), "{stderr}");
}

/// A checkpoint carries its preprocessing: `evaluate` with no preprocessing flags sees what
/// validation saw during training, and reports the run's own best top-1; `vgg weights` shows
/// it; `--preset` or `--crop` still override.
#[test]
fn a_checkpoint_carries_its_preprocessing() {
    let dir = Scratch::new("carried-preprocessing");
    let folder = dir.join("colours");
    image_folder(&folder);
    let run = dir.join("run");
    let mut args = small_net("8,M,16,M", "3");
    args.extend([
        "--crop",
        "20",
        "--resize",
        "24",
        "--mean",
        "0.5,0.5,0.5",
        "--std",
        "0.25,0.25,0.25",
        "--data",
        folder.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ]);
    let output = vgg(&args, &[]);
    ok(&output);
    let best = run.join("best.safetensors");
    let curve = learning_curve(&run);
    let best_top1 = (curve.iter())
        .map(|row| row["val_top1"].as_f64().unwrap())
        .fold(f64::MIN, f64::max);
    let val = folder.join("val");
    let evaluate = |extra: &[&str]| -> f64 {
        let mut args = vec!["evaluate", "--weights", best.to_str().unwrap()];
        args.extend(["--data", val.to_str().unwrap(), "--json"]);
        args.extend_from_slice(extra);
        let report: serde_json::Value = serde_json::from_str(&ok(&vgg(&args, &[]))).unwrap();
        report["top1"].as_f64().unwrap()
    };
    assert!(
        (evaluate(&[]) - best_top1).abs() < 1e-9,
        "the run's own best top-1 {best_top1}"
    );
    let shown = ok(&vgg(&["weights", best.to_str().unwrap()], &[]));
    assert!(
        shown.contains("--resize 24 --crop 20 --mean 0.5,0.5,0.5 --std 0.25,0.25,0.25"),
        "{shown}"
    );
    // Flags still win: an ImageNet-normalised 224 crop is another input altogether.
    let overridden = vgg(
        &[
            "features",
            "--weights",
            best.to_str().unwrap(),
            "--layer",
            "features.0",
            "--crop",
            "8",
        ]
        .iter()
        .copied()
        .chain([
            folder.join("val/colour0/0.png").to_str().unwrap(),
            "--output",
            dir.join("f.npy").to_str().unwrap(),
        ])
        .collect::<Vec<_>>(),
        &[],
    );
    ok(&overridden);
    let features = Tensor::read_npy(dir.join("f.npy")).unwrap();
    assert_eq!(
        features.dims(),
        [1, 8, 8, 8],
        "--crop overrides the checkpoint's 20"
    );
}

/// Small images train at their own size, and the run's first line says so; `--init`
/// chooses how a network trained from scratch starts.
#[test]
fn small_images_train_at_their_size_and_say_so() {
    let dir = Scratch::new("own-size");
    let folder = dir.join("colours");
    image_folder(&folder);
    let run = |out: &str, init: &str| {
        let (data, out) = (folder.to_str().unwrap(), dir.join(out));
        let mut args = small_net("8,M,16,M", "1");
        args.extend([
            "--init",
            init,
            "--data",
            data,
            "--out",
            out.to_str().unwrap(),
        ]);
        vgg(&args, &[])
    };
    for init in ["torchvision", "pytorch", "glorot"] {
        let output = run(init, init);
        ok(&output);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            stderr.lines().next(),
            Some("training at 32×32 crops (images are 32×32)"),
            "{stderr}"
        );
    }
    let output = run("bad", "he");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("valid: torchvision, pytorch, glorot"),
        "{stderr}"
    );
}

/// A configured head (batch norm, softmax) trains on the logits, and its checkpoint, and the
/// ONNX graph exported from it, evaluate to the run's own best top-1 with no flags: the
/// config, the preprocessing and the class names travel with the files.
#[test]
fn a_configured_head_trains_and_travels_to_onnx() {
    let dir = Scratch::new("configured-head");
    let folder = dir.join("colours");
    image_folder(&folder);
    let run = dir.join("run");
    let mut args = small_net("8,M,16,M", "3");
    args.extend([
        "--head",
        "16,relu,bn,3,softmax",
        "--crop",
        "20",
        "--resize",
        "24",
    ]);
    args.extend([
        "--data",
        folder.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ]);
    ok(&vgg(&args, &[]));
    let best_top1 = (learning_curve(&run).iter())
        .map(|row| row["val_top1"].as_f64().unwrap())
        .fold(f64::MIN, f64::max);
    let best = run.join("best.safetensors");
    let onnx = dir.join("best.onnx");
    ok(&vgg(
        &["convert", best.to_str().unwrap(), onnx.to_str().unwrap()],
        &[],
    ));
    let val = folder.join("val");
    for weights in [&best, &onnx] {
        let args = ["evaluate", "--weights", weights.to_str().unwrap()];
        let args = [&args[..], &["--data", val.to_str().unwrap(), "--json"]].concat();
        let report: serde_json::Value = serde_json::from_str(&ok(&vgg(&args, &[]))).unwrap();
        let top1 = report["top1"].as_f64().unwrap();
        assert!(
            (top1 - best_top1).abs() < 1e-9,
            "{weights:?}: {top1} vs the run's {best_top1}"
        );
    }
    let shown = ok(&vgg(&["weights", onnx.to_str().unwrap()], &[]));
    assert!(shown.contains("head 16,relu,bn,3,softmax"), "{shown}");
    assert!(shown.contains("--crop 20"), "{shown}");
    // The paper's protocols test it at its training scale S = 24: S ± 3 (32 at 224 crops),
    // with crops of its 20×20.
    let args = [
        "evaluate",
        "--weights",
        best.to_str().unwrap(),
        "--limit",
        "2",
    ];
    let args = [&args[..], &["--data", val.to_str().unwrap()]].concat();
    let report = ok(&vgg(
        &[&args[..], &["--protocol", "multi-crop"]].concat(),
        &[],
    ));
    assert!(report.contains("multi-crop at 21,24,27"), "{report}");
}

/// Images that cannot be read are skipped one by one, but an epoch in which none could be
/// used is an error, not a loss and accuracy of 0 written into checkpoints; one corrupt file
/// does not change the size the others train at; the warnings are one line each.
#[test]
fn a_split_with_no_readable_image_is_an_error() {
    let dir = Scratch::new("unreadable");
    let folder = dir.join("colours");
    image_folder(&folder);
    let corrupt = folder.join("train/colour0/corrupt.png");
    std::fs::write(&corrupt, b"not a png").unwrap();
    let one_bad = dir.join("one-bad");
    let args = [
        small_net("8,M", "1"),
        vec!["--data", s(&folder), "--out", s(&one_bad)],
    ]
    .concat();
    let output = vgg(&args, &[]);
    ok(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("32×32 crops"), "{stderr}");
    let warning = (stderr.lines())
        .find(|l| l.contains("warning: skipped"))
        .unwrap_or_default();
    assert!(warning.contains("corrupt.png"), "{stderr}");
    assert_eq!(warning.matches("corrupt.png").count(), 1, "{warning}");
    for split in ["train", "val"] {
        for class in 0..3 {
            for entry in
                std::fs::read_dir(folder.join(split).join(format!("colour{class}"))).unwrap()
            {
                std::fs::write(entry.unwrap().path(), b"not a png").unwrap();
            }
        }
    }
    let none = dir.join("none");
    let args = [
        small_net("8,M", "1"),
        vec!["--data", s(&folder), "--out", s(&none), "--crop", "32"],
    ]
    .concat();
    let output = vgg(&args, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("epoch 1: none of the 19 training images could be used"),
        "{stderr}"
    );
    assert!(!none.join("last.safetensors").exists());
    let weights = one_bad.join("best.safetensors");
    let output = vgg(
        &[
            "evaluate",
            "--weights",
            s(&weights),
            "--data",
            s(&folder.join("val")),
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("none of the 6 images could be evaluated"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&output.stdout).contains("top-1"));
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}
