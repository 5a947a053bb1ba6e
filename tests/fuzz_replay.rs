//! Replays every input kept under `tests/fuzz/<target>/` (crashes the fuzzers
//! found, and small corpus entries) through the same code as the fuzz target
//! `<target>` (`fuzz/harness.rs`), so `cargo test` guards the fixes without
//! libFuzzer. See `fuzz/README.md`.

use std::fs;
use std::path::{Path, PathBuf};

#[path = "../fuzz/harness.rs"]
mod harness;

fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz")
        .join(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no inputs in {}", dir.display());
    files
}

fn replay(target: &str, run: fn(&[u8])) {
    for path in inputs(target) {
        let data = fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "fuzz input {} fails", path.display());
    }
}

#[test]
fn fuzz_txt() {
    replay("txt", harness::txt);
}

#[test]
fn fuzz_conf() {
    replay("conf", harness::conf);
}

#[test]
fn fuzz_audio() {
    replay("audio", harness::audio);
}

#[test]
fn fuzz_encode() {
    replay("encode", harness::encode);
}

#[test]
fn fuzz_callerid() {
    replay("callerid", harness::callerid);
}

#[test]
fn fuzz_target() {
    replay("target", harness::target);
}

#[test]
fn fuzz_manifest() {
    replay("manifest", harness::manifest);
}

/// The regression inputs still take the paths that once failed (a replay of
/// inputs the library now rejects early would prove nothing).
#[test]
fn fuzz_regressions_reach_their_code() {
    use vmtool::metadata::Metadata;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz");
    let read = |p: &str| fs::read(dir.join(p)).unwrap();
    let m = Metadata::parse(&read("txt/cr-inside-value")).unwrap();
    assert!(m.fields()[0].value.contains('\r'));
    let m = Metadata::parse(&read("txt/semicolon-key")).unwrap();
    assert_eq!(m.fields()[0].key, ";");
    let m = Metadata::parse(&read("txt/equals-key")).unwrap();
    assert_eq!(m.fields()[0].key, "=");
    let m = Metadata::parse(&read("txt/odd-keys")).unwrap();
    let keys: Vec<&str> = m.fields().iter().map(|f| f.key.as_str()).collect();
    assert_eq!(keys, ["[a", "#b", "\\c", "d+", "e", "f", "=g"]);
    assert_eq!(m.get("e"), Some(">5"));
    let e = vmtool::conf::parse_bytes(
        &read("conf/oom-inherit-self-doubling"),
        Path::new("/nonexistent/fuzz.conf"),
        Path::new("/nonexistent"),
    )
    .unwrap_err();
    assert!(e.is_vmtool_limit(), "{e}");
    for t in ["..@x", "a@.."] {
        assert!(vmtool::target::parse_target_syntax(t).is_err(), "{t}");
    }
}

/// The `encode` target's properties on seeded random inputs, without libFuzzer:
/// every format, lengths around frame and pair boundaries, noise of every loudness
/// and runs of extreme values.
#[test]
fn fuzz_encode_random_inputs() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(18);
    for i in 0..400u32 {
        let n: usize = match i % 4 {
            0 => rng.random_range(0..4),
            // One below, at or one above a whole number of frames.
            1 => (160 * rng.random_range(0..6usize) + rng.random_range(0..3)).saturating_sub(1),
            _ => rng.random_range(0..3000),
        };
        let shift = rng.random_range(0..16u32);
        let mut data = vec![(i % 10) as u8];
        for _ in 0..n {
            let x: i16 = if rng.random_ratio(1, 8) {
                if rng.random() {
                    i16::MAX
                } else {
                    i16::MIN
                }
            } else {
                rng.random::<i16>() >> shift
            };
            data.extend(x.to_le_bytes());
        }
        harness::encode(&data);
    }
}
