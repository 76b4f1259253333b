//! The client's named contexts, as kubeconfig has them: which daemon, how its certificate is
//! trusted, and where its token is kept. They live in the user's config file
//! (`$XDG_CONFIG_HOME/zsa/config.toml`), beside the console's `[keys]` and `[colors]`:
//!
//! ```toml
//! current_context = "prod"
//!
//! [contexts.prod]
//! endpoint = "https://zsa.example.com:8443"
//! fingerprint = "SHA256:AB:CD:..."   # or ca = "/etc/zsa/ca.pem", or system_roots = true
//! user = "alice"                     # who the daemon said you were at login
//! token_store = "keyring"            # or "file" (with token_file = "..."), or "none"
//! ```
//!
//! The token itself is never in this file. `zsa login` writes it in place, keeping the console's
//! tables and the user's comments; it is read only under `fs_trust`'s rules, since whoever can
//! write it decides where a token goes and which certificate is believed.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::client::{Address, Endpoint};
use crate::tls::{Trust, parse_fingerprint};

/// Where a context's token is kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenStore {
    /// The OS keyring (on Linux the kernel's keyutils store): the default of `zsa login`.
    Keyring,
    /// A file of the user's, mode 0600 (`zsa login --store file`, said loudly).
    File,
    /// No token: over a Unix socket the daemon knows you by your account.
    #[default]
    None,
}

impl TokenStore {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenStore::Keyring => "keyring",
            TokenStore::File => "file",
            TokenStore::None => "none",
        }
    }
}

/// One context as the file holds it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContext {
    endpoint: String,
    fingerprint: Option<String>,
    ca: Option<PathBuf>,
    #[serde(default)]
    system_roots: bool,
    user: Option<String>,
    #[serde(default)]
    token_store: TokenStore,
    token_file: Option<PathBuf>,
}

/// The file's tables: the client's, and the console's, which only the console reads.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    current_context: Option<String>,
    #[serde(default)]
    contexts: BTreeMap<String, RawContext>,
    #[serde(default, rename = "keys")]
    _keys: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "colors")]
    _colors: Option<serde::de::IgnoredAny>,
}

/// A context, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Context {
    pub name: String,
    pub endpoint: Endpoint,
    pub user: Option<String>,
    pub token_store: TokenStore,
    pub token_file: Option<PathBuf>,
}

/// Every context in the config file, and the current one's name.
#[derive(Debug, Default)]
pub struct Contexts {
    pub path: Option<PathBuf>,
    pub current: Option<String>,
    pub all: BTreeMap<String, Context>,
}

/// The most the config file may hold, as the console allows.
const MAX_BYTES: u64 = 64 * 1024;

/// A context's name: letters, digits, `.`, `-` and `_`, as keyring entries and file names take them.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?} cannot name a context: use up to 64 letters, digits, '.', '-' and '_', starting with a letter or digit"))
    }
}

/// The name `zsa login` gives a context when none is asked for: the daemon's host name.
pub fn default_name(address: &Address) -> String {
    match address {
        Address::Unix(_) => "local".into(),
        Address::Https { host, .. } => {
            let name: String =
                host.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '-' }).collect();
            let name = name.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_string();
            if check_name(&name).is_ok() { name } else { "remote".into() }
        }
    }
}

impl Contexts {
    /// The contexts in the user's config file; none if there is no file (or no home).
    pub fn load() -> Result<Contexts, String> {
        match crate::config::user_config_file() {
            Some(path) => Self::load_from(&path),
            None => Ok(Contexts::default()),
        }
    }

    pub fn load_from(path: &Path) -> Result<Contexts, String> {
        let Some(text) = read(path)? else { return Ok(Contexts { path: Some(path.to_path_buf()), ..Contexts::default() }) };
        Self::parse(&text, path)
    }

    /// Reads the file's client tables; a mistake names the file and says what would be accepted.
    pub fn parse(text: &str, path: &Path) -> Result<Contexts, String> {
        let shown = path.display();
        let file: File = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1).unwrap_or(1);
            format!("{shown}:{line}: {}", e.message().trim())
        })?;
        let mut all = BTreeMap::new();
        for (name, raw) in file.contexts {
            let context = check(&name, raw).map_err(|e| format!("{shown}: [contexts.{name}] {e}"))?;
            all.insert(name, context);
        }
        if let Some(current) = &file.current_context
            && !all.contains_key(current)
        {
            return Err(format!(
                "{shown}: current_context = {current:?}, but there is no [contexts.{current}]; zsa context use NAME picks another"
            ));
        }
        Ok(Contexts { path: Some(path.to_path_buf()), current: file.current_context, all })
    }

    /// The context of this name, or why there is none.
    pub fn get(&self, name: &str) -> Result<&Context, String> {
        self.all.get(name).ok_or_else(|| {
            let place = self.path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "your config file".into());
            if self.all.is_empty() {
                format!("there is no context {name:?}: {place} has none yet. zsa login URL makes one")
            } else {
                let names: Vec<&str> = self.all.keys().map(String::as_str).collect();
                format!("there is no context {name:?} in {place}; there are: {} (zsa context list)", names.join(", "))
            }
        })
    }

    /// The context for this address, if one is set up (its trust and token belong to it alone).
    pub fn for_address(&self, address: &Address) -> Option<&Context> {
        let current = self.current.as_ref().and_then(|c| self.all.get(c)).filter(|c| c.endpoint.address == *address);
        current.or_else(|| self.all.values().find(|c| c.endpoint.address == *address))
    }
}

