//! The console's two languages: Bahasa Indonesia (the default, the operators' language) and English; the words
//! for the domain's values (bands, dispositions, channels, case states, rungs, degraded answers, audit actions,
//! the ladder's rule texts); and local times in the region's zone (WIB, WITA, WIT). Reasons' sentences come from
//! `saring_models::reason_text` in either language ([`Lang::language`]).

use saring_models::ladder::Rung;
use saring_models::reason_text::Language;
use saring_models::region::utc_offset_seconds;
use saring_models::{Band, Channel, Disposition};

use crate::cases::CaseState;

/// A console language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// Bahasa Indonesia.
    Id,
    /// English.
    En,
}

impl Lang {
    /// From a cookie or query value; Indonesian unless `en`.
    pub fn from_code(code: Option<&str>) -> Lang {
        if code == Some("en") {
            Lang::En
        } else {
            Lang::Id
        }
    }

    /// The code.
    pub fn code(self) -> &'static str {
        match self {
            Lang::Id => "id",
            Lang::En => "en",
        }
    }

    /// The language of `saring_models`' sentences.
    pub fn language(self) -> Language {
        match self {
            Lang::Id => Language::Indonesian,
            Lang::En => Language::English,
        }
    }

    /// The Indonesian or the English of a pair.
    fn pick(self, (id, en): (&'static str, &'static str)) -> &'static str {
        match self {
            Lang::Id => id,
            Lang::En => en,
        }
    }

    /// The text for `key` (the key itself if unknown, so a missing string is visible, not blank).
    pub fn t(self, key: &'static str) -> &'static str {
        let pair = TEXTS.iter().find(|(k, _, _)| *k == key);
        match (pair, self) {
            (Some((_, id, _)), Lang::Id) => id,
            (Some((_, _, en)), Lang::En) => en,
            (None, _) => key,
        }
    }
}

