//! Printing: JSON lines for scripts, aligned text for people. All text that users typed passes
//! through `text::inert` before it reaches a terminal.

use std::io::IsTerminal;
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use comfy_table::{ContentArrangement, Table, presets};
use serde::Serialize;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use crate::model::{duration, text};

/// One JSON object per line.
pub fn json_line<T: Serialize>(value: &T) {
    match serde_json::to_string(value) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("zsa: cannot print JSON: {e}"),
    }
}

/// A cell of user-typed text, one line, safe. On a terminal it is cut to `max` columns of display
/// width (an ellipsis says so; wide characters count twice); in a pipe or file it is whole, so
/// scripts never lose text.
pub fn cell(s: &str, max: usize) -> String {
    let line = text::inert_line(s);
    if stdout_is_terminal() { cut(&line, max) } else { line }
}

fn stdout_is_terminal() -> bool {
    static TERMINAL: OnceLock<bool> = OnceLock::new();
    *TERMINAL.get_or_init(|| std::io::stdout().is_terminal())
}

/// `line` in at most `max` display columns, ending in `…` when cut.
fn cut(line: &str, max: usize) -> String {
    if line.width() <= max {
        return line.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in line.chars() {
        let w = c.width().unwrap_or(0);
        if used + w + 1 > max {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    out
}

/// Prints rows under a header, each column as wide as its widest cell in display width (so CJK
/// and emoji line up), two spaces apart, nothing cut or wrapped.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    println!("{}", render_table(header, rows));
}

fn render_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut table = Table::new();
    table.load_style(presets::NOTHING).set_content_arrangement(ContentArrangement::Disabled).set_header(header.to_vec());
    table.add_rows(rows.to_vec());
    let last = header.len().saturating_sub(1);
    for (i, column) in table.column_iter_mut().enumerate() {
        column.set_padding((0, if i == last { 0 } else { 2 }));
    }
    table.trim_fmt()
}

/// `in 12m`, `3m ago`, relative to `now`.
pub fn relative(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (t - now).num_seconds();
    if secs >= 0 { format!("in {}", duration::format(secs.max(1) as u64)) } else { format!("{} ago", duration::format((-secs) as u64)) }
}

pub fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_characters_line_up_by_display_width() {
        let rows = vec![
            vec!["R1".to_string(), "数据库维护".to_string(), "@1".to_string()],
            vec!["R22".to_string(), "db 🔥".to_string(), "@2".to_string()],
        ];
        let out = render_table(&["ID", "REASON", "@X"], &rows);
        let columns: Vec<usize> = out.lines().map(|l| l.find('@').map(|i| l[..i].width()).unwrap()).collect();
        assert_eq!(columns, vec![columns[0]; 3], "{out}");
        assert!(out.lines().all(|l| l == l.trim_end()), "no trailing blanks: {out:?}");
    }

    #[test]
    fn a_cut_keeps_within_the_width_and_says_so() {
        assert_eq!(cut("short", 10), "short");
        assert_eq!(cut("数据库维护", 6), "数据…");
        assert!(cut("数据库维护", 6).width() <= 6);
    }
}
