//! What splunkd says about the search head it runs on: its roles
//! (`GET /services/server/info`) and, on a search head cluster member, how
//! many members the cluster has (`GET /services/shcluster/member/members`).
//! Providers' quotas are divided by that number (see
//! `reputation::settings::QuotaShare`).

use super::client::Client;
use super::error::SplunkError;
use super::Listing;
use serde::Deserialize;

#[derive(Deserialize, Default)]
struct ServerInfo {
    #[serde(default)]
    server_roles: Vec<String>,
}

/// The server's roles (`indexer`, `search_head`, `shc_member`, ...).
pub fn server_roles(client: &Client) -> Result<Vec<String>, SplunkError> {
    let listing: Listing<ServerInfo> = client.get_json(
        "/services/server/info?output_mode=json",
        "reading the server info",
        "the server/info JSON listing expected",
    )?;
    Ok(listing
        .entry
        .into_iter()
        .next()
        .map(|e| e.content.server_roles)
        .unwrap_or_default())
}

/// The number of search heads sharing this one's quotas: the members of
/// its search head cluster, or 1 when it is not a cluster member.
pub fn search_heads(client: &Client) -> Result<u32, SplunkError> {
    if !server_roles(client)?.iter().any(|r| r == "shc_member") {
        return Ok(1);
    }
    let members: Listing<serde_json::Value> = client.get_json(
        "/services/shcluster/member/members?output_mode=json&count=0",
        "listing the search head cluster members",
        "the shcluster/member/members JSON listing expected",
    )?;
    Ok((members.entry.len() as u32).max(1))
}

/// The name of the cached count in the state database's facts.
const FACT: &str = "search_heads";
/// How long a count is trusted: members join and leave rarely, and asking
/// splunkd costs two requests per search otherwise.
const FACT_TTL: i64 = 3600;

/// How long a failed count is remembered: the next searches then do not
/// ask (and wait) again, whatever splunkd's circuit says.
const FAILED_TTL: i64 = 600;

/// [`search_heads`] with the answer cached in the state database for an
/// hour. A failure counts as 1 (the whole quota), is remembered for ten
/// minutes, and counts against splunkd's circuit: returned with the count
/// is the WARN text when this call opened it.
pub fn search_heads_cached(
    target: &super::Target,
    session_key: &crate::protocol::metadata::Secret,
    state: Option<&crate::state::StateStore>,
    splunkd: &crate::circuit::Breaker,
) -> (u32, Option<String>) {
    let now = crate::circuit::now_secs();
    let cached = state
        .and_then(|s| s.fact(FACT, now).ok().flatten())
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|n| *n >= 1);
    if let Some(n) = cached {
        return (n, None);
    }
    let asked = Client::new(target).and_then(|c| search_heads(&c.with_session_key(session_key)));
    let opened = super::client::count_on(splunkd, &asked);
    let (n, ttl) = match asked {
        Ok(n) => (n, FACT_TTL),
        // A splunkd without the endpoint is no cluster member: as good an
        // answer as any, cached like one.
        Err(e) if e.status() == Some(404) => (1, FACT_TTL),
        Err(e) => {
            // Not a WARN of its own: splunkd's circuit speaks for it.
            log::info!("quota_share = auto: cannot ask splunkd whether this is a search head cluster member ({e}); this search uses the whole quota");
            (1, FAILED_TTL)
        }
    };
    if let Some(s) = state {
        if let Err(e) = s.fact_put(FACT, &n.to_string(), now + ttl) {
            log::debug!("cannot cache the number of search heads: {e}");
        }
    }
    if n > 1 {
        log::info!("search head cluster of {n} members: provider quotas with quota_share = auto are divided by {n}");
    }
    (n, opened)
}
