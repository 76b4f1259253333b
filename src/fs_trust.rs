//! Which paths zsa trusts, checked before it uses them. Another local account must not be able to
//! plant or swap anything the daemon writes or reads (its state, its socket, its policy) or that a
//! client sends its token to.
//!
//! The rules (the same for the daemon and the client; "we" is the effective user running zsa):
//! - **Every directory on the way** to a path, from `/`, belongs to root or to us and is writable by
//!   nobody else: not by others, by its group only if that is its owner's user-private group, and
//!   by nobody through a POSIX ACL (a file or directory with an extended ACL is not trusted).
//!   A sticky directory others may write (like `/tmp`) is allowed on the way, but everything we use
//!   in it must then belong to root or to us, since only an entry's owner can remove or rename it
//!   there. A symlink on the way (`/var/run -> /run`) is followed only if it lies in such a trusted
//!   directory and belongs to root or to us. Whoever controls a directory on the way can swap
//!   everything below it, so one foreign directory anywhere spoils the whole path.
//! - **What the daemon creates** (state directory, `transcripts`, `daemon.lock`, `zsa.db` and its
//!   `-wal`/`-shm`/`-journal` companions, the socket) is never a symlink and belongs to us exactly:
//!   a root daemon accepts only root's files, a daemon run as X only X's, whoever made them first.
//!   Directories are made 0700 and files 0600 once they are known to be ours.
//! - **The policy file** belongs to root or to us, and is writable by nobody else (the same rule as
//!   a directory), because whoever can write it decides who gets access. The daemon's config
//!   file, which names the policy, follows the same rule, and so does the console's config file
//!   (keys and colours: whoever can write it decides what a key does). So do the client's
//!   contexts in that file and a CA file a context trusts: whoever can write them decides which
//!   daemon a token goes to. A TLS key or another secret the daemon reads is, besides, readable
//!   by nobody else.
//! - **A socket a client sends its token to** belongs to root or to us (a token is a password: it
//!   goes only to a daemon run by root or by the token's owner).
//!
//! Once every directory on a path is trusted, nobody else can change what the path names, so the
//! checks below hold until the daemon uses the path, with no race in between.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::{self, File, Metadata};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use thiserror::Error;

/// Why a path is not trusted: the whole sentence, naming the path, what is wrong and what to do.
#[derive(Debug, Error)]
#[error("{0}")]
pub struct Untrusted(pub String);

/// The most symlinks followed on one path, as the kernel allows.
const MAX_LINKS: u32 = 40;

/// Opening a file we check after opening: never through a symlink, and never hanging on a planted
/// FIFO (a regular file ignores O_NONBLOCK).
const NO_FOLLOW_NO_BLOCK: i32 = nix::fcntl::OFlag::O_NOFOLLOW.bits() | nix::fcntl::OFlag::O_NONBLOCK.bits();

fn me() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Root, or the account zsa runs as.
fn trusted_owner(uid: u32) -> bool {
    uid == 0 || uid == me()
}

fn user_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(u)) => format!("{} (uid {uid})", u.name),
        _ => format!("uid {uid}"),
    }
}

fn group_name(gid: u32) -> String {
    match nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid)) {
        Ok(Some(g)) => format!("{} (gid {gid})", g.name),
        _ => format!("gid {gid}"),
    }
}

fn kind(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_symlink() {
        "a symlink"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_file() {
        "a regular file"
    } else if t.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

/// Who besides the owner may write to this file or directory, if anyone. Group write is allowed
/// only for the owner's user-private group (named after the owner, with no other members), as
/// with umask 002; a POSIX ACL beyond the mode bits counts as others (zsa does not read ACLs).
fn also_writable_by(path: &Path, meta: &Metadata) -> Option<String> {
    let mode = meta.mode();
    if mode & 0o002 != 0 {
        return Some("every local account can write to it".into());
    }
    if mode & 0o020 != 0 && !private_group(meta.uid(), meta.gid()) {
        return Some(format!("the group {} can write to it and is not its owner's private group", group_name(meta.gid())));
    }
    if has_acl(path) {
        return Some("a POSIX ACL may give other accounts access beyond its mode bits (remove it with setfacl -b)".into());
    }
    None
}

/// Is `gid` the user-private group of `uid`: its primary group, named after it, with no other
/// listed members? (Another account could still have it as primary; that is not the convention.)
fn private_group(uid: u32, gid: u32) -> bool {
    let Ok(Some(user)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) else { return false };
    let Ok(Some(group)) = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid)) else { return false };
    user.gid.as_raw() == gid && (group.name == user.name || uid == 0) && group.mem.iter().all(|m| *m == user.name)
}

