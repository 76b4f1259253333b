//! The user's console settings, `$XDG_CONFIG_HOME/zsa/config.toml` (or `~/.config/zsa/config.toml`),
//! as gitui and k9s have: keys and colours.
//!
//! ```toml
//! [keys]
//! approve = "A"
//! [colors]
//! accent = "magenta"   # a name, "#rrggbb" or a 0-255 index
//! ```
//!
//! A file with a mistake is refused with its path and line (the console does not start), rather
//! than half applied: keys someone thought they had moved would otherwise do something else.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ratatui::style::Color;
use serde::Deserialize;
use toml::Spanned;

use super::keymap::{Keymap, parse_key};
use super::theme::Palette;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    keys: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    colors: BTreeMap<Spanned<String>, Spanned<String>>,
}

/// What the config file sets.
#[derive(Clone, Debug)]
pub struct Settings {
    pub keys: Keymap,
    pub palette: Palette,
}

/// Where the config file is looked for: `$XDG_CONFIG_HOME/zsa/config.toml`, else
/// `$HOME/.config/zsa/config.toml`.
pub fn path() -> Option<PathBuf> {
    let xdg = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()).map(PathBuf::from);
    let base = xdg.or_else(|| std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("zsa").join("config.toml"))
}

/// The settings from the config file, or the defaults if there is none.
pub fn load(demo: bool) -> Result<Settings, String> {
    let Some(path) = path() else { return Ok(defaults(demo)) };
    match std::fs::read_to_string(&path) {
        Ok(text) => parse(&text, &path, demo),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(defaults(demo)),
        Err(e) => Err(format!("{}: cannot read the console's config file: {e}", path.display())),
    }
}

pub fn defaults(demo: bool) -> Settings {
    Settings { keys: Keymap::new(demo), palette: Palette::default() }
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Parses a config file's text; errors name `path:line` and say what would be accepted.
pub fn parse(text: &str, path: &Path, demo: bool) -> Result<Settings, String> {
    let at = |offset: usize, message: String| {
        format!(
            "{}:{}: {message}\n(fix the line, or move the file away to start with the default keys and colours)",
            path.display(),
            line_of(text, offset)
        )
    };
    let file: File = toml::from_str(text).map_err(|e| {
        let offset = e.span().map(|s| s.start).unwrap_or(0);
        at(offset, e.message().trim().to_string())
    })?;
    let mut settings = defaults(demo);
    for (name, key) in &file.keys {
        let code = parse_key(key.get_ref()).map_err(|e| at(key.span().start, format!("[keys] {}: {e}", name.get_ref())))?;
        settings.keys.remap(name.get_ref(), code).map_err(|e| at(name.span().start, format!("[keys] {e}")))?;
    }
    for (name, key) in &file.keys {
        if let Some(clash) = settings.keys.clash(name.get_ref()) {
            return Err(at(key.span().start, format!("[keys] {}: {clash}", name.get_ref())));
        }
    }
    for (name, value) in &file.colors {
        let Some(slot) = settings.palette.slot(name.get_ref()) else {
            let message =
                format!("[colors] there is no colour called {:?}; the colours are: {}", name.get_ref(), Palette::NAMES.join(", "));
            return Err(at(name.span().start, message));
        };
        *slot = Color::from_str(value.get_ref()).map_err(|_| {
            let message = format!(
                "[colors] {}: {:?} is not a colour: use a name (red, lightblue, darkgray...), \"#rrggbb\" or an index 0-255",
                name.get_ref(),
                value.get_ref()
            );
            at(value.span().start, message)
        })?;
    }
    Ok(settings)
}
