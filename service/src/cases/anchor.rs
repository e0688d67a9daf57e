//! The audit anchor: a small file outside the database holding the latest audit entry this replica committed,
//! `(seq, link)`, MACed with the chain secret. Someone who can write the database but not this file cannot remove
//! the chain's last entries and rewind its head unseen: the anchored entry is gone, or the head is behind it.
//!
//! The file is replaced atomically after each committed append (temporary file, fsync, rename, directory fsync),
//! on a blocking thread. It is written after the commit, so a crash between the two leaves it behind the database
//! by the last entries — which verification accepts, because every entry after the anchored one is checked link by
//! link. With several replicas on one database each replica's anchor is a lower bound: the database may be ahead of
//! it (another replica appended), never behind.

use std::io::Write;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::audit::AuditKey;

const FORMAT: &str = "saring-audit-anchor/1";

#[derive(Serialize, Deserialize)]
struct AnchorFile {
    format: String,
    seq: i64,
    link: String,
    mac: String,
}

/// What an anchor file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnchorState {
    /// No file at the path.
    Missing,
    /// A file whose MAC holds under the chain secret: the entry `seq` had link `link`.
    Valid {
        /// The anchored entry.
        seq: i64,
        /// Its link.
        link: String,
    },
    /// A file that is not an anchor signed with this chain secret.
    Invalid(String),
}

fn sign(key: &AuditKey, seq: i64, link: &str) -> String {
    key.sign(&[b"saring-audit-anchor-v1", seq.to_string().as_bytes(), link.as_bytes()])
}

/// Reads the anchor at `path` and checks its MAC.
pub fn read(path: &Path, key: &AuditKey) -> std::io::Result<AnchorState> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(AnchorState::Missing),
        Err(error) => return Err(error),
    };
    let Ok(file) = serde_json::from_str::<AnchorFile>(&text) else {
        return Ok(AnchorState::Invalid("it is not an audit anchor file".into()));
    };
    if file.format != FORMAT {
        return Ok(AnchorState::Invalid(format!("unknown format {:?}", file.format)));
    }
    if !key.verify(&[b"saring-audit-anchor-v1", file.seq.to_string().as_bytes(), file.link.as_bytes()], &file.mac) {
        return Ok(AnchorState::Invalid(
            "its MAC does not hold: it was altered, or [audit] chain_secret is not the secret it was written with"
                .into(),
        ));
    }
    Ok(AnchorState::Valid { seq: file.seq, link: file.link })
}

/// Replaces the anchor at `path` with `(seq, link)`: a temporary file beside it (mode 0600), fsynced, renamed over
/// it, and the directory fsynced so the rename survives a crash.
pub fn write(path: &Path, key: &AuditKey, seq: i64, link: &str) -> std::io::Result<()> {
    let directory = path.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(directory)?;
    let file = AnchorFile { format: FORMAT.into(), seq, link: link.into(), mac: sign(key, seq, link) };
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    let temporary = directory.join(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&temporary).and_then(|mut out| {
        out.write_all(serde_json::to_string(&file).expect("the anchor serialises").as_bytes())?;
        out.write_all(b"\n")?;
        out.sync_all()
    });
    if let Err(error) = written.and_then(|()| std::fs::rename(&temporary, path)) {
        let _ = std::fs::remove_file(&temporary);
        return Err(error);
    }
    std::fs::File::open(directory)?.sync_all()
}

/// The anchor a serving store keeps up to date.
#[derive(Debug)]
pub struct Anchor {
    path: PathBuf,
    key: AuditKey,
    /// The highest entry written (or found) in the file: the anchor never moves back.
    written: Mutex<i64>,
}

impl Anchor {
    /// An anchor at `path` that already holds entry `seq` (0: nothing yet).
    pub fn new(path: PathBuf, key: AuditKey, seq: i64) -> Self {
        Anchor { path, key, written: Mutex::new(seq) }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records entry `seq` with `link` unless a later one is already written. Blocking: call it off the runtime's
    /// workers.
    pub fn advance(&self, seq: i64, link: &str) -> std::io::Result<()> {
        let mut written = self.written.lock();
        if seq <= *written {
            return Ok(());
        }
        write(&self.path, &self.key, seq, link)?;
        *written = seq;
        Ok(())
    }
}

/// Where the anchor lives when `[audit] anchor_path` is not set: beside a SQLite file (`cases.db` →
/// `cases.db.audit-anchor`); for PostgreSQL `saring-data/audit-anchor-<16 hex of SHA-256 of the URL>` (a name per
/// database, so two databases never share one); none for an in-memory database.
pub fn default_path(database_url: &str) -> Option<PathBuf> {
    if database_url.starts_with("sqlite:") {
        if database_url.contains(":memory:") {
            return None;
        }
        let rest = database_url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
        let file = rest.split('?').next().filter(|file| !file.is_empty())?;
        return Some(PathBuf::from(format!("{file}.audit-anchor")));
    }
    let digest = hex::encode(Sha256::digest(database_url.as_bytes()));
    Some(PathBuf::from(format!("saring-data/audit-anchor-{}", &digest[..16])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_anchor_reads_back_only_under_its_key_and_never_moves_back() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("cases.db.audit-anchor");
        let key = AuditKey::new(b"sixteen bytes at least, yes");
        assert_eq!(read(&path, &key).unwrap(), AnchorState::Missing);
        let anchor = Anchor::new(path.clone(), key.clone(), 0);
        anchor.advance(3, "link-3").unwrap();
        anchor.advance(2, "link-2").unwrap();
        assert_eq!(read(&path, &key).unwrap(), AnchorState::Valid { seq: 3, link: "link-3".into() });
        assert!(matches!(read(&path, &AuditKey::development()).unwrap(), AnchorState::Invalid(_)));
        let forged = std::fs::read_to_string(&path).unwrap().replace("\"seq\":3", "\"seq\":1");
        std::fs::write(&path, forged).unwrap();
        assert!(matches!(read(&path, &key).unwrap(), AnchorState::Invalid(_)));
        std::fs::write(&path, "garbage").unwrap();
        assert!(matches!(read(&path, &key).unwrap(), AnchorState::Invalid(_)));
        let names: Vec<_> =
            std::fs::read_dir(directory.path()).unwrap().map(|entry| entry.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "no temporary file is left: {names:?}");
    }

    #[test]
    fn the_default_path_is_beside_the_sqlite_file_or_per_postgres_database() {
        assert_eq!(default_path("sqlite://saring-data/cases.db"), Some("saring-data/cases.db.audit-anchor".into()));
        assert_eq!(
            default_path("sqlite:///var/lib/saring/cases.db?mode=rwc"),
            Some("/var/lib/saring/cases.db.audit-anchor".into())
        );
        assert_eq!(default_path("sqlite::memory:"), None);
        let a = default_path("postgres://saring@pg/a").unwrap();
        let b = default_path("postgres://saring@pg/b").unwrap();
        assert!(a.starts_with("saring-data") && a != b, "{a:?} {b:?}");
    }
}
