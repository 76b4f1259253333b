//! Printing: JSON lines for scripts, aligned text for people. All text that users typed passes
//! through `text::inert` before it reaches a terminal.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::model::{duration, text};

/// One JSON object per line.
pub fn json_line<T: Serialize>(value: &T) {
    match serde_json::to_string(value) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("zsa: cannot print JSON: {e}"),
    }
}

/// A cell of user-typed text, one line, safe, cut to `max` characters.
pub fn cell(s: &str, max: usize) -> String {
    let line = text::inert_line(s);
    if line.chars().count() <= max {
        line
    } else {
        let mut cut: String = line.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// Prints rows under a header, each column as wide as its widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, c) in row.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}

/// `in 12m`, `3m ago`, relative to `now`.
pub fn relative(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (t - now).num_seconds();
    if secs >= 0 { format!("in {}", duration::format(secs.max(1) as u64)) } else { format!("{} ago", duration::format((-secs) as u64)) }
}

pub fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
