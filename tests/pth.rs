//! Reads the fixtures written by `scripts/make_pth_fixtures.py` and checks
//! values, formats and the error for each kind of broken or hostile file.

mod common;

use common::fixture;

use vgg::weights::pth::{Checkpoint, PthError, PthFormat, TensorEntry};

fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture(&format!("pth/{name}"))).expect("fixture exists")
}

fn open_err(name: &str) -> PthError {
    Checkpoint::open(&fixture(&format!("pth/{name}"))).expect_err("fixture must be rejected")
}

fn bytes_err(bytes: Vec<u8>) -> PthError {
    Checkpoint::from_bytes(bytes).expect_err("bytes must be rejected")
}

/// One line of expected.txt: `name|dtype|shape|strides|storage_offset`.
struct Expected {
    name: String,
    dtype: String,
    shape: Vec<usize>,
    strides: Vec<usize>,
    offset: usize,
}

fn parse_dims(field: &str) -> Vec<usize> {
    field
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect()
}

fn expected() -> Vec<Expected> {
    let text = std::fs::read_to_string(fixture("pth/expected.txt")).unwrap();
    text.lines()
        .map(|line| {
            let f: Vec<&str> = line.split('|').collect();
            Expected {
                name: f[0].to_owned(),
                dtype: f[1].to_owned(),
                shape: parse_dims(f[2]),
                strides: parse_dims(f[3]),
                offset: f[4].parse().unwrap(),
            }
        })
        .collect()
}

fn le_values<const N: usize, T>(name: &str, decode: fn([u8; N]) -> T) -> Vec<T> {
    fixture_bytes(name)
        .chunks_exact(N)
        .map(|c| decode(c.try_into().unwrap()))
        .collect()
}

fn is_float(dtype: &str) -> bool {
    dtype.starts_with("float") || dtype == "bfloat16"
}

/// Reads every entry, dispatching on dtype, as a caller would.
fn read_all(checkpoint: &Checkpoint) -> Result<(), PthError> {
    for entry in checkpoint.entries() {
        if checkpoint.read_f32(entry).is_err() {
            checkpoint.read_i64(entry)?;
        }
    }
    Ok(())
}

fn check_tiny(checkpoint: &Checkpoint, format: PthFormat) {
    assert_eq!(checkpoint.format(), format);
    assert_eq!(checkpoint.source_key(), None);
    let mut floats = le_values("expected_f32.bin", f32::from_le_bytes).into_iter();
    let mut ints = le_values("expected_i64.bin", i64::from_le_bytes).into_iter();
    let expected = expected();
    let names: Vec<&str> = checkpoint
        .entries()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    let want: Vec<&str> = expected.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, want);
    for (entry, want) in checkpoint.entries().iter().zip(&expected) {
        assert_eq!(entry.dtype.name(), want.dtype, "{}", want.name);
        assert_eq!(entry.shape, want.shape, "{}", want.name);
        assert_eq!(entry.strides, want.strides, "{}", want.name);
        assert_eq!(entry.storage_offset, want.offset, "{}", want.name);
        let numel = want.shape.iter().product();
        if is_float(&want.dtype) {
            let values = checkpoint.read_f32(entry).unwrap();
            let expected: Vec<f32> = floats.by_ref().take(numel).collect();
            assert_eq!(values, expected, "{}", want.name);
        } else {
            let values = checkpoint.read_i64(entry).unwrap();
            let expected: Vec<i64> = ints.by_ref().take(numel).collect();
            assert_eq!(values, expected, "{}", want.name);
        }
    }
    assert_eq!(floats.next(), None);
    assert_eq!(ints.next(), None);
}

#[test]
fn zip_format_matches_expected_values() {
    check_tiny(
        &Checkpoint::open(&fixture("pth/tiny_zip.pth")).unwrap(),
        PthFormat::Zip,
    );
}

#[test]
fn legacy_format_matches_expected_values() {
    check_tiny(
        &Checkpoint::open(&fixture("pth/tiny_legacy.pth")).unwrap(),
        PthFormat::Legacy,
    );
}

