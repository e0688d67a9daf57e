//! Identifiers that arrive from outside: one rule for a contact id, whichever door it comes through.

/// The longest contact id, in characters.
pub const MAX_CONTACT_ID_CHARS: usize = 128;

/// Unicode format characters (general category Cf): invisible, and some reorder the text around them (U+202E
/// RIGHT-TO-LEFT OVERRIDE), so an id holding one looks like another id on every screen and in every log.
const FORMAT_CHARACTERS: &[(char, char)] = &[
    ('\u{00AD}', '\u{00AD}'),
    ('\u{0600}', '\u{0605}'),
    ('\u{061C}', '\u{061C}'),
    ('\u{06DD}', '\u{06DD}'),
    ('\u{070F}', '\u{070F}'),
    ('\u{0890}', '\u{0891}'),
    ('\u{08E2}', '\u{08E2}'),
    ('\u{180E}', '\u{180E}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{2064}'),
    ('\u{2066}', '\u{206F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFF9}', '\u{FFFB}'),
    ('\u{110BD}', '\u{110BD}'),
    ('\u{110CD}', '\u{110CD}'),
    ('\u{13430}', '\u{1343F}'),
    ('\u{1BCA0}', '\u{1BCA3}'),
    ('\u{1D173}', '\u{1D17A}'),
    ('\u{E0001}', '\u{E0001}'),
    ('\u{E0020}', '\u{E007F}'),
];

fn is_format(c: char) -> bool {
    FORMAT_CHARACTERS.iter().any(|(from, to)| (*from..=*to).contains(&c))
}

/// Checks a contact id: 1 to 128 characters, none of them a control or format character or white space, and
/// not `.` or `..` (which a browser resolves as a path segment). Returns what is wrong.
pub fn check_contact_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("required".into());
    }
    if id.chars().count() > MAX_CONTACT_ID_CHARS {
        return Err(format!("longer than {MAX_CONTACT_ID_CHARS} characters"));
    }
    if let Some(bad) = id.chars().find(|c| c.is_control() || is_format(*c) || c.is_whitespace()) {
        let kind = if bad.is_control() {
            "a control character"
        } else if is_format(bad) {
            "an invisible format character"
        } else {
            "white space"
        };
        return Err(format!("contains {kind} (U+{:04X}); an id is visible characters only", u32::from(bad)));
    }
    if id == "." || id == ".." {
        return Err("may not be \".\" or \"..\"".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_ids_pass() {
        for id in ["c-2026-11-30-000123", "3f2a9c1e-7b1d-4d8e-9a53-0f6c1b2e4d5a", "kupang:110:42", "a.b", "...x"] {
            assert_eq!(check_contact_id(id), Ok(()), "{id}");
        }
        assert_eq!(check_contact_id(&"x".repeat(128)), Ok(()));
    }

    #[test]
    fn invisible_reordering_blank_and_path_ids_are_refused() {
        for id in [
            "",
            " ",
            "c-1 ",
            "c\u{202E}1-c",
            "c\u{200B}1",
            "\u{FEFF}c1",
            "c\u{2066}1",
            "c\u{00A0}1",
            "c\t1",
            "c\u{7}1",
            ".",
            "..",
        ] {
            assert!(check_contact_id(id).is_err(), "{id:?} passed");
        }
        assert!(check_contact_id(&"x".repeat(129)).is_err());
        assert!(check_contact_id("c\u{202E}1").unwrap_err().contains("U+202E"));
    }
}
