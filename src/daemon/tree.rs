//! A run's whole process tree: contained when it starts, found again when it must stop, and
//! stopped all at once, including descendants that left the command's process group (setsid,
//! setpgid, double fork).
//!
//! Two ways, the best available first, and the second is always used too:
//! - **cgroup v2** (where a cgroup2 file system is mounted and the daemon may create a cgroup under
//!   its own): every run gets its own cgroup, which the child joins before it executes the
//!   command. Stopping lists `cgroup.procs` (SIGTERM) and then writes `cgroup.kill` (SIGKILL to
//!   every member at once, even one forking at that moment).
//! - **process group + subreapers + audit session**: the command's first process is made a child
//!   subreaper (so orphans of its tree stay below it while it lives), and the daemon is one too
//!   (so when that process is gone, what is left comes to the daemon). Stopping collects the
//!   first process, its process group, its descendants and the orphans that are this run's, and
//!   signals each one by pidfd after checking its start time.
//!
//! Both, because a process allowed to write to another cgroup's `cgroup.procs` can leave its
//! cgroup (the cgroup alone then lost the whole run), and the second way alone misses what left
//! the group and its ancestors.
//!
//! **Which orphans are whose.** Orphans of every run come to the daemon, so "a child of the
//! daemon" says nothing about which run it came from, and one run's stop must never kill another
//! run's processes. Each run's first process starts a new kernel audit session before it executes
//! the command (it writes `/proc/self/loginuid`; the kernel then gives it a session id unique on
//! this boot, `/proc/PID/sessionid`). Every process it starts inherits that id, and changing it
//! needs CAP_AUDIT_CONTROL, which a command not running as root does not have, so a process with
//! the run's session id is the run's wherever it went (even reparented to init, even after a
//! crash). An environment variable would not do: a command may execute with a new environment
//! and so lose it. Where the kernel has no audit support or the daemon may not set the session
//! (a container without CAP_AUDIT_CONTROL), runs carry no session of their own: an orphan the
//! daemon adopted is then counted as a run's only while that is the only such run going, and
//! otherwise is left alone (it cannot be attributed).
//!
//! `ZSA_RUN_CONTAINMENT=group` in the daemon's environment forces the second way alone (to test
//! it, or where a cgroup manager forbids the first); `ZSA_RUN_SESSIONS=off` gives runs no audit
//! session of their own (to test that case, or where the kernel audit log must not get a login
//! record per run).
//!
//! After a crash the next start stops what a run left running before it records the run as
//! abandoned. Each run's first process is recorded in `TRANSCRIPTS/RUN.process.json` (its pid,
//! which is also its process group, its start time from /proc/PID/stat, the boot id, its audit
//! session and its cgroup): a file, not an event, because it is bookkeeping for this machine and this boot, not a
//! fact for auditors, and it is removed once the run's end is recorded. The start time and boot id
//! mean a pid the kernel gave to some other process since is never signalled.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One process as /proc shows it.
#[derive(Clone, Copy, Debug)]
struct Proc {
    pid: i32,
    ppid: i32,
    pgid: i32,
    /// Field 22 of /proc/PID/stat: when it started, in clock ticks since boot.
    start: u64,
    zombie: bool,
}

/// Reads /proc/PID/stat. The command name (field 2) may hold spaces and parentheses, so the fields
/// are counted from the last ')'.
fn stat(pid: i32) -> Option<Proc> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): field N is f[N - 3].
    Some(Proc {
        pid,
        zombie: f.first()? == &"Z",
        ppid: f.get(1)?.parse().ok()?,
        pgid: f.get(2)?.parse().ok()?,
        start: f.get(19)?.parse().ok()?,
    })
}

fn all_procs() -> Vec<Proc> {
    let Ok(dir) = fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()).filter_map(stat).collect()
}

fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// The audit session of a process (`/proc/PID/sessionid`); None when unset or unreadable.
fn session(pid: i32) -> Option<u32> {
    let id: u32 = fs::read_to_string(format!("/proc/{pid}/sessionid")).ok()?.trim().parse().ok()?;
    (id != u32::MAX).then_some(id)
}

/// The pids of runs' first processes, which the runtime waits for itself, with each run's audit
/// session (None where it could not be given one). Held while spawning, so a scan never takes a
/// run that is just starting for an orphan.
static ROOTS: Mutex<BTreeMap<i32, Option<u32>>> = Mutex::new(BTreeMap::new());