fn check(name: &str, raw: RawContext) -> Result<Context, String> {
    check_name(name)?;
    let address = Address::parse(&raw.endpoint).map_err(|e| format!("endpoint: {e}"))?;
    let mut trusts = Vec::new();
    if let Some(fp) = &raw.fingerprint {
        trusts.push(Trust::Pin(parse_fingerprint(fp).map_err(|e| format!("fingerprint: {e}"))?));
    }
    if let Some(ca) = &raw.ca {
        trusts.push(Trust::Ca(ca.clone()));
    }
    if raw.system_roots {
        trusts.push(Trust::SystemRoots);
    }
    let trust = match (address.is_remote(), trusts.len()) {
        (false, 0) => None,
        (false, _) => return Err("fingerprint, ca and system_roots are for https:// endpoints; a Unix socket has none".into()),
        (true, 1) => trusts.pop(),
        (true, 0) => {
            return Err(format!(
                "{address} needs a way to trust its certificate: fingerprint = \"SHA256:...\", ca = \"FILE\" or \
                 system_roots = true (zsa login {address} sets one)"
            ));
        }
        (true, _) => return Err("give one of fingerprint, ca and system_roots, not several".into()),
    };
    if raw.token_store == TokenStore::File && raw.token_file.is_none() {
        return Err("token_store = \"file\" needs token_file = \"PATH\"".into());
    }
    Ok(Context {
        name: name.to_string(),
        endpoint: Endpoint { address, trust },
        user: raw.user,
        token_store: raw.token_store,
        token_file: raw.token_file.filter(|_| raw.token_store == TokenStore::File),
    })
}

/// The file's text, None if there is none; read under `fs_trust`'s rules, never more than `MAX_BYTES`.
/// A file in a place this account cannot even look into (another account's HOME, kept by `sudo`
/// or `runuser`) is none of its own: no contexts, as if there were no file.
fn read(path: &Path) -> Result<Option<String>, String> {
    if let Err(e) = std::fs::symlink_metadata(path)
        && matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied)
    {
        return Ok(None);
    }
    let file = crate::fs_trust::open_client_file(path, "the config file").map_err(|e| e.0)?;
    let mut text = String::new();
    file.take(MAX_BYTES + 1).read_to_string(&mut text).map_err(|e| format!("{}: cannot read the config file: {e}", path.display()))?;
    if text.len() as u64 > MAX_BYTES {
        return Err(format!("{}: the config file is larger than {} KiB", path.display(), MAX_BYTES / 1024));
    }
    Ok(Some(text))
}

/// Writes `context` into the config file (replacing one of the same name), and makes it the
/// current one if asked. Everything else in the file stays as it was, comments included.
pub fn save(path: &Path, context: &Context, make_current: bool) -> Result<(), String> {
    edit(path, |doc| {
        let contexts = doc.entry("contexts").or_insert_with(|| {
            let mut t = toml_edit::Table::new();
            t.set_implicit(true);
            toml_edit::Item::Table(t)
        });
        let contexts = contexts.as_table_mut().ok_or("contexts is not a table ([contexts.NAME])")?;
        contexts.insert(&context.name, toml_edit::Item::Table(table_of(context)));
        if make_current {
            doc.insert("current_context", toml_edit::value(context.name.as_str()));
        }
        Ok(())
    })
}

/// Makes `name` the current context.
pub fn set_current(path: &Path, name: &str) -> Result<(), String> {
    edit(path, |doc| {
        doc.insert("current_context", toml_edit::value(name));
        Ok(())
    })
}

fn table_of(context: &Context) -> toml_edit::Table {
    let mut t = toml_edit::Table::new();
    t.insert("endpoint", toml_edit::value(context.endpoint.address.to_string()));
    match &context.endpoint.trust {
        Some(Trust::Pin(fp)) => {
            t.insert("fingerprint", toml_edit::value(fp.as_str()));
        }
        Some(Trust::Ca(file)) => {
            t.insert("ca", toml_edit::value(file.display().to_string()));
        }
        Some(Trust::SystemRoots) => {
            t.insert("system_roots", toml_edit::value(true));
        }
        None => {}
    }
    if let Some(user) = &context.user {
        t.insert("user", toml_edit::value(user.as_str()));
    }
    t.insert("token_store", toml_edit::value(context.token_store.as_str()));
    if let Some(file) = &context.token_file {
        t.insert("token_file", toml_edit::value(file.display().to_string()));
    }
    t
}

