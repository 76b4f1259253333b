//! The command line: every subcommand and flag, in one place. Parsing only; `commands` acts.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "zsa", version, about = "Zero standing access: ask for privileged tasks, approve them, and let grants end by themselves.")]
pub struct Cli {
    /// The daemon's socket [default: /run/zsa/zsa.sock for root; else $XDG_RUNTIME_DIR/zsa/zsa.sock, then /run/zsa/zsa.sock]
    #[arg(long, global = true, env = "ZSA_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Deprecated and hidden: a token on the command line shows in `ps` to every local user.
    /// `commands::run` warns when it is used, then fills this from ZSA_TOKEN or --token-stdin.
    #[arg(long, global = true, hide = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Read a bearer token issued by an admin from standard input (or set ZSA_TOKEN); without one,
    /// the daemon knows you by your Unix account
    #[arg(long, global = true)]
    pub token_stdin: bool,
    /// Print JSON (one object per line) instead of text
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Run the daemon that holds all state
    Daemon(DaemonArgs),
    /// Open the console (the default when no command is given)
    Tui {
        /// Do not ring the terminal bell when a request arrives for you
        #[arg(long)]
        no_bell: bool,
    },
    /// Start a demo daemon with demo people, requests and grants, and open the console on it
    Demo,
    /// Ask for a task
    Request {
        task: String,
        /// How long, e.g. 30m, 1h30m (default: the task's default_duration)
        #[arg(long = "for", value_name = "DURATION")]
        duration: Option<String>,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        ticket: Option<String>,
        /// Fix a parameter of the task's command now, so approvers approve exactly what will run
        #[arg(long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
    },
    /// Run an approved task's command (the daemon runs it; output streams back; exits with its code)
    Run {
        task: String,
        #[arg(long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
    },
    /// List requests: pending ones you made or may act on (default), or all
    Requests {
        #[arg(long, conflicts_with = "all")]
        pending: bool,
        #[arg(long)]
        all: bool,
    },
    /// Show one request (R12) or grant (G12)
    Show { id: String },
    /// Approve a pending request
    Approve {
        id: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Deny a pending request (a comment saying why is required)
    Deny {
        id: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Cancel your own pending request
    Cancel { id: String },
    /// List active grants you hold or approve for, or all grants
    Grants {
        #[arg(long)]
        all: bool,
    },
    /// End someone's grant now (approvers of the task and admins)
    Revoke {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Give up your own grant before it ends
    Relinquish { id: String },
    /// Review a break-glass grant after the fact
    Review {
        id: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Exit 0 if the user (default: you) holds an active grant for the task now, else 1
    Check {
        task: String,
        #[arg(long)]
        user: Option<String>,
    },
    /// Run a command of your own while you hold an active grant for the task; stop it when the grant ends
    Gate {
        task: String,
        /// The command and its arguments, after `--`
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Who the daemon thinks you are, and your roles
    Whoami,
    /// The tasks you may ask for, with their policy and approvers
    Tasks,
    /// Read (or verify) the audit log
    Audit(AuditArgs),
    /// Administration: tokens, users, policy reload
    Admin {
        #[command(subcommand)]
        command: AdminCmd,
    },
    /// Policy files
    Policy {
        #[command(subcommand)]
        command: PolicyCmd,
    },
}

#[derive(Args, Debug)]
pub struct DaemonArgs {
    /// State directory [default: /var/lib/zsa for root, else $XDG_STATE_HOME/zsa]
    #[arg(long, env = "ZSA_STATE", value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// Policy file [default: /etc/zsa/policy.toml for root, else $XDG_CONFIG_HOME/zsa/policy.toml]
    #[arg(long, env = "ZSA_POLICY", value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Rebuild the current-state tables from the hash-chained log before serving (after the
    /// daemon refused to start because a row did not match the log); the rebuild is recorded
    #[arg(long)]
    pub rebuild_from_log: bool,
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
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Events by or about this user
    #[arg(long)]
    pub user: Option<String>,
    #[arg(long)]
    pub task: Option<String>,
    /// Print CSV
    #[arg(long, conflicts_with = "json")]
    pub csv: bool,
}

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Recompute the hash chain and check current state against it; exit 1 naming the first bad event
    Verify,
    /// Show what a run printed, and check it against the digest in the audit log
    Transcript { run: String },
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
        user: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Enable a disabled user again
    Enable { user: String },
    /// Reload the daemon's policy file (as SIGHUP does)
    Reload,
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Issue a token for a user; it is shown once
    Issue { user: String },
    /// List tokens (never their secrets)
    List,
    /// Revoke a token
    Revoke { id: String },
}

#[derive(Subcommand, Debug)]
pub enum PolicyCmd {
    /// Validate a policy file; exit 1 with file:line messages if it is wrong
    Check { file: PathBuf },
}
