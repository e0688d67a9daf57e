//! Region codes and local time. A region code is `province.unit` (e.g. `ntt.kupang`); the province sets the
//! time zone, which the night-time and hour-of-day features need.

/// Offset from UTC in seconds for a region code: WIT (UTC+9) for Maluku and Papua, WITA (UTC+8) for Bali, Nusa
/// Tenggara, Kalimantan's east and south and Sulawesi, WIB (UTC+7) everywhere else, including unknown codes.
pub fn utc_offset_seconds(region: &str) -> i64 {
    let province = region.split('.').next().unwrap_or(region);
    const WITA: [&str; 13] = [
        "bali",
        "ntb",
        "ntt",
        "kalsel",
        "kaltim",
        "kaltara",
        "sulut",
        "sulteng",
        "sulsel",
        "sultra",
        "gorontalo",
        "sulbar",
        "sulawesi",
    ];
    const WIT: [&str; 8] = ["maluku", "malut", "papua", "pabar", "papbar", "papteng", "papsel", "papdaya"];
    if WIT.contains(&province) {
        9 * 3600
    } else if WITA.contains(&province) {
        8 * 3600
    } else {
        7 * 3600
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
        assert_eq!(utc_offset_seconds("dki.jakarta"), 7 * 3600);
        assert_eq!(utc_offset_seconds("ntt.kupang"), 8 * 3600);
        assert_eq!(utc_offset_seconds("papua.jayapura"), 9 * 3600);
        assert_eq!(utc_offset_seconds("unknown"), 7 * 3600);
    }

    #[test]
    fn region_codes_are_checked() {
        assert!(is_valid_region_code("ntt.kupang"));
        assert!(!is_valid_region_code(""));
        assert!(!is_valid_region_code("NTT"));
        assert!(!is_valid_region_code("a b"));
    }
}