/// Whether `path` (not following a last symlink) carries an extended POSIX ACL: it is stored as
/// the `system.posix_acl_access` attribute, which a file whose ACL is just its mode bits lacks.
fn has_acl(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return true };
    // SAFETY: both names are NUL-terminated and outlive the call; a null buffer of size 0 asks
    // only for the attribute's size, so nothing is written.
    let size = unsafe { libc::lgetxattr(c.as_ptr(), c"system.posix_acl_access".as_ptr(), std::ptr::null_mut(), 0) };
    size >= 0
}

fn is_sticky(meta: &Metadata) -> bool {
    meta.mode() & 0o1000 != 0
}

/// Puts a path's components in front of what is still to walk (`.` dropped, `..` kept).
fn push_front(pending: &mut VecDeque<OsString>, p: &Path) {
    let parts: Vec<OsString> = p
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect();
    for part in parts.into_iter().rev() {
        pending.push_front(part);
    }
}

/// What a path names once every directory on the way has been checked.
#[derive(Debug)]
pub struct Entry {
    /// The path with every symlink on the way resolved (the last component too if asked).
    pub path: PathBuf,
    /// What is there now (lstat), if anything.
    pub meta: Option<Metadata>,
    /// The directory holding it is writable by others (sticky): only root's or our entries count.
    pub shared_parent: bool,
}

/// Walks `path` from `/`, checking every directory on the way and following symlinks only where
/// they are trusted. Missing directories on the way are created with `create` (if given) inside
/// trusted ones. The last component is followed if it is a symlink and `follow_last` is set;
/// otherwise it is reported as it is (a symlink stays a symlink).
pub fn walk(path: &Path, follow_last: bool, create: Option<u32>, role: &str) -> Result<Entry, Untrusted> {
    let shown = path.display().to_string();
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| Untrusted(format!("cannot resolve {shown} ({role}): the current directory is unreadable: {e}")))?
            .join(path)
    };
    let refuse = |at: &Path, problem: String, fix: &str| {
        let what = if at == absolute { role.to_string() } else { format!("on the way to {shown}, {role}") };
        Untrusted(format!("refusing {} ({what}): {problem}. {fix}", at.display()))
    };
    let dir_fix = "Another account could swap what is inside. Use a directory that only you or root can write, \
                   or fix its owner and mode (chown, chmod go-w)";

    let mut pending: VecDeque<OsString> = VecDeque::new();
    push_front(&mut pending, &absolute);

    let mut cur = PathBuf::from("/");
    let check_dir = |at: &Path| -> Result<bool, Untrusted> {
        let meta = fs::symlink_metadata(at).map_err(|e| refuse(at, format!("cannot read it: {e}"), "Check the path"))?;
        if !meta.is_dir() {
            return Err(refuse(at, format!("it is {}, not a directory", kind(&meta)), "Check the path"));
        }
        if !trusted_owner(meta.uid()) {
            return Err(refuse(at, format!("it belongs to {}, not to you or root", user_name(meta.uid())), dir_fix));
        }
        match also_writable_by(at, &meta) {
            Some(_) if is_sticky(&meta) => Ok(true),
            Some(who) => Err(refuse(at, who, dir_fix)),
            None => Ok(false),
        }
    };
    let mut shared = check_dir(&cur)?;
    let mut links = 0;
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            cur.pop();
            shared = check_dir(&cur)?;
            continue;
        }
        let next = cur.join(&name);
        let last = pending.is_empty();
        let meta = match fs::symlink_metadata(&next) {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound && last => {
                return Ok(Entry { path: next, meta: None, shared_parent: shared });
            }
            Err(e) if e.kind() == ErrorKind::NotFound && create.is_some() => {
                let mode = create.unwrap_or(0o700);
                match fs::DirBuilder::new().mode(mode).create(&next) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(refuse(&next, format!("cannot create it: {e}"), "Create it yourself, or choose another path")),
                }
                fs::symlink_metadata(&next).map_err(|e| refuse(&next, format!("cannot read it: {e}"), "Check the path"))?
            }
            Err(e) => return Err(refuse(&next, format!("cannot read it: {e}"), "Check the path")),
        };
        if shared && !trusted_owner(meta.uid()) {
            return Err(refuse(
                &next,
                format!(
                    "it belongs to {} and lies in {}, which others can write to; someone may have planted it",
                    user_name(meta.uid()),
                    cur.display()
                ),
                "Remove it if it is not yours, or choose another path",
            ));
        }
        if meta.file_type().is_symlink() && (!last || follow_last) {
            links += 1;
            if links > MAX_LINKS {
                return Err(refuse(&next, "too many symlinks".into(), "Check the path"));
            }
            if !trusted_owner(meta.uid()) {
                return Err(refuse(
                    &next,
                    format!("it is a symlink belonging to {}, not to you or root", user_name(meta.uid())),
                    "Remove it if it is not yours, or give the real path",
                ));
            }
            let target = fs::read_link(&next).map_err(|e| refuse(&next, format!("cannot read the symlink: {e}"), "Check the path"))?;
            if target.is_absolute() {
                cur = PathBuf::from("/");
                shared = check_dir(&cur)?;
            }
            push_front(&mut pending, &target);
            continue;
        }
        if last {
            return Ok(Entry { path: next, meta: Some(meta), shared_parent: shared });
        }
        cur = next;
        shared = check_dir(&cur)?;
    }
    // Only `/` itself (or a path of `..`s) gets here: a directory that was checked above.
    let meta = fs::symlink_metadata(&cur).ok();
    Ok(Entry { path: cur, meta, shared_parent: false })
}

