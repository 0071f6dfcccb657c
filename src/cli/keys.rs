//! `sysmonenrich keys`: the providers' API keys in splunkd's credential
//! store, where the search command reads them (`storage/passwords` of app
//! `sysmonenrich`, realm `sysmonenrich`, user = provider name).
//!
//! ```text
//! set     POST   /servicesNS/nobody/sysmonenrich/storage/passwords        name, password, realm
//!           409 (exists) → POST …/storage/passwords/sysmonenrich%3A<provider>%3A   password
//! list    GET    /servicesNS/nobody/sysmonenrich/storage/passwords?output_mode=json&count=0&search=realm%3Dsysmonenrich
//! delete  DELETE …/storage/passwords/sysmonenrich%3A<provider>%3A
//! ```
//!
//! A key is read from a file or stdin (never a command-line argument,
//! which `ps` and shell history would show), sent only in a POST body,
//! and never printed: `list` does not even deserialize the secret fields,
//! and error texts are scrubbed of it.

use super::rest::{segment, Rest};
use crate::reputation::keys::{Scrubber, KEYED_PROVIDERS, REALM};
use crate::splunk::Listing;
use serde::Deserialize;
use std::io::{IsTerminal, Read};
use std::path::Path;

/// The collection, in our app's namespace.
const COLLECTION: &str = "/servicesNS/nobody/sysmonenrich/storage/passwords";

/// What a write needs (splunkd's wording varies by version).
const WRITE_CAPABILITY: &str =
    "edit_storage_passwords or admin_all_objects, and write access to the sysmonenrich app";
/// What a read needs.
const READ_CAPABILITY: &str = "list_storage_passwords";

/// `sysmonenrich:<provider>:`, percent-encoded for the URL.
fn entry_path(user: &str) -> String {
    format!("{COLLECTION}/{}", segment(&format!("{REALM}:{user}:")))
}

/// A provider name that takes a key.
fn keyed_provider(name: &str) -> anyhow::Result<String> {
    let p = name.trim().to_ascii_lowercase();
    if KEYED_PROVIDERS.contains(&p.as_str()) {
        return Ok(p);
    }
    anyhow::bail!(
        "unknown provider {name:?}: API keys are used by {} (local and hashlookup need none)",
        KEYED_PROVIDERS.join(" and ")
    )
}

/// The key `keys set` is to store, as `(provider, key)`: checked and read
/// before anything goes to splunkd, so a typo costs no request.
pub fn prepare_set(provider: &str, key_file: Option<&Path>) -> anyhow::Result<(String, String)> {
    let provider = keyed_provider(provider)?;
    let key = read_key(&provider, key_file)?;
    Ok((provider, key))
}

/// `keys set` (after [`prepare_set`]).
pub fn set(rest: &Rest, provider: &str, key: &str) -> anyhow::Result<()> {
    let scrub = Scrubber::new([key]);
    let hide = |e: &dyn std::fmt::Display| anyhow::anyhow!(scrub.scrub(&e.to_string()));
    let what = format!("storing the {provider} key");
    let create = [
        ("name", provider),
        ("password", key),
        ("realm", REALM),
        ("output_mode", "json"),
    ];
    let reply = rest
        .post(COLLECTION, &create, &what)
        .map_err(|e| hide(&e))?;
    let exists = reply.status == 409
        || (reply.status == 400
            && super::rest::first_message(&reply.body)
                .to_ascii_lowercase()
                .contains("already exists"));
    let outcome = if exists {
        let update = [("password", key), ("output_mode", "json")];
        let reply = rest
            .post(&entry_path(provider), &update, &what)
            .map_err(|e| hide(&e))?;
        check_write(rest, &what, reply).map_err(|e| hide(&e))?;
        "updated"
    } else {
        check_write(rest, &what, reply).map_err(|e| hide(&e))?;
        "created"
    };
    println!(
        "{provider}: API key {outcome} in splunkd's credential store (app {REALM}, realm {REALM}) at {}",
        rest.base()
    );
    Ok(())
}

fn check_write(rest: &Rest, what: &str, reply: super::rest::Reply) -> anyhow::Result<()> {
    if reply.status == 403 {
        return Err(rest.error_needing(what, reply, WRITE_CAPABILITY).into());
    }
    rest.ok(what, reply)?;
    Ok(())
}

/// Only what `list` shows: the secret fields are not even read.
#[derive(Deserialize, Default)]
struct Content {
    #[serde(default)]
    realm: Option<String>,
    #[serde(default)]
    username: Option<String>,
}