/// (key, Indonesian, English).
const TEXTS: &[(&str, &str, &str)] = &[
    ("title", "saring — konsol 110", "saring — 110 console"),
    ("sign_in", "Masuk", "Sign in"),
    ("sign_out", "Keluar", "Sign out"),
    ("token", "Token akses", "Access token"),
    ("bad_token", "Token tidak dikenal.", "Unknown token."),
    (
        "too_many_failures",
        "Terlalu banyak percobaan masuk yang gagal dari alamat ini. Coba lagi nanti.",
        "Too many failed sign-ins from this address. Try again later.",
    ),
    ("outcome_refused", "Hasil ditolak", "Outcome refused"),
    ("operator_view", "Operator", "Operator"),
    ("legal_view", "Tim hukum", "Legal team"),
    ("dashboard", "Dasbor", "Dashboard"),
    ("live_feed", "Kontak masuk", "Incoming contacts"),
    ("region_filter", "Wilayah (mis. ntt. atau jatim.sby)", "Region (e.g. ntt. or jatim.sby)"),
    ("filter", "Saring", "Filter"),
    ("time", "Waktu", "Time"),
    ("contact", "Kontak", "Contact"),
    ("channel", "Kanal", "Channel"),
    ("region", "Wilayah", "Region"),
    ("risk", "Risiko", "Risk"),
    ("reasons", "Alasan", "Reasons"),
    ("history", "Riwayat penelepon", "Caller history"),
    (
        "select_contact",
        "Pilih kontak untuk melihat riwayat dan mencatat disposisi.",
        "Select a contact to see its history and record a disposition.",
    ),
    ("disposition", "Disposisi", "Disposition"),
    ("answered", "Dijawab", "Answered"),
    ("talk_s", "Lama bicara (detik)", "Talk time (seconds)"),
    ("record", "Catat", "Record"),
    ("recorded", "Tercatat.", "Recorded."),
    ("correction_offer", "Kontak ini sudah tercatat sebagai", "This contact was already recorded as"),
    (
        "correction_give_reason",
        "Untuk mengoreksinya ke disposisi yang dipilih, tulis alasannya lalu tekan Koreksi.",
        "To correct it to the chosen disposition, give a reason and press Correct.",
    ),
    ("correction_reason", "Alasan koreksi", "Reason for the correction"),
    ("correct", "Koreksi", "Correct"),
    ("corrected", "Dikoreksi", "Corrected"),
    ("correction_refused", "Koreksi ditolak", "Correction refused"),
    (
        "correction_unchanged",
        "Sudah tercatat dengan disposisi ini; tidak ada yang berubah.",
        "Already recorded with this disposition; nothing changed.",
    ),
    (
        "correction_withdrawn",
        "Kasus yang diusulkan ditarik: koreksi ini menghapus dasarnya.",
        "The proposed case was withdrawn: this correction removed its grounds.",
    ),
    (
        "correction_evidence_removed",
        "Kontak ini tidak lagi dihitung dalam kasus yang terbuka.",
        "This contact no longer counts towards the open case.",
    ),
    ("correction_proposed", "Sebuah kasus diusulkan.", "A case was proposed."),
    ("correction_evidence_added", "Ditambahkan sebagai bukti pada kasus yang terbuka.", "Added as evidence to the open case."),
    (
        "correction_flagged",
        "Koreksi ini ditampilkan pada kasus untuk tim hukum.",
        "The correction is shown on the case for the legal team.",
    ),
    ("withheld", "nomor disembunyikan", "number withheld"),
    ("forbidden", "Peran Anda tidak boleh membuka halaman ini.", "Your role may not open this page."),
    ("queue", "Antrian eskalasi", "Escalation queue"),
    ("state", "Status", "State"),
    ("rung", "Tingkat", "Rung"),
    ("created", "Dibuat", "Created"),
    ("incidents", "Insiden", "Incidents"),
    ("all", "semua", "all"),
    ("case", "Kasus", "Case"),
    ("caller_number", "Nomor penelepon", "Caller number"),
    ("rule", "Aturan yang terpenuhi", "Rule that fired"),
    ("to_reviewer", "ke peninjau, bukan otomatis", "to a reviewer, not automatic"),
    (
        "welfare_instead",
        "rujukan kesejahteraan, bukan {rung}: penelepon menunjukkan tanda tertekan",
        "welfare referral instead of {rung}: the caller shows signs of distress",
    ),
    ("distress_share", "{n} dari {m} kontak dalam {days} hari {shows}", "{n} of {m} contacts within {days} days {shows}"),
    ("emergencies", "{n} keadaan darurat sungguhan", "{n} genuine emergencies"),
    ("emergency_one", "1 keadaan darurat sungguhan", "1 genuine emergency"),
    ("within_days", "dalam {days} hari", "within {days} days"),
    ("policy_version", "Versi kebijakan", "Policy version"),
    ("model_version", "Versi model", "Model version"),
    ("timeline", "Linimasa bukti", "Evidence timeline"),
    ("likelihood_then", "Kemungkinan iseng saat itu", "Prank likelihood then"),
    ("operator", "Operator", "Operator"),
    ("counts", "Dihitung", "Counts"),
    ("reason", "Alasan (wajib)", "Reason (required)"),
    ("why", "Alasan", "Reason"),
    ("approve", "Setujui", "Approve"),
    ("reject", "Tolak", "Reject"),
    ("revert", "Batalkan (banding)", "Revert (appeal)"),
    ("audit", "Jejak audit", "Audit trail"),
    ("actor", "Pelaku", "Actor"),
    ("action", "Tindakan", "Action"),
    ("decided", "Keputusan tercatat.", "Decision recorded."),
    ("decision", "Keputusan", "Decision"),
    ("conflict", "Keputusan tidak diterapkan", "Decision not applied"),
    ("reason_required", "Alasan wajib diisi dengan benar.", "A valid reason is required."),
    ("contacts_per_hour", "Kontak per jam menurut pita risiko", "Contacts per hour by risk band"),
    ("by_region", "Per wilayah", "By region"),
    ("period", "Periode:", "Period:"),
    (
        "answered_denominator",
        "Dijawab = kontak dengan hasil tercatat yang dijawab operator, dibagi semua kontak dengan hasil tercatat.",
        "Answered = contacts with a recorded outcome that an operator answered, over all contacts with a recorded outcome.",
    ),
    ("all_time", "Sepanjang waktu (semua kasus di basis data).", "All time (every case in the database)."),
    ("drift_window", "jendela saat ini:", "current window:"),
    ("all_regions", "semua wilayah", "all regions"),
    ("not_enough_data", "Belum cukup data (minimal kontak per jendela):", "Not enough data (contacts needed per window):"),
    ("share_answered", "Dijawab", "Answered"),
    ("contacts", "Kontak", "Contacts"),
    ("cases_by_state", "Kasus menurut status", "Cases by state"),
    ("drift", "Indeks pergeseran (PSI, jendela saat ini)", "Drift index (PSI, current window)"),
    ("no_reference", "Kartu model tidak memuat distribusi acuan.", "The model card has no reference distribution."),
    (
        "no_console_role",
        "Peran token ini tidak memiliki halaman konsol; gunakan API gRPC.",
        "This token's role has no console pages; it works through the gRPC API.",
    ),
    (
        "live_quality",
        "Kualitas langsung (ROC-AUC pada kontak berlabel, nasional)",
        "Live quality (ROC-AUC on labelled contacts, national)",
    ),
    (
        "too_few_labelled",
        "terlalu sedikit kontak berlabel untuk diukur",
        "too few labelled contacts to measure",
    ),
    (
        "below_naive",
        "Peringatan: model juara lebih buruk daripada aturan naif (porsi kontak lalu penelepon yang iseng atau kasar). Latih ulang dengan disposisi pusat ini sendiri.",
        "Warning: the champion ranks worse than the naive rule (share of the caller's past contacts that were prank or abusive). Retrain on this centre's own dispositions.",
    ),
    ("language", "English", "Bahasa Indonesia"),
    ("yes", "ya", "yes"),
    ("no", "tidak", "no"),
    ("not_found", "Tidak ditemukan.", "Not found."),
    ("dispatch_view", "Pengiriman", "Dispatch"),
    ("deliveries", "Kasus disetujui menunggu pengiriman", "Approved cases awaiting delivery"),
    ("no_deliveries", "Tidak ada kasus yang menunggu pengiriman.", "No cases await delivery."),
    ("approved_at", "Disetujui", "Approved"),
    ("claimed_by", "Diklaim oleh", "Claimed by"),
    ("claim", "Klaim", "Claim"),
    ("claimed", "Diklaim: kasus", "Claimed: case"),
    (
        "number_once",
        "Nomor ini ditampilkan sekali untuk klaim ini dan tercatat di jejak audit. Jangan salin ke tempat lain.",
        "This number is shown once for this claim and recorded in the audit trail. Do not copy it elsewhere.",
    ),
    ("record_delivery", "Catat pengiriman", "Record the delivery"),
    ("delivery_channel", "Kanal pengiriman", "Delivery channel"),
    ("delivered_at", "Waktu pengiriman (kosong: sekarang)", "Delivered at (empty: now)"),
    ("delivery_note", "Catatan (mis. nomor referensi pesan)", "Note (e.g. the message reference)"),
    ("release_claim", "Kembalikan tanpa dikirim", "Give back undelivered"),
    ("delivery_recorded", "Pengiriman tercatat.", "Delivery recorded."),
    ("claim_released", "Klaim dikembalikan.", "Claim given back."),
    ("not_applied", "Tidak diterapkan:", "Not applied:"),
    ("back_to_deliveries", "Kembali ke daftar pengiriman", "Back to the deliveries"),
    ("delivery_sms", "SMS", "SMS"),
    ("delivery_whatsapp", "WhatsApp", "WhatsApp"),
    ("delivery_call", "Telepon", "Phone call"),
    ("delivery_in_person", "Langsung (tatap muka)", "In person"),
    ("delivery_filed", "Diajukan ke unit terkait", "Filed with the unit concerned"),
    ("delivery", "Pengiriman", "Delivery"),
    ("not_delivered", "belum dikirim", "not delivered yet"),
    ("other_cases", "Kasus lain penelepon ini", "This caller's other cases"),
    ("no_other_cases", "Tidak ada kasus lain untuk nomor ini.", "No other cases for this number."),
    ("contact_id", "ID kontak (rekaman)", "Contact id (recording)"),
    ("case_file_link", "Berkas perkara (untuk dicetak)", "Case file (printable)"),
    ("case_file", "Berkas perkara", "Case file"),
    ("exported_by", "Diekspor oleh", "Exported by"),
    ("print", "Cetak", "Print"),
    ("back_to_case", "Kembali ke kasus", "Back to the case"),
    ("inbox", "Menunggu keputusan", "Awaiting a decision"),
    ("inbox_empty", "Tidak ada kasus yang menunggu keputusan.", "No case awaits a decision."),
    ("caller", "Penelepon", "Caller"),
    ("waiting", "Menunggu sejak", "Waiting for"),
    ("minutes", "menit", "minutes"),
    ("hours", "jam", "hours"),
    ("days", "hari", "days"),
    ("unavailable", "Basis data kasus tidak tersedia; coba lagi.", "The case database is unavailable; try again."),
    ("band_filter", "Pita risiko", "Risk band"),
    ("band_all", "semua", "all"),
    ("band_elevated_up", "WASPADA dan TINGGI", "ELEVATED and HIGH"),
    ("band_high_only", "hanya TINGGI", "HIGH only"),
    ("pause", "Jeda", "Pause"),
    ("resume", "Lanjutkan", "Resume"),
    ("queued", "baru menunggu", "new waiting"),
    ("queued_high", "TINGGI", "HIGH"),
    ("high_sound", "Bunyi untuk kontak TINGGI", "Sound for HIGH contacts"),
    ("standing", "Tingkat / kasus", "Rung / case"),
    ("raises", "menaikkan skor", "raises the score"),
    ("lowers", "menurunkan skor", "lowers the score"),
    ("degraded", "terbatas", "degraded"),
    ("likelihood", "kemungkinan iseng", "prank likelihood"),
    ("total_contacts", "total kontak", "total contacts"),
    ("contacts_24h", "kontak 24 jam", "contacts 24h"),
    ("misuse_30d", "iseng/kasar 30 hari", "misuse 30d"),
    ("first_seen", "pertama", "first"),
    ("last_seen", "terakhir", "last"),
    ("open_case", "kasus terbuka", "open case"),
    ("not_scored_here", "Kontak ini tidak dinilai di sini baru-baru ini.", "This contact was not scored here recently."),
    ("duplicate", "sudah tercatat sebelumnya", "already recorded"),
    ("withheld_history", "nomor disembunyikan: tidak ada riwayat", "number withheld: no history"),
    ("rule_after", "setelah {after} disampaikan", "after {after} was delivered"),
    ("rule_body", "{threshold} dari [{counts}] dalam {days} hari", "{threshold} of [{counts}] within {days} days"),
    ("auto_approved", "disetujui otomatis oleh kebijakan", "approved automatically by policy"),
    (
        "conflict_state",
        "Kasus {case} tidak dapat diubah: sudah {state} oleh {who} ({why}).",
        "Case {case} cannot change: it was {state} by {who} ({why}).",
    ),
    (
        "conflict_stale",
        "Kasus {case} telah berubah: sudah {state} oleh {who} ({why}). Baca lagi sebelum memutuskan.",
        "Case {case} changed: it was {state} by {who} ({why}). Read it again before deciding.",
    ),
    ("conflict_waiting", "Kasus {case} telah berubah dan menunggu keputusan. Baca lagi.", "Case {case} changed and awaits a decision. Read it again."),
    ("no_reason", "tanpa alasan", "no reason given"),
    ("champion", "juara", "champion"),
    ("challenger", "penantang", "challenger"),
    ("naive", "aturan naif", "naive"),
    ("window_day", "hari", "day"),
    ("window_week", "minggu", "week"),
];

