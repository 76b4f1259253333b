//! Text that users typed (reasons, tickets, comments, names) is data, never terminal control.
//! `check` refuses control characters on the way in; `inert` makes any text safe on the way out,
//! so even text that reached the log some other way cannot move a cursor or recolour a screen.

use std::borrow::Cow;

/// Characters that change how a terminal shows the text after them: C0/C1 controls, DEL, and the
/// Unicode bidirectional overrides that can make text read differently from what it is.
fn is_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')
}

/// Replaces every unsafe character with a visible escape such as `\u{1b}`.
pub fn inert(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_unsafe(c) {
            out.push_str(&c.escape_unicode().to_string());
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

/// Checks a free-text field a user sends. Multi-line fields may hold newlines and tabs.
pub fn check(field: &str, value: &str, max_chars: usize, multi_line: bool) -> Result<(), String> {
    let count = value.chars().count();
    if count > max_chars {
        return Err(format!("the {field} is {count} characters long; at most {max_chars} are allowed"));
    }
    if let Some((pos, c)) = value.chars().enumerate().find(|(_, c)| is_unsafe(*c) && !(multi_line && matches!(c, '\n' | '\t'))) {
        return Err(format!(
            "the {field} contains the control character U+{:04X} at position {}; remove it and try again",
            c as u32,
            pos + 1
        ));
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
        assert!(!shown.chars().any(is_unsafe), "{shown}");
        assert!(shown.contains("\\u{1b}[2J"), "{shown}");
        assert!(matches!(inert("plain text"), Cow::Borrowed(_)));
        assert_eq!(inert_line("a\nb\tc"), "a b c");
    }

    #[test]
    fn check_refuses_controls_and_length() {
        assert!(check("reason", "fix the\nmail flow", 100, true).is_ok());
        let err = check("ticket", "INC-1\n", 100, false).unwrap_err();
        assert!(err.contains("U+000A at position 6"), "{err}");
        let err = check("reason", "\u{1b}[31m", 100, true).unwrap_err();
        assert!(err.contains("U+001B"), "{err}");
        let err = check("reason", &"x".repeat(101), 100, true).unwrap_err();
        assert!(err.contains("101 characters"), "{err}");
    }
}
