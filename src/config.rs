//! Where things live by default. Root gets system paths (/run, /var/lib, /etc); everyone else
//! gets their XDG runtime, state and config directories. Flags and ZSA_* variables override.

use std::path::PathBuf;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn env_dir(var: &str) -> Option<PathBuf> {
    std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from)
}

fn home() -> PathBuf {
    env_dir("HOME").unwrap_or_else(|| PathBuf::from("/"))
}

pub fn default_socket() -> PathBuf {
    if is_root() {
        return PathBuf::from("/run/zsa/zsa.sock");
    }
    match env_dir("XDG_RUNTIME_DIR") {
        Some(dir) => dir.join("zsa/zsa.sock"),
        None => std::env::temp_dir().join(format!("zsa-{}/zsa.sock", nix::unistd::geteuid())),
    }
}

pub fn default_state_dir() -> PathBuf {
    if is_root() {
        return PathBuf::from("/var/lib/zsa");
    }
    env_dir("XDG_STATE_HOME").unwrap_or_else(|| home().join(".local/state")).join("zsa")
}

pub fn default_policy() -> PathBuf {
    if is_root() {
        return PathBuf::from("/etc/zsa/policy.toml");
    }
    env_dir("XDG_CONFIG_HOME").unwrap_or_else(|| home().join(".config")).join("zsa/policy.toml")
}