/// The band's word, capitalised as the badge shows it; `None` (the model failed) has its own.
pub fn band(lang: Lang, band: Option<Band>) -> &'static str {
    lang.pick(match band {
        Some(Band::Low) => ("RENDAH", "LOW"),
        Some(Band::Elevated) => ("WASPADA", "ELEVATED"),
        Some(Band::High) => ("TINGGI", "HIGH"),
        None => ("TANPA SKOR", "NO SCORE"),
    })
}

/// A disposition's words.
pub fn disposition(lang: Lang, disposition: Disposition) -> &'static str {
    lang.pick(match disposition {
        Disposition::GenuineEmergency => ("darurat sungguhan", "genuine emergency"),
        Disposition::NonEmergency => ("bukan darurat", "not an emergency"),
        Disposition::Prank => ("iseng", "prank"),
        Disposition::Silent => ("diam (tanpa suara)", "silent"),
        Disposition::Abusive => ("kasar", "abusive"),
        Disposition::Accidental => ("tidak sengaja", "accidental"),
        Disposition::Test => ("uji coba", "test"),
        Disposition::Unknown => ("tidak diketahui", "unknown"),
    })
}

/// A channel's words.
pub fn channel(lang: Lang, channel: Channel) -> &'static str {
    lang.pick(match channel {
        Channel::Voice => ("telepon", "voice call"),
        Channel::Whatsapp => ("WhatsApp", "WhatsApp"),
        Channel::Sms => ("SMS", "SMS"),
        Channel::App => ("aplikasi polisi", "police app"),
    })
}

