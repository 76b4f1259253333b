//! Paths another local account planted or can swap: the daemon refuses them (saying which and
//! why) and follows, chmods and removes nothing of theirs; a client sends no token to a socket it
//! cannot trust; a policy file others can write is never loaded. The tests that need a second
//! account create a throwaway one (root only, as in CI) and skip with a message otherwise.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt, lchown, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{BIN, Daemon, code, stderr, stdout};
use zsa::client::Client;
use zsa::config::NoSocket;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A throwaway local account, removed when dropped.
struct Account {
    name: String,
    uid: u32,
    gid: u32,
}

/// useradd and userdel lock /etc/passwd; one at a time within this test binary.
static ACCOUNTS: Mutex<()> = Mutex::new(());

impl Account {
    /// None (after saying so) when not root: only root can create accounts and plant as them.
    fn create(test: &str) -> Option<Account> {
        if !is_root() {
            eprintln!("SKIPPED {test}: it needs root to create a throwaway account to attack as (CI runs as root)");
            return None;
        }
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("zsapp{}x{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        let _one = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
        // Another process may hold the passwd lock for a moment (other test binaries do this too).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = Command::new("useradd").args(["-M", "-N", "-s", "/usr/sbin/nologin", &name]).status().expect("run useradd");
            if status.success() {
                break;
            }
            assert!(Instant::now() < deadline, "useradd {name} kept failing: {status}");
            std::thread::sleep(Duration::from_millis(100));
        }
        let user = nix::unistd::User::from_name(&name).unwrap().expect("the new account");
        Some(Account { name, uid: user.uid.as_raw(), gid: user.gid.as_raw() })
    }

    /// Runs a shell command as this account, as she would.
    fn sh(&self, script: &str) {
        let out = Command::new("runuser").args(["-u", &self.name, "--", "sh", "-c", script]).output().expect("runuser");
        assert!(out.status.success(), "as {}: {script}: {}", self.name, stderr(&out));
    }

    /// A command that runs as this account (setuid in the child: no PAM session in between, so
    /// killing it kills the program itself).
    fn command(&self, program: &Path) -> Command {
        use std::os::unix::process::CommandExt;
        let mut c = Command::new(program);
        c.uid(self.uid).gid(self.gid); // std also drops root's supplementary groups
        c
    }

