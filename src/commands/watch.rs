//! Commands that keep going on the daemon's event stream: `audit --follow`, `request --wait`,
//! `grants --watch`. They share `Follower`, which survives a daemon restart: it resumes after
//! the last event it saw, and the daemon replays what was missed, so nothing is lost or repeated.

use std::io::IsTerminal;
use std::time::Duration;

use chrono::Utc;

use super::{CliError, CmdResult, grants};
use crate::client::{AuditParams, Client, ClientError, EventStream};
use crate::model::wire::Outcome;
use crate::model::{Event, RequestId, RequestState};

/// How long to wait between attempts to reach a daemon that went away.
const RECONNECT: Duration = Duration::from_secs(1);
/// How often a watched list is redrawn on a terminal, so the time left counts down.
const REDRAW: Duration = Duration::from_secs(1);

/// The event stream, followed across daemon restarts, each event once and in order.
pub struct Follower<'a> {
    client: &'a Client,
    stream: Option<EventStream>,
    /// The last event seen (or the log's end when following began): where a new stream resumes.
    last: u64,
    /// Whether "reconnecting" was said for the current outage.
    said: bool,
    start: u64,
}

impl<'a> Follower<'a> {
    /// Follows from after `after`, or from now. Fails if the daemon cannot be reached at all.
    pub async fn open(client: &'a Client, after: Option<u64>) -> Result<Follower<'a>, ClientError> {
        let last = match after {
            Some(seq) => seq,
            // The log's end as this caller sees it: resuming after it loses nothing written later.
            None => client.audit(&AuditParams { tail: Some(1), ..Default::default() }).await?.last().map_or(0, |e| e.seq),
        };
        let stream = Some(client.events(Some(last)).await?);
        Ok(Follower { client, stream, last, said: false, start: last })
    }

    /// Where following began: events up to this one were written before.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// The next event. While the daemon is away it keeps trying; a refusal (a revoked token, too
    /// many streams) ends the following with that error.
    pub async fn next(&mut self) -> Result<Event, ClientError> {
        loop {
            let Some(stream) = self.stream.as_mut() else {
                match self.client.events(Some(self.last)).await {
                    Ok(s) => {
                        if self.said {
                            eprintln!("zsa: the daemon is back; following again after event {}", self.last);
                            self.said = false;
                        }
                        self.stream = Some(s);
                    }
                    Err(e @ ClientError::Refused { .. }) | Err(e @ ClientError::UntrustedSocket(_)) => return Err(e),
                    Err(_) => tokio::time::sleep(RECONNECT).await,
                }
                continue;
            };
            match stream.next().await {
                Some(Ok(event)) if event.seq <= self.last => {}
                Some(Ok(event)) => {
                    self.last = event.seq;
                    return Ok(event);
                }
                Some(Err(_)) | None => {
                    self.stream = None;
                    if !self.said {
                        eprintln!("zsa: lost the daemon's event stream; reconnecting (Ctrl-C stops)");
                        self.said = true;
                    }
                }
            }
        }
    }
}

/// Waits until request `id` is decided, and returns it then. Opened before the request was
/// made (`follower`), so a decision that comes at once is not missed.
pub async fn until_decided(client: &Client, follower: &mut Follower<'_>, id: RequestId) -> Result<Outcome, CliError> {
    let record = id.to_string();
    loop {
        let now = client.show_request(id).await?;
        if now.request.state != RequestState::Pending {
            return Ok(now);
        }
        // Only events about this request (or its grant) can change it.
        while follower.next().await?.change.record().as_deref() != Some(record.as_str()) {}
    }
}

/// `zsa grants --watch`: the list again on every change. On a terminal it is redrawn in place
/// every second, so the time left counts down; elsewhere (a pipe, a log) it is printed again,
/// after a `---` line, only when it changed; with `--json`, each list is one line
/// `{"now": daemon time, "grants": [...]}`.
pub async fn grants(client: &Client, json: bool, all: bool) -> CmdResult {
    let terminal = std::io::stdout().is_terminal() && !json;
    let mut follower = Follower::open(client, None).await?;
    let mut shown: Option<String> = None;
    loop {
        // A daemon that is restarting is waited for, as the follower waits for it.
        let (list, offset) = match list_grants(client, all).await {
            Ok(fetched) => fetched,
            Err(ClientError::Unreachable { .. }) => {
                // The follower says it lost the daemon and when it is back; a refusal ends the watch.
                if let Ok(Err(e)) = tokio::time::timeout(RECONNECT, follower.next()).await {
                    return Err(e.into());
                }
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let now = Utc::now() + offset;
        let same = serde_json::to_string(&list).ok();
        if terminal {
            print!("\x1b[H\x1b[2J");
            grants::print_list(&list, all, now);
        } else if shown != same {
            if json {
                super::output::json_line(&serde_json::json!({"now": now, "grants": list}));
            } else {
                if shown.is_some() {
                    println!("---");
                }
                grants::print_list(&list, all, now);
            }
        }
        shown = same;
        if terminal {
            // Redraw at least every second, and at once on an event.
            if let Ok(Err(e)) = tokio::time::timeout(REDRAW, follower.next()).await {
                return Err(e.into());
            }
        } else {
            follower.next().await?;
        }
    }
}

/// The grants, and the daemon's clock ahead of this machine's (the time left is by daemon time).
async fn list_grants(client: &Client, all: bool) -> Result<(Vec<crate::model::wire::GrantView>, chrono::TimeDelta), ClientError> {
    let list = client.grants(all).await?;
    let offset = client.whoami().await?.now - Utc::now();
    Ok((list, offset))
}
