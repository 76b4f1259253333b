//! Which peer uids are accounts on this machine, by name, remembered for a few seconds.
//!
//! The connection and stream caps count each account on its own, but a uid with no account
//! (getpwuid finds nothing: a user namespace's subordinate uids, say) is not a person anyone
//! gave a share to; one unprivileged user may hold thousands of them. So those are all counted
//! together, and that needs an answer to "is this an account?" for every connection. NSS may be
//! slow (LDAP, sssd) and a flood cycles through uids, so answers are cached briefly, and the
//! cache is bounded.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an answer is trusted: long enough that a flood asks NSS once per uid, short enough
/// that a new or removed account is seen soon.
const TTL: Duration = Duration::from_secs(5);
/// The most uids remembered; beyond that, stale answers are forgotten (or all, if none is stale).
const MAX_CACHED: usize = 16_384;

/// uid -> account name (None: no account), and when it was looked up.
#[derive(Default)]
pub struct Accounts {
    cache: Mutex<HashMap<u32, (Option<String>, Instant)>>,
}

impl Accounts {
    /// The name of the account with this uid, or None if there is none (or NSS failed: an
    /// unreadable account is treated like no account, the cautious side). Blocking on a miss.
    pub fn name_of(&self, uid: u32) -> Option<String> {
        if let Some((name, at)) = self.lock().get(&uid)
            && at.elapsed() < TTL
        {
            return name.clone();
        }
        // Asked without the lock held, so one slow lookup does not hold up the others.
        let name = match nix::unistd::User::from_uid(uid.into()) {
            Ok(Some(user)) => Some(user.name),
            _ => None,
        };
        let mut cache = self.lock();
        if cache.len() >= MAX_CACHED {
            cache.retain(|_, (_, at)| at.elapsed() < TTL);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        cache.insert(uid, (name.clone(), Instant::now()));
        name
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, (Option<String>, Instant)>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_an_account_and_an_unassigned_uid_is_not() {
        let a = Accounts::default();
        assert_eq!(a.name_of(0).as_deref(), Some("root"));
        assert_eq!(a.name_of(3_999_999_001), None);
        // Cached answers are the same answers.
        assert_eq!(a.name_of(0).as_deref(), Some("root"));
        assert_eq!(a.name_of(3_999_999_001), None);
    }
}