/// A directory only the daemon uses (the state directory, `transcripts`): created 0700 if absent,
/// never a symlink, ours exactly, and made 0700. Returns its resolved path.
pub fn private_dir(path: &Path, role: &str) -> Result<PathBuf, Untrusted> {
    let shown = path.display();
    let mut entry = walk(path, false, Some(0o700), role)?;
    if entry.meta.is_none() {
        match fs::DirBuilder::new().mode(0o700).create(&entry.path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Untrusted(format!("cannot create {shown} ({role}): {e}"))),
        }
        entry.meta = Some(fs::symlink_metadata(&entry.path).map_err(|e| Untrusted(format!("cannot read {shown} ({role}): {e}")))?);
    }
    let meta = entry.meta.as_ref().ok_or_else(|| Untrusted(format!("{shown} ({role}) vanished")))?;
    if !meta.is_dir() {
        return Err(Untrusted(format!(
            "refusing {shown} ({role}): it is {}, not a directory; zsa never follows a symlink here, since whoever \
             made it would choose where the daemon writes. Give the real directory instead",
            kind(meta)
        )));
    }
    if meta.uid() != me() {
        return Err(Untrusted(format!(
            "refusing {shown} ({role}): it belongs to {}, not to {} who runs this daemon; whoever owns it can read \
             and change the daemon's state. Remove it, or choose another directory",
            user_name(meta.uid()),
            user_name(me())
        )));
    }
    if meta.mode() & 0o022 != 0 {
        // It was open for others to write: anything in it may have been planted.
        own_entries(&entry.path, role)?;
    }
    if meta.mode() & 0o7777 != 0o700 {
        fs::set_permissions(&entry.path, fs::Permissions::from_mode(0o700))
            .map_err(|e| Untrusted(format!("cannot make {shown} ({role}) private (0700): {e}")))?;
    }
    Ok(entry.path)
}

/// Every entry of a directory others could write to is ours and no symlink (a planted
/// `transcripts/X1.log -> /etc/shadow` would otherwise be served as a transcript).
fn own_entries(dir: &Path, role: &str) -> Result<(), Untrusted> {
    let entries = fs::read_dir(dir).map_err(|e| Untrusted(format!("cannot list {} ({role}): {e}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(|e| Untrusted(format!("cannot list {} ({role}): {e}", dir.display())))?;
        let path = entry.path();
        let meta = fs::symlink_metadata(&path).map_err(|e| Untrusted(format!("cannot read {}: {e}", path.display())))?;
        if meta.file_type().is_symlink() || meta.uid() != me() {
            return Err(Untrusted(format!(
                "refusing {} ({role}): others could write to it, and it holds {} ({} of {}), which may have been \
                 planted. Remove it if it is not yours; the daemon then makes the directory private",
                dir.display(),
                path.display(),
                kind(&meta),
                user_name(meta.uid())
            )));
        }
    }
    Ok(())
}

/// A file the daemon keeps in its state directory (`zsa.db` and its companions): if it is there,
/// it must be a regular file of ours, not a symlink; it is made 0600. Absent is fine (SQLite
/// creates it, private under the daemon's umask).
pub fn own_file_if_present(path: &Path, role: &str) -> Result<(), Untrusted> {
    let shown = path.display();
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Untrusted(format!("cannot read {shown} ({role}): {e}"))),
    };
    own_file_meta(path, &meta, role)?;
    if meta.mode() & 0o7777 != 0o600 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))
            .map_err(|e| Untrusted(format!("cannot make {shown} ({role}) private (0600): {e}")))?;
    }
    Ok(())
}