    fn owns(&self, path: &Path) {
        lchown(path, Some(self.uid), None).unwrap();
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        let _one = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
        for _ in 0..100 {
            match Command::new("userdel").arg(&self.name).status() {
                Ok(s) if s.success() => return,
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        eprintln!("could not remove the throwaway account {}", self.name);
    }
}

/// A daemon process the test started, killed however the test ends (a failed assertion too).
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A place for one test: a directory others may enter (0755), with a good policy in it.
struct Place {
    dir: tempfile::TempDir,
    policy: PathBuf,
}

impl Place {
    fn new() -> Place {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let policy = dir.path().join("policy.toml");
        std::fs::write(&policy, common::POLICY.replace("{ADMIN}", &common::current_user())).unwrap();
        std::fs::set_permissions(&policy, std::fs::Permissions::from_mode(0o644)).unwrap();
        Place { dir, policy }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Starts a daemon that must refuse to start; returns what it said.
    fn refused(&self, state: &Path, policy: &Path, socket: &Path) -> String {
        daemon_refuses(state, policy, socket)
    }
}

/// Runs `zsa daemon` and expects it to exit 1 on its own (it is killed, and the test fails, if it
/// is still running after 20 s: then it started when it should not have).
fn daemon_refuses(state: &Path, policy: &Path, socket: &Path) -> String {
    let mut child = common::daemon_command(state, policy, socket).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            assert_eq!(status.code(), Some(1), "the daemon should refuse: {err}");
            return err;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "the daemon was still running after 20 s on state {} / socket {} (it started, or hangs): it should have refused",
                state.display(),
                socket.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

#[test]
fn a_state_directory_that_is_someone_elses_symlink_is_not_followed() {
    let Some(eve) = Account::create("a_state_directory_that_is_someone_elses_symlink_is_not_followed") else { return };
    let place = Place::new();
    // In a shared sticky directory, as in /tmp, eve plants a symlink where the state will go.
    let shared = place.path("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    eve.sh(&format!("mkdir -m 755 {0}/hers && ln -s {0}/hers {0}/state", shared.display()));
    let err = place.refused(&shared.join("state"), &place.policy, &place.path("zsa.sock"));
    assert!(err.contains(&shared.join("state").display().to_string()) && err.contains(&eve.name), "{err}");
    assert!(err.contains("someone may have planted it"), "{err}");
    assert_eq!(mode(&shared.join("hers")), 0o755, "her directory was not chmod'ed");
    assert_eq!(std::fs::read_dir(shared.join("hers")).unwrap().count(), 0, "nothing was written into it");
    assert!(!place.path("zsa.sock").exists(), "no socket was bound");

    // A symlink as the state directory is refused even where only we could have made it.
    let mine = place.path("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::set_permissions(&mine, std::fs::Permissions::from_mode(0o755)).unwrap();
    symlink(&mine, place.path("state")).unwrap();
    let err = place.refused(&place.path("state"), &place.policy, &place.path("zsa.sock"));
    assert!(err.contains("it is a symlink, not a directory"), "{err}");
    assert_eq!(mode(&mine), 0o755);
}

#[test]
fn a_state_directory_or_database_someone_else_made_is_refused() {
    let Some(eve) = Account::create("a_state_directory_or_database_someone_else_made_is_refused") else { return };
    let place = Place::new();
    // Her state directory, made before the daemon ever ran.
    let state = place.path("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    eve.owns(&state);
    let err = place.refused(&state, &place.policy, &place.path("zsa.sock"));
    assert!(err.contains("the state directory") && err.contains(&format!("belongs to {}", eve.name)), "{err}");
    assert_eq!(mode(&state), 0o777, "not chmod'ed");
    assert_eq!(std::fs::read_dir(&state).unwrap().count(), 0, "nothing was created in it");

    // Our state directory, but a database (or its WAL) she made there while it was open.
    for name in ["zsa.db", "zsa.db-wal"] {
        let state = place.path(&format!("state-{name}"));
        std::fs::create_dir(&state).unwrap();
        let planted = state.join(name);
        std::fs::write(&planted, b"hers").unwrap();
        std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o644)).unwrap();
        eve.owns(&planted);
        let err = place.refused(&state, &place.policy, &place.path("zsa.sock"));
        assert!(err.contains(&planted.display().to_string()) && err.contains(&eve.name) && err.contains("Remove it"), "{err}");
        assert_eq!(mode(&planted), 0o644, "her file was not chmod'ed");
        assert_eq!(std::fs::read(&planted).unwrap(), b"hers", "nor written");
    }

    // A lock file that is a symlink to someone else's file is not opened.
    let state = place.path("state-lock");
    std::fs::create_dir(&state).unwrap();
    let hers = place.path("hers.txt");
    std::fs::write(&hers, b"hers").unwrap();
    eve.owns(&hers);
    symlink(&hers, state.join("daemon.lock")).unwrap();
    let err = place.refused(&state, &place.policy, &place.path("zsa.sock"));
    assert!(err.contains("daemon.lock") && err.contains("symlink"), "{err}");

    // Nor does a FIFO in its place make the daemon hang at start.
    let state = place.path("state-fifo");
    std::fs::create_dir(&state).unwrap();
    nix::unistd::mkfifo(&state.join("daemon.lock"), nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
    let err = place.refused(&state, &place.policy, &place.path("zsa.sock"));
    assert!(err.contains("daemon.lock") && err.contains("not a regular file"), "{err}");
}

#[test]
fn a_planted_transcripts_symlink_is_not_followed() {
    let Some(eve) = Account::create("a_planted_transcripts_symlink_is_not_followed") else { return };
    let place = Place::new();
    let state = place.path("state");
    std::fs::create_dir(&state).unwrap();
    let hers = place.path("hers");
    std::fs::create_dir(&hers).unwrap();
    std::fs::set_permissions(&hers, std::fs::Permissions::from_mode(0o777)).unwrap();
    eve.owns(&hers);
    let link = state.join("transcripts");
    symlink(&hers, &link).unwrap();
    eve.owns(&link);
    let err = place.refused(&state, &place.policy, &place.path("zsa.sock"));
    assert!(err.contains(&link.display().to_string()) && err.contains("transcripts") && err.contains("symlink"), "{err}");
    assert_eq!(mode(&hers), 0o777, "her directory was not chmod'ed");
    assert_eq!(std::fs::read_dir(&hers).unwrap().count(), 0);

    // A transcripts directory of ours that others could write to, with a planted transcript: a
    // symlink that would serve a secret file as the next run's transcript.
    std::fs::remove_file(&link).unwrap();
    std::fs::create_dir(&link).unwrap();
    std::fs::set_permissions(&link, std::fs::Permissions::from_mode(0o777)).unwrap();
    let planted = link.join("X1.log");
    symlink("/etc/shadow", &planted).unwrap();
    eve.owns(&planted);
    let err = place.refused(&state, &place.policy, &place.path("zsa.sock"));
    assert!(err.contains("X1.log") && err.contains("may have been planted") && err.contains(&eve.name), "{err}");
    assert_eq!(mode(&link), 0o777, "left as it was, for the operator to look at");
}

#[test]
fn the_socket_path_removes_only_a_stale_socket_of_ours() {
    let place = Place::new();
    // A regular file named as the socket is left alone.
    let file = place.path("notes.txt");
    std::fs::write(&file, b"precious").unwrap();
    let err = place.refused(&place.path("state1"), &place.policy, &file);
    assert!(err.contains("it is a regular file, not a socket") && err.contains("notes.txt"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"precious");
    assert!(!place.path("state1").exists(), "a bad --socket is refused before any state is touched");

    // --socket naming a running daemon's live database.
    let d = Daemon::start();
    let before = std::fs::read(d.db()).unwrap();
    let err = place.refused(&place.path("state2"), &place.policy, &d.db());
    assert!(err.contains("not a socket"), "{err}");
    assert!(d.db().exists() && std::fs::read(d.db()).unwrap().len() >= before.len(), "the database is still there");
    let admin = d.admin();
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert!(rt.block_on(admin.whoami()).is_ok(), "and the daemon still answers");

    // A symlink named as the socket is not followed (nor removed).
    let link = place.path("link.sock");
    symlink(&d.socket, &link).unwrap();
    let err = place.refused(&place.path("state3"), &place.policy, &link);
    assert!(err.contains("it is a symlink, not a socket"), "{err}");
    assert!(std::fs::symlink_metadata(&link).is_ok() && d.socket.exists());

    // Someone else's stale socket.
    let Some(eve) = Account::create("the_socket_path_removes_only_a_stale_socket_of_ours (another account's socket)") else { return };
    let theirs = place.path("theirs.sock");
    drop(std::os::unix::net::UnixListener::bind(&theirs).unwrap());
    eve.owns(&theirs);
    let err = place.refused(&place.path("state4"), &place.policy, &theirs);
    assert!(err.contains(&format!("belongs to {}", eve.name)) && err.contains("never removes another account's socket"), "{err}");
    assert!(std::fs::symlink_metadata(&theirs).is_ok(), "her socket is still there");
}

#[test]
fn a_socket_directory_others_can_write_is_refused_unless_sticky() {
    let place = Place::new();
    let open = place.path("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = place.refused(&place.path("state"), &place.policy, &open.join("zsa.sock"));
    assert!(err.contains("every local account can write to it") && err.contains("the daemon's socket"), "{err}");
    assert!(!open.join("zsa.sock").exists());

    // Sticky, as /tmp: others cannot remove or rename our socket there, so it is fine.
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let socket = open.join("zsa.sock");
    let _daemon = Running(common::daemon_command(&place.path("state"), &place.policy, &socket).spawn().unwrap());
    common::wait_for_socket(&socket);
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert!(rt.block_on(Client::new(&socket, None).unwrap().whoami()).is_ok());
}

#[tokio::test]
async fn the_client_sends_no_token_to_a_socket_it_cannot_trust() {
    let mut d = Daemon::start();
    let token = d.token("dave").await;
    assert_eq!(Client::new(&d.socket, Some(token.clone())).unwrap().whoami().await.unwrap().user, "dave");

    // The daemon's directory becomes writable by everyone: anyone could swap the socket now.
    let dir = d.dir.path().to_path_buf();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = Client::new(&d.socket, Some(token.clone())).unwrap().whoami().await.unwrap_err();
    assert_eq!(err.code(), "untrusted_socket", "{err}");
    assert!(err.to_string().contains("every local account can write to it") && err.to_string().contains("token was not sent"), "{err}");
    let out = Command::new(BIN).arg("whoami").env("ZSA_SOCKET", &d.socket).env("ZSA_TOKEN", &token).output().unwrap();
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("token was not sent"), "{}", stderr(&out));
    // Without a token there is no secret to lose: the kernel names the caller.
    assert!(d.admin().whoami().await.is_ok());
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();

    // Nothing there: unreachable (exit 3), as without a token.
    let out = Command::new(BIN).arg("whoami").env("ZSA_SOCKET", dir.join("none/zsa.sock")).env("ZSA_TOKEN", &token).output().unwrap();
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot reach the zsa daemon"), "{}", stderr(&out));

    // A socket that belongs to another (non-root) account gets no connection at all.
    let Some(eve) = Account::create("the_client_sends_no_token_to_a_socket_it_cannot_trust (another account's socket)") else { return };
    let place = Place::new();
    let fake = place.path("fake.sock");
    let listener = std::os::unix::net::UnixListener::bind(&fake).unwrap();
    listener.set_nonblocking(true).unwrap();
    eve.owns(&fake);
    let err = Client::new(&fake, Some(token.clone())).unwrap().whoami().await.unwrap_err();
    assert_eq!(err.code(), "untrusted_socket");
    assert!(err.to_string().contains(&format!("the socket belongs to {}", eve.name)), "{err}");
    let out = Command::new(BIN).arg("whoami").env("ZSA_SOCKET", &fake).env("ZSA_TOKEN", &token).output().unwrap();
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("refusing to send your token"), "{}", stderr(&out));
    assert_eq!(listener.accept().map(|_| ()).unwrap_err().kind(), std::io::ErrorKind::WouldBlock, "nobody even connected");
}

#[tokio::test]
async fn a_policy_file_others_can_write_is_never_loaded() {
    let place = Place::new();
    std::fs::set_permissions(&place.policy, std::fs::Permissions::from_mode(0o666)).unwrap();
    let err = place.refused(&place.path("state"), &place.policy, &place.path("zsa.sock"));
    assert!(err.contains("refusing the policy file") && err.contains("every local account can write to it"), "{err}");
    assert!(err.contains("chmod go-w"), "it says what to do: {err}");
    let out = Command::new(BIN).args(["policy", "check"]).arg(&place.policy).output().unwrap();
    assert_eq!(code(&out), 0, "the text is valid: {}", stderr(&out));
    assert!(stderr(&out).contains("warning: a daemon run as you would not load this file"), "{}", stderr(&out));

    // A directory on the way that anyone can write is as bad: the file could be swapped.
    let open = place.path("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::copy(&place.policy, open.join("policy.toml")).unwrap();
    std::fs::set_permissions(open.join("policy.toml"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = place.refused(&place.path("state"), &open.join("policy.toml"), &place.path("zsa.sock"));
    assert!(err.contains("on the way to") && err.contains("the policy file"), "{err}");

    if let Some(eve) = Account::create("a_policy_file_others_can_write_is_never_loaded (another account's file, another group)") {
        let hers = place.path("hers.toml");
        std::fs::copy(&place.policy, &hers).unwrap();
        std::fs::set_permissions(&hers, std::fs::Permissions::from_mode(0o644)).unwrap();
        eve.owns(&hers);
        let err = place.refused(&place.path("state"), &hers, &place.path("zsa.sock"));
        assert!(err.contains(&format!("belongs to {}", eve.name)), "{err}");
        // Writable by a group that is not the owner's own.
        let grouped = place.path("grouped.toml");
        std::fs::copy(&place.policy, &grouped).unwrap();
        std::os::unix::fs::chown(&grouped, None, Some(65534)).unwrap();
        std::fs::set_permissions(&grouped, std::fs::Permissions::from_mode(0o664)).unwrap();
        let err = place.refused(&place.path("state"), &grouped, &place.path("zsa.sock"));
        assert!(err.contains("the group") && err.contains("can write to it"), "{err}");
    }

    // On a reload (zsa admin reload, and SIGHUP) the old policy stays in force.
    let log = place.path("daemon.log");
    std::fs::set_permissions(&place.policy, std::fs::Permissions::from_mode(0o644)).unwrap();
    let socket = place.path("zsa.sock");
    let daemon = Running(
        common::daemon_command(&place.path("state"), &place.policy, &socket)
            .env("ZSA_LOG", "info")
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    common::wait_for_socket(&socket);
    let admin = Client::new(&socket, None).unwrap();
    let tasks = admin.tasks().await.unwrap().len();
    let loads = |events: &[zsa::model::Event]| events.iter().filter(|e| e.change.kind() == "policy_loaded").count();
    let loaded = loads(&admin.audit(&Default::default()).await.unwrap());

    // Her change (a valid policy, one task fewer), written into a file anyone may write.
    let text = std::fs::read_to_string(&place.policy).unwrap();
    let cut = text.rfind("[[tasks]]").unwrap();
    std::fs::write(&place.policy, &text[..cut]).unwrap();
    std::fs::set_permissions(&place.policy, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = Command::new(BIN).args(["admin", "reload"]).env("ZSA_SOCKET", &socket).env_remove("ZSA_TOKEN").output().unwrap();
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("every local account can write to it"), "{}", stderr(&out));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(daemon.0.id() as i32), nix::sys::signal::Signal::SIGHUP).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log).unwrap().contains("SIGHUP: the policy was not reloaded") {
        assert!(Instant::now() < deadline, "the daemon did not log the refused SIGHUP reload");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(std::fs::read_to_string(&log).unwrap().contains("every local account can write to it"));
    assert_eq!(admin.tasks().await.unwrap().len(), tasks, "the old policy is still in force");
    assert_eq!(loads(&admin.audit(&Default::default()).await.unwrap()), loaded, "no load was recorded");
}

#[tokio::test]
async fn the_token_flag_is_hidden_and_deprecated_and_stdin_or_the_environment_carry_it() {
    let mut d = Daemon::start();
    let token = d.token("dave").await;
    let help = Command::new(BIN).arg("--help").output().unwrap();
    assert!(!stdout(&help).contains("--token ") && !stdout(&help).contains("--token <"), "{}", stdout(&help));
    assert!(stdout(&help).contains("--token-stdin") && stdout(&help).contains("ZSA_TOKEN"), "{}", stdout(&help));

    let zsa = || {
        let mut c = Command::new(BIN);
        c.env("ZSA_SOCKET", &d.socket).env_remove("ZSA_TOKEN");
        c
    };
    let out = zsa().args(["--token", &token, "whoami", "--json"]).output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("\"dave\""));
    assert!(stderr(&out).contains("--token is deprecated") && stderr(&out).contains("ZSA_TOKEN"), "{}", stderr(&out));

    let mut child = zsa()
        .args(["--token-stdin", "whoami", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), format!("{token}\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("\"dave\"") && !stderr(&out).contains("deprecated"));

    let out = zsa().args(["whoami", "--json"]).env("ZSA_TOKEN", &token).output().unwrap();
    assert!(stdout(&out).contains("\"dave\"") && !stderr(&out).contains("deprecated"), "{}", stderr(&out));

    let out = zsa().args(["--token-stdin", "whoami"]).stdin(Stdio::null()).output().unwrap();
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("standard input held no token"), "{}", stderr(&out));
}

#[test]
fn a_client_without_a_socket_of_its_own_finds_the_system_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let own = dir.path().join("own/zsa.sock");
    let system = dir.path().join("system.sock");
    assert_eq!(zsa::config::pick_socket(&own, None, &system), Err(NoSocket::Nowhere(own.clone(), system.clone())), "neither: both named");
    let planted = || Some("/tmp/zsa-1001 is not a private directory of yours".to_string());
    assert_eq!(zsa::config::pick_socket(&own, planted(), &system), Err(NoSocket::Untrusted(planted().unwrap())));
    let _system = std::os::unix::net::UnixListener::bind(&system).unwrap();
    assert_eq!(zsa::config::pick_socket(&own, None, &system).unwrap().0, system, "no daemon of its own: the system one");
    // A planted per-user directory does not keep the user from the system daemon (found in review).
    let (picked, warning) = zsa::config::pick_socket(&own, planted(), &system).unwrap();
    assert_eq!(picked, system);
    assert!(warning.unwrap().contains("using the system daemon"));
    std::fs::create_dir(dir.path().join("own")).unwrap();
    let _own = std::os::unix::net::UnixListener::bind(&own).unwrap();
    assert_eq!(zsa::config::pick_socket(&own, None, &system).unwrap().0, own, "its own daemon first");
    assert_eq!(zsa::config::pick_socket(&own, planted(), &system).unwrap().0, system, "but never an untrusted own place");

    // What a user with neither is told, through the real CLI (only where no system daemon runs).
    let Some(eve) = Account::create("a_client_without_a_socket_of_its_own_finds_the_system_daemon (as another user)") else { return };
    if Path::new(zsa::config::SYSTEM_SOCKET).exists() {
        eprintln!("SKIPPED the CLI part: a system daemon runs at {}", zsa::config::SYSTEM_SOCKET);
        return;
    }
    let runtime = tempfile::tempdir().unwrap();
    eve.owns(runtime.path());
    let place = Place::new();
    let out = eve
        .command(&binary_for(&eve, &place))
        .arg("whoami")
        .env("XDG_RUNTIME_DIR", runtime.path())
        .env_remove("ZSA_SOCKET")
        .env_remove("ZSA_TOKEN")
        .output()
        .unwrap();
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let own = runtime.path().join("zsa/zsa.sock");
    assert!(stderr(&out).contains(&format!("{} or {}", own.display(), zsa::config::SYSTEM_SOCKET)), "{}", stderr(&out));
}

/// The zsa binary where `account` can run it: the build's own if she can reach it, else a copy.
fn binary_for(account: &Account, place: &Place) -> PathBuf {
    let reachable = Command::new("runuser").args(["-u", &account.name, "--", "test", "-x", BIN]).status().unwrap().success();
    if reachable {
        return PathBuf::from(BIN);
    }
    let copy = place.path("zsa");
    std::fs::copy(BIN, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    copy
}

#[tokio::test]
async fn a_daemon_run_by_a_user_trusts_her_files_and_roots_directories_but_not_roots_files_in_her_state() {
    let Some(eve) = Account::create("a_daemon_run_by_a_user_trusts_her_files_and_roots_directories_but_not_roots_files_in_her_state")
    else {
        return;
    };
    let place = Place::new(); // root's directory (0755) on the way
    let bin = binary_for(&eve, &place);
    let home = place.path("eve");
    std::fs::create_dir(&home).unwrap();
    eve.owns(&home);
    let policy = home.join("policy.toml");
    std::fs::write(&policy, common::POLICY.replace("{ADMIN}", &eve.name)).unwrap();
    eve.owns(&policy);
    let socket = home.join("zsa.sock");
    let daemon = |state: &Path| {
        let mut c = eve.command(&bin);
        c.args(["daemon", "--state"]).arg(state).arg("--policy").arg(&policy);
        c.arg("--socket").arg(&socket).env("ZSA_LOG", "warn").stdout(Stdio::null());
        c
    };

    // A database root left in her state directory: she could not write it, and she did not make it.
    let state = home.join("state-root-db");
    std::fs::create_dir(&state).unwrap();
    eve.owns(&state);
    std::fs::write(state.join("zsa.db"), b"").unwrap();
    let out = daemon(&state).stderr(Stdio::piped()).output().unwrap();
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("not to {}", eve.name)) && stderr(&out).contains("zsa.db"), "{}", stderr(&out));

    // Her own files under root's directories: it starts, and her state is hers and private.
    let state = home.join("state");
    let _daemon = Running(daemon(&state).spawn().unwrap());
    common::wait_for_socket(&socket);
    let meta = std::fs::metadata(state.join("zsa.db")).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (eve.uid, 0o600));
    assert_eq!(std::fs::metadata(&state).unwrap().mode() & 0o777, 0o700);
    // The daemon is hers; root's client (the test) sends it no token, but may connect as itself.
    let err = Client::new(&socket, Some("zsa_anything".into())).unwrap().whoami().await.unwrap_err();
    assert_eq!(err.code(), "untrusted_socket", "{err}");
    let root = Client::new(&socket, None).unwrap().whoami().await.unwrap();
    assert_eq!(root.user, common::current_user());
}

#[test]
fn a_stopping_daemon_removes_only_the_socket_it_bound() {
    let mut d = Daemon::start();
    // Someone moved its socket away and another listener took the name (say a second daemon an
    // operator started after removing the old socket by hand).
    std::fs::rename(&d.socket, d.dir.path().join("old.sock")).unwrap();
    let _other = std::os::unix::net::UnixListener::bind(&d.socket).unwrap();
    assert!(d.stop().success());
    assert!(std::fs::symlink_metadata(&d.socket).is_ok(), "the other listener's socket is still there");
}

/// Found in review: a POSIX ACL gave another account write access that the mode bits did not
/// show, so she rewrote the policy (and became admin) or swapped the socket for her own and
/// collected a token. An extended ACL now counts as "someone else may write".
#[tokio::test]
async fn an_acl_that_lets_another_account_write_is_not_trusted() {
    if Command::new("setfacl").arg("--version").output().is_err() {
        panic!("setfacl is missing: install Debian's acl package (.ci/run does)");
    }
    let setfacl = |args: &[&str], path: &Path| {
        let out = Command::new("setfacl").args(args).arg(path).output().unwrap();
        assert!(out.status.success(), "setfacl: {}", String::from_utf8_lossy(&out.stderr));
    };
    // The policy file.
    let place = Place::new();
    setfacl(&["-m", "u:nobody:rw"], &place.policy);
    let err = place.refused(&place.path("state"), &place.policy, &place.path("zsa.sock"));
    assert!(err.contains("refusing the policy file") && err.contains("POSIX ACL"), "{err}");
    setfacl(&["-b"], &place.policy);

    // A directory on the way to the policy.
    let shared = place.path("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::copy(&place.policy, shared.join("policy.toml")).unwrap();
    setfacl(&["-m", "u:nobody:rwx"], &shared);
    let err = place.refused(&place.path("state"), &shared.join("policy.toml"), &place.path("zsa.sock"));
    assert!(err.contains("POSIX ACL") && err.contains("on the way to"), "{err}");

    // The directory a client's socket is in: no token goes there.
    let mut d = Daemon::start();
    let token = d.token("dave").await;
    setfacl(&["-m", "u:nobody:rwx"], d.dir.path());
    let err = Client::new(&d.socket, Some(token)).unwrap().whoami().await.unwrap_err();
    assert_eq!(err.code(), "untrusted_socket", "{err}");
    assert!(err.to_string().contains("POSIX ACL") && err.to_string().contains("token was not sent"), "{err}");
    setfacl(&["-b"], d.dir.path());
}