#[test]
fn in_memory_matches_file() {
    for (name, format) in [
        ("tiny_zip.pth", PthFormat::Zip),
        ("tiny_legacy.pth", PthFormat::Legacy),
    ] {
        check_tiny(
            &Checkpoint::from_bytes(fixture_bytes(name)).unwrap(),
            format,
        );
    }
}

#[test]
fn both_formats_read_identically() {
    let zip = Checkpoint::open(&fixture("pth/tiny_zip.pth")).unwrap();
    let legacy = Checkpoint::open(&fixture("pth/tiny_legacy.pth")).unwrap();
    assert_eq!(zip.entries().len(), legacy.entries().len());
    for (a, b) in zip.entries().iter().zip(legacy.entries()) {
        assert_eq!(
            (&a.name, a.dtype, &a.shape, &a.strides),
            (&b.name, b.dtype, &b.shape, &b.strides)
        );
        match (zip.read_f32(a), legacy.read_f32(b)) {
            (Ok(x), Ok(y)) => assert_eq!(x, y, "{}", a.name),
            _ => assert_eq!(
                zip.read_i64(a).unwrap(),
                legacy.read_i64(b).unwrap(),
                "{}",
                a.name
            ),
        }
    }
}

fn entry<'a>(checkpoint: &'a Checkpoint, name: &str) -> &'a TensorEntry {
    checkpoint
        .entries()
        .iter()
        .find(|e| e.name == name)
        .unwrap()
}

#[test]
fn shared_storage_views_read_their_own_windows() {
    for name in ["tiny_zip.pth", "tiny_legacy.pth"] {
        let checkpoint = Checkpoint::open(&fixture(&format!("pth/{name}"))).unwrap();
        let base: Vec<f32> = (0..24).map(|i| i as f32 / 8.0).collect();
        let a = checkpoint.read_f32(entry(&checkpoint, "shared.a")).unwrap();
        assert_eq!(a, base[2..8]);
        let b = checkpoint.read_f32(entry(&checkpoint, "shared.b")).unwrap();
        assert_eq!(
            b,
            [base[6], base[8], base[10], base[12], base[14], base[16]]
        );
    }
}

#[test]
fn nested_state_dicts_are_found() {
    let zip = Checkpoint::open(&fixture("pth/nested_zip.pth")).unwrap();
    assert_eq!(zip.source_key(), Some("model"));
    let legacy = Checkpoint::open(&fixture("pth/nested_legacy.pth")).unwrap();
    assert_eq!(legacy.source_key(), Some("state_dict"));
    for checkpoint in [&zip, &legacy] {
        let names: Vec<&str> = checkpoint
            .entries()
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(names, ["weight", "bias"]);
        assert_eq!(
            checkpoint
                .read_f32(entry(checkpoint, "weight"))
                .unwrap()
                .len(),
            6
        );
    }
}

#[test]
fn legacy_storage_views_are_honoured() {
    let checkpoint = Checkpoint::open(&fixture("pth/legacy_view.pth")).unwrap();
    let v = entry(&checkpoint, "v");
    assert_eq!(v.storage_offset, 3);
    assert_eq!(checkpoint.read_f32(v).unwrap(), [3.0, 4.0, 5.0]);
}

#[test]
fn old_python2_gpu_saved_files_are_read() {
    let checkpoint = Checkpoint::open(&fixture("pth/old_style_legacy.pth")).unwrap();
    let w = entry(&checkpoint, "conv.w");
    assert_eq!(
        (w.shape.as_slice(), w.strides.as_slice()),
        (&[2][..], &[2][..])
    );
    assert_eq!(checkpoint.read_f32(w).unwrap(), [2.0, 4.0]);
}

#[test]
fn wrong_dtype_is_refused_with_the_accepted_ones() {
    let checkpoint = Checkpoint::open(&fixture("pth/tiny_zip.pth")).unwrap();
    let err = checkpoint
        .read_f32(entry(&checkpoint, "1.num_batches_tracked"))
        .unwrap_err();
    assert!(matches!(err, PthError::WrongDType { .. }), "{err}");
    assert!(err.to_string().contains("accepts float32"), "{err}");
    let err = checkpoint
        .read_i64(entry(&checkpoint, "0.weight"))
        .unwrap_err();
    assert!(matches!(err, PthError::WrongDType { .. }), "{err}");
}

