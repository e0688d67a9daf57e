//! The console's two languages: Bahasa Indonesia (the default, the operators' language) and English; and local
//! times in the region's zone (WIB, WITA, WIT).

use saring_models::region::utc_offset_seconds;

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
];

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
    }
}