/// A case state's words.
pub fn state(lang: Lang, state: CaseState) -> &'static str {
    lang.pick(match state {
        CaseState::Proposed => ("diusulkan", "proposed"),
        CaseState::Approved => ("disetujui", "approved"),
        CaseState::Rejected => ("ditolak", "rejected"),
        CaseState::Actioned => ("dilaksanakan", "actioned"),
        CaseState::Reverted => ("dibatalkan", "reverted"),
    })
}

/// A stored case state's words (the name itself if it is not a state).
pub fn state_name(lang: Lang, name: &str) -> &str {
    CaseState::from_name(name).map_or(name, |known| state(lang, known))
}

/// A rung's words.
pub fn rung(lang: Lang, rung: Rung) -> &'static str {
    lang.pick(match rung {
        Rung::Warning => ("teguran", "warning"),
        Rung::VirtualPoliceMessage => ("pesan Polisi Virtual", "virtual-police message"),
        Rung::LegalReferral => ("rujukan pidana", "legal referral"),
        Rung::WelfareReferral => ("rujukan layanan sosial", "welfare referral"),
    })
}

/// Why an answer is degraded, in words (the code itself if unknown).
pub fn degraded(lang: Lang, code: &str) -> &str {
    match code {
        "history_timeout" => lang.pick(("riwayat tidak terbaca tepat waktu", "history not read in time")),
        "history_unavailable" => lang.pick(("riwayat tidak tersedia", "history unavailable")),
        "history_stale" => {
            lang.pick(("riwayat terakhir yang diketahui (mungkin usang)", "last known history (may be stale)"))
        }
        "model_failure" => lang.pick(("model gagal: tanpa skor", "model failure: no score")),
        "overload" => lang.pick(("beban penuh: tanpa riwayat", "overloaded: scored without history")),
        other => other,
    }
}

