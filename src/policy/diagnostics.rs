//! A policy's problems shown in place, as compilers show theirs: the line, a caret under what is
//! wrong, and what to do about it (annotate-snippets draws it). The file's own text is drawn
//! inert first, so a policy cannot move the cursor of whoever checks it. Nothing here decides
//! what is a problem; `Policy::parse` does.

use std::ops::Range;

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};

use super::PolicyError;
use crate::model::text;

/// One thing wrong with a policy, where it is, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line; 0 for the file as a whole.
    pub line: usize,
    /// 1-based column, in characters; 0 when only the line (or nothing) is known.
    pub column: usize,
    /// The bytes of the source at fault, when known.
    pub span: Option<Range<usize>>,
    /// What is wrong, with any text from the file already inert.
    pub message: String,
    /// What to do, where the message does not say it already.
    pub help: Option<String>,
}

impl Problem {
    /// A problem at `span` of `source` (clamped to the source).
    pub fn at(source: &str, span: Range<usize>, message: &str, help: Option<&str>) -> Problem {
        let mut start = floor_boundary(source, span.start.min(source.len()));
        if start == source.len() && source.ends_with('\n') {
            // The end of a file that ends its last line: shown (and so named) at that line's end,
            // not on a line that does not exist.
            start -= 1;
        }
        let end = floor_boundary(source, span.end.clamp(start, source.len()));
        let before = &source[..start];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        Problem { line, column, span: Some(start..end), message: inert(message), help: help.map(inert) }
    }

    /// A problem with the file as a whole.
    pub fn whole(message: &str) -> Problem {
        Problem { line: 0, column: 0, span: None, message: inert(message), help: None }
    }
}

fn inert(s: &str) -> String {
    text::inert(s).into_owned()
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// `source` with every hidden character but line ends and tabs written as an escape (as
/// `text::inert` writes it), and where each byte of `source` went in that text.
fn inert_source(source: &str) -> (String, Vec<usize>) {
    let mut shown = String::with_capacity(source.len());
    let mut moved = vec![0; source.len() + 1];
    for (i, c) in source.char_indices() {
        moved[i..i + c.len_utf8()].fill(shown.len());
        let line_end = c == '\n' || (c == '\r' && source[i + 1..].starts_with('\n'));
        if line_end || c == '\t' {
            shown.push(c);
        } else {
            shown.push_str(&text::inert(c.encode_utf8(&mut [0; 4])));
        }
    }
    moved[source.len()] = shown.len();
    (shown, moved)
}

impl PolicyError {
    /// Every problem with its line and a caret under its place, then how many there are. Colour
    /// (ANSI) only when asked: for a terminal that wants it.
    pub fn render(&self, color: bool) -> String {
        let (shown, moved) = self.source.as_deref().map(inert_source).unwrap_or_default();
        let file = text::inert(&self.file);
        let mut report: Vec<Group<'_>> = Vec::new();
        for problem in &self.problems {
            let title = Level::ERROR.primary_title(problem.message.as_str());
            let mut group = match &problem.span {
                Some(span) if !shown.is_empty() => {
                    // Only the first line of what is at fault: a whole [[tasks]] table is named by its header.
                    let start = moved[span.start];
                    let line_end = shown[start..].find(['\r', '\n']).map_or(shown.len(), |n| start + n);
                    let end = moved[span.end].clamp(start, line_end);
                    let caret = AnnotationKind::Primary.span(start..end.max(start));
                    title.element(Snippet::source(shown.as_str()).path(file.as_ref()).fold(true).annotation(caret))
                }
                _ => title.element(Level::NOTE.message(format!("in {file}"))),
            };
            if let Some(help) = &problem.help {
                group = group.element(Level::HELP.message(help.as_str()));
            }
            report.push(group);
        }
        let renderer = if color { Renderer::styled() } else { Renderer::plain() };
        let n = self.problems.len();
        format!("{}\n\n{file}: {n} problem{}; nothing was loaded", renderer.render(&report), if n == 1 { "" } else { "s" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

    const BASE: &str = r#"[groups]
ops = ["carol"]
approvers = ["alice", "bob"]
[[tasks]]
name = "t"
requesters = ["ops"]
approval = "manual"
approvers = ["approvers"]
max_duration = "1h"
"#;

    fn report(source: &str) -> String {
        Policy::parse(source, "policy.toml").unwrap_err().render(false)
    }

    #[test]
    fn a_syntax_error_is_shown_with_a_caret_under_it() {
        insta::assert_snapshot!(report(&BASE.replace("max_duration = \"1h\"", "max_duration = \"1h")));
    }

    #[test]
    fn an_unknown_approver_group_is_shown_with_the_groups_there_are() {
        insta::assert_snapshot!(report(&BASE.replace("approvers = [\"approvers\"]", "approvers = [\"aprovers\"]")));
    }

    #[test]
    fn a_bad_duration_is_shown_with_how_to_write_one() {
        insta::assert_snapshot!(report(&BASE.replace("max_duration = \"1h\"", "max_duration = \"soon\"")));
    }

    #[test]
    fn a_problem_with_no_place_is_shown_without_a_snippet() {
        insta::assert_snapshot!(report("[groups]\nops = [\"carol\"]\n"));
    }

    /// A name holding escape sequences (ESC, a C1 CSI, a bidi override) is drawn as escapes,
    /// in the message and in the quoted line alike, and the caret still lands under it.
    #[test]
    fn escape_sequences_in_the_file_are_drawn_inert() {
        let hostile = BASE.replace("ops = [\"carol\"]", "ops = [\"car\\u001b[2Jol\\u009b31m\\u202e\"]");
        let e = Policy::parse(&hostile, "policy.toml").unwrap_err();
        let shown = e.render(false);
        assert!(!shown.chars().any(|c| c != '\n' && text::hidden(c).is_some()), "{shown:?}");
        assert!(shown.contains("ops = [\"car\\u001b[2Jol"), "the quoted line shows the file's text: {shown}");
        // Now with the characters themselves in the file (a quoted key may hold anything).
        let raw = BASE.replace("ops = [\"carol\"]", "\"o\u{1b}[2Jps\u{9b}1m\u{202e}\" = [\"carol\"]");
        let shown = report(&raw);
        assert!(!shown.chars().any(|c| c != '\n' && text::hidden(c).is_some()), "{shown:?}");
        assert!(shown.contains("\"o\\u{1b}[2Jps\\u{9b}1m\\u{202e}\" = [\"carol\"]"), "{shown}");
        insta::assert_snapshot!(shown);
    }

    #[test]
    fn columns_count_characters_and_spans_stay_on_char_boundaries() {
        let p = Problem::at("ä = 1\nβγ = x", 12..13, "m", None);
        assert_eq!((p.line, p.column, p.span), (2, 4, Some(12..13)));
        let p = Problem::at("ä = 1\nβγ = x", 10..11, "m", None);
        assert_eq!((p.line, p.column, p.span), (2, 2, Some(9..11)), "a span inside γ starts at γ");
        let p = Problem::at("äb", 1..99, "m", Some("h"));
        assert_eq!((p.line, p.column, p.span), (1, 1, Some(0..3)));
        let p = Problem::at("a = 1\nb = 2\n", 12..12, "m", None);
        assert_eq!((p.line, p.column), (2, 6), "the end of the file is the end of its last line");
    }
}
