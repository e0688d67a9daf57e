//! The `saring.v1.Models` service: model card, status and shadow agreement, reload, drift.

use std::sync::Arc;

use saring_models::region::is_valid_region_code;
use tonic::{Request, Response, Status};

use super::screening::band;
use super::timestamp;
use crate::app::App;
use crate::app::ModelChange;
use crate::auth::Role;
use crate::error::{Error, Violation};
use crate::modelops::drift::{RegionDrift, WindowDrift};
use crate::modelops::quality::{Figures, Paired, QualityReport, WindowQuality};
use crate::modelops::{Loaded, ModelRegistry, Trigger, BANDS};
use crate::proto;
use crate::store::HistoryStore;

/// The Models service over the application core.
pub struct ModelsService<S> {
    app: Arc<App<S>>,
}

impl<S> ModelsService<S> {
    /// Serves `app`.
    pub fn new(app: Arc<App<S>>) -> Self {
        ModelsService { app }
    }
}

fn card(loaded: &Loaded) -> proto::ModelCard {
    let artifact = loaded.model.artifact();
    proto::ModelCard {
        model_version: loaded.version.to_string(),
        learner: loaded.learner().to_owned(),
        format_version: artifact.format_version,
        schema_fingerprint: artifact.schema.fingerprint.clone(),
        card_json: artifact.card.to_string(),
        loaded_at: Some(timestamp(loaded.loaded_at_ms)),
        source: loaded.source.clone(),
    }
}

fn figures(figures: &Figures) -> proto::QualityFigures {
    proto::QualityFigures {
        subject: figures.subject.clone(),
        state: figures.state.as_str().to_owned(),
        labelled: figures.labelled,
        positives: figures.positives,
        roc_auc: figures.roc_auc,
        pr_auc: figures.pr_auc,
        calibration_error: figures.calibration_error,
        bands: figures
            .bands
            .iter()
            .map(|figures| proto::BandQuality {
                band: band(Some(figures.band)) as i32,
                flagged: figures.flagged,
                precision: figures.precision,
                recall: figures.recall,
            })
            .collect(),
    }
}

fn comparison(window: &str, paired: &Paired) -> proto::Comparison {
    proto::Comparison {
        window: window.to_owned(),
        champion: Some(figures(&paired.champion)),
        challenger: Some(figures(&paired.challenger)),
        naive: Some(figures(&paired.naive)),
        challenger_wins: paired.challenger_wins(),
    }
}

fn window_quality(quality: &WindowQuality) -> proto::WindowQuality {
    proto::WindowQuality {
        window: quality.window.to_owned(),
        scope: quality.scope.clone(),
        champion: Some(figures(&quality.champion)),
        naive: Some(figures(&quality.naive)),
        challenger: quality.challenger.as_ref().map(figures),
        paired: quality.paired.as_ref().map(|paired| comparison(quality.window, paired)),
        champion_below_naive: quality.champion_below_naive(),
    }
}

fn live_quality(report: &QualityReport) -> proto::LiveQuality {
    proto::LiveQuality {
        computed_at: Some(timestamp(report.computed_at_ms)),
        min_labelled: report.min_labelled,
        windows: report.windows.iter().map(window_quality).collect(),
    }
}

fn change(change: ModelChange, models: &ModelRegistry) -> proto::ModelChangeResult {
    proto::ModelChangeResult {
        model_version: change.version,
        replaced_version: change.replaced,
        audit_seq: change.audit_seq,
        comparison: change.comparison.as_ref().map(|paired| comparison(change.window, paired)),
        status: Some(status(models)),
    }
}

fn status(models: &ModelRegistry) -> proto::ModelStatus {
    let shadow = models.shadow();
    let mut confusion = Vec::new();
    for (champion_index, champion_band) in BANDS.iter().enumerate() {
        for (challenger_index, challenger_band) in BANDS.iter().enumerate() {
            confusion.push(proto::BandPair {
                champion_band: band(Some(*champion_band)) as i32,
                challenger_band: band(Some(*challenger_band)) as i32,
                count: shadow.confusion[champion_index][challenger_index],
            });
        }
    }
    proto::ModelStatus {
        champion: Some(card(&models.champion())),
        challenger: models.challenger().map(|challenger| card(&challenger)),
        shadow: Some(proto::ShadowStats {
            scored: shadow.scored,
            band_agreed: shadow.band_agreed(),
            agreement: shadow.agreement(),
            mean_abs_difference: shadow.mean_abs_difference(),
            confusion,
        }),
        reloads: models
            .reloads()
            .into_iter()
            .map(|event| proto::ReloadEvent {
                at: Some(timestamp(event.at_ms)),
                slot: event.slot.as_str().to_owned(),
                trigger: event.trigger.as_str().to_owned(),
                accepted: event.accepted,
                model_version: event.model_version,
                error: event.error,
            })
            .collect(),
        live_quality: Some(live_quality(&models.quality_report(super::now_ms()))),
    }
}