fn roots() -> MutexGuard<'static, BTreeMap<i32, Option<u32>>> {
    ROOTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends `sig` to `pid` only if it is still the process that started at `start`: the pidfd pins
/// the process, and the start time read after opening it tells whether it is the one we mean.
fn signal_exact(pid: i32, start: u64, sig: Signal) {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        if io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) && stat(pid).is_some_and(|p| p.start == start) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
        }
        return;
    }
    // SAFETY: the descriptor was just returned to us and is owned here only.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    if stat(pid).is_some_and(|p| p.start == start) {
        // SAFETY: pidfd_send_signal(pidfd, sig, info = NULL, flags = 0).
        unsafe { libc::syscall(libc::SYS_pidfd_send_signal, fd.as_raw_fd(), sig as i32, std::ptr::null::<libc::siginfo_t>(), 0) };
    }
}

/// Reaps orphans that died as children of the daemon (they are not the runtime's to wait for).
fn reap(procs: &[Proc], roots: &BTreeMap<i32, Option<u32>>) {
    let me = std::process::id() as i32;
    for p in procs.iter().filter(|p| p.zombie && p.ppid == me && !roots.contains_key(&p.pid)) {
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(p.pid), Some(nix::sys::wait::WaitPidFlag::WNOHANG));
    }
}

/// Reaps the daemon's dead orphans now and then (at most once a second, however many runs call
/// it): the daemon is their subreaper, and a zombie holds its pid until it is reaped.
pub fn reap_orphans() {
    static LAST: Mutex<Option<Instant>> = Mutex::new(None);
    {
        let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|l| l.elapsed() < Duration::from_secs(1)) {
            return;
        }
        *last = Some(Instant::now());
    }
    let roots = roots();
    reap(&all_procs(), &roots);
}

/// Where runs' cgroups go: under the daemon's own cgroup in the cgroup2 hierarchy. None when
/// there is none or `ZSA_RUN_CONTAINMENT=group`.
fn cgroup_parent() -> Option<PathBuf> {
    if std::env::var("ZSA_RUN_CONTAINMENT").is_ok_and(|v| v == "group") {
        return None;
    }
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    // id parent dev root mountpoint options [optional...] - fstype source superoptions
    let mount = mountinfo.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let f: Vec<&str> = left.split(' ').collect();
        let point = f.get(4)?;
        (right.split(' ').next() == Some("cgroup2") && f.get(3) == Some(&"/")).then(|| PathBuf::from(point))
    })?;
    let own = fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = own.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = mount.join(path.trim_start_matches('/'));
    dir.join("cgroup.procs").exists().then_some(dir)
}

/// The cgroup name of a run of the daemon whose transcripts live in `runs_dir`: unique per state
/// directory, so daemons on one machine never touch each other's runs.
fn cgroup_name(runs_dir: &Path, run: &str) -> String {
    let hash = hex::encode(Sha256::digest(runs_dir.as_os_str().as_encoded_bytes()));
    format!("zsa-{}-{run}", &hash[..12])
}

fn record_path(runs_dir: &Path, run: &str) -> PathBuf {
    runs_dir.join(format!("{run}.process.json"))
}

/// What the next start needs to stop a run's processes after a crash.
#[derive(Serialize, Deserialize)]
struct Record {
    pid: i32,
    start: u64,
    boot_id: String,
    /// The run's audit session (absent in records from before it was kept).
    #[serde(default)]
    session: Option<u32>,
    cgroup: Option<PathBuf>,
}

/// How a run is contained, chosen before it starts.
pub struct Prepared {
    cgroup: Option<(PathBuf, OwnedFd)>,
}

impl Prepared {
    pub fn in_cgroup(&self) -> bool {
        self.cgroup.is_some()
    }
}

/// The daemon is made a child subreaper (once, on first use), whatever the containment: orphans
/// of a run then come to it rather than to init.
fn daemon_subreaper() {
    static SUBREAPER: Once = Once::new();
    SUBREAPER.call_once(|| {
        if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
            tracing::error!(error = %e, "cannot make the daemon a child subreaper: orphans of a run may escape");
        }
    });
}

