//! Text that users typed (reasons, tickets, comments, names, run parameters) is data, never
//! terminal control. `check` refuses, by Unicode property rather than by a list of code points,
//! every character that is not plain visible text on the way in; `inert` makes any text safe on
//! the way out, so even text that reached the log some other way cannot move a cursor, recolour
//! a screen, reorder what is shown or push a row out of its table column.

use std::borrow::Cow;

use icu_properties::props::{DefaultIgnorableCodePoint, GeneralCategory};
use icu_properties::{CodePointMapData, CodePointMapDataBorrowed, CodePointSetData, CodePointSetDataBorrowed};

/// The Unicode data compiled into the binary (no files are read at run time).
const CATEGORY: CodePointMapDataBorrowed<'static, GeneralCategory> = CodePointMapData::<GeneralCategory>::new();
const IGNORABLE: CodePointSetDataBorrowed<'static> = CodePointSetData::new::<DefaultIgnorableCodePoint>();

/// What kind of hidden character `c` is, or None for ordinary visible text and spaces.
///
/// Hidden are: every character of the category "Other" (Cc controls, Cf format characters such
/// as U+200B, U+061C and the bidi overrides, Co private use, Cn unassigned), the line and
/// paragraph separators (Zl, Zp: U+2028, U+2029), and every Default_Ignorable_Code_Point
/// (variation selectors, the Hangul fillers U+3164 and U+FFA0, ...). Terminals draw these as
/// nothing, as movement, or at a width that differs from what a table computes.
pub fn hidden(c: char) -> Option<&'static str> {
    use GeneralCategory as G;
    match CATEGORY.get(c) {
        G::Control => Some("control character"),
        G::Format => Some("invisible format character"),
        G::LineSeparator | G::ParagraphSeparator => Some("line or paragraph separator"),
        G::PrivateUse => Some("private-use character"),
        G::Unassigned | G::Surrogate => Some("unassigned code point"),
        _ if IGNORABLE.contains(c) => Some("invisible character"),
        _ => None,
    }
}

/// Does `c` show something a reader can see? Letters, digits, punctuation and symbols that are
/// not hidden. Marks only decorate another character and spaces show nothing; U+2800 (the blank
/// braille pattern) is a symbol whose glyph is empty, so it does not count either.
fn visible(c: char) -> bool {
    use icu_properties::props::GeneralCategoryGroup as Group;
    let category = CATEGORY.get(c);
    let shown = Group::Letter.contains(category)
        || Group::Number.contains(category)
        || Group::Punctuation.contains(category)
        || Group::Symbol.contains(category);
    shown && c != '\u{2800}' && hidden(c).is_none()
}

/// Does the text hold at least one character a reader can see?
pub fn has_visible(s: &str) -> bool {
    s.chars().any(visible)
}

