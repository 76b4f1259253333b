//! The real `zsa` console in a pseudo-terminal, read through a terminal emulator (vt100): what a
//! person at the keyboard would see and do.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portable_pty::{CommandBuilder, MasterPty, PtySize, native_pty_system};

use super::{BIN, Daemon};

pub struct Console {
    pub screen: Arc<Mutex<vt100::Parser>>,
    pub raw: Arc<Mutex<Vec<u8>>>,
    pub writer: Box<dyn Write + Send>,
    pub child: Box<dyn portable_pty::Child + Send + Sync>,
    master: Arc<Mutex<Box<dyn MasterPty + Send>>>,
}

impl Console {
    pub fn open(d: &Daemon, token: &str) -> Console {
        Self::open_in(d, token, d.dir.path())
    }

    pub fn open_in(d: &Daemon, token: &str, cwd: &std::path::Path) -> Console {
        Self::open_sized(d, token, cwd, 30, 110, &["tui"])
    }

    /// The console (or any `zsa` command given in `args`) in a `rows` x `cols` terminal.
    pub fn open_sized(d: &Daemon, token: &str, cwd: &std::path::Path, rows: u16, cols: u16, args: &[&str]) -> Console {
        Self::open_with_env(d, token, cwd, rows, cols, args, &[])
    }

    /// As `open_sized`, with extra environment. The user's config directory is the daemon's
    /// temporary one unless `env` sets XDG_CONFIG_HOME, so a config file at home changes no test.
    pub fn open_with_env(
        d: &Daemon,
        token: &str,
        cwd: &std::path::Path,
        rows: u16,
        cols: u16,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Console {
        let config = d.dir.path().join("config");
        let socket = d.socket.to_str().unwrap();
        let base = [("ZSA_SOCKET", socket), ("ZSA_TOKEN", token), ("XDG_CONFIG_HOME", config.to_str().unwrap())];
        Self::spawn(cwd, rows, cols, args, &[&base[..], env].concat())
    }

    /// `zsa ARGS` in a `rows` x `cols` terminal with no daemon of the test's (`zsa demo` starts
    /// its own), logging off, with `env` added.
    pub fn spawn(cwd: &std::path::Path, rows: u16, cols: u16, args: &[&str], env: &[(&str, &str)]) -> Console {
        let pair = native_pty_system().openpty(PtySize { rows, cols, pixel_width: 0, pixel_height: 0 }).unwrap();
        let mut cmd = CommandBuilder::new(BIN);
        cmd.args(args);
        cmd.env("TERM", "xterm-256color");
        cmd.env("ZSA_LOG", "off");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.cwd(cwd);
        let child = pair.slave.spawn_command(cmd).unwrap();
        drop(pair.slave);
        let mut reader = pair.master.try_clone_reader().unwrap();
        let writer = pair.master.take_writer().unwrap();
        let screen =
            Arc::new(Mutex::new(vt100::Parser::new(std::num::NonZeroU16::new(rows).unwrap(), std::num::NonZeroU16::new(cols).unwrap(), 0)));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let master = Arc::new(Mutex::new(pair.master));
        let (s, r, m) = (screen.clone(), raw.clone(), master.clone());
        std::thread::spawn(move || {
            let _master = m; // keep the pty open while reading
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                s.lock().unwrap().process(&buf[..n]);
                r.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Console { screen, raw, writer, child, master }
    }

    /// Resizes the terminal as a person dragging the window would: the console gets SIGWINCH.
    pub fn resize(&self, rows: u16, cols: u16) {
        self.master.lock().unwrap().resize(PtySize { rows, cols, pixel_width: 0, pixel_height: 0 }).unwrap();
        let size = |n| std::num::NonZeroU16::new(n).unwrap();
        self.screen.lock().unwrap().set_size(size(rows), size(cols));
    }

    pub fn contents(&self) -> String {
        self.screen.lock().unwrap().screen().contents()
    }

    /// Waits until the screen satisfies `ok`, or fails showing what was there.
    pub fn wait(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.contents();
            if ok(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "the screen never showed {what}:\n{s}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn wait_for(&self, text: &str) -> String {
        self.wait(text, |s| s.contains(text))
    }

    /// Waits until the program has turned the terminal's echo off, as a password prompt does
    /// just after printing its question: keys typed before that moment would be echoed by the
    /// terminal itself, whatever the program does, so a test types a secret only after it.
    pub fn wait_for_echo_off(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let fd = self.master.lock().unwrap().as_raw_fd().expect("a pseudo-terminal has a descriptor");
            // SAFETY: `termios` is plain data, and `fd` stays open while `self.master` lives.
            let mut term: libc::termios = unsafe { std::mem::zeroed() };
            assert_eq!(unsafe { libc::tcgetattr(fd, &mut term) }, 0, "tcgetattr on the pty");
            if term.c_lflag & libc::ECHO == 0 {
                return;
            }
            assert!(Instant::now() < deadline, "echo was never turned off:\n{}", self.contents());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn press(&mut self, keys: &str) {
        self.writer.write_all(keys.as_bytes()).unwrap();
        self.writer.flush().unwrap();
    }

    pub fn quit(mut self) -> Vec<u8> {
        self.press("q");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "the console exits cleanly");
                break;
            }
            assert!(Instant::now() < deadline, "the console did not quit");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(100));
        self.raw.lock().unwrap().clone()
    }
}
