//! Replays the committed fuzz corpora (`fuzz/corpus/TARGET/`) and the inputs of past crashes
//! (`fuzz/regressions/TARGET/`) through the same checks as the fuzz targets, so every `cargo test` guards what
//! minutes of fuzzing found (scripts/fuzz.sh runs the fuzzer itself).

use std::path::{Path, PathBuf};

use saring::fuzzing::{Check, Verdict, TARGETS};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files of `directory`, sorted; none when it does not exist.
fn inputs(directory: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(directory) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries.map(|entry| entry.unwrap().path()).filter(|path| path.is_file()).collect();
    files.sort();
    files
}

/// Runs `check` on every file: the verdicts, and the files whose check panicked.
fn replay(files: &[PathBuf], check: Check) -> (Vec<Verdict>, Vec<String>) {
    let mut verdicts = Vec::new();
    let mut failed = Vec::new();
    for path in files {
        let input = std::fs::read(path).unwrap();
        match std::panic::catch_unwind(|| check(&input)) {
            Ok(verdict) => verdicts.push(verdict),
            Err(_) => failed.push(path.display().to_string()),
        }
    }
    (verdicts, failed)
}

#[test]
fn every_corpus_input_passes_its_fuzz_check() {
    for (target, check) in TARGETS {
        let corpus = inputs(&fuzz_dir().join("corpus").join(target));
        assert!(corpus.len() >= 10, "fuzz/corpus/{target} holds only {} inputs", corpus.len());
        let (verdicts, failed) = replay(&corpus, check);
        assert!(failed.is_empty(), "{target}: {failed:#?}");
        // The corpus reaches both the acceptance invariants and the rejection checks.
        for verdict in [Verdict::Accepted, Verdict::Rejected] {
            assert!(verdicts.contains(&verdict), "no input of fuzz/corpus/{target} is {verdict:?}");
        }
    }
}

#[test]
fn every_past_crash_input_passes_its_fuzz_check() {
    for (target, check) in TARGETS {
        let (_, failed) = replay(&inputs(&fuzz_dir().join("regressions").join(target)), check);
        assert!(failed.is_empty(), "{target}: {failed:#?}");
    }
}