/// The codes [`degraded`] words.
pub const DEGRADED_CODES: [&str; 5] =
    ["history_timeout", "history_stale", "history_unavailable", "model_failure", "overload"];

/// An audit action's words (the action itself if unknown).
pub fn action(lang: Lang, action: &str) -> &str {
    match action {
        "evidence_read" => lang.pick(("bukti dibaca", "evidence read")),
        "evidence_added" => lang.pick(("bukti ditambahkan", "evidence added")),
        "claimed" => lang.pick(("diklaim untuk pengiriman", "claimed for delivery")),
        "claim_released" => lang.pick(("klaim dikembalikan", "claim given back")),
        "corrected" => lang.pick(("disposisi dikoreksi", "disposition corrected")),
        other => state_name(lang, other),
    }
}

/// A drift level's words (the level itself if unknown).
pub fn drift_level(lang: Lang, level: &str) -> &str {
    match level {
        "stable" => lang.pick(("stabil", "stable")),
        "moderate" => lang.pick(("sedang", "moderate")),
        "significant" => lang.pick(("signifikan", "significant")),
        "too_few_contacts" => lang.pick(("terlalu sedikit kontak", "too few contacts")),
        other => other,
    }
}

/// A rule the ladder stored with a case (`"v1 rungs.warning: 2 of [prank, abusive] within 30 days after warning
/// was delivered"`, see `saring_models::ladder`), in words; the stored text itself if it does not parse (a rule
/// written by another version). An automatic approval's audit reason reads too.
pub fn rule_text(lang: Lang, rule: &str) -> String {
    if let Some(version) = rule.strip_prefix("approved automatically by policy ") {
        return format!("{} {version}", lang.t("auto_approved"));
    }
    // Why a warning went to a reviewer (`…; to a reviewer: 1 genuine emergency within 30 days, …`).
    if let Some((base, why)) = rule.split_once("; to a reviewer: ") {
        if let Some(why) = signs_text(lang, why) {
            return format!("{} — {}: {why}", rule_text(lang, base), lang.t("to_reviewer"));
        }
    }
    parse_welfare_instead(lang, rule).or_else(|| parse_rule(lang, rule)).unwrap_or_else(|| rule.to_owned())
}

