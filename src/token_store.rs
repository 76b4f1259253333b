//! Where a context's token is kept: the OS keyring, or (only when asked, said loudly) a file.
//!
//! The keyring is the keyring v4 ecosystem's (`keyring-core`); on Linux its kernel keyutils store,
//! which needs no desktop session or D-Bus. A token is added to the session keyring and linked
//! into the user's persistent keyring (persistent-keyring(7)), which every process and every login
//! of the account reaches, so later commands find it. A process with no session keyring of its
//! own (cron, CI, `su`, a container) first joins a new one, as the kernel does when a process
//! asks for the persistent keyring: otherwise the store would put the key in the user's session
//! keyring, from where it may not link it into the persistent one (the kernel refuses: EACCES).
//! One under a session keyring another account owns (`su`, `sudo`) joins one of its own too
//! (`own_session_keyring`): that account's processes possess whatever is put in theirs.
//! The kernel keeps tokens in memory only: they are gone after a reboot, and once the persistent
//! keyring expires (3 days by default, /proc/sys/kernel/keys/persistent_keyring_expiry) with no
//! zsa command using it; then `zsa login` asks again. Its entry is named `zsa:CONTEXT:ENDPOINT`, so a token is found only for
//! the endpoint it was stored for: a context pointed elsewhere by hand finds none.
//!
//! The file store is a 0600 file under the user's config directory, in a 0700 directory, read
//! only if nobody else can read or write it.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::client::Address;
use crate::contexts::{Context, TokenStore};

/// What a keyring is, for messages: where the token went.
#[cfg(target_os = "linux")]
pub const KEYRING: &str = "the kernel keyring (keyutils)";
#[cfg(not(target_os = "linux"))]
pub const KEYRING: &str = "the keyring";

/// The keyring entry's name for a context's token.
fn description(context: &str, address: &Address) -> String {
    format!("zsa:{context}:{address}")
}

/// The keyring entry of a context's token. Every use of it must stay on the thread that made it:
/// the kernel keeps a session keyring per thread.
#[cfg(target_os = "linux")]
fn entry(context: &str, address: &Address) -> Result<keyring_core::Entry, String> {
    use keyring_core::api::CredentialStoreApi;
    own_session_keyring()?;
    // Links the persistent keyring into this thread's session keyring, joining a new session
    // keyring first if there is none (see the module's comment). Without a persistent keyring
    // (a kernel built without one) the store keeps the token in the session keyring alone.
    let _ = linux_keyutils::KeyRing::get_persistent(linux_keyutils::KeyRingIdentifier::Session);
    let store = linux_keyutils_keyring_store::Store::new().map_err(|e| format!("cannot open {KEYRING}: {e}"))?;
    let description = description(context, address);
    let modifiers = std::collections::HashMap::from([("description", description.as_str())]);
    store.build("zsa", context, Some(&modifiers)).map_err(|e| format!("cannot open {KEYRING}: {e}"))
}

