//! Promotion of the challenger to champion, and rollback to the previous champion: the files behind the
//! registry and the swap in memory.
//!
//! Both happen in two steps so that the audit entry, written by the caller between them, decides: `stage_*`
//! rewrites the files (each write to a temporary file, fsynced, renamed over the old one, then the directory
//! fsynced) and tells the file watcher what it wrote so it does not react; `commit` then swaps the models in
//! memory, or `abandon` puts every file back as it was. Whoever stages holds [`ModelRegistry::lock_promotion`] until
//! it commits or abandons, so two promotions never interleave.
//!
//! Files, with `P` the champion's path (`[model] path`) and `C` the challenger's (`[model] challenger_path`):
//! - promotion: `P` → `P.previous`, `C` → `P`, and `C` is renamed `C.promoted` (a missing challenger file means no
//!   challenger, so the slot is free for the next candidate);
//! - rollback: `P.previous` and `P` swap, so a second rollback undoes the first.
//!
//! A restart serves what the files say, so a promotion or rollback survives it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use saring_models::{Model, ModelArtifact};
use sha2::{Digest, Sha256};

use super::{now_ms, stamp, Loaded, ModelRegistry, ReloadEvent, ShadowStats, Slot, Trigger};

/// Why a promotion or rollback was not staged.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PromotionError {
    /// The service is not set up for it (no champion file, no challenger, nothing to roll back to, a file that
    /// changed since it was loaded): nothing was changed.
    #[error("{0}")]
    Precondition(String),
    /// A file could not be read or written: nothing was changed.
    #[error("model files: {0}")]
    Io(String),
}

/// What a rewrite replaced, to undo it.
#[derive(Debug)]
enum Undo {
    /// Write these bytes back to the path (or remove the path when `None`).
    Restore(PathBuf, Option<Vec<u8>>),
    /// Rename the first path back to the second.
    Rename(PathBuf, PathBuf),
}

/// Files rewritten and the model that will serve once the change is committed.
#[derive(Debug)]
pub struct Staged {
    trigger: Trigger,
    champion: Arc<Loaded>,
    /// The version that served before.
    replaced: Arc<str>,
    undo: Vec<Undo>,
}

impl Staged {
    /// The version that will serve.
    pub fn version(&self) -> &str {
        &self.champion.version
    }

    /// The version that served until now.
    pub fn replaced(&self) -> &str {
        &self.replaced
    }
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().map(|name| name.to_os_string()).unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

/// The file the previous champion is kept in.
pub fn previous_path(champion_path: &Path) -> PathBuf {
    with_suffix(champion_path, ".previous")
}

/// The file a promoted challenger is moved to.
pub fn promoted_path(challenger_path: &Path) -> PathBuf {
    with_suffix(challenger_path, ".promoted")
}

fn io_error(action: &str, path: &Path, error: std::io::Error) -> PromotionError {
    PromotionError::Io(format!("cannot {action} {}: {error}", path.display()))
}

fn sync_directory(path: &Path) -> Result<(), PromotionError> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    fs::File::open(directory)
        .and_then(|directory| directory.sync_all())
        .map_err(|error| io_error("sync", directory, error))
}

/// Replaces `path` with `bytes` so a crash leaves either the old or the new file, never a mix.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), PromotionError> {
    let temporary = with_suffix(path, ".tmp");
    let written = fs::File::create(&temporary).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    if let Err(error) = written {
        let _ = fs::remove_file(&temporary);
        return Err(io_error("write", &temporary, error));
    }
    fs::rename(&temporary, path).map_err(|error| io_error("replace", path, error))?;
    sync_directory(path)
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, PromotionError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(io_error("read", path, error)),
    }
}

/// Reads `path` and checks it still holds what `loaded` was loaded from.
fn read_loaded(path: &Path, loaded: &Loaded) -> Result<Vec<u8>, PromotionError> {
    let bytes = fs::read(path).map_err(|error| io_error("read", path, error))?;
    let digest: [u8; 32] = Sha256::digest(&bytes).into();
    if digest != loaded.digest {
        return Err(PromotionError::Precondition(format!(
            "{} changed since model {} was loaded from it; reload the models (ReloadModel) and look again",
            path.display(),
            loaded.version
        )));
    }
    Ok(bytes)
}

fn parse(path: &Path, bytes: &[u8]) -> Result<Model, PromotionError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| PromotionError::Precondition(format!("{}: not UTF-8 text", path.display())))?;
    let artifact = ModelArtifact::from_json(text)
        .map_err(|error| PromotionError::Precondition(format!("{}: cannot be served: {error}", path.display())))?;
    Ok(Model::new(artifact))
}

/// Runs the undo steps, newest first. Returns the ones that failed, described.
fn undo_all(undo: Vec<Undo>) -> Vec<String> {
    let mut failures = Vec::new();
    for step in undo.into_iter().rev() {
        let result = match &step {
            Undo::Restore(path, Some(bytes)) => write_atomically(path, bytes),
            Undo::Restore(path, None) => match fs::remove_file(path) {
                Ok(()) => sync_directory(path),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(error) => Err(io_error("remove", path, error)),
            },
            Undo::Rename(from, to) => {
                fs::rename(from, to).map_err(|error| io_error("rename", from, error)).and_then(|()| sync_directory(to))
            }
        };
        if let Err(error) = result {
            failures.push(error.to_string());
        }
    }
    failures
}

impl ModelRegistry {
    /// Serialises promotions and rollbacks: hold the guard from staging to commit or abandon.
    pub async fn lock_promotion(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.promoting.lock().await
    }