fn window(window: WindowDrift) -> proto::WindowDrift {
    proto::WindowDrift {
        start: Some(timestamp(window.start_ms)),
        contacts: window.contacts,
        variables: window
            .variables
            .into_iter()
            .map(|variable| proto::VariableDrift {
                name: variable.name,
                psi: variable.psi,
                shares: variable.shares,
                reference_shares: variable.reference_shares,
            })
            .collect(),
        max_psi: window.max_psi,
        level: window.level.to_owned(),
    }
}

fn region(region: RegionDrift) -> proto::RegionDrift {
    proto::RegionDrift {
        region: region.region,
        current: Some(window(region.current)),
        previous: region.previous.map(window),
    }
}

#[tonic::async_trait]
impl<S: HistoryStore> proto::models_server::Models for ModelsService<S> {
    async fn get_model_card(
        &self,
        request: Request<proto::ModelCardRequest>,
    ) -> Result<Response<proto::ModelCard>, Status> {
        self.app.auth.check(&request, &[Role::Operator, Role::Legal, Role::Admin])?;
        let models = self.app.screener.models();
        let slot = proto::ModelSlot::try_from(request.get_ref().slot).map_err(|_| {
            Status::from(Error::InvalidArgument(vec![Violation::new("slot", "must be CHAMPION or CHALLENGER")]))
        })?;
        match slot {
            proto::ModelSlot::Champion => Ok(Response::new(card(&models.champion()))),
            proto::ModelSlot::Challenger => models
                .challenger()
                .map(|challenger| Response::new(card(&challenger)))
                .ok_or_else(|| Status::not_found("no challenger is configured (model.challenger_path)")),
        }
    }

    async fn get_model_status(
        &self,
        request: Request<proto::ModelStatusRequest>,
    ) -> Result<Response<proto::ModelStatus>, Status> {
        self.app.auth.check(&request, &[Role::Operator, Role::Admin])?;
        Ok(Response::new(status(self.app.screener.models())))
    }

    async fn reload_model(
        &self,
        request: Request<proto::ReloadModelRequest>,
    ) -> Result<Response<proto::ModelStatus>, Status> {
        let admin = self.app.auth.authorize(&request, &[Role::Admin])?;
        let models = Arc::clone(self.app.screener.models());
        if !models.has_files() {
            return Err(Status::failed_precondition(
                "serving the model shipped in the binary: set model.path (and model.challenger_path) to reload from files",
            ));
        }
        tracing::info!(actor = %admin.name, "model reload requested");
        let reloader = Arc::clone(&models);
        let refusals = tokio::task::spawn_blocking(move || reloader.reload(Trigger::Rpc))
            .await
            .map_err(|error| Status::internal(format!("reload task failed: {error}")))?;
        if refusals.is_empty() {
            Ok(Response::new(status(&models)))
        } else {
            let reasons: Vec<String> = refusals.iter().map(ToString::to_string).collect();
            Err(Status::failed_precondition(format!("refused, the loaded model keeps serving: {}", reasons.join("; "))))
        }
    }

    async fn get_drift(&self, request: Request<proto::DriftRequest>) -> Result<Response<proto::DriftReport>, Status> {
        self.app.auth.check(&request, &[Role::Operator, Role::Admin])?;
        let wanted = request.get_ref().region.as_deref();
        if let Some(code) = wanted {
            if code != crate::modelops::drift::ALL_REGIONS && !is_valid_region_code(code) {
                return Err(Error::InvalidArgument(vec![Violation::new(
                    "region",
                    "must be a region code (lowercase letters, digits, '.', '_' or '-') or \"*\"",
                )])
                .into());
            }
        }
        let report = self.app.screener.models().drift().report(wanted);
        Ok(Response::new(proto::DriftReport {
            model_version: report.model_version,
            has_reference: report.has_reference,
            window_minutes: report.window_minutes,
            regions: report.regions.into_iter().map(region).collect(),
        }))
    }

    async fn promote_challenger(
        &self,
        request: Request<proto::PromoteChallengerRequest>,
    ) -> Result<Response<proto::ModelChangeResult>, Status> {
        let admin = self.app.auth.authorize(&request, &[Role::Admin])?;
        let request = request.get_ref();
        let done = self.app.promote_challenger(&admin, &request.reason, &request.window).await?;
        Ok(Response::new(change(done, self.app.screener.models())))
    }

    async fn rollback_champion(
        &self,
        request: Request<proto::RollbackChampionRequest>,
    ) -> Result<Response<proto::ModelChangeResult>, Status> {
        let admin = self.app.auth.authorize(&request, &[Role::Admin])?;
        let done = self.app.rollback_champion(&admin, &request.get_ref().reason).await?;
        Ok(Response::new(change(done, self.app.screener.models())))
    }
}
