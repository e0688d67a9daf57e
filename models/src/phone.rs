//! Normalisation of Indonesian phone numbers to E.164 (`+62…`).

use thiserror::Error;

/// Why a string is not an Indonesian phone number.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PhoneError {
    /// Nothing but separators.
    #[error("is empty")]
    Empty,
    /// A character other than digits, one leading '+', spaces, dashes, dots or parentheses.
    #[error("contains a character that is not a digit, '+', space, dash, dot or parenthesis")]
    BadCharacter,
    /// Not in one of the forms 08…, 628…, +628… (or a landline 0xx…, 62xx…).
    #[error("is not an Indonesian number (expected 08…, 628… or +628…)")]
    NotIndonesian,
    /// Too few or too many digits for an Indonesian number.
    #[error("has {0} digits after the leading 0 (or 62); Indonesian numbers have 8 to 12, mobiles (08…) 9 to 12")]
    BadLength(usize),
}

/// Normalises an Indonesian number given as `08…`, `628…`, `+628…` or `0062…` (with spaces, dashes, dots or
/// parentheses) to E.164, e.g. `+6281234567890`. Landlines (`021…`) are accepted too: SIM-less and fixed-line
/// calls reach 110 as well.
pub fn normalise_indonesian_number(raw: &str) -> Result<String, PhoneError> {
    let trimmed = raw.trim();
    let mut digits = String::with_capacity(16);
    let mut has_plus = false;
    for (position, character) in trimmed.chars().enumerate() {
        match character {
            '0'..='9' => digits.push(character),
            '+' if position == 0 => has_plus = true,
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return Err(PhoneError::BadCharacter),
        }
    }
    if digits.is_empty() {
        return Err(PhoneError::Empty);
    }
    let national = if has_plus {
        digits.strip_prefix("62").ok_or(PhoneError::NotIndonesian)?
    } else if let Some(rest) = digits.strip_prefix("0062") {
        rest
    } else if let Some(rest) = digits.strip_prefix("62") {
        rest
    } else if let Some(rest) = digits.strip_prefix('0') {
        rest
    } else {
        return Err(PhoneError::NotIndonesian);
    };
    if national.starts_with('0') {
        return Err(PhoneError::NotIndonesian);
    }
    // National significant numbers (after the trunk 0 or the country code 62): mobiles 8xx with 9..=12 digits,
    // landlines (area code + subscriber) with 8..=12.
    let length = national.len();
    let shortest = if national.starts_with('8') { 9 } else { 8 };
    if !(shortest..=12).contains(&length) {
        return Err(PhoneError::BadLength(length));
    }
    Ok(format!("+62{national}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_common_forms() {
        for raw in [
            "081234567890",
            "6281234567890",
            "+6281234567890",
            "+62 812-3456-7890",
            "0812 3456 7890",
            "(0812) 3456.7890",
            "006281234567890",
        ] {
            assert_eq!(normalise_indonesian_number(raw).as_deref(), Ok("+6281234567890"), "{raw}");
        }
        assert_eq!(normalise_indonesian_number("021 5550123").as_deref(), Ok("+62215550123"));
    }

    #[test]
    fn rejects_what_is_not_indonesian() {
        assert_eq!(normalise_indonesian_number(""), Err(PhoneError::Empty));
        assert_eq!(normalise_indonesian_number(" - "), Err(PhoneError::Empty));
        assert_eq!(normalise_indonesian_number("+14155550123"), Err(PhoneError::NotIndonesian));
        assert_eq!(normalise_indonesian_number("81234567890"), Err(PhoneError::NotIndonesian));
        assert_eq!(normalise_indonesian_number("0812abc"), Err(PhoneError::BadCharacter));
        assert_eq!(normalise_indonesian_number("0812+345"), Err(PhoneError::BadCharacter));
        assert_eq!(normalise_indonesian_number("0812345"), Err(PhoneError::BadLength(6)));
        assert_eq!(normalise_indonesian_number("081234567"), Err(PhoneError::BadLength(8)));
        assert_eq!(normalise_indonesian_number("0812345678").as_deref(), Ok("+62812345678"));
        assert!(matches!(normalise_indonesian_number("08123456789012345"), Err(PhoneError::BadLength(_))));
        assert_eq!(normalise_indonesian_number("00812345678"), Err(PhoneError::NotIndonesian));
    }
}