/// `keys list`: one line per provider of our realm, "set" or "not set".
pub fn list(rest: &Rest) -> anyhow::Result<()> {
    let what = "listing the API keys";
    let path = format!("{COLLECTION}?output_mode=json&count=0&search=realm%3D{REALM}");
    let reply = rest.get(&path, what)?;
    if reply.status == 403 {
        return Err(rest.error_needing(what, reply, READ_CAPABILITY).into());
    }
    let reply = rest.ok(what, reply)?;
    let listing: Listing<Content> = serde_json::from_slice(&reply.body).map_err(|_| {
        anyhow::anyhow!(
            "{what}: splunkd's storage/passwords reply is not the JSON listing expected"
        )
    })?;
    // Other apps' credentials can be visible in our namespace (shared
    // globally); they are none of our business.
    let mut users: Vec<String> = listing
        .entry
        .into_iter()
        .filter(|e| e.content.realm.as_deref() == Some(REALM))
        .filter_map(|e| e.content.username)
        .collect();
    users.sort();
    users.dedup();
    println!("{:<15} {:<13} KEY", "PROVIDER", "REALM");
    for p in KEYED_PROVIDERS {
        let state = if users.iter().any(|u| u.eq_ignore_ascii_case(p)) {
            "set"
        } else {
            "not set"
        };
        println!("{p:<15} {REALM:<13} {state}");
    }
    for u in users
        .iter()
        .filter(|u| !KEYED_PROVIDERS.iter().any(|p| u.eq_ignore_ascii_case(p)))
    {
        println!("{u:<15} {REALM:<13} set (not a provider sysmonenrich uses)");
    }
    Ok(())
}

/// `keys delete`.
pub fn delete(rest: &Rest, provider: &str) -> anyhow::Result<()> {
    let user = provider.trim().to_ascii_lowercase();
    if user.is_empty() || user.contains(':') {
        anyhow::bail!("{provider:?} is not a provider name");
    }
    let what = format!("deleting the {user} key");
    let reply = rest.delete(&entry_path(&user), &what)?;
    if reply.status == 404 {
        anyhow::bail!(
            "{what}: no key is stored for {user} (realm {REALM}) at {}",
            rest.base()
        );
    }
    check_write(rest, &what, reply)?;
    println!("{user}: API key deleted from splunkd's credential store");
    Ok(())
}

/// Reads the key: from `key_file`, else from the terminal without echo,
/// else from piped stdin.
fn read_key(provider: &str, key_file: Option<&Path>) -> anyhow::Result<String> {
    let text = match key_file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read the key file {}: {e}", path.display()))?,
        None if std::io::stdin().is_terminal() => {
            read_hidden(&format!("{provider} API key (input hidden): "))?
        }
        None => {
            let mut s = String::new();
            std::io::stdin()
                .take(64 * 1024)
                .read_to_string(&mut s)
                .map_err(|e| anyhow::anyhow!("cannot read the key from stdin: {e}"))?;
            s
        }
    };
    parse_key(&text)
}

/// The key in a file or on stdin: the first line that is neither blank
/// nor a `#` comment, trimmed. Checked, so that a pasted `virustotal =
/// <key>` line or two keys do not end up stored as one.
fn parse_key(text: &str) -> anyhow::Result<String> {
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    let Some(key) = lines.next() else {
        anyhow::bail!("no key given (empty input)");
    };
    if lines.next().is_some() {
        anyhow::bail!("expected one key on one line, got several lines");
    }
    if key.len() > 4096 || key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        anyhow::bail!("that does not look like an API key (it holds spaces or is very long)");
    }
    Ok(key.to_string())
}

/// Prompts on stderr and reads a line from the terminal with echo off
/// (via `stty`, restored afterwards, also on error).
#[cfg(unix)]
fn read_hidden(prompt: &str) -> anyhow::Result<String> {
    use std::io::{BufRead, Write};
    use std::process::{Command, Stdio};
    let stty = |args: &[&str]| {
        Command::new("stty")
            .args(args)
            .stdin(Stdio::inherit())
            .stderr(Stdio::null())
            .output()
    };
    let saved = stty(&["-g"])
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let off = stty(&["-echo"]).is_ok_and(|o| o.status.success());
    if !off {
        anyhow::bail!(
            "cannot turn off the terminal's echo (no stty?): give the key with --key-file FILE or pipe it on stdin"
        );
    }
    struct Restore<F: Fn()>(F);
    impl<F: Fn()> Drop for Restore<F> {
        fn drop(&mut self) {
            (self.0)();
        }
    }
    let _restore = Restore(|| {
        let restored = saved
            .as_deref()
            .is_some_and(|s| stty(&[s]).is_ok_and(|o| o.status.success()));
        if !restored {
            let _ = stty(&["echo"]);
        }
    });
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .take(64 * 1024)
        .read_line(&mut line)
        .map_err(|e| anyhow::anyhow!("cannot read the key: {e}"))?;
    eprintln!();
    Ok(line)
}

#[cfg(not(unix))]
fn read_hidden(_prompt: &str) -> anyhow::Result<String> {
    anyhow::bail!("give the key with --key-file FILE or pipe it on stdin")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_text() {
        assert_eq!(parse_key("  abc123\n").unwrap(), "abc123");
        assert_eq!(parse_key("# my vt key\n\nabc123\n").unwrap(), "abc123");
        assert!(parse_key("\n\n").is_err());
        assert!(parse_key("a\nb\n").is_err());
        let e = parse_key("virustotal = abc123").unwrap_err().to_string();
        assert!(!e.contains("abc123"), "{e}");
    }

    #[test]
    fn providers_and_paths() {
        assert_eq!(keyed_provider(" VirusTotal ").unwrap(), "virustotal");
        assert!(keyed_provider("hashlookup").is_err());
        assert_eq!(
            entry_path("virustotal"),
            "/servicesNS/nobody/sysmonenrich/storage/passwords/sysmonenrich%3Avirustotal%3A"
        );
    }
}