fn own_file_meta(path: &Path, meta: &Metadata, role: &str) -> Result<(), Untrusted> {
    let shown = path.display();
    if !meta.is_file() {
        return Err(Untrusted(format!(
            "refusing {shown} ({role}): it is {}, not a regular file; someone may have planted it. Remove it if \
             it is not yours",
            kind(meta)
        )));
    }
    if meta.uid() != me() {
        return Err(Untrusted(format!(
            "refusing {shown} ({role}): it belongs to {}, not to {} who runs this daemon; whoever made it could \
             read the daemon's secrets. Remove it, and start the daemon on a state directory only it uses",
            user_name(meta.uid()),
            user_name(me())
        )));
    }
    Ok(())
}

/// Opens (creating 0600 if absent) a file of ours in a directory already checked, never through a
/// symlink, and checks what was opened.
pub fn open_own_file(path: &Path, role: &str) -> Result<File, Untrusted> {
    open_own(path, role, false)
}

/// Like `open_own_file`, for appending (O_APPEND): each write lands at the end, whoever else
/// appends too.
pub fn append_own_file(path: &Path, role: &str) -> Result<File, Untrusted> {
    open_own(path, role, true)
}

fn open_own(path: &Path, role: &str, append: bool) -> Result<File, Untrusted> {
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .append(append)
        .mode(0o600)
        .custom_flags(NO_FOLLOW_NO_BLOCK)
        .open(path)
        .map_err(|e| {
            // ELOOP (a symlink) and ENXIO (a FIFO nobody reads) say little; name what is there.
            let why = match fs::symlink_metadata(path) {
                Ok(m) if !m.is_file() => format!("it is {}, not a regular file", kind(&m)),
                _ => e.to_string(),
            };
            Untrusted(format!("cannot open {} ({role}): {why}. Remove it if it is not yours", path.display()))
        })?;
    let meta = file.metadata().map_err(|e| Untrusted(format!("cannot read {} ({role}): {e}", path.display())))?;
    own_file_meta(path, &meta, role)?;
    Ok(file)
}

