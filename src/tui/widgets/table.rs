//! Tables that give way in a known order when the terminal is narrow: each column says how
//! important it is and whether it may be cut. The least important columns go first, text that
//! is cut ends in `…`, and widths are display widths (a CJK character or an emoji takes two).

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Row, Table};
use unicode_truncate::UnicodeTruncateStr;

use crate::tui::theme::Theme;

/// How a column gives way when there is not room for everything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fit {
    /// Never cut (ids, time left, ages): as wide as its widest visible value, or not shown at all.
    Whole,
    /// May be cut, with an ellipsis, down to `min` columns.
    Cut { min: u16 },
}

/// One column of a table.
#[derive(Clone, Copy, Debug)]
pub struct Column {
    pub header: &'static str,
    /// 0 is the most important: it is the last to give way.
    pub priority: u8,
    pub fit: Fit,
}

/// A column that is never cut.
pub const fn whole(header: &'static str, priority: u8) -> Column {
    Column { header, priority, fit: Fit::Whole }
}

/// A column that may be cut down to `min` display columns.
pub const fn cut(header: &'static str, priority: u8, min: u16) -> Column {
    Column { header, priority, fit: Fit::Cut { min } }
}

/// The width each column gets in `width` display columns (one between columns), or None for a
/// column that gives way. Columns are taken most important first, each at its smallest
/// acceptable width, until the next does not fit; what is left then widens the cut ones toward
/// their natural width, again most important first.
pub fn fit_columns(columns: &[Column], natural: &[u16], width: u16) -> Vec<Option<u16>> {
    let mut order: Vec<usize> = (0..columns.len()).collect();
    order.sort_by_key(|&i| columns[i].priority);
    let smallest = |i: usize| match columns[i].fit {
        Fit::Whole => natural[i],
        Fit::Cut { min } => natural[i].min(min),
    };
    let mut shown = vec![None; columns.len()];
    let mut used: u16 = 0;
    for &i in &order {
        let gap = u16::from(used > 0);
        let need = smallest(i).saturating_add(gap);
        if used.saturating_add(need) > width {
            break;
        }
        used += need;
        shown[i] = Some(smallest(i));
    }
    let mut spare = width - used;
    for &i in &order {
        if let Some(w) = shown[i] {
            let grow = natural[i].saturating_sub(w).min(spare);
            shown[i] = Some(w + grow);
            spare -= grow;
        }
    }
    shown
}

/// `line` cut to `width` display columns, ending in `…` where something was cut.
pub fn ellipsize(line: Line<'static>, width: u16) -> Line<'static> {
    let width = usize::from(width);
    if line.width() <= width {
        return line;
    }
    if width == 0 {
        return Line::default();
    }
    let mut room = width - 1;
    let mut spans = Vec::new();
    let mut style = Style::default();
    for span in line.spans {
        style = span.style;
        let (kept, kept_width) = span.content.unicode_truncate(room);
        if kept.len() < span.content.len() {
            spans.push(Span::styled(kept.to_string(), span.style));
            break;
        }
        room -= kept_width;
        spans.push(span);
    }
    spans.push(Span::styled("…", style));
    Line::from(spans).style(line.style)
}

/// A bordered table of which only the rows that fit are built: `row(i)` is called for the
/// visible window around `selected`, so the cost does not grow with the number of items.
/// Columns give way by their priority; cut text ends in `…`.
#[allow(clippy::too_many_arguments)]
pub fn windowed_table(
    frame: &mut Frame,
    area: Rect,
    title: Line<'_>,
    columns: &[Column],
    len: usize,
    selected: Option<usize>,
    theme: &Theme,
    mut row: impl FnMut(usize) -> Vec<Line<'static>>,
) {
    let block = Block::default().borders(Borders::ALL).title(title);
    let inner_rows = area.height.saturating_sub(3) as usize; // borders and the header row
    let sel = selected.unwrap_or(0);
    let offset = if inner_rows == 0 || sel < inner_rows { 0 } else { sel + 1 - inner_rows };
    let end = (offset + inner_rows).min(len);
    let lines: Vec<Vec<Line<'static>>> = (offset..end).map(&mut row).collect();

    let natural: Vec<u16> = columns
        .iter()
        .enumerate()
        .map(|(c, col)| {
            let widest = lines.iter().filter_map(|cells| cells.get(c)).map(Line::width).max().unwrap_or(0);
            u16::try_from(widest.max(Line::from(col.header).width())).unwrap_or(u16::MAX)
        })
        .collect();
    let widths = fit_columns(columns, &natural, area.width.saturating_sub(2));
    let keep = |cells: Vec<Line<'static>>| -> Vec<Cell<'static>> {
        cells.into_iter().zip(&widths).filter_map(|(line, w)| w.map(|w| Cell::from(ellipsize(line, w)))).collect()
    };
    let rows: Vec<Row> = lines
        .into_iter()
        .enumerate()
        .map(|(i, cells)| {
            let r = Row::new(keep(cells));
            if selected == Some(offset + i) { r.style(theme.selected()) } else { r }
        })
        .collect();
    let constraints: Vec<Constraint> = widths.iter().flatten().map(|w| Constraint::Length(*w)).collect();
    let header = keep(columns.iter().map(|c| Line::from(c.header)).collect());
    let table = Table::new(rows, constraints).block(block).column_spacing(1).header(Row::new(header).style(theme.header()));
    frame.render_widget(table, area);
    if len == 0 && area.height > 3 {
        let hint = Rect { x: area.x + 2, y: area.y + 2, width: area.width.saturating_sub(4), height: 1 };
        frame.render_widget(Line::styled("nothing here", theme.dim()), hint);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLUMNS: [Column; 4] = [whole("ID", 0), cut("TASK", 1, 12), whole("LEFT", 2), cut("REASON", 3, 6)];

    #[test]
    fn the_least_important_columns_give_way_first() {
        let natural = [3, 20, 6, 40];
        assert_eq!(fit_columns(&COLUMNS, &natural, 200), vec![Some(3), Some(20), Some(6), Some(40)]);
        // 3 + 1 + 12 + 1 + 6 + 1 + 6 = 30 at the smallest; four more go to the task, not the reason.
        assert_eq!(fit_columns(&COLUMNS, &natural, 34), vec![Some(3), Some(16), Some(6), Some(6)]);
        // No room for the reason: it goes, and time left stays whole.
        assert_eq!(fit_columns(&COLUMNS, &natural, 29), vec![Some(3), Some(18), Some(6), None]);
        assert_eq!(fit_columns(&COLUMNS, &natural, 23), vec![Some(3), Some(12), Some(6), None]);
        // Time left is never cut: it is shown whole or not at all.
        assert_eq!(fit_columns(&COLUMNS, &natural, 22), vec![Some(3), Some(18), None, None]);
    }

    #[test]
    fn cut_text_ends_in_an_ellipsis_by_display_width() {
        let text = |l: Line| l.spans.iter().map(|s| s.content.to_string()).collect::<String>();
        assert_eq!(text(ellipsize(Line::from("exchange.journal"), 12)), "exchange.jo…");
        assert_eq!(text(ellipsize(Line::from("journal"), 12)), "journal", "what fits is not touched");
        // Each of these takes two columns: five fit in eleven, with the ellipsis.
        let cut = ellipsize(Line::from("日本語のテキストです"), 11);
        assert_eq!(text(cut.clone()), "日本語のテ…");
        assert!(cut.width() <= 11);
        let emoji = ellipsize(Line::from("db 🔥🔥🔥 down"), 7);
        assert_eq!(text(emoji.clone()), "db 🔥…");
        assert!(emoji.width() <= 7);
    }
}
