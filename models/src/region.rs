//! Region codes and local time. A region code is `province.unit` (e.g. `ntt.kupang`); the province sets the
//! time zone, which the night-time and hour-of-day features need, so an unknown province is refused rather than
//! guessed.

/// Province codes in Western Indonesia Time (WIB, UTC+7).
pub const WIB_PROVINCES: [&str; 18] = [
    "aceh", "sumut", "sumbar", "riau", "kepri", "jambi", "sumsel", "babel", "bengkulu", "lampung", "dki", "jabar",
    "banten", "jateng", "diy", "jatim", "kalbar", "kalteng",
];
/// Province codes in Central Indonesia Time (WITA, UTC+8).
pub const WITA_PROVINCES: [&str; 12] = [
    "bali",
    "ntb",
    "ntt",
    "kalsel",
    "kaltim",
    "kaltara",
    "sulut",
    "gorontalo",
    "sulteng",
    "sulbar",
    "sulsel",
    "sultra",
];
/// Province codes in Eastern Indonesia Time (WIT, UTC+9).
pub const WIT_PROVINCES: [&str; 8] = ["maluku", "malut", "papua", "pabar", "pabarda", "papteng", "papsel", "papeg"];

/// The province part of a region code (before the first `.`).
pub fn province(region: &str) -> &str {
    region.split('.').next().unwrap_or(region)
}

/// Offset from UTC in seconds for a region code's province, or `None` for an unknown province.
pub fn utc_offset_seconds(region: &str) -> Option<i64> {
    let province = province(region);
    if WIB_PROVINCES.contains(&province) {
        Some(7 * 3600)
    } else if WITA_PROVINCES.contains(&province) {
        Some(8 * 3600)
    } else if WIT_PROVINCES.contains(&province) {
        Some(9 * 3600)
    } else {
        None
    }
}

/// Whether a region code is well formed: 1..64 characters of lowercase ASCII letters, digits, `.`, `_`, `-`.
pub fn is_valid_region_code(region: &str) -> bool {
    !region.is_empty()
        && region.len() <= 64
        && region
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || matches!(byte, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provinces_map_to_their_time_zones() {
        assert_eq!(utc_offset_seconds("dki.jakarta"), Some(7 * 3600));
        assert_eq!(utc_offset_seconds("kalbar.pontianak"), Some(7 * 3600));
        assert_eq!(utc_offset_seconds("ntt.kupang"), Some(8 * 3600));
        assert_eq!(utc_offset_seconds("papua.jayapura"), Some(9 * 3600));
        assert_eq!(utc_offset_seconds("papua"), Some(9 * 3600));
        assert_eq!(utc_offset_seconds("zzz.foo"), None);
    }

    #[test]
    fn region_codes_are_checked() {
        assert!(is_valid_region_code("ntt.kupang"));
        assert!(!is_valid_region_code(""));
        assert!(!is_valid_region_code("NTT"));
        assert!(!is_valid_region_code("a b"));
    }
}