/// Reads a secret (an SMTP password, a webhook URL or signing key) from a file the policy names:
/// every directory on the way trusted, the file a regular file of root's or ours that nobody else
/// may read or write (a secret others can read is no longer one; one others can write lets them
/// choose where notices go). The checks are made on the open file.
pub fn read_secret(path: &Path, role: &str) -> Result<String, Untrusted> {
    use std::io::Read;
    let entry = walk(path, true, None, role)?;
    let shown = path.display();
    let mut file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(NO_FOLLOW_NO_BLOCK)
        .open(&entry.path)
        .map_err(|e| Untrusted(format!("cannot read {shown} ({role}): {e}")))?;
    let meta = file.metadata().map_err(|e| Untrusted(format!("cannot read {shown} ({role}): {e}")))?;
    if !meta.is_file() {
        return Err(Untrusted(format!("refusing {shown} ({role}): it is {}, not a regular file", kind(&meta))));
    }
    if !trusted_owner(meta.uid()) {
        return Err(Untrusted(format!(
            "refusing {shown} ({role}): it belongs to {}, not to you or root. chown it to the daemon's account",
            user_name(meta.uid())
        )));
    }
    let mode = meta.mode() & 0o7777;
    let acl = has_acl(&entry.path);
    if mode & 0o077 != 0 || acl {
        let who = if acl { "a POSIX ACL gives other accounts access".to_string() } else { format!("mode {mode:o}") };
        return Err(Untrusted(format!(
            "refusing {shown} ({role}): other accounts may read or write it ({who}), so it is no secret. \
             chmod 600 {shown} (and setfacl -b it), then change the secret, since others may have read it"
        )));
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(|e| Untrusted(format!("cannot read {shown} ({role}): {e}")))?;
    Ok(text)
}

/// Opens the policy file for reading, if it is trusted: every directory on the way trusted (a
/// symlink there is followed), the file itself a regular file of root's or ours that nobody else
/// can write. The checks are made on the open file, so it cannot be swapped in between.
pub fn open_policy(path: &Path) -> Result<File, Untrusted> {
    let fix = "Whoever can write the policy decides who gets access";
    open_trusted(path, "the policy file", fix, "chown it to root (or to the daemon's account)")
}

/// Opens the console's config file for reading under the policy file's rules: whoever can write
/// it decides what the keys do (approve could become deny) and which warnings show.
pub fn open_user_config(path: &Path) -> Result<File, Untrusted> {
    let fix = "Whoever can write it decides what your keys do";
    open_trusted(path, "the console's config file", fix, "chown it to yourself")
}

/// Opens a file of the client's own settings (its contexts in the config file, a CA file a
/// context trusts) under the same rules: whoever can write it decides which daemon a token is
/// sent to and which certificate is believed.
pub fn open_client_file(path: &Path, role: &str) -> Result<File, Untrusted> {
    let fix = "Whoever can write it decides which daemon your token goes to";
    open_trusted(path, role, fix, "chown it to yourself")
}

/// Opens the roots a PostgreSQL server's certificate is checked against (`sslrootcert`) under
/// the policy file's rules: whoever can write them can put their own server between the daemon
/// and its log.
pub fn open_store_roots(path: &Path) -> Result<File, Untrusted> {
    let fix = "Whoever can write it can pose as the database and feed the daemon a log of their own";
    open_trusted(path, "the PostgreSQL roots file (sslrootcert)", fix, "chown it to root (or to the daemon's account)")
}

/// Opens the daemon's config file for reading under the policy file's rules: it names the policy,
/// the state directory and the TLS key, so whoever can write it decides as much as the policy does.
pub fn open_daemon_config(path: &Path) -> Result<File, Untrusted> {
    let fix = "Whoever can write it chooses the daemon's policy and where it listens";
    open_trusted(path, "the daemon's config file", fix, "chown it to root (or to the daemon's account)")
}

/// A regular file of root's or ours, nobody else can write it or a directory on its way; `role`
/// names it in refusals, `fix` says why it matters and `chown` what owner to give it.
fn open_trusted(path: &Path, role: &str, fix: &str, chown: &str) -> Result<File, Untrusted> {
    let entry = walk(path, true, None, role)?;
    let shown = path.display();
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(NO_FOLLOW_NO_BLOCK)
        .open(&entry.path)
        .map_err(|e| Untrusted(format!("cannot read {role} {shown}: {e}")))?;
    let meta = file.metadata().map_err(|e| Untrusted(format!("cannot read {role} {shown}: {e}")))?;
    if !meta.is_file() {
        return Err(Untrusted(format!("refusing {role} {shown}: it is {}, not a regular file", kind(&meta))));
    }
    if !trusted_owner(meta.uid()) {
        return Err(Untrusted(format!(
            "refusing {role} {shown}: it belongs to {}, not to you or root. {fix}: {chown}",
            user_name(meta.uid())
        )));
    }
    if let Some(who) = also_writable_by(&entry.path, &meta) {
        return Err(Untrusted(format!("refusing {role} {shown}: {who} (mode {:o}). {fix}: chmod go-w {shown}", meta.mode() & 0o7777)));
    }
    Ok(file)
}

/// Checks the place the daemon's socket goes before anything else happens: the directory (created,
/// 0755 or `dir_mode`, if absent) and everything on the way trusted, and whatever already has the
/// socket's name a socket of ours. Returns the resolved socket path.
pub fn socket_place(path: &Path, dir_mode: u32) -> Result<PathBuf, Untrusted> {
    let role = "the daemon's socket";
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| Untrusted(format!("{} is not a socket path: it has no file name", path.display())))?;
    let dir = walk(&parent, true, Some(dir_mode), "the socket's directory")?;
    if dir.meta.is_none() {
        match fs::DirBuilder::new().mode(dir_mode).create(&dir.path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Untrusted(format!("cannot create {} (the socket's directory): {e}", parent.display()))),
        }
        let _ = fs::set_permissions(&dir.path, fs::Permissions::from_mode(dir_mode));
    }
    // Walking to the socket checks its directory by the rules of the directories on the way.
    let shown = path.display();
    let resolved = dir.path.join(name);
    let entry = walk(&resolved, false, None, role)?;
    if let Some(meta) = entry.meta.as_ref() {
        if !meta.file_type().is_socket() {
            return Err(Untrusted(format!(
                "refusing {shown} ({role}): it is {}, not a socket; zsa removes only a socket a daemon of its own \
                 left behind. Choose another --socket, or remove it yourself if it is yours to remove",
                kind(meta)
            )));
        }
        if meta.uid() != me() {
            return Err(Untrusted(format!(
                "refusing {shown} ({role}): the socket there belongs to {}, not to {} who runs this daemon; zsa \
                 never removes another account's socket. Choose another --socket",
                user_name(meta.uid()),
                user_name(me())
            )));
        }
    }
    Ok(resolved)
}

