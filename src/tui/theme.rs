//! Colours and emphasis. With NO_COLOR set, meaning is carried by bold, reverse and text alone.
//! The colours themselves come from the palette, which the user's config file may change.

use ratatui::style::{Color, Modifier, Style};

/// The colours by what they mean; `[colors]` in the config file names them the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Palette {
    /// Headers and key names.
    pub accent: Color,
    pub ok: Color,
    pub warn: Color,
    pub danger: Color,
    /// New requests not yet looked at.
    pub fresh: Color,
    pub dim: Color,
    /// The status bar's background and text.
    pub bar: Color,
    pub bar_text: Color,
}

impl Default for Palette {
    fn default() -> Self {
        Palette {
            accent: Color::Cyan,
            ok: Color::Green,
            warn: Color::Yellow,
            danger: Color::Red,
            fresh: Color::Magenta,
            dim: Color::DarkGray,
            bar: Color::Blue,
            bar_text: Color::White,
        }
    }
}

impl Palette {
    /// The palette's entries by their config names.
    pub fn slot(&mut self, name: &str) -> Option<&mut Color> {
        Some(match name {
            "accent" => &mut self.accent,
            "ok" => &mut self.ok,
            "warn" => &mut self.warn,
            "danger" => &mut self.danger,
            "fresh" => &mut self.fresh,
            "dim" => &mut self.dim,
            "bar" => &mut self.bar,
            "bar_text" => &mut self.bar_text,
            _ => return None,
        })
    }

    pub const NAMES: &[&str] = &["accent", "ok", "warn", "danger", "fresh", "dim", "bar", "bar_text"];
}

#[derive(Clone, Copy, Debug)]
pub struct Theme {
    pub color: bool,
    pub palette: Palette,
}

impl Theme {
    /// The default colours, or none.
    pub fn new(color: bool) -> Theme {
        Theme { color, palette: Palette::default() }
    }

    pub fn from_env() -> Theme {
        Theme::new(std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()))
    }

    fn fg(&self, c: Color) -> Style {
        if self.color { Style::default().fg(c) } else { Style::default() }
    }

    pub fn plain(&self) -> Style {
        Style::default()
    }
    pub fn dim(&self) -> Style {
        if self.color { self.fg(self.palette.dim) } else { Style::default().add_modifier(Modifier::DIM) }
    }
    pub fn header(&self) -> Style {
        self.fg(self.palette.accent).add_modifier(Modifier::BOLD)
    }
    pub fn title(&self) -> Style {
        Style::default().add_modifier(Modifier::BOLD)
    }
    pub fn selected(&self) -> Style {
        Style::default().add_modifier(Modifier::REVERSED)
    }
    pub fn ok(&self) -> Style {
        self.fg(self.palette.ok)
    }
    pub fn warn(&self) -> Style {
        self.fg(self.palette.warn).add_modifier(Modifier::BOLD)
    }
    pub fn danger(&self) -> Style {
        self.fg(self.palette.danger).add_modifier(Modifier::BOLD)
    }
    pub fn fresh(&self) -> Style {
        self.fg(self.palette.fresh).add_modifier(Modifier::BOLD)
    }
    pub fn bar(&self) -> Style {
        if self.color {
            Style::default().bg(self.palette.bar).fg(self.palette.bar_text)
        } else {
            Style::default().add_modifier(Modifier::REVERSED)
        }
    }
}