/// Replaces every hidden character with a visible escape such as `\u{1b}` or `\u{3164}`.
pub fn inert(s: &str) -> Cow<'_, str> {
    if s.chars().all(|c| hidden(c).is_none()) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if hidden(c).is_some() {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Like `inert`, for one-line views: newlines and tabs become spaces first.
pub fn inert_line(s: &str) -> String {
    inert(&s.replace(['\n', '\t'], " ")).into_owned()
}

/// Checks a free-text field a user sends: its length, no hidden character (multi-line fields
/// may hold newlines and tabs), and, unless it is empty, something visible.
pub fn check(field: &str, value: &str, max_chars: usize, multi_line: bool) -> Result<(), String> {
    let count = value.chars().count();
    if count > max_chars {
        return Err(format!("the {field} is {count} characters long; at most {max_chars} are allowed"));
    }
    let allowed = |c: char| multi_line && matches!(c, '\n' | '\t');
    if let Some((pos, c, kind)) = value.chars().enumerate().find_map(|(i, c)| hidden(c).filter(|_| !allowed(c)).map(|k| (i, c, k))) {
        return Err(format!("the {field} contains the {kind} U+{:04X} at position {}; remove it and try again", c as u32, pos + 1));
    }
    if !value.is_empty() && !has_visible(value) {
        return Err(format!("the {field} has no visible text (only spaces, marks or blank characters); write it out in words"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_become_visible_text() {
        let hostile = "ok\u{1b}[2J\u{1b}]0;pwned\u{7}\u{9b}31m\u{202e}gnp.exe";
        let shown = inert(hostile);
        assert!(shown.chars().all(|c| hidden(c).is_none()), "{shown}");
        assert!(shown.contains("\\u{1b}[2J"), "{shown}");
        assert!(matches!(inert("plain text, ünïcödé, 日本語, ⚠"), Cow::Borrowed(_)));
        assert_eq!(inert_line("a\nb\tc"), "a b c");
    }

    #[test]
    fn check_refuses_controls_and_length() {
        assert!(check("reason", "fix the\nmail flow", 100, true).is_ok());
        let err = check("ticket", "INC-1\n", 100, false).unwrap_err();
        assert!(err.contains("control character U+000A at position 6"), "{err}");
        let err = check("reason", "\u{1b}[31m", 100, true).unwrap_err();
        assert!(err.contains("U+001B"), "{err}");
        let err = check("reason", &"x".repeat(101), 100, true).unwrap_err();
        assert!(err.contains("101 characters"), "{err}");
    }

    /// The probe's finds and their relatives: each is refused and drawn as an escape, because of
    /// its Unicode category or property, not because it is on a list here.
    #[test]
    fn format_separator_and_invisible_characters_are_refused_and_drawn_inert() {
        let cases = [
            ('\u{061C}', "format"),    // Arabic letter mark (Cf): reorders text
            ('\u{2028}', "separator"), // line separator (Zl)
            ('\u{2029}', "separator"), // paragraph separator (Zp)
            ('\u{200B}', "format"),    // zero-width space (Cf)
            ('\u{2066}', "format"),    // left-to-right isolate (Cf)
            ('\u{FEFF}', "format"),    // zero-width no-break space (Cf)
            ('\u{E0041}', "format"),   // a tag character (Cf)
            ('\u{3164}', "invisible"), // Hangul filler (Lo, but default-ignorable and drawn blank)
            ('\u{FFA0}', "invisible"), // halfwidth Hangul filler
            ('\u{FE0F}', "invisible"), // variation selector: changes a glyph's width in some terminals
            ('\u{E000}', "private-use"),
            ('\u{0378}', "unassigned"),
            ('\u{85}', "control"), // NEL (Cc, C1)
        ];
        for (c, kind) in cases {
            let value = format!("ok {c} done");
            let err = check("reason", &value, 100, true).expect_err(&format!("U+{:04X} is refused", c as u32));
            assert!(err.contains(kind) && err.contains(&format!("U+{:04X} at position 4", c as u32)), "{err}");
            let shown = inert(&value);
            assert!(!shown.contains(c), "{shown}");
            assert!(shown.contains(&format!("\\u{{{:x}}}", c as u32)), "{shown}");
        }
    }

    /// Every code point, not a sample: nothing of the categories Cc, Cf, Zl, Zp survives `inert`,
    /// and `inert` output is refused by nothing but length (it is plain text).
    #[test]
    fn no_control_format_or_separator_character_survives_inert() {
        use GeneralCategory as G;
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            let category = CATEGORY.get(c);
            if matches!(category, G::Control | G::Format | G::LineSeparator | G::ParagraphSeparator) || IGNORABLE.contains(c) {
                let shown = inert(&c.to_string()).into_owned();
                assert!(!shown.contains(c), "U+{:04X} ({category:?}) passed inert", c as u32);
                assert!(check("x", &c.to_string(), 10, true).is_err() || matches!(c, '\n' | '\t'), "U+{:04X}", c as u32);
                assert!(check("x", &shown, 100, false).is_ok(), "U+{:04X}: {shown}", c as u32);
            }
        }
    }

    #[test]
    fn a_reason_needs_something_visible() {
        for blank in ["\u{0301}", " \u{0301}\u{0302} ", "\u{2800}", "\u{3000}\u{00A0}"] {
            let err = check("reason", blank, 100, true).unwrap_err();
            assert!(err.contains("no visible text"), "{blank:?}: {err}");
        }
        let err = check("reason", "\u{200B}", 100, true).unwrap_err();
        assert!(err.contains("U+200B"), "{err}");
        for fine in ["ok", "é", "日本", "!!", "€5", "INC-1", "⚠"] {
            assert!(check("reason", fine, 100, true).is_ok(), "{fine}");
        }
        assert!(check("comment", "", 100, true).is_ok(), "empty means absent; the caller decides if it is required");
    }
}