/// `"v rungs.welfare_referral instead of rungs.warning (distress.precedence = welfare_first): 37 of 40 contacts …"`.
fn parse_welfare_instead(lang: Lang, rule: &str) -> Option<String> {
    let (version, rest) = rule.split_once(" rungs.welfare_referral instead of rungs.")?;
    let (instead_of, signs) = rest.split_once(" (distress.precedence = welfare_first): ")?;
    let headline = lang.t("welfare_instead").replace("{rung}", rung(lang, Rung::from_key(instead_of)?));
    Some(format!("{headline} — {} ({version})", signs_text(lang, signs)?))
}

/// The signs the ladder names (`"1 genuine emergency within 30 days"`, `"37 of 40 contacts within 30 days silent or
/// non_emergency, 1 genuine emergency"`), comma-separated, in words; `None` if one does not parse.
fn signs_text(lang: Lang, signs: &str) -> Option<String> {
    let emergencies = |count: &str| match count {
        "1" => lang.t("emergency_one").to_owned(),
        n => lang.t("emergencies").replace("{n}", n),
    };
    let mut words = Vec::new();
    for sign in signs.split(", ") {
        if let Some((count, rest)) = sign.split_once(" genuine emergenc") {
            count.parse::<u32>().ok()?;
            let days = rest.strip_prefix("y").or_else(|| rest.strip_prefix("ies")).map(str::trim)?;
            let mut text = emergencies(count);
            if let Some(days) = days.strip_prefix("within ").and_then(|days| days.strip_suffix(" days")) {
                text = format!("{text} {}", lang.t("within_days").replace("{days}", days));
            } else if !days.is_empty() {
                return None;
            }
            words.push(text);
        } else {
            let (n, rest) = sign.split_once(" of ")?;
            let (m, rest) = rest.split_once(" contacts within ")?;
            let (days, shows) = rest.split_once(" days ")?;
            let shows: Option<Vec<&str>> = shows
                .split(" or ")
                .map(|name| Disposition::from_name(name).map(|known| disposition(lang, known)))
                .collect();
            let or = lang.pick((" atau ", " or "));
            words.push(
                lang.t("distress_share")
                    .replace("{n}", n)
                    .replace("{m}", m)
                    .replace("{days}", days)
                    .replace("{shows}", &shows?.join(or)),
            );
        }
    }
    Some(words.join(", "))
}

fn parse_rule(lang: Lang, rule: &str) -> Option<String> {
    let (version, rest) = rule.split_once(" rungs.")?;
    let (key, rest) = rest.split_once(": ")?;
    let (threshold, rest) = rest.split_once(" of [")?;
    let (counts, rest) = rest.split_once("] within ")?;
    let (days, after) = rest.split_once(" days")?;
    let threshold: u32 = threshold.parse().ok()?;
    let days: u32 = days.parse().ok()?;
    let rung_words = rung(lang, Rung::from_key(key)?);
    let counts: Option<Vec<&str>> =
        counts.split(", ").map(|name| Disposition::from_name(name).map(|known| disposition(lang, known))).collect();
    let body = lang
        .t("rule_body")
        .replace("{threshold}", &threshold.to_string())
        .replace("{counts}", &counts?.join(", "))
        .replace("{days}", &days.to_string());
    let after = match after.strip_prefix(" after ").and_then(|rest| rest.strip_suffix(" was delivered")) {
        Some(previous) => {
            format!(" {}", lang.t("rule_after").replace("{after}", rung(lang, Rung::from_key(previous)?)))
        }
        None if after.is_empty() => String::new(),
        None => return None,
    };
    Some(format!("{rung_words}: {body}{after} ({version})"))
}

