//! Writing events out for auditors: JSON Lines, or CSV that a spreadsheet opens safely. Shared by
//! `zsa audit` and the console's export.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::model::Event;

/// `proved` came last of all, so readers that go by position keep working.
pub const CSV_HEADER: [&str; 10] = ["seq", "at", "actor", "kind", "user", "task", "target", "summary", "hash", "proved"];

/// A spreadsheet treats a cell starting with = + - @ as a formula; such user text is quoted.
pub fn spreadsheet_safe(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s.to_string() }
}

pub fn csv_record(e: &Event) -> [String; 10] {
    [
        e.seq.to_string(),
        e.at.to_rfc3339(),
        spreadsheet_safe(&e.actor),
        e.change.kind().to_string(),
        spreadsheet_safe(e.change.subject().unwrap_or("")),
        spreadsheet_safe(e.change.task().unwrap_or("")),
        e.change.target().unwrap_or_default(),
        spreadsheet_safe(&e.change.summary()),
        e.hash.clone(),
        spreadsheet_safe(&e.proved()),
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

/// Writes events to a new file that only its owner may read (0600, whatever the umask): an
/// export holds who asked for what and why. An existing file is never overwritten. CSV when the
/// name ends in `.csv`, else JSON Lines.
pub fn write_new_file(path: &Path, events: &[Event]) -> std::io::Result<usize> {
    let file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    let csv = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    write_events(file, events, csv)
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

    #[test]
    fn an_export_file_is_private_and_never_overwrites() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        // The usual umask would leave a new file 0644, readable by every local user.
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
        let json = dir.path().join("audit.jsonl");
        let written = write_new_file(&json, &[]);
        let csv = dir.path().join("audit.CSV");
        let written_csv = write_new_file(&csv, &[]);
        nix::sys::stat::umask(old);
        assert_eq!(written.unwrap(), 0);
        assert_eq!(written_csv.unwrap(), 0);
        for path in [&json, &csv] {
            let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", path.display());
        }
        assert!(std::fs::read_to_string(&csv).unwrap().starts_with("seq,at,actor"), "a .csv name gets CSV");
        let again = write_new_file(&json, &[]).unwrap_err();
        assert_eq!(again.kind(), std::io::ErrorKind::AlreadyExists);
    }
}