/// Changes the config file in place: read (under `fs_trust`'s rules), edited, checked to still
/// read, and written whole to a new file that replaces it (a symlink's target, if it is one), so
/// a reader never sees half a file. The directory is made (0700) if it is not there.
fn edit(path: &Path, change: impl FnOnce(&mut toml_edit::DocumentMut) -> Result<(), &'static str>) -> Result<(), String> {
    let shown = path.display();
    let entry = crate::fs_trust::walk(path, true, Some(0o700), "the config file").map_err(|e| e.0)?;
    // The walk made the directories on the way (0700) where they were missing.
    let target = entry.path;
    let text = read(&target)?.unwrap_or_default();
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e| format!("{shown}: {e}"))?;
    change(&mut doc).map_err(|e| format!("{shown}: {e}"))?;
    let new = doc.to_string();
    Contexts::parse(&new, path)?;
    let temp = target.with_file_name(format!(".config.toml.{}.tmp", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .and_then(|mut f| f.write_all(new.as_bytes()).and_then(|_| f.sync_all()))
        .and_then(|_| std::fs::rename(&temp, &target));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(format!("cannot write {shown}: {e}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIN: &str = "SHA256:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF";

    fn remote(name: &str) -> Context {
        Context {
            name: name.into(),
            endpoint: Endpoint { address: Address::parse("https://zsa.example.com:8443").unwrap(), trust: Some(Trust::Pin(PIN.into())) },
            user: Some("alice".into()),
            token_store: TokenStore::Keyring,
            token_file: None,
        }
    }

    /// The console and the client share the file: each reads its own tables and lets the other's be.
    #[test]
    fn login_keeps_the_consoles_tables_and_comments_and_both_still_read_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("zsa/config.toml");
        std::fs::create_dir(dir.path().join("zsa")).unwrap();
        std::fs::write(&path, "# my keys\n[keys]\napprove = \"A\"  # shifted\n[colors]\naccent = \"magenta\"\n").unwrap();
        save(&path, &remote("prod"), true).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("current_context = \"prod\"\n") || text.contains("\ncurrent_context = \"prod\"\n"), "{text}");
        assert!(text.contains("# my keys") && text.contains("approve = \"A\"  # shifted"), "{text}");
        let contexts = Contexts::load_from(&path).unwrap();
        assert_eq!(contexts.current.as_deref(), Some("prod"));
        assert_eq!(contexts.get("prod").unwrap(), &remote("prod"));
        crate::tui::config::parse(&text, &path, false).expect("the console still reads it");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn mistakes_name_the_context_and_say_what_would_do() {
        let path = Path::new("/c.toml");
        let err = Contexts::parse("[contexts.p]\nendpoint = \"https://h:1\"\n", path).unwrap_err();
        assert!(err.contains("[contexts.p]") && err.contains("zsa login https://h:1"), "{err}");
        let err = Contexts::parse("[contexts.p]\nendpoint = \"http://h:1\"\nsystem_roots = true\n", path).unwrap_err();
        assert!(err.contains("in the clear"), "{err}");
        let err = Contexts::parse("current_context = \"q\"\n[contexts.p]\nendpoint = \"/s\"\n", path).unwrap_err();
        assert!(err.contains("no [contexts.q]"), "{err}");
        let err = Contexts::parse("[contexts.p]\nendpoint = \"/s\"\ntoken = \"secret\"\n", path).unwrap_err();
        assert!(err.contains("unknown field `token`"), "{err}");
        let ok = Contexts::parse("[contexts.p]\nendpoint = \"unix:/s\"\n", path).unwrap();
        assert_eq!(ok.get("p").unwrap().endpoint, Endpoint::unix(Path::new("/s")));
        assert!(ok.get("q").unwrap_err().contains("there are: p"));
    }

    /// Whoever could write the file could send your token to their own daemon.
    #[test]
    fn a_config_file_others_can_write_is_refused_and_never_rewritten() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("zsa")).unwrap();
        let path = dir.path().join("zsa/config.toml");
        std::fs::write(&path, "[contexts.p]\nendpoint = \"unix:/s\"\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let err = Contexts::load_from(&path).unwrap_err();
        assert!(err.contains("which daemon your token goes to") && err.contains("chmod go-w"), "{err}");
        assert!(save(&path, &remote("prod"), true).is_err());
        assert!(!std::fs::read_to_string(&path).unwrap().contains("prod"));
    }

    #[test]
    fn default_names_come_from_the_host() {
        assert_eq!(default_name(&Address::parse("https://ZSA.example.com:8443").unwrap()), "zsa.example.com");
        assert_eq!(default_name(&Address::parse("https://[::1]:8443").unwrap()), "1");
        assert_eq!(default_name(&Address::parse("/run/zsa/zsa.sock").unwrap()), "local");
        assert!(check_name("a b").is_err() && check_name("-x").is_err() && check_name("prod-2.eu_1").is_ok());
    }
}
