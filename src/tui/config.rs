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
//! The same file holds the client's contexts (`current_context`, `[contexts.NAME]`, written by
//! `zsa login`; see `crate::contexts`), which the console leaves to the client.
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
    /// The client's contexts share the file (`crate::contexts` reads them); the console only
    /// lets them be, so a typo in a name of its own is still caught.
    #[serde(default, rename = "current_context")]
    _current_context: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "contexts")]
    _contexts: Option<serde::de::IgnoredAny>,
}

/// What the config file sets.
#[derive(Clone, Debug)]
pub struct Settings {
    pub keys: Keymap,
    pub palette: Palette,
}

/// Where the config file is looked for: `$XDG_CONFIG_HOME/zsa/config.toml`, else
/// `$HOME/.config/zsa/config.toml` (the client's contexts live there too: `crate::contexts`).
pub fn path() -> Option<PathBuf> {
    crate::config::user_config_file()
}

/// The most a config file may hold: a few keys and colours take a few hundred bytes.
const MAX_BYTES: u64 = 64 * 1024;

/// The settings from the config file, or the defaults if there is none.
pub fn load(demo: bool) -> Result<Settings, String> {
    let Some(path) = path() else { return Ok(defaults(demo)) };
    read(&path)?.map_or_else(|| Ok(defaults(demo)), |text| parse(&text, &path, demo))
}

/// The config file's text, None if there is none. It is read only if nobody but its owner (you
/// or root) can change it, as the policy is (`fs_trust`): a file or directory others can write
/// would let them swap approve and deny or hide the warnings. Never a FIFO that would hang the
/// console, nor more than `MAX_BYTES`.
fn read(path: &Path) -> Result<Option<String>, String> {
    use std::io::Read;
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        _ => {}
    }
    let file = crate::fs_trust::open_user_config(path).map_err(|e| e.0)?;
    let mut text = String::new();
    file.take(MAX_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("{}: cannot read the console's config file: {e}", path.display()))?;
    if text.len() as u64 > MAX_BYTES {
        return Err(format!(
            "{}: the console's config file is larger than {} KiB; it holds only [keys] and [colors]",
            path.display(),
            MAX_BYTES / 1024
        ));
    }
    Ok(Some(text))
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// A config directory of one's own, as `~/.config/zsa` is.
    fn home() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let zsa = dir.path().join("zsa");
        std::fs::create_dir(&zsa).unwrap();
        (dir, zsa.join("config.toml"))
    }

    #[test]
    fn no_file_is_no_settings_and_an_own_file_or_a_symlink_to_one_is_read() {
        let (dir, path) = home();
        assert_eq!(read(&path), Ok(None));
        let dotfiles = dir.path().join("dotfiles.toml");
        std::fs::write(&dotfiles, "[keys]\napprove = \"A\"\n").unwrap();
        std::os::unix::fs::symlink(&dotfiles, &path).unwrap();
        assert_eq!(read(&path).unwrap().as_deref(), Some("[keys]\napprove = \"A\"\n"));
    }

    /// Another account that could write the file could turn approve into deny.
    #[test]
    fn a_file_others_can_write_is_refused_saying_how_to_fix_it() {
        let (_dir, path) = home();
        std::fs::write(&path, "[keys]\napprove = \"d\"\ndeny = \"a\"\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let err = read(&path).unwrap_err();
        assert!(err.contains("the console's config file") && err.contains("chmod go-w"), "{err}");
    }

    /// A FIFO would hang the console before it starts; /dev/zero would fill the memory.
    #[test]
    fn a_fifo_or_an_endless_file_is_refused_rather_than_read() {
        let (dir, path) = home();
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let err = read(&path).unwrap_err();
        assert!(err.contains("not a regular file"), "{err}");
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "# ".repeat(MAX_BYTES as usize)).unwrap();
        let err = read(&path).unwrap_err();
        assert!(err.contains("larger than 64 KiB"), "{err}");
        drop(dir);
    }
}