/// May a client send its token to the daemon at `socket`? Only if every directory on the way is
/// trusted and the socket belongs to root or to the client's own account. `Ok(false)`: nothing is
/// there, so there is no daemon to reach (and the caller does not connect, so nobody can put a
/// socket there in between, even in a shared directory).
pub fn check_token_socket(socket: &Path) -> Result<bool, Untrusted> {
    let shown = socket.display();
    if fs::metadata(socket).is_err_and(|e| e.kind() == ErrorKind::NotFound) {
        return Ok(false);
    }
    let entry = walk(socket, true, None, "the daemon's socket").map_err(|e| Untrusted(format!("{e}; your token was not sent")))?;
    let Some(meta) = entry.meta else { return Ok(false) };
    if !meta.file_type().is_socket() {
        return Err(Untrusted(format!("{shown} is {}, not a socket; your token was not sent", kind(&meta))));
    }
    if !trusted_owner(meta.uid()) {
        return Err(Untrusted(format!(
            "refusing to send your token to {shown}: the socket belongs to {}, not to you or root, so any \
             daemon there is not one you can trust with it. Check --socket / ZSA_SOCKET, or connect without a \
             token as your own account",
            user_name(meta.uid())
        )));
    }
    Ok(true)
}

/// The identity of a file (device and inode), to recognise our own socket when we remove it.
pub fn file_id(path: &Path) -> Option<(u64, u64)> {
    fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn a_private_tree_of_ours_walks_and_symlinks_on_the_way_are_followed() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("real")).unwrap();
        symlink(dir.path().join("real"), dir.path().join("link")).unwrap();
        let e = walk(&dir.path().join("link/x"), false, None, "test").unwrap();
        assert_eq!(e.path, fs::canonicalize(dir.path()).unwrap().join("real/x"));
        assert!(e.meta.is_none());
        // The last component is not followed unless asked.
        let e = walk(&dir.path().join("link"), false, None, "test").unwrap();
        assert!(e.meta.unwrap().file_type().is_symlink());
    }

    #[test]
    fn a_directory_anyone_can_write_on_the_way_is_refused_unless_sticky() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let err = walk(&open.join("state"), false, None, "the state directory").unwrap_err().0;
        assert!(err.contains("every local account can write to it") && err.contains("on the way to"), "{err}");
        fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(walk(&open.join("state"), false, None, "test").unwrap().shared_parent);
    }

    #[test]
    fn group_write_is_trusted_only_for_the_owners_own_group() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("grouped");
        fs::create_dir(&shared).unwrap();
        let primary = nix::unistd::User::from_uid(nix::unistd::geteuid()).unwrap().unwrap().gid;
        std::os::unix::fs::chown(&shared, None, Some(primary.as_raw())).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o775)).unwrap();
        assert!(walk(&shared.join("x"), false, None, "test").is_ok(), "umask 002 with a user-private group");
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(&shared, None, Some(65534)).unwrap();
            let err = walk(&shared.join("x"), false, None, "test").unwrap_err().0;
            assert!(err.contains("the group") && err.contains("gid 65534"), "{err}");
        }
    }

    #[test]
    fn missing_directories_are_created_private() {
        let dir = tempfile::tempdir().unwrap();
        let p = private_dir(&dir.path().join("a/b/state"), "the state directory").unwrap();
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o700);
        assert_eq!(fs::metadata(dir.path().join("a")).unwrap().mode() & 0o077, 0);
    }

    #[test]
    fn group_write_counts_only_for_a_private_group_of_the_owner() {
        assert!(private_group(0, 0), "root's own group");
        // "users" (gid 100 on Debian) is shared by whoever has it: never private.
        if nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(100)).ok().flatten().is_some_and(|g| g.name == "users") {
            assert!(!private_group(0, 100));
        }
    }
}
