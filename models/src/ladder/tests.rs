use super::*;

const NOW: i64 = 1_780_000_000_000;

fn incident(days_ago: f64, disposition: Disposition) -> Incident {
    Incident { id: 0, at_ms: NOW - (days_ago * DAY_MS as f64) as i64, disposition, spent: false }
}

fn with(replace: &str, by: &str) -> Result<LadderPolicy, PolicyError> {
    assert!(DEFAULT_POLICY.contains(replace), "{replace}");
    LadderPolicy::from_toml(&DEFAULT_POLICY.replacen(replace, by, 1))
}

#[test]
fn the_default_policy_is_valid() {
    let policy = LadderPolicy::default_policy();
    assert_eq!(policy.rule(Rung::Warning).approval, Approval::Automatic);
    assert_eq!(policy.rule(Rung::LegalReferral).approval, Approval::Reviewer);
    assert_eq!(policy.rule(Rung::VirtualPoliceMessage).after, Some(Rung::Warning));
}

#[test]
fn invalid_policies_name_the_key() {
    let silent_counts = with("[rungs.warning]\n# Which confirmed dispositions count (only prank and abusive may count for warning, message and referral).\ncounts = [\"prank\", \"abusive\"]", "[rungs.warning]\ncounts = [\"prank\", \"silent\"]");
    assert_eq!(silent_counts.unwrap_err().key, "rungs.warning.counts");
    let automatic_referral = with(
        "after = \"virtual_police_message\"\napproval = \"reviewer\"",
        "after = \"virtual_police_message\"\napproval = \"automatic\"",
    );
    assert_eq!(automatic_referral.unwrap_err().key, "rungs.legal_referral.approval");
    let skipping = with("after = \"virtual_police_message\"", "after = \"warning\"");
    assert_eq!(skipping.unwrap_err().key, "rungs.legal_referral.after");
    let zero = with("threshold = 2", "threshold = 0");
    assert_eq!(zero.unwrap_err().key, "rungs.warning.threshold");
    let unknown = LadderPolicy::from_toml(&format!("{DEFAULT_POLICY}\n[rungs.banishment]\ncounts = [\"prank\"]\nthreshold = 1\nwindow_days = 1\nafter = \"none\"\napproval = \"reviewer\"\nexpires_after_quiet_days = 1\n"));
    assert_eq!(unknown.unwrap_err().key, "rungs.banishment");
    let typo = with("window_days = 30", "window_dayz = 30").unwrap_err();
    assert!(typo.key.starts_with("line "), "{typo}");
    assert!(typo.message.contains("window_dayz"), "{typo}");
}

#[test]
fn a_caller_climbs_one_delivered_rung_at_a_time() {
    let policy = LadderPolicy::default_policy();
    let one_prank = [incident(3.0, Disposition::Prank)];
    assert_eq!(policy.evaluate(&one_prank, None, NOW), None);

    let two = [incident(3.0, Disposition::Prank), incident(1.0, Disposition::Abusive)];
    let warning = policy.evaluate(&two, None, NOW).unwrap();
    assert_eq!(warning.rung, Rung::Warning);
    assert_eq!(warning.approval, Approval::Automatic);
    assert_eq!(warning.incidents.len(), 2);
    assert!(warning.rule.contains("default-2026-11 rungs.warning"), "{}", warning.rule);

    // Delivered half a day ago: the incidents before it do not count again.
    let delivered = Some(Delivered { rung: Rung::Warning, at_ms: NOW - DAY_MS / 2 });
    assert_eq!(policy.evaluate(&two, delivered, NOW), None);
    let mut more = two.to_vec();
    more.push(incident(0.1, Disposition::Prank));
    let message = policy.evaluate(&more, delivered, NOW).unwrap();
    assert_eq!((message.rung, message.approval), (Rung::VirtualPoliceMessage, Approval::Reviewer));
    assert_eq!(message.incidents.len(), 1);

    let delivered = Some(Delivered { rung: Rung::VirtualPoliceMessage, at_ms: NOW - DAY_MS / 20 });
    more.push(incident(0.01, Disposition::Abusive));
    let referral = policy.evaluate(&more, delivered, NOW).unwrap();
    assert_eq!((referral.rung, referral.approval), (Rung::LegalReferral, Approval::Reviewer));

    let at_the_top = Some(Delivered { rung: Rung::LegalReferral, at_ms: NOW - 1 });
    more.push(incident(0.0, Disposition::Prank));
    assert_eq!(policy.evaluate(&more, at_the_top, NOW), None);
}

#[test]
fn silent_and_accidental_never_escalate() {
    let policy = LadderPolicy::default_policy();
    let many: Vec<Incident> = (0..11)
        .map(|index| {
            incident(index as f64 * 0.5, if index % 2 == 0 { Disposition::Silent } else { Disposition::Accidental })
        })
        .collect();
    assert_eq!(policy.evaluate(&many, None, NOW), None);
}

#[test]
fn a_distressed_repeat_caller_is_referred_to_welfare_not_prosecution() {
    let policy = LadderPolicy::default_policy();
    let calls: Vec<Incident> = (0..12)
        .map(|index| {
            incident(index as f64 * 0.4, if index % 3 == 0 { Disposition::Silent } else { Disposition::NonEmergency })
        })
        .collect();
    let proposal = policy.evaluate(&calls, None, NOW).unwrap();
    assert_eq!((proposal.rung, proposal.approval), (Rung::WelfareReferral, Approval::Reviewer));
}

#[test]
fn a_quiet_caller_s_rung_expires() {
    let policy = LadderPolicy::default_policy();
    let old = [incident(200.0, Disposition::Prank), incident(199.0, Disposition::Prank)];
    let delivered = Some(Delivered { rung: Rung::Warning, at_ms: NOW - 198 * DAY_MS });
    assert_eq!(policy.effective_rung(delivered, &old, NOW), None, "90 quiet days forgive a warning");
    let recent = Some(Delivered { rung: Rung::Warning, at_ms: NOW - 10 * DAY_MS });
    assert_eq!(policy.effective_rung(recent, &old, NOW), recent);
    // After expiry a single new prank is not enough: the caller starts again at the bottom.
    let mut after_expiry = old.to_vec();
    after_expiry.push(incident(1.0, Disposition::Prank));
    assert_eq!(policy.evaluate(&after_expiry, delivered, NOW), None);
}

#[test]
fn a_surge_is_recognised() {
    let policy = LadderPolicy::default_policy();
    assert!(!policy.is_surge(3));
    assert!(policy.is_surge(20));
}

#[test]
fn spent_incidents_never_count_again() {
    let policy = LadderPolicy::default_policy();
    let mut rejected = [incident(3.0, Disposition::Prank), incident(2.0, Disposition::Prank)];
    assert!(policy.evaluate(&rejected, None, NOW).is_some());
    for incident in &mut rejected {
        incident.spent = true;
    }
    assert_eq!(policy.evaluate(&rejected, None, NOW), None, "a reviewer's rejection is not re-proposed");
    let mut fresh = rejected.to_vec();
    fresh.push(incident(1.0, Disposition::Prank));
    assert_eq!(policy.evaluate(&fresh, None, NOW), None, "one fresh incident is not two");
    fresh.push(incident(0.5, Disposition::Abusive));
    assert_eq!(policy.evaluate(&fresh, None, NOW).unwrap().incidents.len(), 2);
}
