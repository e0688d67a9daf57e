use std::time::Duration;

use super::*;
use crate::modelops::read_model;
use crate::server::SHIPPED_MODEL;

/// The shipped model under another version, as a file's text.
fn artifact_text(version: &str) -> String {
    let mut artifact = ModelArtifact::from_json(SHIPPED_MODEL).expect("shipped model");
    artifact.model_version = version.to_owned();
    artifact.to_json()
}

struct Files {
    _dir: tempfile::TempDir,
    champion: PathBuf,
    challenger: PathBuf,
}

fn files(champion: &str, challenger: Option<&str>) -> Files {
    let dir = tempfile::tempdir().expect("temp dir");
    let champion_path = dir.path().join("champion.json");
    let challenger_path = dir.path().join("challenger.json");
    fs::write(&champion_path, artifact_text(champion)).unwrap();
    if let Some(challenger) = challenger {
        fs::write(&challenger_path, artifact_text(challenger)).unwrap();
    }
    Files { _dir: dir, champion: champion_path, challenger: challenger_path }
}

fn registry(files: &Files) -> ModelRegistry {
    let (champion, _) = read_model(&files.champion).unwrap();
    let challenger = files.challenger.exists().then(|| read_model(&files.challenger).unwrap().0);
    ModelRegistry::new(
        champion,
        Some(files.champion.clone()),
        challenger,
        Some(files.challenger.clone()),
        Duration::from_secs(3600),
    )
}

fn version_in(path: &Path) -> String {
    read_model(path).unwrap().0.version().to_owned()
}

#[test]
fn a_committed_promotion_serves_the_challenger_and_keeps_the_champion_for_rollback() {
    let files = files("m-old", Some("m-new"));
    let models = registry(&files);
    let staged = models.stage_promotion().unwrap();
    assert_eq!((staged.version(), staged.replaced()), ("m-new", "m-old"));
    assert_eq!(&*models.champion().version, "m-old", "nothing changes in memory before the commit");
    models.commit(staged);
    assert_eq!(&*models.champion().version, "m-new");
    assert!(models.challenger().is_none());
    assert_eq!(version_in(&files.champion), "m-new");
    assert_eq!(version_in(&previous_path(&files.champion)), "m-old");
    assert!(!files.challenger.exists());
    assert_eq!(version_in(&promoted_path(&files.challenger)), "m-new");
    // The watcher sees nothing to do, and a restart reads the same files.
    assert!(models.reload(Trigger::File).is_empty());
    assert_eq!(&*models.champion().version, "m-new");
    let restarted = registry(&files);
    assert_eq!(&*restarted.champion().version, "m-new");
    assert!(restarted.challenger().is_none());
    let last = &models.reloads()[0];
    assert_eq!((last.trigger, last.model_version.as_str()), (Trigger::Promotion, "m-new"));

    let rollback = models.stage_rollback().unwrap();
    models.commit(rollback);
    assert_eq!(&*models.champion().version, "m-old");
    assert_eq!(version_in(&files.champion), "m-old");
    assert_eq!(version_in(&previous_path(&files.champion)), "m-new", "a second rollback undoes the first");
    models.commit(models.stage_rollback().unwrap());
    assert_eq!(&*models.champion().version, "m-new");
}

#[test]
fn an_abandoned_promotion_leaves_every_file_as_it_was() {
    let files = files("m-old", Some("m-new"));
    fs::write(previous_path(&files.champion), artifact_text("m-older")).unwrap();
    let before: Vec<Option<Vec<u8>>> =
        [&files.champion, &files.challenger, &previous_path(&files.champion), &promoted_path(&files.challenger)]
            .iter()
            .map(|path| fs::read(path).ok())
            .collect();
    let models = registry(&files);
    let staged = models.stage_promotion().unwrap();
    models.abandon(staged);
    let after: Vec<Option<Vec<u8>>> =
        [&files.champion, &files.challenger, &previous_path(&files.champion), &promoted_path(&files.challenger)]
            .iter()
            .map(|path| fs::read(path).ok())
            .collect();
    assert_eq!(before, after);
    assert_eq!(&*models.champion().version, "m-old");
    assert_eq!(models.challenger().unwrap().version.as_ref(), "m-new");
    assert!(models.reload(Trigger::File).is_empty());
    assert_eq!(models.challenger().unwrap().version.as_ref(), "m-new");
}

#[test]
fn preconditions_are_refused_without_touching_a_file() {
    let shipped = ModelRegistry::fixed(read_model(&files("m-old", None).champion).unwrap().0);
    assert!(
        matches!(shipped.stage_promotion(), Err(PromotionError::Precondition(message)) if message.contains("model.path"))
    );

    let no_challenger = files("m-old", None);
    let models = registry(&no_challenger);
    assert!(
        matches!(models.stage_promotion(), Err(PromotionError::Precondition(message)) if message.contains("no challenger"))
    );
    assert!(
        matches!(models.stage_rollback(), Err(PromotionError::Precondition(message)) if message.contains("no previous champion"))
    );

    let changed = files("m-old", Some("m-new"));
    let models = registry(&changed);
    fs::write(&changed.challenger, artifact_text("m-newer")).unwrap();
    assert!(
        matches!(models.stage_promotion(), Err(PromotionError::Precondition(message)) if message.contains("changed since"))
    );
    assert_eq!(version_in(&changed.champion), "m-old");
    assert!(!previous_path(&changed.champion).exists());

    let broken = files("m-old", None);
    fs::write(previous_path(&broken.champion), "{ not a model").unwrap();
    let models = registry(&broken);
    assert!(
        matches!(models.stage_rollback(), Err(PromotionError::Precondition(message)) if message.contains("cannot be served"))
    );
    assert_eq!(version_in(&broken.champion), "m-old");
}

#[test]
fn a_missing_challenger_file_unloads_the_challenger() {
    let files = files("m-old", Some("m-new"));
    let models = registry(&files);
    fs::remove_file(&files.challenger).unwrap();
    assert!(models.reload(Trigger::Rpc).is_empty());
    assert!(models.challenger().is_none());
    fs::write(&files.challenger, artifact_text("m-next")).unwrap();
    assert!(models.reload(Trigger::File).is_empty());
    assert_eq!(models.challenger().unwrap().version.as_ref(), "m-next");
}