/// Makes sure this thread's session keyring is this account's own. `su` (without pam_keyinit,
/// as Debian's) and `sudo` keep the session keyring of the login they were started from, and
/// every process of that login possesses whatever is put in it, or linked into it: the token,
/// and the persistent keyring with every token kept before. So under another account's session
/// keyring zsa first joins a new one of its own, as it would with none at all.
#[cfg(target_os = "linux")]
fn own_session_keyring() -> Result<(), String> {
    use linux_keyutils::{KeyRing, KeyRingIdentifier};
    let me = nix::unistd::geteuid().as_raw();
    let owner = KeyRing::from_special_id(KeyRingIdentifier::Session, false).and_then(|k| k.metadata()).map(|m| m.get_uid());
    if owner.is_ok_and(|uid| uid == me) {
        return Ok(());
    }
    // SAFETY: keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL) takes no pointer to read or write: it
    // makes an anonymous session keyring for this thread and joins it.
    let joined =
        unsafe { libc::syscall(libc::SYS_keyctl, libc::KEYCTL_JOIN_SESSION_KEYRING as libc::c_long, std::ptr::null::<libc::c_char>()) };
    if joined < 0 {
        let e = std::io::Error::last_os_error();
        return Err(format!(
            "cannot open {KEYRING}: this process shares another account's session keyring (su or sudo keeps \
             the one of the login it started from), where that account could read the token, and a keyring of \
             its own could not be made ({e}). Log in as this account itself (su -, ssh), or use zsa login --store file"
        ));
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn entry(_context: &str, _address: &Address) -> Result<keyring_core::Entry, String> {
    Err("zsa has no keyring on this system yet: use zsa login --store file (read its warning)".into())
}

/// Keeps `token` for `context` at `address` in the keyring, replacing what was there.
pub fn keyring_save(context: &str, address: &Address, token: &str) -> Result<(), String> {
    entry(context, address)?.set_password(token).map_err(|e| {
        format!("cannot keep the token in {KEYRING}: {e}. zsa login --store file keeps it in a file instead (read its warning)")
    })
}

/// The token kept for `context` at `address`, None if there is none (never stored, logged out,
/// or forgotten at a reboot).
pub fn keyring_load(context: &str, address: &Address) -> Result<Option<String>, String> {
    match entry(context, address)?.get_password() {
        Ok(token) => Ok(Some(token)),
        Err(keyring_core::Error::NoEntry) => Ok(None),
        Err(e) => Err(format!("cannot read the token of context {context:?} from {KEYRING}: {e}")),
    }
}

/// Removes the token kept for `context` at `address`; false if there was none.
pub fn keyring_delete(context: &str, address: &Address) -> Result<bool, String> {
    match entry(context, address)?.delete_credential() {
        Ok(()) => Ok(true),
        Err(keyring_core::Error::NoEntry) => Ok(false),
        Err(e) => Err(format!("cannot remove the token of context {context:?} from {KEYRING}: {e}")),
    }
}

/// Where `--store file` keeps a context's token: `$XDG_CONFIG_HOME/zsa/tokens/CONTEXT`.
pub fn token_file_for(config_file: &Path, context: &str) -> PathBuf {
    config_file.with_file_name("tokens").join(context)
}

/// Writes `token` to `path` (0600, in a 0700 directory), replacing what was there.
pub fn file_save(path: &Path, token: &str) -> Result<(), String> {
    let dir = path.parent().ok_or_else(|| format!("{} has no directory", path.display()))?;
    let dir = crate::fs_trust::private_dir(dir, "the directory of zsa's token files").map_err(|e| e.0)?;
    let name = path.file_name().ok_or_else(|| format!("{} names no file", path.display()))?;
    let target = dir.join(name);
    let temp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .and_then(|mut f| f.write_all(format!("{token}\n").as_bytes()).and_then(|_| f.sync_all()))
        .and_then(|_| std::fs::rename(&temp, &target));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(format!("cannot write the token file {}: {e}", path.display()));
    }
    Ok(())
}

/// The token in `path`, None if the file is not there; refused if others could read or write it.
pub fn file_load(path: &Path, context: &str) -> Result<Option<String>, String> {
    if let Err(e) = std::fs::symlink_metadata(path)
        && e.kind() == std::io::ErrorKind::NotFound
    {
        return Ok(None);
    }
    let role = format!("the token file of context {context}");
    let text = crate::fs_trust::read_secret(path, &role).map_err(|e| e.0)?;
    Ok(Some(text.trim().to_string()).filter(|t| !t.is_empty()))
}

/// Removes the token file; false if it was not there.
pub fn file_delete(path: &Path) -> Result<bool, String> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(format!("cannot remove the token file {}: {e}", path.display())),
    }
}

/// The token a context keeps, wherever it keeps it; None for a context with no token store, or
/// when the token is gone (logged out, or forgotten by the keyring at a reboot).
pub fn load(context: &Context) -> Result<Option<String>, String> {
    match context.token_store {
        TokenStore::Keyring => keyring_load(&context.name, &context.endpoint.address),
        TokenStore::File => match &context.token_file {
            Some(path) => file_load(path, &context.name),
            None => Ok(None),
        },
        TokenStore::None => Ok(None),
    }
}

/// Removes a context's token wherever it is kept; false if there was none.
pub fn remove(context: &Context) -> Result<bool, String> {
    match context.token_store {
        TokenStore::Keyring => keyring_delete(&context.name, &context.endpoint.address),
        TokenStore::File => match &context.token_file {
            Some(path) => file_delete(path),
            None => Ok(false),
        },
        TokenStore::None => Ok(false),
    }
}

/// Where a context's token is, for messages: "the kernel keyring (keyutils)", "the file F".
pub fn describe(context: &Context) -> String {
    match (context.token_store, &context.token_file) {
        (TokenStore::Keyring, _) => KEYRING.to_string(),
        (TokenStore::File, Some(path)) => format!("the file {}", path.display()),
        _ => "nowhere (no token)".to_string(),
    }
}