/// A decision that lost to another's, in words: who did what to the case, and why.
pub fn conflict(lang: Lang, current: &crate::cases::CaseSummary, stale: bool) -> String {
    let (who, why) = match current.state {
        CaseState::Proposed => return lang.t("conflict_waiting").replace("{case}", &current.case_id),
        CaseState::Approved | CaseState::Rejected => (&current.decided_by, &current.decision_reason),
        CaseState::Actioned => (&current.actioned_by, &current.action_note),
        CaseState::Reverted => (&current.reverted_by, &current.revert_reason),
    };
    let template = if stale { lang.t("conflict_stale") } else { lang.t("conflict_state") };
    template
        .replace("{case}", &current.case_id)
        .replace("{state}", state(lang, current.state))
        .replace("{who}", who.as_deref().unwrap_or("?"))
        .replace("{why}", &rule_text(lang, why.as_deref().unwrap_or(lang.t("no_reason"))))
}

/// A local time's parts: `(date, clock, zone)`, e.g. `("2026-03-01", "08:00:00", "WITA")`.
pub fn local_parts(at_ms: i64, utc_offset_s: i64) -> (String, String, &'static str) {
    let text = local_time_at(at_ms, utc_offset_s);
    let mut parts = text.splitn(3, ' ');
    let date = parts.next().unwrap_or_default().to_owned();
    let clock = parts.next().unwrap_or_default().to_owned();
    (date, clock, zone_name(utc_offset_s))
}

/// The zone name of a UTC offset used in Indonesia.
pub fn zone_name(utc_offset_s: i64) -> &'static str {
    match utc_offset_s {
        25_200 => "WIB",
        28_800 => "WITA",
        32_400 => "WIT",
        _ => "UTC",
    }
}

/// `YYYY-MM-DD HH:MM:SS ZONE` in the region's local time.
pub fn local_time(at_ms: i64, region: &str) -> String {
    let offset = utc_offset_seconds(region).unwrap_or(0);
    local_time_at(at_ms, offset)
}

