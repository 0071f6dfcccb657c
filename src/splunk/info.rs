//! What splunkd says about the search head it runs on: its roles
//! (`GET /services/server/info`) and, on a search head cluster member, how
//! many members the cluster has (`GET /services/shcluster/member/members`).
//! Providers' quotas are divided by that number (see
//! `reputation::settings::QuotaShare`).

use super::client::Client;
use super::error::SplunkError;
use super::kvstore::KvStatus;
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
    members(client)
}

fn members(client: &Client) -> Result<u32, SplunkError> {
    let members: Listing<serde_json::Value> = client.get_json(
        "/services/shcluster/member/members?output_mode=json&count=0",
        "listing the search head cluster members",
        "the shcluster/member/members JSON listing expected",
    )?;
    Ok((members.entry.len() as u32).max(1))
}

/// The cached server info's name in the state database's facts.
const INFO_FACT: &str = "server_info";
/// How long the server info is trusted: roles change rarely, but a KV
/// store that was starting should be used soon after it is ready.
const INFO_TTL: i64 = 600;

/// The KV store status and roles (`GET /services/server/info`), cached in
/// the state database for ten minutes, so a search asks splunkd at most
/// once for both the quota share and the shared tier. A failure is not
/// cached here (the caller's own fact or splunkd's circuit remember it);
/// it counts against splunkd's circuit: returned with the answer is the
/// WARN text when this call opened it.
pub fn server_info_cached(
    target: &super::Target,
    session_key: &crate::protocol::metadata::Secret,
    state: Option<&crate::state::StateStore>,
    splunkd: &crate::circuit::Breaker,
) -> (Result<KvStatus, SplunkError>, Option<String>) {
    let now = crate::circuit::now_secs();
    if let Some(info) = server_info_fact(state) {
        return (Ok(info), None);
    }
    let asked = Client::new(target)
        .and_then(|c| super::kvstore::KvStore::new(c.with_session_key(session_key)).status());
    let opened = super::client::count_on(splunkd, &asked);
    if let (Ok(info), Some(s)) = (&asked, state) {
        let value =
            serde_json::to_string(&(&info.kv_store_status, &info.server_roles)).unwrap_or_default();
        if let Err(e) = s.fact_put(INFO_FACT, &value, now + INFO_TTL) {
            log::debug!("cannot cache the server info: {e}");
        }
    }
    (asked, opened)
}

/// The server info cached by [`server_info_cached`], if still fresh; no
/// request.
pub fn server_info_fact(state: Option<&crate::state::StateStore>) -> Option<KvStatus> {
    let now = crate::circuit::now_secs();
    let (kv_store_status, server_roles) = state
        .and_then(|s| s.fact(INFO_FACT, now).ok().flatten())
        .and_then(|v| serde_json::from_str::<(Option<String>, Vec<String>)>(&v).ok())?;
    Some(KvStatus {
        kv_store_status,
        server_roles,
    })
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
    // The roles come from the server info the shared tier reads too (one
    // request, cached for both).
    let (info, mut opened) = server_info_cached(target, session_key, state, splunkd);
    let asked = match info {
        Ok(info) if !info.shc_member() => Ok(1),
        Ok(_) => Client::new(target).and_then(|c| members(&c.with_session_key(session_key))),
        Err(e) => Err(e),
    };
    opened = opened.or_else(|| super::client::count_on(splunkd, &asked));
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
