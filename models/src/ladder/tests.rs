use super::*;

const NOW: i64 = 1_780_000_000_000;

fn incident(days_ago: f64, disposition: Disposition) -> Incident {
    Incident { id: 0, at_ms: NOW - (days_ago * DAY_MS as f64) as i64, disposition, spent: false, welfare: false }
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
    assert!(warning.rule.contains("default-2026-12 rungs.warning"), "{}", warning.rule);

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

/// Incidents numbered in order, as a caller's timeline numbers them.
fn timeline(incidents: impl IntoIterator<Item = Incident>) -> Vec<Incident> {
    incidents.into_iter().enumerate().map(|(id, incident)| Incident { id, ..incident }).collect()
}

/// A distressed caller's month: mostly silent and non-emergency, two contacts labelled prank, one genuine emergency.
fn distressed_month() -> Vec<Incident> {
    timeline((0..40).map(|index| {
        let disposition = match index {
            7 | 23 => Disposition::Prank,
            15 => Disposition::GenuineEmergency,
            _ if index % 2 == 0 => Disposition::Silent,
            _ => Disposition::NonEmergency,
        };
        incident(29.0 - index as f64 * 0.7, disposition)
    }))
}

#[test]
fn a_distressed_caller_with_prank_labels_is_referred_to_welfare_instead_of_warned() {
    let policy = LadderPolicy::default_policy();
    let month = distressed_month();
    let signals = policy.signals(&month, NOW);
    assert!(signals.distressed && !signals.held_for_welfare, "{signals:?}");
    assert_eq!((signals.contacts, signals.distress_contacts, signals.genuine_emergencies), (40, 37, 1));
    let proposal = policy.evaluate(&month, None, NOW).unwrap();
    assert_eq!((proposal.rung, proposal.approval), (Rung::WelfareReferral, Approval::Reviewer));
    assert!(proposal.rule.contains("instead of rungs.warning"), "{}", proposal.rule);
    assert!(proposal.rule.contains("37 of 40 contacts within 30 days silent or non_emergency"), "{}", proposal.rule);
    // The evidence: the contacts showing distress and the two labelled prank, not the genuine emergency.
    assert_eq!(proposal.incidents.len(), 39);
    assert!(proposal.incidents.iter().all(|incident| incident.disposition != Disposition::GenuineEmergency));

    // The same caller after the welfare referral was delivered: held, so neither a warning nor a new welfare case.
    let mut held = month.clone();
    for incident in held.iter_mut().filter(|incident| incident.disposition != Disposition::GenuineEmergency) {
        (incident.spent, incident.welfare) = (true, true);
    }
    held.extend(timeline((40..44).map(|index| incident(0.5 - f64::from(index - 40) * 0.1, Disposition::Prank))));
    let held = timeline(held);
    assert!(policy.signals(&held, NOW).held_for_welfare);
    assert_eq!(policy.evaluate(&held, None, NOW), None, "held for welfare while it shows distress");

    // Under punitive_first the warning is proposed, but never automatically: a reviewer sees why.
    let punitive = with("precedence = \"welfare_first\"", "precedence = \"punitive_first\"").unwrap();
    let warning = punitive.evaluate(&month, None, NOW).unwrap();
    assert_eq!((warning.rung, warning.approval), (Rung::Warning, Approval::Reviewer));
    assert!(warning.rule.contains("to a reviewer: 1 genuine emergency within 30 days, 37 of 40"), "{}", warning.rule);
}

#[test]
fn a_prankster_is_still_warned_and_a_genuine_emergency_sends_the_warning_to_a_reviewer() {
    let policy = LadderPolicy::default_policy();
    let pranks = timeline([
        incident(6.0, Disposition::Prank),
        incident(4.0, Disposition::Silent),
        incident(3.0, Disposition::Prank),
        incident(2.0, Disposition::Abusive),
    ]);
    assert!(!policy.signals(&pranks, NOW).distressed, "too few contacts to read a share");
    let warning = policy.evaluate(&pranks, None, NOW).unwrap();
    assert_eq!((warning.rung, warning.approval), (Rung::Warning, Approval::Automatic));
    assert!(!warning.rule.contains("reviewer"), "{}", warning.rule);

    let mut with_emergency = pranks.clone();
    with_emergency.push(incident(1.0, Disposition::GenuineEmergency));
    let warning = policy.evaluate(&timeline(with_emergency.clone()), None, NOW).unwrap();
    assert_eq!((warning.rung, warning.approval), (Rung::Warning, Approval::Reviewer));
    assert!(warning.rule.contains("to a reviewer: 1 genuine emergency within 30 days"), "{}", warning.rule);

    // Two genuine emergencies are a sign of distress on their own: welfare first.
    with_emergency.push(incident(0.5, Disposition::GenuineEmergency));
    let welfare = policy.evaluate(&timeline(with_emergency), None, NOW).unwrap();
    assert_eq!(welfare.rung, Rung::WelfareReferral);

    // A prankster held for welfare earlier (a child referred to support) who now only pranks is warned.
    let mut child = timeline((0..5).map(|index| incident(10.0 + f64::from(index), Disposition::Silent)));
    for incident in &mut child {
        (incident.spent, incident.welfare) = (true, true);
    }
    child.extend((0..6).map(|index| incident(5.0 - f64::from(index) * 0.5, Disposition::Prank)));
    let child = timeline(child);
    let signals = policy.signals(&child, NOW);
    assert!(signals.held_for_welfare && !signals.distressed, "{signals:?}");
    assert_eq!(policy.evaluate(&child, None, NOW).unwrap().rung, Rung::Warning);
}

#[test]
fn a_delivered_welfare_referral_is_not_re_proposed_while_it_holds() {
    let policy = LadderPolicy::default_policy();
    // Twelve silent contacts that grounded a delivered welfare referral, `days_ago` ago, then twelve more in a week.
    let calls = |days_ago: f64| {
        let mut calls = timeline((0..12).map(|index| incident(days_ago + f64::from(index) * 0.3, Disposition::Silent)));
        for incident in &mut calls {
            (incident.spent, incident.welfare) = (true, true);
        }
        calls.extend((0..12).map(|index| incident(f64::from(index) * 0.4, Disposition::NonEmergency)));
        timeline(calls)
    };
    assert_eq!(policy.evaluate(&calls(20.0), None, NOW), None, "held: twelve more in a week propose nothing");
    // Once the hold has passed (30 days after the last grounding contact), a new welfare review is due.
    assert_eq!(policy.evaluate(&calls(31.0), None, NOW).unwrap().rung, Rung::WelfareReferral);
}

#[test]
fn invalid_distress_rules_name_the_key() {
    let misuse = with("shows = [\"silent\", \"non_emergency\"]", "shows = [\"silent\", \"prank\"]").unwrap_err();
    assert_eq!(misuse.key, "distress.shows");
    assert_eq!(with("min_share = 0.5", "min_share = 0.0").unwrap_err().key, "distress.min_share");
    assert_eq!(with("min_share = 0.5", "min_share = 1.5").unwrap_err().key, "distress.min_share");
    assert_eq!(with("min_contacts = 6", "min_contacts = 0").unwrap_err().key, "distress.min_contacts");
    let precedence = with("precedence = \"welfare_first\"", "precedence = \"prison_first\"").unwrap_err();
    assert!(precedence.key.starts_with("line ") && precedence.message.contains("prison_first"), "{precedence}");
    let sign = with("review_if = [\"genuine_emergency\", \"distress\"]", "review_if = [\"moon\"]").unwrap_err();
    assert!(sign.message.contains("moon"), "{sign}");
}