/// The fallback alone: the process group, the first process a child subreaper (see `spawn`),
/// the daemon one too, and the run's audit session.
pub fn fallback() -> Prepared {
    static SAID: Once = Once::new();
    SAID.call_once(|| {
        tracing::warn!(
            "runs are contained by process group and subreapers (cgroup v2 is not available to the daemon, or ZSA_RUN_CONTAINMENT=group)"
        );
    });
    daemon_subreaper();
    Prepared { cgroup: None }
}

/// Creates the run's cgroup if cgroups can be used, and otherwise prepares the fallback. Never
/// fails: the fallback is always there.
pub fn prepare(runs_dir: &Path, run: &str) -> Prepared {
    daemon_subreaper();
    let Some(parent) = cgroup_parent() else { return fallback() };
    let dir = parent.join(cgroup_name(runs_dir, run));
    if dir.exists() {
        // Left by an earlier daemon on this state (it was stopped at start-up, see abandon).
        let _ = fs::remove_dir(&dir);
    }
    let opened = fs::create_dir(&dir).and_then(|_| fs::OpenOptions::new().write(true).open(dir.join("cgroup.procs")));
    match opened {
        Ok(f) => Prepared { cgroup: Some((dir, f.into())) },
        Err(e) => {
            static SAID: Once = Once::new();
            SAID.call_once(|| tracing::warn!(cgroup = %dir.display(), error = %e, "cannot create a cgroup for a run"));
            let _ = fs::remove_dir(&dir);
            fallback()
        }
    }
}

/// A run's process tree while it runs.
pub struct Tree {
    /// The first process; also the process group.
    pub pid: i32,
    start: u64,
    /// The run's own audit session, when it could be given one.
    session: Option<u32>,
    cgroup: Option<PathBuf>,
    record: Option<PathBuf>,
}

/// The login uid the run's first process writes to start its own audit session: the daemon's
/// own when it has one (so the audit trail still names who started the daemon), otherwise the
/// account the run runs as. Formatted before the fork, as nothing may be allocated after it.
fn loginuid_text(run_uid: u32) -> ([u8; 16], usize) {
    let own: Option<u32> = fs::read_to_string("/proc/self/loginuid").ok().and_then(|s| s.trim().parse().ok()).filter(|u| *u != u32::MAX);
    let text = own.unwrap_or(run_uid).to_string();
    let mut buf = [0u8; 16];
    buf[..text.len()].copy_from_slice(text.as_bytes());
    (buf, text.len())
}

/// Spawns `cmd` contained as `prepared` says, as the account `switch_to` (uid, gid) if given,
/// and records it for the next start.
pub fn spawn(
    cmd: &mut tokio::process::Command,
    prepared: Prepared,
    switch_to: Option<(u32, u32)>,
    runs_dir: &Path,
    run: &str,
) -> io::Result<(tokio::process::Child, Tree)> {
    let (cgroup, fd) = match prepared.cgroup {
        Some((dir, fd)) => (Some(dir), Some(fd)),
        None => (None, None),
    };
    let raw = fd.as_ref().map(|f| f.as_raw_fd());
    let sessions = !std::env::var("ZSA_RUN_SESSIONS").is_ok_and(|v| v == "off");
    let (loginuid, loginuid_len) = loginuid_text(switch_to.map(|(u, _)| u).unwrap_or_else(|| nix::unistd::geteuid().as_raw()));
    // SAFETY: between fork and exec the hook makes only async-signal-safe system calls (open,
    // write, close, prctl, setgid, setgroups, setuid, close_range) and allocates nothing. The cgroup
    // descriptor, opened by the daemon, authorises the move whoever the child is.
    unsafe {
        cmd.pre_exec(move || {
            // "0" moves the writing process: the child joins before it runs anything.
            if let Some(fd) = raw
                && libc::write(fd, b"0".as_ptr().cast(), 1) != 1
            {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // A new audit session, while still the daemon's account (changing a login uid once
            // set needs CAP_AUDIT_CONTROL). Where it fails the run has no session of its own,
            // which `spawn` notices; that must not stop the run.
            let f = if sessions { libc::open(c"/proc/self/loginuid".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) } else { -1 };
            if f >= 0 {
                libc::write(f, loginuid.as_ptr().cast(), loginuid_len);
                libc::close(f);
            }
            if let Some((uid, gid)) = switch_to
                && (libc::setgid(gid) != 0 || libc::setgroups(0, std::ptr::null()) != 0 || libc::setuid(uid) != 0)
            {
                return Err(io::Error::last_os_error());
            }
            // The command gets standard input, output and error only: whatever else the daemon
            // holds or was started with (without close-on-exec) closes at the exec. (Kernels
            // before 5.11 lack the call; there only the daemon's own close-on-exec applies.)
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC);
            Ok(())
        });
    }
    let own_session = session(std::process::id() as i32);
    let mut roots = roots();
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            if let Some(dir) = &cgroup {
                let _ = fs::remove_dir(dir);
            }
            return Err(e);
        }
    };
    drop(fd);
    let pid = child.id().map(|p| p as i32).unwrap_or(0);
    // The session was set before exec, and spawn returns only after the exec: it is there now.
    let session = session(pid).filter(|s| Some(*s) != own_session);
    if session.is_none() {
        static SAID: Once = Once::new();
        SAID.call_once(|| {
            tracing::warn!(
                "runs cannot be given an audit session of their own (no kernel audit support, or no CAP_AUDIT_CONTROL): an orphan a run leaves is stopped only while no other such run is going"
            )
        });
    }
    roots.insert(pid, session);
    drop(roots);
    let start = stat(pid).map(|p| p.start).unwrap_or(0);
    let record = record_path(runs_dir, run);
    let body = serde_json::to_vec(&Record { pid, start, boot_id: boot_id(), session, cgroup: cgroup.clone() }).unwrap_or_default();
    if let Err(e) = fs::write(&record, body) {
        tracing::error!(path = %record.display(), error = %e, "cannot record a run's processes; after a crash they would not be found");
    }
    Ok((child, Tree { pid, start, session, cgroup, record: Some(record) }))
}