#[test]
fn edited_entries_are_revalidated() {
    let checkpoint = Checkpoint::open(&fixture("pth/tiny_zip.pth")).unwrap();
    let mut bad = entry(&checkpoint, "0.bias").clone();
    bad.shape = vec![1 << 40];
    let err = checkpoint.read_f32(&bad).unwrap_err();
    assert!(matches!(err, PthError::ViewOutOfBounds { .. }), "{err}");
    bad.shape = vec![usize::MAX, 3];
    bad.strides = vec![usize::MAX, 1];
    assert!(checkpoint.read_f32(&bad).is_err());
}

#[test]
fn every_truncation_is_an_error() {
    for name in ["tiny_zip.pth", "tiny_legacy.pth"] {
        let bytes = fixture_bytes(name);
        for len in 0..bytes.len() {
            let result = Checkpoint::from_bytes(bytes[..len].to_vec());
            assert!(
                result.is_err(),
                "{name} truncated to {len} bytes was accepted"
            );
        }
    }
}

/// A small deterministic generator (xorshift64*), so tests need no crates.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn random_bytes_are_errors() {
    let mut rng = Rng(0x5eed);
    for i in 0..3000 {
        let len = rng.below(2048);
        let prefix: &[u8] = [&b"PK\x03\x04"[..], &[0x80, 0x02], &[]][i % 3];
        let bytes = [prefix, &rng.bytes(len)].concat();
        assert!(Checkpoint::from_bytes(bytes).is_err());
    }
}

fn assert_unsupported_global(err: PthError, global: &str) {
    assert!(
        matches!(&err, PthError::UnsupportedGlobal { name } if name == global),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "unsupported global {global} in pickle: a state_dict only needs OrderedDict, tensor rebuilds and storage types"
        )
    );
}

#[test]
fn code_execution_globals_are_refused() {
    // os.system pickles as posix.system on Linux.
    assert_unsupported_global(open_err("evil_zip.pth"), "posix.system");
    assert_unsupported_global(open_err("evil_legacy.pth"), "posix.system");
    assert_unsupported_global(open_err("evil_os_system.pkl"), "os.system");
    let eval = b"\x80\x02cbuiltins\neval\nX\x01\x00\x00\x001\x85R.".to_vec();
    assert_unsupported_global(bytes_err(eval), "builtins.eval");
    let load_from_bytes = b"\x80\x02ctorch.storage\n_load_from_bytes\n.".to_vec();
    assert_unsupported_global(bytes_err(load_from_bytes), "torch.storage._load_from_bytes");
}

#[test]
fn storage_claiming_a_trillion_elements_is_refused() {
    for name in ["huge_storage_zip.pth", "huge_storage_legacy.pth"] {
        let err = open_err(name);
        assert!(
            matches!(
                err,
                PthError::StorageTooLarge {
                    numel: 1_000_000_000_000,
                    ..
                }
            ),
            "{name}: {err}"
        );
    }
}

#[test]
fn view_past_its_storage_is_refused() {
    for name in ["view_oob_zip.pth", "view_oob_legacy.pth"] {
        let err = open_err(name);
        assert!(
            matches!(
                err,
                PthError::ViewOutOfBounds {
                    last: 7,
                    numel: 4,
                    ..
                }
            ),
            "{name}: {err}"
        );
    }
}

#[test]
fn expanded_views_beyond_the_budget_are_refused() {
    let err = open_err("expanded_bomb_zip.pth");
    assert!(
        matches!(&err, PthError::BadTensor { name, .. } if name == "e1"),
        "{err}"
    );
}

#[test]
fn big_endian_is_refused() {
    for name in ["big_endian_zip.pth", "big_endian_legacy.pth"] {
        let err = open_err(name);
        assert!(matches!(err, PthError::BigEndian(_)), "{name}: {err}");
    }
}

#[test]
fn compressed_storage_is_refused() {
    let err = open_err("compressed_zip.pth");
    assert!(
        matches!(&err, PthError::CompressedEntry { name, method: 8 } if name == "archive/data/0"),
        "{err}"
    );
}

#[test]
fn missing_storage_is_refused() {
    let err = open_err("missing_storage_zip.pth");
    assert!(
        matches!(&err, PthError::StorageMissing { key, .. } if key == "0"),
        "{err}"
    );
}