/// `YYYY-MM-DD HH:MM:SS ZONE` at a UTC offset.
pub fn local_time_at(at_ms: i64, utc_offset_s: i64) -> String {
    let local = time::OffsetDateTime::from_unix_timestamp(at_ms.div_euclid(1000) + utc_offset_s)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} {}",
        local.year(),
        u8::from(local.month()),
        local.day(),
        local.hour(),
        local.minute(),
        local.second(),
        zone_name(utc_offset_s)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_both_languages_and_times_are_local() {
        for (key, id, en) in TEXTS {
            assert!(!id.is_empty() && !en.is_empty(), "{key}");
        }
        assert_eq!(Lang::from_code(None).t("sign_in"), "Masuk");
        assert_eq!(Lang::from_code(Some("en")).t("sign_in"), "Sign in");
        // 2026-03-01T00:00:00Z is 07:00 WIB in Jakarta, 08:00 WITA in Kupang, 09:00 WIT in Jayapura.
        let at = 1_772_323_200_000;
        assert_eq!(local_time(at, "dki.jakarta"), "2026-03-01 07:00:00 WIB");
        assert_eq!(local_time(at, "ntt.kupang"), "2026-03-01 08:00:00 WITA");
        assert_eq!(local_time(at, "papua.jayapura"), "2026-03-01 09:00:00 WIT");
        assert_eq!(local_parts(at, 28_800), ("2026-03-01".to_owned(), "08:00:00".to_owned(), "WITA"));
    }

    /// Every value an operator or reviewer reads has words in both languages, and the Indonesian differs from the
    /// English wherever the two languages do not share the word (WhatsApp, SMS).
    #[test]
    fn every_domain_value_has_both_languages() {
        let both = |what: String, id: &str, en: &str, shared: bool| {
            assert!(!id.is_empty() && !en.is_empty(), "{what}");
            assert!(shared || id != en, "{what}: {id:?} is not Indonesian");
        };
        for value in [None, Some(Band::Low), Some(Band::Elevated), Some(Band::High)] {
            both(format!("{value:?}"), band(Lang::Id, value), band(Lang::En, value), false);
        }
        for value in Disposition::ALL {
            both(format!("{value:?}"), disposition(Lang::Id, value), disposition(Lang::En, value), false);
        }
        for value in Channel::ALL {
            let shared = matches!(value, Channel::Whatsapp | Channel::Sms);
            both(format!("{value:?}"), channel(Lang::Id, value), channel(Lang::En, value), shared);
        }
        for value in CaseState::ALL {
            both(format!("{value:?}"), state(Lang::Id, value), state(Lang::En, value), false);
        }
        for value in Rung::ALL {
            both(format!("{value:?}"), rung(Lang::Id, value), rung(Lang::En, value), false);
        }
        for code in DEGRADED_CODES {
            both(code.to_owned(), degraded(Lang::Id, code), degraded(Lang::En, code), false);
        }
        for level in ["stable", "moderate", "significant", "too_few_contacts"] {
            both(level.to_owned(), drift_level(Lang::Id, level), drift_level(Lang::En, level), false);
        }
        let mut keys = std::collections::HashSet::new();
        for (key, _, _) in TEXTS {
            assert!(keys.insert(key), "{key} twice");
        }
    }

    #[test]
    fn rule_texts_read_in_both_languages_and_unknown_ones_stay_as_stored() {
        let rule = "v1 rungs.virtual_police_message: 1 of [prank, abusive] within 60 days after warning was delivered";
        assert_eq!(
            rule_text(Lang::Id, rule),
            "pesan Polisi Virtual: 1 dari [iseng, kasar] dalam 60 hari setelah teguran disampaikan (v1)"
        );
        assert_eq!(
            rule_text(Lang::En, rule),
            "virtual-police message: 1 of [prank, abusive] within 60 days after warning was delivered (v1)"
        );
        assert_eq!(
            rule_text(Lang::Id, "v2 rungs.warning: 2 of [prank] within 30 days"),
            "teguran: 2 dari [iseng] dalam 30 hari (v2)"
        );
        assert_eq!(rule_text(Lang::Id, "something else"), "something else");
        assert_eq!(
            rule_text(Lang::Id, "v1 rungs.nonsense: 2 of [prank] within 30 days"),
            "v1 rungs.nonsense: 2 of [prank] within 30 days"
        );
        assert_eq!(rule_text(Lang::Id, "approved automatically by policy v1"), "disetujui otomatis oleh kebijakan v1");
    }

    #[test]
    fn why_a_case_went_to_welfare_or_to_a_reviewer_reads_in_both_languages() {
        // The texts the ladder writes (saring_models::ladder), read back.
        let policy = saring_models::ladder::LadderPolicy::default_policy();
        let at = |days: i64| 1_780_000_000_000 - days * 86_400_000;
        let incident = |id: usize, days: i64, disposition: Disposition| saring_models::ladder::Incident {
            id,
            at_ms: at(days),
            disposition,
            spent: false,
            welfare: false,
        };
        let reviewed = [
            incident(0, 5, Disposition::Prank),
            incident(1, 4, Disposition::GenuineEmergency),
            incident(2, 3, Disposition::Prank),
        ];
        let warning = policy.evaluate(&reviewed, None, at(0)).unwrap();
        assert_eq!(
            rule_text(Lang::En, &warning.rule),
            "warning: 2 of [prank, abusive] within 30 days (default-2026-12) — to a reviewer, not automatic: 1 genuine \
             emergency within 30 days"
        );
        assert_eq!(
            rule_text(Lang::Id, &warning.rule),
            "teguran: 2 dari [iseng, kasar] dalam 30 hari (default-2026-12) — ke peninjau, bukan otomatis: 1 keadaan \
             darurat sungguhan dalam 30 hari"
        );
        let distressed: Vec<_> = (0..10)
            .map(|id| {
                let disposition = match id {
                    2 | 6 => Disposition::Prank,
                    _ if id % 2 == 0 => Disposition::Silent,
                    _ => Disposition::NonEmergency,
                };
                incident(id, 10 - id as i64, disposition)
            })
            .collect();
        let welfare = policy.evaluate(&distressed, None, at(0)).unwrap();
        let english = rule_text(Lang::En, &welfare.rule);
        assert!(english.starts_with("welfare referral instead of warning: the caller shows signs of distress — 8 of 10 contacts within 30 days silent or not an emergency"), "{english}");
        let indonesian = rule_text(Lang::Id, &welfare.rule);
        assert!(indonesian.starts_with("rujukan kesejahteraan, bukan teguran"), "{indonesian}");
        assert!(indonesian.contains("8 dari 10 kontak dalam 30 hari"), "{indonesian}");
    }
}