impl Tree {
    /// Every live process of the tree, as (pid, start time): the cgroup's members and (always,
    /// as a process may leave its cgroup) the first process, its group, the processes in the
    /// run's audit session, the daemon's orphans that are this run's, and all their descendants.
    fn members(&self) -> Vec<(i32, u64)> {
        let mut found = BTreeMap::new();
        if let Some(dir) = &self.cgroup {
            let listed = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            for p in listed.lines().filter_map(|l| stat(l.trim().parse().ok()?)).filter(|p| !p.zombie) {
                found.insert(p.pid, p.start);
            }
        }
        let roots = roots();
        let procs = all_procs();
        reap(&procs, &roots);
        let me = std::process::id() as i32;
        let live: Vec<&Proc> = procs.iter().filter(|p| !p.zombie).collect();
        let mut children: BTreeMap<i32, Vec<&Proc>> = BTreeMap::new();
        for p in &live {
            children.entry(p.ppid).or_default().push(p);
        }
        // An orphan the daemon adopted is this run's if it is in the run's session (below). One
        // without a run's session can only be counted as this run's when this run has none and
        // is the only run going without one; otherwise it is nobody's to stop.
        let sessions: BTreeSet<u32> = roots.values().flatten().copied().collect();
        let sole_untagged = roots.get(&self.pid) == Some(&None) && roots.values().filter(|s| s.is_none()).count() == 1;
        // Seeds: the first process (if it is still the one we started), the process group's
        // members (started after it), the run's session, and this run's orphans. A group id is a
        // pid that stays taken while any member lives; if its pid now names a process that
        // started at another time, the number was given out again and that group is someone else's.
        let reused = procs.iter().any(|p| p.pid == self.pid && p.start != self.start);
        let mut todo: Vec<&Proc> = live
            .iter()
            .copied()
            .filter(|p| {
                (p.pid == self.pid && p.start == self.start)
                    || (!reused && p.pgid == self.pid && p.start >= self.start)
                    || (self.session.is_some() && session(p.pid) == self.session)
                    || (sole_untagged
                        && p.ppid == me
                        && !roots.contains_key(&p.pid)
                        && session(p.pid).is_none_or(|s| !sessions.contains(&s)))
            })
            .collect();
        let mut walked = BTreeSet::new();
        while let Some(p) = todo.pop() {
            // Another run's first process and its tree are that run's.
            if p.pid != self.pid && roots.contains_key(&p.pid) {
                continue;
            }
            if walked.insert(p.pid) {
                found.insert(p.pid, p.start);
                todo.extend(children.get(&p.pid).into_iter().flatten().copied());
            }
        }
        found.into_iter().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.members().is_empty()
    }

