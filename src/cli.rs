//! The command line: every subcommand and flag, in one place. Parsing only; `commands` acts.
//!
//! Flags live where they mean something: the commands that talk to a running daemon flatten
//! `ClientArgs` (socket, token) and those that print results `OutputArgs` (`--json`); `zsa daemon`
//! has neither. The same flags before the command (`zsa --token-stdin whoami`) still work: `zsa`
//! alone opens the console, which talks to the daemon, and `commands` merges the two places.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::commands::completion;

/// The top-level help's closing section: what each exit code means, for scripts.
const EXIT_CODES: &str = "\
Exit codes:
  0  done (for `check`: access is active now; for `request --wait`: granted)
  1  refused, denied or not allowed (the reason on stderr)
  2  usage error (a bad flag or value, a missing --comment or --reason)
  3  the daemon is unreachable (saying where it looked and how to start one)
  `run` and `gate` exit with their command's own code.

Examples:
  zsa tasks                                   what you may ask for
  zsa request db.restart --for 30m --reason \"deploy\" --wait
  zsa requests --pending                      what waits for your decision
  zsa approve R12 --comment \"ok\"
  zsa audit --follow --json                   the log as it happens, one object a line
  source <(zsa completions bash)              completion of commands, tasks and ids";

#[derive(Parser, Debug)]
#[command(
    name = "zsa",
    version,
    about = "Zero standing access: ask for privileged tasks, approve them, and let grants end by themselves.",
    long_about = "Zero standing access: ask for privileged tasks, approve them, and let grants end by themselves.\n\n\
                  Without a command, zsa opens the console (a terminal UI). Every command that talks to the \
                  daemon takes --socket or --context and a token (ZSA_TOKEN or --token-stdin; zsa login keeps one \
                  in the keyring for a context); those that print results take --json.",
    after_help = EXIT_CODES
)]
pub struct Cli {
    /// The daemon: a Unix socket (PATH or unix:PATH) or https://HOST:PORT; wins over any context
    /// [default: the current context, else /run/zsa/zsa.sock for root, else $XDG_RUNTIME_DIR/zsa/zsa.sock, then /run/zsa/zsa.sock]
    #[arg(long, env = "ZSA_SOCKET", value_name = "ENDPOINT")]
    pub socket: Option<PathBuf>,
    /// Use this context of your config file (as `zsa login` made it) instead of the current one
    /// (or set ZSA_CONTEXT)
    #[arg(long, value_name = "NAME", add = completion::contexts())]
    pub context: Option<String>,
    /// Deprecated and hidden: a token on the command line shows in `ps` to every local user.
    /// `commands::run` warns when it is used, then fills this from ZSA_TOKEN or --token-stdin.
    #[arg(long, hide = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Read a bearer token issued by an admin from standard input (or set ZSA_TOKEN); without one,
    /// the daemon knows you by your Unix account
    #[arg(long)]
    pub token_stdin: bool,
    /// Hidden: `zsa --json CMD` from before --json moved onto the commands that print results.
    #[arg(long, hide = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Option<Cmd>,
}

/// How to reach the daemon: on every command that talks to it.
#[derive(Args, Debug, Clone, Default)]
pub struct ClientArgs {
    /// The daemon: a Unix socket (PATH or unix:PATH) or https://HOST:PORT; wins over any context
    /// [default: the current context, else /run/zsa/zsa.sock for root, else $XDG_RUNTIME_DIR/zsa/zsa.sock, then /run/zsa/zsa.sock]
    #[arg(long, global = true, env = "ZSA_SOCKET", value_name = "ENDPOINT")]
    pub socket: Option<PathBuf>,
    /// Use this context of your config file (as `zsa login` made it) instead of the current one
    /// (or set ZSA_CONTEXT)
    #[arg(long, global = true, value_name = "NAME", add = completion::contexts())]
    pub context: Option<String>,
    /// Deprecated and hidden: a token on the command line shows in `ps` to every local user.
    #[arg(long, global = true, hide = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Read a bearer token issued by an admin from standard input (or set ZSA_TOKEN); without one,
    /// the daemon knows you by your Unix account
    #[arg(long, global = true)]
    pub token_stdin: bool,
    /// Where the token came from (set once it is read, for `zsa whoami`).
    #[arg(skip)]
    pub token_from: Option<&'static str>,
}

