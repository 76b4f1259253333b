//! Where log lines go: standard error, except while the console holds the terminal. Then a line
//! written there would smear the screen (the demo's daemon logs in the same process), so lines
//! are held, the newest `HELD_MAX`, and written out when the console gives the terminal back.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::Mutex;

use tracing_subscriber::fmt::MakeWriter;

/// Lines kept while the console runs; older ones give way (their count is reported).
const HELD_MAX: usize = 1000;

struct Held {
    lines: VecDeque<Vec<u8>>,
    dropped: usize,
}

/// None: lines go straight to standard error.
static HELD: Mutex<Option<Held>> = Mutex::new(None);

fn held() -> std::sync::MutexGuard<'static, Option<Held>> {
    HELD.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// From now on log lines are held instead of written (the console is taking the terminal).
pub fn hold() {
    let mut held = held();
    if held.is_none() {
        *held = Some(Held { lines: VecDeque::new(), dropped: 0 });
    }
}

/// Writes the held lines to standard error and goes back to writing them at once (the console
/// has given the terminal back).
pub fn release() {
    let Some(Held { lines, dropped }) = held().take() else { return };
    let mut err = io::stderr().lock();
    if dropped > 0 {
        let _ = writeln!(err, "zsa: {dropped} older log lines from while the console ran were dropped");
    }
    for line in lines {
        let _ = err.write_all(&line);
    }
    let _ = err.flush();
}

/// The writer tracing makes for each log line.
pub struct Sink;

impl<'a> MakeWriter<'a> for Sink {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line(Vec::new())
    }
}

/// One log line, written out (or held) when tracing is done with it.
pub struct Line(Vec<u8>);

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        let line = std::mem::take(&mut self.0);
        if line.is_empty() {
            return;
        }
        let mut held = held();
        match held.as_mut() {
            Some(h) => {
                if h.lines.len() == HELD_MAX {
                    h.lines.pop_front();
                    h.dropped += 1;
                }
                h.lines.push_back(line);
            }
            None => {
                drop(held);
                let _ = io::stderr().write_all(&line);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(text: &str) {
        let mut line = Sink.make_writer();
        line.write_all(text.as_bytes()).unwrap();
    }

    /// While held, a line goes to the holding place, not to the terminal; the newest `HELD_MAX`
    /// stay and the rest are counted. (The only test touching the one global.)
    #[test]
    fn lines_are_held_while_the_console_runs_and_the_oldest_give_way() {
        hold();
        for n in 0..HELD_MAX + 5 {
            log(&format!("line {n}\n"));
        }
        {
            let held = held();
            let h = held.as_ref().expect("holding");
            assert_eq!((h.lines.len(), h.dropped), (HELD_MAX, 5));
            assert_eq!(h.lines.front().map(Vec::as_slice), Some(&b"line 5\n"[..]));
            assert_eq!(h.lines.back().map(Vec::as_slice), Some(format!("line {}\n", HELD_MAX + 4).as_bytes()));
        }
        // Not `release()`: it would write the thousand lines into the test's output.
        *held() = None;
        log("");
    }
}
