//! `sysmonenrich keys`: the providers' API keys in splunkd's credential
//! store, where the search command reads them (`storage/passwords` of app
//! `sysmonenrich`, realm `sysmonenrich`, user = provider name).
//!
//! The requests are [`crate::splunk::passwords`]'.
//!
//! A key is read from a file or stdin (never a command-line argument,
//! which `ps` and shell history would show), sent only in a POST body,
//! and never printed: `list` does not even deserialize the secret fields,
//! and error texts are scrubbed of it.

use crate::reputation::keys::{Scrubber, KEYED_PROVIDERS, PROXY_USER, REALM};
use crate::splunk::passwords::{self, Written};
use crate::splunk::Client as Rest;
use std::io::{IsTerminal, Read, Write};
use std::path::Path;

/// A provider name that takes a key, or `proxy` for the proxy's password
/// (kept in the credential store like the keys, never in a .conf file).
fn keyed_provider(name: &str) -> anyhow::Result<String> {
    let p = name.trim().to_ascii_lowercase();
    if KEYED_PROVIDERS.contains(&p.as_str()) || p == PROXY_USER {
        return Ok(p);
    }
    anyhow::bail!(
        "unknown provider {name:?}: API keys are used by {} (local and hashlookup need none); `{PROXY_USER}` stores the proxy's password",
        KEYED_PROVIDERS.join(" and ")
    )
}

/// What the secret of `name` is, for messages.
fn secret_kind(name: &str) -> &'static str {
    if name == PROXY_USER {
        "proxy password"
    } else {
        "API key"
    }
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
    let mut out = super::output::stdout();
    let scrub = Scrubber::new([key]);
    let kind = secret_kind(provider);
    let what = format!("storing the {provider} {kind}");
    let outcome = match passwords::set(rest, provider, key, &what) {
        Ok(Written::Created) => "created",
        Ok(Written::Updated) => "updated",
        Err(e) => anyhow::bail!(scrub.scrub(&e.to_string())),
    };
    writeln!(out,
        "{provider}: {kind} {outcome} in splunkd's credential store (app {REALM}, realm {REALM}) at {}",
        rest.base()
    )?;
    Ok(out.flush()?)
}

/// `keys list`: one line per provider of our realm, "set" or "not set".
/// The secrets are not even read.
pub fn list(rest: &Rest) -> anyhow::Result<()> {
    let mut out = super::output::stdout();
    let users = passwords::users(rest, "listing the API keys")?;
    writeln!(out, "{:<15} {:<13} KEY", "PROVIDER", "REALM")?;
    for p in KEYED_PROVIDERS {
        let state = if users.iter().any(|u| u.eq_ignore_ascii_case(p)) {
            "set"
        } else {
            "not set"
        };
        writeln!(out, "{p:<15} {REALM:<13} {state}")?;
    }
    let proxy = if users.iter().any(|u| u.eq_ignore_ascii_case(PROXY_USER)) {
        "set (proxy password)"
    } else {
        "not set (proxy password)"
    };
    writeln!(out, "{PROXY_USER:<15} {REALM:<13} {proxy}")?;
    for u in users.iter().filter(|u| {
        !KEYED_PROVIDERS.iter().any(|p| u.eq_ignore_ascii_case(p))
            && !u.eq_ignore_ascii_case(PROXY_USER)
    }) {
        writeln!(
            out,
            "{u:<15} {REALM:<13} set (not a provider sysmonenrich uses)"
        )?;
    }
    Ok(out.flush()?)
}

/// `keys delete`.
pub fn delete(rest: &Rest, provider: &str) -> anyhow::Result<()> {
    let mut out = super::output::stdout();
    let user = provider.trim().to_ascii_lowercase();
    if user.is_empty() || user.contains(':') {
        anyhow::bail!("{provider:?} is not a provider name");
    }
    let what = format!("deleting the {user} key");
    if !passwords::delete(rest, &user, &what)? {
        anyhow::bail!(
            "{what}: no key is stored for {user} (realm {REALM}) at {}",
            rest.base()
        );
    }
    writeln!(
        out,
        "{user}: {} deleted from splunkd's credential store",
        secret_kind(&user)
    )?;
    Ok(out.flush()?)
}

/// Reads the key: from `key_file`, else from the terminal without echo,
/// else from piped stdin.
fn read_key(provider: &str, key_file: Option<&Path>) -> anyhow::Result<String> {
    let text = match key_file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read the key file {}: {e}", path.display()))?,
        None if std::io::stdin().is_terminal() => read_hidden(&format!(
            "{provider} {} (input hidden): ",
            secret_kind(provider)
        ))?,
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

/// Prompts on the terminal and reads a line from it with echo off
/// (`rpassword`: the terminal's own echo flag, restored afterwards, also on
/// error; Unix and Windows alike).
fn read_hidden(prompt: &str) -> anyhow::Result<String> {
    rpassword::prompt_password(prompt).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the key from the terminal ({e}): give it with --key-file FILE or pipe it on stdin"
        )
    })
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
    fn providers() {
        assert_eq!(keyed_provider(" VirusTotal ").unwrap(), "virustotal");
        assert!(keyed_provider("hashlookup").is_err());
        assert_eq!(keyed_provider("Proxy").unwrap(), "proxy");
        assert_eq!(secret_kind("proxy"), "proxy password");
        assert_eq!(secret_kind("virustotal"), "API key");
    }
}