/// How to print: on every command that prints results.
#[derive(Args, Debug, Clone, Default)]
pub struct OutputArgs {
    /// Print JSON instead of text: one object per line for listings, one object for a command on
    /// one request; errors as {"error": {"code", "message"}} on stderr
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Run the daemon that holds all state
    #[command(
        after_help = "Examples:\n  zsa daemon --state /var/lib/zsa --policy /etc/zsa/policy.toml\n  zsa daemon --listen 0.0.0.0:8443 --tls-cert /etc/zsa/tls/cert.pem --tls-key /etc/zsa/tls/key.pem\n  zsa daemon --config /etc/zsa/daemon.toml --check-config\n  zsa daemon --rebuild-from-log   # only after it refused to start because a row did not match the log"
    )]
    Daemon(DaemonArgs),
    /// Open the console (the default when no command is given)
    Tui {
        /// Do not ring the terminal bell when a request arrives for you
        #[arg(long)]
        no_bell: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Start a demo daemon with demo people, requests and grants, and open the console on it
    Demo {
        /// Where the demo daemon listens [default: a socket in its temporary directory]
        #[arg(long, env = "ZSA_SOCKET", value_name = "PATH")]
        socket: Option<PathBuf>,
    },
    /// Ask for a task
    #[command(
        after_help = "Examples:\n  zsa request db.restart --for 30m --reason \"deploy 4.2\" --ticket INC-1042\n  zsa request db.restart --wait          # block until approved (exit 0) or denied/lapsed (exit 1)\n  zsa request db.restart --at 2026-11-24T22:00 --for 2h   # approved ahead, starts then\n  zsa request nginx.restart --param unit=nginx.service"
    )]
    Request {
        /// The task to ask for, as `zsa tasks` lists it
        #[arg(value_name = "TASK", add = completion::tasks())]
        task: String,
        /// How long, e.g. 30m, 1h30m, 2h (default: the task's default_duration)
        #[arg(long = "for", value_name = "DURATION")]
        duration: Option<String>,
        /// Start then, not when approved (approved ahead): 2026-11-24T22:00 (your local time),
        /// with an offset (…T22:00+01:00 or …Z), or +3h from the daemon's now
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
        /// Why you need it; the approvers read it (some tasks require one)
        #[arg(long)]
        reason: Option<String>,
        /// A ticket or change number (some tasks require one matching a pattern)
        #[arg(long)]
        ticket: Option<String>,
        /// Fix a parameter of the task's command now, so approvers approve exactly what will run
        #[arg(long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// Wait until the request is decided: exit 0 when granted (printing the grant), 1 when
        /// denied, cancelled or expired
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Run an approved task's command (the daemon runs it; output streams back; exits with its code)
    #[command(after_help = "Example:\n  zsa run nginx.restart --param unit=nginx.service")]
    Run {
        /// The task whose command to run; you must hold an active grant for it
        #[arg(value_name = "TASK", add = completion::tasks())]
        task: String,
        /// A value for a parameter of the task's command (as fixed at request time, if it was)
        #[arg(long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// List requests: pending ones you made or may act on (default), or all
    #[command(
        after_help = "Examples:\n  zsa requests             # pending requests you made or may act on\n  zsa requests --pending   # only those waiting for your decision\n  zsa requests --all --json | jq -r .id"
    )]
    Requests {
        /// Only pending requests waiting for your decision: ones the daemon would let you approve
        /// now (a task you approve, not your own, not approved by you yet)
        #[arg(long, conflicts_with = "all")]
        pending: bool,
        /// Every request you may see, in every state (the history)
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Show one request (R12) or grant (G12)
    Show {
        /// A request (R12) or grant (G12) id
        #[arg(value_name = "ID", add = completion::request_and_grant_ids())]
        id: String,
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Approve a pending request
    #[command(after_help = "Example:\n  zsa approve R12 --comment \"ok for the deploy\"")]
    Approve {
        /// The pending request's id (R12)
        #[arg(value_name = "ID", add = completion::request_ids())]
        id: String,
        /// A note for the requester and the audit log
        #[arg(long)]
        comment: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Deny a pending request (a comment saying why is required)
    #[command(after_help = "Example:\n  zsa deny R12 --comment \"not during the freeze\"")]
    Deny {
        /// The pending request's id (R12)
        #[arg(value_name = "ID", add = completion::request_ids())]
        id: String,
        /// Required: why, for the requester (without it: usage error, exit 2)
        #[arg(long)]
        comment: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Cancel your own pending request
    Cancel {
        /// Your pending request's id (R12)
        #[arg(value_name = "ID", add = completion::request_ids())]
        id: String,
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// List active grants you hold or approve for, or all grants
    #[command(
        after_help = "Examples:\n  zsa grants            # active grants with the time left\n  zsa grants --watch    # redraw on every change\n  zsa grants --all --json"
    )]
    Grants {
        /// Every grant you may see, ended ones too (the history)
        #[arg(long)]
        all: bool,
        /// Keep going: print the list again on every change (redrawn in place on a terminal)
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// End someone's grant now (approvers of the task and admins)
    #[command(after_help = "Example:\n  zsa revoke G12 --reason \"work is done\"")]
    Revoke {
        /// The active grant's id (G12)
        #[arg(value_name = "ID", add = completion::grant_ids())]
        id: String,
        /// Required: why, for the holder and the audit log (without it: usage error, exit 2)
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Give up your own grant before it ends
    Relinquish {
        /// Your active grant's id (G12)
        #[arg(value_name = "ID", add = completion::grant_ids())]
        id: String,
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Ask for your live grant to run longer (as the task's `extend` allows: at once, or once
    /// approvers say yes; never past its `max_total`)
    #[command(after_help = "Example:\n  zsa extend G12 --by 30m --reason \"migration still running\"")]
    Extend {
        /// Your active grant's id (G12)
        #[arg(value_name = "ID", add = completion::grant_ids())]
        id: String,
        /// How much longer, e.g. 30m, 1h
        #[arg(long, value_name = "DURATION")]
        by: String,
        /// Why; the approvers read it (some tasks require one)
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Review a break-glass grant after the fact
    Review {
        /// The break-glass grant's id (G12)
        #[arg(value_name = "ID", add = completion::grant_ids())]
        id: String,
        /// What the review found, for the audit log
        #[arg(long)]
        comment: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Exit 0 if the user (default: you) holds an active grant for the task now, else 1
    #[command(after_help = "Example:\n  zsa check db.restart && ./deploy.sh")]
    Check {
        /// The task to check
        #[arg(value_name = "TASK", add = completion::tasks())]
        task: String,
        /// Ask about this user instead of yourself (approvers of the task, auditors and admins)
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Run a command of your own while you hold an active grant for the task; stop it when the grant ends
    #[command(after_help = "Example:\n  zsa gate db.restart -- psql -h db1   # psql is stopped when the grant ends")]
    Gate {
        /// The task whose grant the command needs
        #[arg(value_name = "TASK", add = completion::tasks())]
        task: String,
        /// The command and its arguments, after `--`
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Log in to a daemon: trust its certificate, keep a token in the keyring, make a context of it
    #[command(after_help = LOGIN_HELP)]
    Login(LoginArgs),
    /// Forget a context's token (from the keyring or its file); the context stays
    #[command(after_help = "Examples:\n  zsa logout\n  zsa logout --context prod")]
    Logout {
        /// The context whose token to forget [default: ZSA_CONTEXT, else the current context]
        #[arg(long, value_name = "NAME", add = completion::contexts())]
        context: Option<String>,
    },
    /// The contexts of your config file: which daemon, which certificate, where the token is
    #[command(after_help = "Examples:\n  zsa context list\n  zsa context use prod\n  zsa context show")]
    Context {
        #[command(subcommand)]
        command: ContextCmd,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Whether the daemon can do its job now (its store answers, deadlines are kept): exit 0 if
    /// ready, 1 if not, naming what is wrong. Anyone may ask, with no token
    #[command(after_help = "Examples:\n  zsa ready && echo up\n  zsa ready --socket https://zsa.example.org:8443 --json")]
    Ready {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Who the daemon thinks you are, and your roles
    Whoami {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// The tasks you may ask for, with their policy and approvers
    Tasks {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Read, follow or verify the audit log
    #[command(
        after_help = "Examples:\n  zsa audit --since 7d --user carol\n  zsa audit --csv > audit.csv\n  zsa audit --follow --json            # new events as they happen\n  zsa audit --follow --after 1200      # everything after event 1200, then new ones\n  zsa audit verify"
    )]
    Audit(AuditArgs),
    /// The notices the daemon sent or is sending (admins and auditors)
    #[command(after_help = "Examples:\n  zsa notices --failed\n  zsa admin notices retry 12   # try a failed one again")]
    Notices {
        /// Only the notices that failed for good
        #[arg(long)]
        failed: bool,
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Administration: tokens, users, notices, policy reload
    Admin {
        #[command(subcommand)]
        command: AdminCmd,
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Policy files
    Policy {
        #[command(subcommand)]
        command: PolicyCmd,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// The daemon's store, directly (no daemon): move it to another backend
    Store {
        #[command(subcommand)]
        command: StoreCmd,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Print a shell completion script (commands, flags, and task names and ids from the daemon)
    #[command(
        after_help = "Load it now, or add the line to your shell's start-up file:\n  bash: source <(zsa completions bash)\n  zsh:  source <(zsa completions zsh)\n  fish: zsa completions fish | source"
    )]
    Completions {
        /// The shell to complete for
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the manual page (roff), e.g. `zsa man | man -l -`
    Man,
}

/// `zsa login`'s closing help: how a certificate is trusted and where the token goes.
const LOGIN_HELP: &str = "\
The token is read from a prompt that does not echo it, or from standard input with --token-stdin,
never from the command line. zsa connects and asks the daemon who you are before it keeps anything.

A remote daemon's certificate is pinned on first use, as ssh does: zsa shows its SHA-256
fingerprint and asks whether to trust it (compare it with what `zsa admin tls init` printed on the
daemon's host). Later connections accept only that certificate; a changed one is refused until you
log in again. --fingerprint gives the fingerprint without asking (for scripts); --ca trusts a
private CA's certificates instead, and --system-roots the system's roots (both check the host
name, and survive the certificate's renewal).

The token goes to the OS keyring (on Linux the kernel keyring: no desktop needed; it forgets at a
reboot). --store file keeps it in a 0600 file instead, in plain text: only where there is no keyring.
The context (endpoint, certificate, user, where the token is; never the token) goes to
$XDG_CONFIG_HOME/zsa/config.toml and becomes the current one.

Examples:
  zsa login https://zsa.example.com:8443
  zsa login https://zsa.example.com:8443 --context prod --fingerprint SHA256:AB:CD:...
  zsa admin token issue alice | ssh laptop zsa login https://zsa.example.com:8443 --token-stdin";

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// The daemon: https://HOST:PORT (or unix:PATH for a token over a local socket)
    #[arg(value_name = "ENDPOINT")]
    pub endpoint: String,
    /// The context's name [default: the daemon's host name, or "local" for a socket]
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// Read the token from standard input instead of asking for it
    #[arg(long)]
    pub token_stdin: bool,
    /// Where to keep the token: the OS keyring, or a 0600 file in plain text (only without a keyring)
    #[arg(long, value_enum, default_value = "keyring")]
    pub store: StoreChoice,
    /// Trust the certificate with this fingerprint without asking (SHA256:AB:CD:..., as zsa prints it)
    #[arg(long, value_name = "SHA256:...", conflicts_with_all = ["ca", "system_roots"])]
    pub fingerprint: Option<String>,
    /// Trust certificates a private CA in this PEM file issued for the host's name
    #[arg(long, value_name = "FILE", conflicts_with = "system_roots")]
    pub ca: Option<PathBuf>,
    /// Trust certificates the system's roots vouch for, for the host's name
    #[arg(long)]
    pub system_roots: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StoreChoice {
    Keyring,
    File,
}

#[derive(Subcommand, Debug)]
pub enum ContextCmd {
    /// Every context, the current one marked with *
    List,
    /// Make a context the current one
    Use {
        /// The context's name, as `zsa context list` shows it
        #[arg(value_name = "NAME", add = completion::contexts())]
        name: String,
    },
    /// The context in force (or the one named): which daemon, which certificate, where the token is
    Show {
        /// A context's name [default: the one in force]
        #[arg(value_name = "NAME", add = completion::contexts())]
        name: Option<String>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// How the daemon writes its log lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One line a person reads
    #[default]
    Text,
    /// One JSON object per line, with the request's span, for log shippers
    Json,
}

#[derive(Args, Debug)]
pub struct DaemonArgs {
    /// Serve /metrics without authentication on this loopback address (127.0.0.1:9464), for a
    /// Prometheus on this host; elsewhere scrape /metrics over TLS with a token
    #[arg(long, env = "ZSA_METRICS_LISTEN", value_name = "ADDR:PORT", value_parser = crate::daemon::config_file::parse_address)]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// How log lines are written: text, or one JSON object per line for log shippers (ZSA_LOG sets the level)
    #[arg(long, env = "ZSA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, value_name = "FORMAT")]
    pub log_format: LogFormat,
    /// State directory [default: /var/lib/zsa for root, else $XDG_STATE_HOME/zsa]
    #[arg(long, env = "ZSA_STATE", value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// Policy file [default: /etc/zsa/policy.toml for root, else $XDG_CONFIG_HOME/zsa/policy.toml]
    #[arg(long, env = "ZSA_POLICY", value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// The socket to listen on [default: /run/zsa/zsa.sock for root; else $XDG_RUNTIME_DIR/zsa/zsa.sock]
    #[arg(long, env = "ZSA_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Rebuild the current-state tables from the hash-chained log before serving (after the
    /// daemon refused to start because a row did not match the log); the rebuild is recorded
    #[arg(long)]
    pub rebuild_from_log: bool,
    /// Where the state is kept: sqlite:PATH (one file) or postgres://USER@HOST:PORT/DATABASE
    /// (several daemons may share it) [default: sqlite:STATE/zsa.db]
    /// (read as text and checked by zsa, so a refusal never repeats a password in it)
    #[arg(long, env = "ZSA_STORE", hide_env_values = true, value_name = "URL")]
    pub store: Option<String>,
    /// Where signed checkpoints of the audit log are appended, outside the database (keep it
    /// where a database administrator cannot write: another disk, an append-only file)
    /// [default: STATE/checkpoints]
    #[arg(long, value_name = "FILE")]
    pub checkpoint_file: Option<PathBuf>,
    /// The daemon's config file; flags win over it [default: /etc/zsa/daemon.toml for root, else
    /// $XDG_CONFIG_HOME/zsa/daemon.toml; read only if it is there]
    #[arg(long, env = "ZSA_DAEMON_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Check the config file and flags (paths, the policy, TLS certificates and keys) without
    /// starting; exit 0 if the daemon would start with them, 1 with each problem
    #[arg(long)]
    pub check_config: bool,
    /// Also listen on this TCP address with TLS (IP:PORT, repeatable; replaces the config file's
    /// listeners); needs --tls-cert and --tls-key: there is no plain HTTP over TCP
    #[arg(long = "listen", value_name = "ADDR:PORT", value_parser = crate::daemon::config_file::parse_address)]
    pub listen: Vec<std::net::SocketAddr>,
    /// The TLS certificate (PEM, leaf first) the TCP listeners serve (zsa admin tls init makes one)
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM); it must be yours and readable by nobody else (chmod 600)
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Connections everyone but root and the daemon's account may hold together [default: sized from the open-file limit, at most 4064]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::daemon::config_file::MAX_LIMIT)))]
    pub max_connections: Option<u32>,
    /// Connections one Unix account may hold at once [default: 64]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::daemon::config_file::MAX_LIMIT)))]
    pub max_connections_per_account: Option<u32>,
    /// Connections one network address (an IPv6 /64) may hold at once on the TCP listeners [default: 64]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::daemon::config_file::MAX_LIMIT)))]
    pub max_connections_per_peer: Option<u32>,
    /// How long a request head (and a TLS handshake) may take to arrive [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = crate::daemon::config_file::parse_timeout)]
    pub header_timeout: Option<std::time::Duration>,
    /// Close a connection on which nothing moves for this long while nothing is being answered [default: 30s]
    #[arg(long, value_name = "DURATION", value_parser = crate::daemon::config_file::parse_timeout)]
    pub idle_timeout: Option<std::time::Duration>,
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: Option<AuditCmd>,
    /// From this time: RFC 3339, a date (2026-11-01), or a duration ago (7d)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Before this time (same forms as --since)
    #[arg(long, value_name = "TIME", conflicts_with = "follow")]
    pub until: Option<String>,
    /// Events by or about this user (as actor or subject)
    #[arg(long)]
    pub user: Option<String>,
    /// Events about this task
    #[arg(long, add = completion::tasks())]
    pub task: Option<String>,
    /// Print CSV
    #[arg(long, conflicts_with = "json")]
    pub csv: bool,
    /// Keep going: print new events as they happen (resuming after the last one seen if the daemon restarts)
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only events after this sequence number (the SEQ column; an event's "seq" in JSON)
    #[arg(long, value_name = "SEQ")]
    pub after: Option<u64>,
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Recompute the hash chain, check current state against it and the log against the signed
    /// checkpoints outside the database; exit 1 naming the first bad event. With --offline, check
    /// an export (`zsa audit export --signed`) with no daemon and no database
    #[command(
        after_help = "Examples:\n  zsa audit verify\n  zsa audit verify --offline log.zsa --key ed25519:... --checkpoints /var/log/zsa/checkpoints"
    )]
    Verify {
        /// An export to check, instead of the daemon's log
        #[arg(long, value_name = "FILE", requires = "key")]
        offline: Option<PathBuf>,
        /// The audit key to check its checkpoints with, as `zsa audit key` printed it; once for
        /// each daemon sharing the store (the first is the one whose --checkpoints file is given)
        #[arg(long, value_name = "ed25519:HEX", requires = "offline")]
        key: Vec<String>,
        /// The checkpoint file kept outside the database: the export must hold every event it
        /// signed, as signed, and not end before the newest
        #[arg(long, value_name = "FILE", requires = "offline")]
        checkpoints: Option<PathBuf>,
        /// Accept events after the export's last checkpoint (chained, but signed by nobody)
        #[arg(long, requires = "offline")]
        allow_unsigned_tail: bool,
        /// An OpenSSH allowed_signers file (`alice ssh-ed25519 AAAA...`): each approval signed
        /// with an SSH key must be signed with a key it lists for that approver
        #[arg(long, value_name = "FILE", requires = "offline")]
        allowed_signers: Option<PathBuf>,
    },
    /// Write the whole log, exactly as stored, to a file that `zsa audit verify --offline`
    /// checks with no daemon and no database
    Export {
        /// Where to write it (refused if it exists)
        #[arg(long, value_name = "FILE")]
        signed: PathBuf,
    },
    /// Print the daemon's audit key (it signs the checkpoints; keep a copy to verify with)
    Key,
    /// Sign a checkpoint of the log's head now (before a backup, say)
    Checkpoint,
    /// Show what a run printed, and check it against the digest in the audit log
    Transcript {
        /// The run's id (X12), as `zsa run` and the audit log name it
        #[arg(value_name = "RUN")]
        run: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum AdminCmd {
    /// Bearer tokens
    Token {
        #[command(subcommand)]
        command: TokenCmd,
    },
    /// Disable a user: their grants end and their pending requests are cancelled at once
    Disable {
        /// The user name (a Unix account, or the name a token was issued for)
        user: String,
        /// Why, for the audit log
        #[arg(long)]
        reason: Option<String>,
    },
    /// Enable a disabled user again
    Enable {
        /// The disabled user's name
        user: String,
    },
    /// Notices that failed
    Notices {
        #[command(subcommand)]
        command: NoticesCmd,
    },
    /// Reload the daemon's policy file (as SIGHUP does)
    Reload,
    /// Copy the daemon's SQLite store, consistent as of one moment, while it runs; the copy is
    /// verified (chain and rows) before this says it is done
    #[command(after_help = "Example:\n  zsa admin backup /var/backups/zsa-$(date +%F).db")]
    Backup {
        /// A new file for the copy (0600; never over an existing file)
        file: PathBuf,
    },
    /// Put a backup in place of the state directory's store, with the daemon stopped: the backup's
    /// chain and rows are verified, and checked against the signed checkpoints, before it is accepted
    #[command(
        after_help = "The store it replaces is kept beside it (zsa.db.before-restore-TIME), as are the checkpoints with --accept-loss.\n\nExample:\n  systemctl stop zsa.socket zsa.service\n  zsa admin restore /var/backups/zsa-2026-12-01.db --state /var/lib/zsa\n  systemctl start zsa.socket zsa.service"
    )]
    Restore {
        /// The backup (as `zsa admin backup` wrote it)
        file: PathBuf,
        /// The daemon's config file, read as `zsa daemon` reads it (state, store, checkpoint_file)
        /// [default: /etc/zsa/daemon.toml for root, else $XDG_CONFIG_HOME/zsa/daemon.toml, if there]
        #[arg(long, env = "ZSA_DAEMON_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
        /// The stopped daemon's state directory [default: the config file's, else /var/lib/zsa for root, else $XDG_STATE_HOME/zsa]
        #[arg(long, env = "ZSA_STATE", value_name = "DIR")]
        state: Option<PathBuf>,
        /// The daemon's store, if not STATE/zsa.db: sqlite:PATH (a PostgreSQL store is restored with its own tools)
        #[arg(long, env = "ZSA_STORE", hide_env_values = true, value_name = "URL")]
        store: Option<String>,
        /// Where the daemon appends its signed checkpoints [default: STATE/checkpoints]
        #[arg(long, value_name = "FILE")]
        checkpoint_file: Option<PathBuf>,
        /// Accept losing the events signed checkpoints vouch for that the backup does not hold
        /// (the checkpoint file is moved aside, kept as evidence, and a new one begins)
        #[arg(long)]
        accept_loss: bool,
    },
    /// TLS for the daemon's TCP listeners (local: no daemon is asked)
    Tls {
        #[command(subcommand)]
        command: TlsCmd,
    },
}

#[derive(Subcommand, Debug)]
pub enum TlsCmd {
    /// Make a self-signed certificate and key for a first run and print its SHA-256 fingerprint
    #[command(
        after_help = "Writes DIR/cert.pem and DIR/key.pem (0600), never over an existing file.\nClients pin the printed fingerprint on first use; compare it with what `zsa login` shows.\n\nExample:\n  zsa admin tls init --dir /etc/zsa/tls --name zsa.example.com --name 10.0.0.5"
    )]
    Init {
        /// Where to write cert.pem and key.pem (created 0700 if absent)
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// A DNS name or IP address clients reach the daemon by (repeatable) [default: this host's name, localhost, 127.0.0.1, ::1]
        #[arg(long = "name", value_name = "HOST")]
        names: Vec<String>,
        /// How long the certificate is valid
        #[arg(long, value_name = "DURATION", default_value = "825d")]
        valid_for: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum NoticesCmd {
    /// Put a failed notice back to be delivered again, now
    Retry {
        /// The notice's id, as `zsa notices --failed` shows it
        id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Issue a token for a user; it is shown once
    #[command(
        after_help = "Examples:\n  zsa admin token issue alice                        # lives the policy's token_ttl (90d unless set)\n  zsa admin token issue alice --ttl 30d\n  zsa admin token issue gate-web1 --scope check      # may only ask `zsa check` (and whoami)\n  zsa admin token issue alice --ttl never            # only where token_max_ttl = \"never\""
    )]
    Issue {
        /// Whom the token acts as
        user: String,
        /// How long it lives (30d, 12h, ...), at most the policy's token_max_ttl; `never` only
        /// where token_max_ttl = "never". Default: the policy's token_ttl
        #[arg(long, value_name = "DURATION|never")]
        ttl: Option<String>,
        /// What it may do: `all` (everything its user may), or `check` (only `zsa check` and `zsa whoami`)
        #[arg(long, default_value = "all", value_parser = crate::model::TokenScope::NAMES)]
        scope: String,
    },
    /// List tokens (never their secrets): scope, expiry, when each was last used
    List,
    /// Revoke a token
    Revoke {
        /// The token's id (T3), as `zsa admin token list` shows it
        id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum StoreCmd {
    /// Copy the whole log, the current state and the outbox from one store to an empty one,
    /// chain intact, and verify the copy (stop the daemon first; the source is only read)
    #[command(
        after_help = "Example:\n  zsa store copy --from sqlite:/var/lib/zsa/zsa.db --to postgres://zsa@%2Frun%2Fpostgresql/zsa\n\nThen start the daemon with --store (or store = in its config file) naming the new one."
    )]
    Copy {
        /// The store to copy: sqlite:PATH or postgres://...
        #[arg(long, value_name = "URL")]
        from: String,
        /// An empty store to copy into: sqlite:PATH (a new file) or postgres://... (an empty database)
        #[arg(long, value_name = "URL")]
        to: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum PolicyCmd {
    /// Validate a policy file; exit 1 with file:line messages if it is wrong
    Check {
        /// The policy file to check
        file: PathBuf,
    },
}

impl Cmd {
    /// The daemon connection flags given after the command, if it talks to a daemon.
    pub fn client_args(&self) -> Option<&ClientArgs> {
        match self {
            Cmd::Tui { client, .. }
            | Cmd::Request { client, .. }
            | Cmd::Run { client, .. }
            | Cmd::Requests { client, .. }
            | Cmd::Show { client, .. }
            | Cmd::Approve { client, .. }
            | Cmd::Deny { client, .. }
            | Cmd::Cancel { client, .. }
            | Cmd::Grants { client, .. }
            | Cmd::Revoke { client, .. }
            | Cmd::Relinquish { client, .. }
            | Cmd::Extend { client, .. }
            | Cmd::Review { client, .. }
            | Cmd::Check { client, .. }
            | Cmd::Gate { client, .. }
            | Cmd::Whoami { client, .. }
            | Cmd::Ready { client, .. }
            | Cmd::Tasks { client, .. }
            | Cmd::Admin { client, .. }
            | Cmd::Notices { client, .. }
            | Cmd::Audit(AuditArgs { client, .. }) => Some(client),
            Cmd::Daemon(_)
            | Cmd::Demo { .. }
            | Cmd::Policy { .. }
            | Cmd::Store { .. }
            | Cmd::Completions { .. }
            | Cmd::Man
            | Cmd::Login(_)
            | Cmd::Logout { .. }
            | Cmd::Context { .. } => None,
        }
    }

    /// Whether `--json` was given after the command.
    pub fn json(&self) -> bool {
        match self {
            Cmd::Request { output, .. }
            | Cmd::Run { output, .. }
            | Cmd::Requests { output, .. }
            | Cmd::Show { output, .. }
            | Cmd::Approve { output, .. }
            | Cmd::Deny { output, .. }
            | Cmd::Cancel { output, .. }
            | Cmd::Grants { output, .. }
            | Cmd::Revoke { output, .. }
            | Cmd::Relinquish { output, .. }
            | Cmd::Extend { output, .. }
            | Cmd::Review { output, .. }
            | Cmd::Check { output, .. }
            | Cmd::Whoami { output, .. }
            | Cmd::Ready { output, .. }
            | Cmd::Tasks { output, .. }
            | Cmd::Admin { output, .. }
            | Cmd::Notices { output, .. }
            | Cmd::Policy { output, .. }
            | Cmd::Store { output, .. }
            | Cmd::Context { output, .. }
            | Cmd::Audit(AuditArgs { output, .. }) => output.json,
            _ => false,
        }
    }
}

impl Cli {
    /// The connection flags in force: those after the command win over those before it.
    pub fn client_args(&self) -> ClientArgs {
        let after = self.command.as_ref().and_then(Cmd::client_args).cloned().unwrap_or_default();
        ClientArgs {
            socket: after.socket.or_else(|| self.socket.clone()),
            context: after.context.or_else(|| self.context.clone()),
            token: after.token.or_else(|| self.token.clone()),
            token_stdin: after.token_stdin || self.token_stdin,
            token_from: None,
        }
    }

    /// `--json` before or after the command.
    pub fn json(&self) -> bool {
        self.json || self.command.as_ref().is_some_and(Cmd::json)
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// Every argument of every command says what it is for in `--help`: a flag or positional
    /// without a description fails here, naming it.
    #[test]
    fn every_argument_of_every_command_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && !arg.is_hide_set() && arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    missing.push(format!("{path} {} (the command itself)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "zsa", &mut missing);
        assert!(missing.is_empty(), "arguments without help text: {missing:#?}");
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    fn long_names(cmd: &clap::Command) -> Vec<String> {
        cmd.get_arguments().filter(|a| !a.is_hide_set()).filter_map(|a| a.get_long().map(str::to_string)).collect()
    }

    /// Client flags appear where a daemon is talked to, and `--json` where results are printed.
    #[test]
    fn flags_appear_only_where_they_mean_something() {
        let mut zsa = Cli::command();
        zsa.build();
        let daemon = long_names(zsa.find_subcommand("daemon").unwrap());
        assert!(!daemon.contains(&"json".into()) && !daemon.contains(&"token-stdin".into()), "{daemon:?}");
        let policy = zsa.find_subcommand("policy").unwrap().find_subcommand("check").unwrap();
        assert!(!long_names(policy).contains(&"socket".into()) && long_names(policy).contains(&"json".into()));
        let gate = long_names(zsa.find_subcommand("gate").unwrap());
        assert!(gate.contains(&"token-stdin".into()) && !gate.contains(&"json".into()), "{gate:?}");
        let list = zsa.find_subcommand("admin").unwrap().find_subcommand("token").unwrap().find_subcommand("list").unwrap();
        assert!(long_names(list).contains(&"json".into()) && long_names(list).contains(&"socket".into()));
    }

    #[test]
    fn flags_before_and_after_the_command_both_count() {
        let cli = Cli::try_parse_from(["zsa", "--token-stdin", "whoami", "--json"]).unwrap();
        assert!(cli.client_args().token_stdin && cli.json());
        let cli = Cli::try_parse_from(["zsa", "--socket", "/a", "grants", "--socket", "/b"]).unwrap();
        assert_eq!(cli.client_args().socket, Some(PathBuf::from("/b")));
        let cli = Cli::try_parse_from(["zsa", "admin", "token", "list", "--json", "--socket", "/c"]).unwrap();
        assert!(cli.json());
        assert_eq!(cli.client_args().socket, Some(PathBuf::from("/c")));
    }
}