fn pickle(body: &[u8]) -> Vec<u8> {
    [&[0x80, 0x02], body, b"."].concat()
}

#[test]
fn nesting_bomb_is_refused() {
    let body = [&[b')'][..], &[0x85; 10_000]].concat();
    let err = bytes_err(pickle(&body));
    assert!(
        matches!(
            err,
            PthError::LimitExceeded {
                what: "nesting depth",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn stack_bomb_is_refused() {
    let err = bytes_err(pickle(&vec![b'N'; 1 << 21]));
    assert!(
        matches!(
            err,
            PthError::LimitExceeded {
                what: "stack size",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn shared_container_copy_bomb_is_refused() {
    // A 1000-item list, then endless `BINGET 0; NONE; APPEND`: each append to
    // a shared list would copy it.
    let mut body = vec![b']', b'q', 0, b'('];
    body.extend([b'N'; 1000]);
    body.push(b'e');
    for _ in 0..20_000 {
        body.extend([b'h', 0, b'N', b'a']);
    }
    let err = bytes_err(pickle(&body));
    assert!(
        matches!(
            err,
            PthError::LimitExceeded {
                what: "copy-on-write element count",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn unknown_opcode_names_byte_and_position() {
    let err = bytes_err(pickle(b"0"));
    assert!(
        matches!(
            err,
            PthError::UnknownOpcode {
                opcode: b'0',
                pos: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("0x30 (POP) at offset 2"), "{err}");
}

#[test]
fn oversized_string_claim_is_refused_before_allocating() {
    let err = bytes_err(pickle(b"X\xff\xff\xff\xff"));
    assert!(
        matches!(
            err,
            PthError::Truncated {
                needed: 0xffff_ffff,
                ..
            }
        ),
        "{err}"
    );
    let err = bytes_err(pickle(b"\x8d\xff\xff\xff\xff\xff\xff\xff\xff"));
    assert!(
        matches!(
            err,
            PthError::Truncated {
                needed: u64::MAX,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn non_checkpoints_say_what_is_accepted() {
    let err = bytes_err(b"hello world".to_vec());
    assert!(matches!(err, PthError::NotACheckpoint(_)), "{err}");
    assert!(err.to_string().contains("expected a zip archive"), "{err}");
    let err = bytes_err(Vec::new());
    assert!(matches!(err, PthError::NotACheckpoint(_)), "{err}");
}

/// A deterministic stand-in for fuzzing that runs everywhere: mutates the
/// fixtures (bit flips, byte overwrites, truncations, splices, duplications)
/// and requires that nothing panics.
#[test]
fn mutated_fixtures_never_panic() {
    let seeds: Vec<Vec<u8>> = [
        "tiny_zip.pth",
        "tiny_legacy.pth",
        "nested_legacy.pth",
        "legacy_view.pth",
    ]
    .iter()
    .map(|n| fixture_bytes(n))
    .collect();
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let iterations = std::env::var("PTH_MUTATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5_000);
    for _ in 0..iterations {
        let mut bytes = seeds[rng.below(seeds.len())].clone();
        for _ in 0..=rng.below(4) {
            mutate(&mut rng, &mut bytes, &seeds);
        }
        if let Ok(checkpoint) = Checkpoint::from_bytes(bytes) {
            let _ = read_all(&checkpoint);
        }
    }
}

fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    let len = bytes.len();
    let at = rng.below(len);
    match rng.below(6) {
        0 if len > 0 => bytes[at] ^= 1 << rng.below(8),
        1 if len > 0 => bytes[at] = [0, 0xff, 0x7f, 0x80, rng.next() as u8][rng.below(5)],
        2 => bytes.truncate(at),
        3 => {
            let other = &seeds[rng.below(seeds.len())];
            let from = rng.below(other.len());
            let to = (from + rng.below(64)).min(other.len());
            bytes.splice(at..at, other[from..to].iter().copied());
        }
        4 => {
            let end = (at + rng.below(32)).min(len);
            let chunk = bytes[at..end].to_vec();
            bytes.splice(at..at, chunk);
        }
        _ => {
            let len = rng.below(8);
            let noise = rng.bytes(len);
            bytes.splice(at..at, noise);
        }
    }
}
