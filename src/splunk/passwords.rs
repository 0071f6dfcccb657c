//! splunkd's credential store, `storage/passwords`, as this app uses it:
//! the only module that builds its URLs.
//!
//! Entries live in our app's namespace (`servicesNS/nobody/sysmonenrich`)
//! under one realm; the user name says what the secret is for (a
//! provider's name, `proxy`).
//!
//! ```text
//! read    GET    /servicesNS/nobody/sysmonenrich/storage/passwords?output_mode=json&count=0&search=realm%3D<realm>
//! set     POST   /servicesNS/nobody/sysmonenrich/storage/passwords        name, password, realm
//!           409 (exists) → POST …/storage/passwords/<realm>%3A<user>%3A   password
//! delete  DELETE …/storage/passwords/<realm>%3A<user>%3A
//! ```
//!
//! Reading needs `list_storage_passwords`, writing
//! `edit_storage_passwords` (or `admin_all_objects`) and write access to the
//! app. A secret is only ever in a POST body or an [`Secret`]; listing
//! without secrets does not even deserialize them.

use super::client::{segment, Client};
use super::error::{first_message, SplunkError};
use super::Listing;
use crate::protocol::metadata::Secret;
use serde::Deserialize;

/// The app (and realm) our credentials are stored under.
pub const REALM: &str = "sysmonenrich";

/// The collection, in our app's namespace.
const COLLECTION: &str = "/servicesNS/nobody/sysmonenrich/storage/passwords";

/// What a read needs.
pub const READ_CAPABILITY: &str = "list_storage_passwords";
/// What a write needs (splunkd's wording varies by version).
pub const WRITE_CAPABILITY: &str =
    "edit_storage_passwords or admin_all_objects, and write access to the sysmonenrich app";

/// The path of one entry: `<realm>:<user>:`, percent-encoded.
pub fn entry_path(user: &str) -> String {
    format!("{COLLECTION}/{}", segment(&format!("{REALM}:{user}:")))
}

/// The listing of our realm (path and query).
pub fn listing_path() -> String {
    format!("{COLLECTION}?output_mode=json&count=0&search=realm%3D{REALM}")
}

#[derive(Deserialize, Default)]
struct Named {
    #[serde(default)]
    realm: Option<String>,
    #[serde(default)]
    username: Option<String>,
}

#[derive(Deserialize, Default)]
struct WithSecret {
    #[serde(default)]
    realm: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    clear_password: Option<String>,
}

fn listing<C: serde::de::DeserializeOwned + Default>(
    client: &Client,
    what: &str,
) -> Result<Listing<C>, SplunkError> {
    let reply = client.get(&listing_path(), what)?;
    if reply.status == 403 {
        return Err(client.error_needing(what, reply, READ_CAPABILITY));
    }
    let reply = client.ok(what, reply)?;
    serde_json::from_slice(&reply.body).map_err(|_| SplunkError::Unreadable {
        what: what.into(),
        base: client.base().into(),
        expected: "the storage/passwords JSON listing expected".into(),
    })
}

/// The users of our realm that have an entry (sorted, no duplicates).
/// Other apps' credentials can be visible in our namespace (shared
/// globally); they are left out.
pub fn users(client: &Client, what: &str) -> Result<Vec<String>, SplunkError> {
    let mut users: Vec<String> = listing::<Named>(client, what)?
        .entry
        .into_iter()
        .filter(|e| e.content.realm.as_deref() == Some(REALM))
        .filter_map(|e| e.content.username)
        .collect();
    users.sort();
    users.dedup();
    Ok(users)
}

/// Every `(user, secret)` of our realm, users in lower case.
pub fn read(client: &Client, what: &str) -> Result<Vec<(String, Secret)>, SplunkError> {
    Ok(secrets_of(listing::<WithSecret>(client, what)?))
}

/// The `(user, secret)` pairs of our realm in a listing body.
pub fn parse(body: &[u8]) -> Result<Vec<(String, Secret)>, serde_json::Error> {
    Ok(secrets_of(serde_json::from_slice(body)?))
}

fn secrets_of(listing: Listing<WithSecret>) -> Vec<(String, Secret)> {
    listing
        .entry
        .into_iter()
        .filter_map(|e| {
            let c = e.content;
            match (c.realm, c.username, c.clear_password) {
                (Some(realm), Some(user), Some(secret)) if realm == REALM => {
                    Some((user.to_ascii_lowercase(), Secret::new(secret)))
                }
                _ => None,
            }
        })
        .collect()
}

/// What [`set`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// A new entry.
    Created,
    /// The entry existed; its secret was replaced.
    Updated,
}

/// Stores `secret` for `user` in our realm, creating or updating.
pub fn set(client: &Client, user: &str, secret: &str, what: &str) -> Result<Written, SplunkError> {
    let create = [
        ("name", user),
        ("password", secret),
        ("realm", REALM),
        ("output_mode", "json"),
    ];
    let reply = client.post(COLLECTION, &create, what)?;
    let exists = reply.status == 409
        || (reply.status == 400
            && first_message(&reply.body)
                .to_ascii_lowercase()
                .contains("already exists"));
    if !exists {
        check_write(client, what, reply)?;
        return Ok(Written::Created);
    }
    let update = [("password", secret), ("output_mode", "json")];
    let reply = client.post(&entry_path(user), &update, what)?;
    check_write(client, what, reply)?;
    Ok(Written::Updated)
}

/// Deletes `user`'s entry; false when there was none.
pub fn delete(client: &Client, user: &str, what: &str) -> Result<bool, SplunkError> {
    let reply = client.delete(&entry_path(user), what)?;
    if reply.status == 404 {
        return Ok(false);
    }
    check_write(client, what, reply)?;
    Ok(true)
}

fn check_write(client: &Client, what: &str, reply: super::Reply) -> Result<(), SplunkError> {
    if reply.status == 403 {
        return Err(client.error_needing(what, reply, WRITE_CAPABILITY));
    }
    client.ok(what, reply).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            entry_path("virustotal"),
            "/servicesNS/nobody/sysmonenrich/storage/passwords/sysmonenrich%3Avirustotal%3A"
        );
        assert_eq!(
            listing_path(),
            "/servicesNS/nobody/sysmonenrich/storage/passwords?output_mode=json&count=0&search=realm%3Dsysmonenrich"
        );
    }

    #[test]
    fn only_our_realm() {
        let body = br#"{"entry":[
          {"name":"splunk_api_it_realm:virustotal:","content":{"realm":"splunk_api_it_realm","username":"virustotal","clear_password":"other-app"}},
          {"name":"sysmonenrich:VirusTotal:","content":{"realm":"sysmonenrich","username":"VirusTotal","clear_password":"vt-secret","password":"********"}},
          {"name":"broken"}
        ]}"#;
        let got = parse(body).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, "virustotal");
        assert_eq!(got[0].1.expose(), "vt-secret");
        assert!(parse(b"<html>").is_err());
    }
}
