//! Writing events out for auditors: JSON Lines, or CSV that a spreadsheet opens safely. Shared by
//! `zsa audit` and the console's export.

use std::io::Write;

use crate::model::Event;

pub const CSV_HEADER: [&str; 10] = ["seq", "at", "actor", "proved", "kind", "user", "task", "target", "summary", "hash"];

/// A spreadsheet treats a cell starting with = + - @ as a formula; such user text is quoted.
pub fn spreadsheet_safe(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s.to_string() }
}

pub fn csv_record(e: &Event) -> [String; 10] {
    [
        e.seq.to_string(),
        e.at.to_rfc3339(),
        spreadsheet_safe(&e.actor),
        spreadsheet_safe(&e.proved()),
        e.change.kind().to_string(),
        spreadsheet_safe(e.change.subject().unwrap_or("")),
        spreadsheet_safe(e.change.task().unwrap_or("")),
        e.change.target().unwrap_or_default(),
        spreadsheet_safe(&e.change.summary()),
        e.hash.clone(),
    ]
}

/// Writes events as CSV (with a header) when `csv`, else as JSON Lines.
pub fn write_events<'a>(out: impl Write, events: impl IntoIterator<Item = &'a Event>, csv: bool) -> std::io::Result<usize> {
    let mut count = 0;
    if csv {
        let mut w = ::csv::Writer::from_writer(out);
        w.write_record(CSV_HEADER)?;
        for e in events {
            w.write_record(csv_record(e))?;
            count += 1;
        }
        w.flush()?;
    } else {
        let mut out = std::io::BufWriter::new(out);
        for e in events {
            serde_json::to_writer(&mut out, e)?;
            out.write_all(b"\n")?;
            count += 1;
        }
        out.flush()?;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_defused() {
        assert_eq!(spreadsheet_safe("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(spreadsheet_safe("-1+2"), "'-1+2");
        assert_eq!(spreadsheet_safe("normal"), "normal");
    }
}