    /// Asks every process of the tree to end; returns how many there were.
    pub fn terminate(&self) -> usize {
        let members = self.members();
        for (pid, start) in &members {
            signal_exact(*pid, *start, Signal::SIGTERM);
        }
        members.len()
    }

    /// Ends every process of the tree now.
    pub fn kill(&self) {
        if let Some(dir) = &self.cgroup {
            let _ = fs::write(dir.join("cgroup.kill"), "1");
        }
        // Also what left the cgroup.
        for (pid, start) in self.members() {
            signal_exact(pid, start, Signal::SIGKILL);
        }
    }

    /// Waits until the tree is empty, polling, for at most `within`. True if it is.
    pub async fn emptied(&self, within: Duration) -> bool {
        let until = tokio::time::Instant::now() + within;
        loop {
            if self.is_empty() {
                return true;
            }
            if tokio::time::Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The tree is empty: its cgroup goes now, before the end is recorded, so nothing is left
    /// behind whatever happens next.
    pub fn remove_cgroup(&mut self) {
        if let Some(dir) = self.cgroup.take()
            && let Err(e) = fs::remove_dir(&dir)
        {
            tracing::warn!(cgroup = %dir.display(), error = %e, "cannot remove a run's cgroup");
        }
    }

    /// The run's end is recorded: forget it (its record goes).
    pub fn finish(mut self) {
        self.release();
    }

    fn release(&mut self) {
        roots().remove(&self.pid);
        if let Some(dir) = self.cgroup.take() {
            let _ = fs::remove_dir(&dir);
        }
        if let Some(record) = self.record.take() {
            let _ = fs::remove_file(record);
        }
    }
}

/// At start-up, before a run that was going when the daemon died is recorded as abandoned:
/// stops whatever of it still runs (SIGTERM, then SIGKILL after `grace`) and says what it did.
/// Blocking.
pub fn stop_after_crash(runs_dir: &Path, run: &str, grace: Duration) -> String {
    let path = record_path(runs_dir, run);
    let record: Option<Record> = fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let by_name = cgroup_parent().map(|p| p.join(cgroup_name(runs_dir, run))).filter(|d| d.exists());
    let tree = match record {
        Some(r) if r.boot_id != boot_id() => {
            let _ = fs::remove_file(&path);
            return "its processes ended with the machine's last boot".into();
        }
        Some(r) => {
            Tree { pid: r.pid, start: r.start, session: r.session, cgroup: r.cgroup.filter(|d| d.exists()).or(by_name), record: Some(path) }
        }
        None => match by_name {
            Some(dir) => Tree { pid: -1, start: u64::MAX, session: None, cgroup: Some(dir), record: None },
            None => return "no record of its processes (it had not started one)".into(),
        },
    };
    let mut tree = tree;
    let found = tree.members().len();
    let said = if found == 0 {
        "none of its processes was left".to_string()
    } else {
        tree.terminate();
        let until = Instant::now() + grace;
        while !tree.is_empty() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(25));
        }
        let mut tries = 0;
        while !tree.is_empty() && tries < 200 {
            tree.kill();
            std::thread::sleep(Duration::from_millis(25));
            tries += 1;
        }
        if tree.is_empty() {
            format!("stopped {found} process(es) it left running")
        } else {
            format!("could not stop all of the {found} process(es) it left running")
        }
    };
    tree.release();
    said
}

impl Drop for Tree {
    fn drop(&mut self) {
        // A supervisor that ends without `finish` (the runtime is going away) leaves the record,
        // so the next start still finds the processes; only the in-memory registration goes.
        roots().remove(&self.pid);
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;

    use super::*;

    #[test]
    fn stat_reads_fields_after_a_name_with_spaces_and_parentheses() {
        // A program whose name would shift the fields if they were counted from the start.
        let dir = tempfile::tempdir().unwrap();
        let odd = dir.path().join("x) 1 2 (y");
        fs::copy("/bin/sleep", &odd).unwrap();
        let mut child = std::process::Command::new(&odd).arg("30").process_group(0).spawn().unwrap();
        let pid = child.id() as i32;
        let got = stat(pid).expect("its stat");
        let me = stat(std::process::id() as i32).expect("own stat");
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!((got.pid, got.ppid, got.pgid), (pid, std::process::id() as i32, pid));
        assert!(got.start >= me.start && !got.zombie);
    }
}