    fn champion_file(&self) -> Result<&Path, PromotionError> {
        self.champion_path.as_deref().ok_or_else(|| {
            PromotionError::Precondition(
                "model.path is not set: the champion is the model built into the binary, and a promotion or \
                 rollback needs a file to write the champion to"
                    .to_owned(),
            )
        })
    }

    /// Rewrites the files so the challenger is the champion (see the module notes). Nothing changes in memory
    /// until [`ModelRegistry::commit`].
    pub fn stage_promotion(&self) -> Result<Staged, PromotionError> {
        let champion_path = self.champion_file()?;
        let Some(challenger_path) = self.challenger_path.as_deref() else {
            return Err(PromotionError::Precondition(
                "model.challenger_path is not set: there is no challenger".into(),
            ));
        };
        let Some(challenger) = self.challenger.load_full() else {
            return Err(PromotionError::Precondition("no challenger is loaded".into()));
        };
        let champion = self.champion.load_full();
        let mut stamps = self.reloading.lock();
        let champion_bytes = read_loaded(champion_path, &champion)?;
        let challenger_bytes = read_loaded(challenger_path, &challenger)?;
        let model = parse(challenger_path, &challenger_bytes)?;
        let previous = previous_path(champion_path);
        let promoted = promoted_path(challenger_path);
        let mut undo = Vec::new();
        let steps = (|| {
            undo.push(Undo::Restore(previous.clone(), read_optional(&previous)?));
            write_atomically(&previous, &champion_bytes)?;
            undo.push(Undo::Restore(champion_path.to_owned(), Some(champion_bytes.clone())));
            write_atomically(champion_path, &challenger_bytes)?;
            fs::rename(challenger_path, &promoted).map_err(|error| io_error("rename", challenger_path, error))?;
            undo.push(Undo::Rename(promoted.clone(), challenger_path.to_owned()));
            sync_directory(&promoted)
        })();
        if let Err(error) = steps {
            let failures = undo_all(undo);
            report_undo_failures(&failures);
            return Err(error);
        }
        stamps.champion = stamp(champion_path);
        stamps.challenger = None;
        let digest = Sha256::digest(&challenger_bytes).into();
        Ok(Staged {
            trigger: Trigger::Promotion,
            champion: Arc::new(Loaded::new(model, champion_path.display().to_string(), digest)),
            replaced: Arc::clone(&champion.version),
            undo,
        })
    }

    /// Rewrites the files so the previous champion is the champion again (see the module notes). Nothing changes
    /// in memory until [`ModelRegistry::commit`].
    pub fn stage_rollback(&self) -> Result<Staged, PromotionError> {
        let champion_path = self.champion_file()?;
        let previous = previous_path(champion_path);
        let champion = self.champion.load_full();
        let mut stamps = self.reloading.lock();
        let Some(previous_bytes) = read_optional(&previous)? else {
            return Err(PromotionError::Precondition(format!(
                "{} does not exist: there is no previous champion to roll back to",
                previous.display()
            )));
        };
        let model = parse(&previous, &previous_bytes)?;
        let champion_bytes = read_loaded(champion_path, &champion)?;
        let mut undo = Vec::new();
        let steps = (|| {
            undo.push(Undo::Restore(champion_path.to_owned(), Some(champion_bytes.clone())));
            write_atomically(champion_path, &previous_bytes)?;
            undo.push(Undo::Restore(previous.clone(), Some(previous_bytes.clone())));
            write_atomically(&previous, &champion_bytes)
        })();
        if let Err(error) = steps {
            let failures = undo_all(undo);
            report_undo_failures(&failures);
            return Err(error);
        }
        stamps.champion = stamp(champion_path);
        let digest = Sha256::digest(&previous_bytes).into();
        Ok(Staged {
            trigger: Trigger::Rollback,
            champion: Arc::new(Loaded::new(model, champion_path.display().to_string(), digest)),
            replaced: Arc::clone(&champion.version),
            undo,
        })
    }

    /// Serves the staged champion (a promotion also empties the challenger slot). Drift and shadow statistics
    /// restart; live-quality samples are kept, by model version.
    pub fn commit(&self, staged: Staged) {
        let _stamps = self.reloading.lock();
        let version = staged.champion.version.to_string();
        self.drift.reset(&staged.champion.model);
        self.champion.store(staged.champion);
        if staged.trigger == Trigger::Promotion {
            self.challenger.store(None);
        }
        *self.shadow.lock() = ShadowStats::default();
        self.record(ReloadEvent {
            at_ms: now_ms(),
            slot: Slot::Champion,
            trigger: staged.trigger,
            accepted: true,
            model_version: version,
            error: String::new(),
        });
    }

    /// Puts every file back as it was before staging. A file that cannot be put back is logged (the models in
    /// memory are unchanged either way, and the watcher then reloads whatever the files hold).
    pub fn abandon(&self, staged: Staged) {
        let mut stamps = self.reloading.lock();
        let failures = undo_all(staged.undo);
        report_undo_failures(&failures);
        if let Some(path) = &self.champion_path {
            stamps.champion = stamp(path);
        }
        if let Some(path) = &self.challenger_path {
            stamps.challenger = stamp(path);
        }
    }
}

fn report_undo_failures(failures: &[String]) {
    for failure in failures {
        tracing::error!(%failure, "a model file could not be put back after a failed promotion or rollback");
    }
}

#[cfg(test)]
mod tests;
