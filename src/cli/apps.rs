//! `sysmonenrich apps`: the apps installed on splunkd
//! (`GET /services/apps/local?output_mode=json&count=0`), e.g. to check
//! that `sysmonenrich` and the Sysmon add-on are there and enabled.

use super::OutFormat;
use crate::splunk::{Client as Rest, Listing};
use std::io::Write;

/// One installed app.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct App {
    /// Folder name (the app id).
    pub name: String,
    /// `app.conf` `[launcher] version`; empty when the app has none.
    pub version: String,
    /// Display name.
    pub label: String,
    /// Disabled in splunkd.
    pub disabled: bool,
}

/// Reads the listing; `count=0` asks for every app, not the first 30.
pub fn fetch(rest: &Rest) -> anyhow::Result<Vec<App>> {
    let what = "listing the installed apps";
    let listing: Listing<serde_json::Map<String, serde_json::Value>> = rest.get_json(
        "/services/apps/local?output_mode=json&count=0",
        what,
        "the apps/local JSON listing expected",
    )?;
    let text = |c: &serde_json::Map<String, serde_json::Value>, k: &str| match c.get(k) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let mut apps: Vec<App> = listing
        .entry
        .into_iter()
        .map(|e| App {
            version: text(&e.content, "version"),
            label: text(&e.content, "label"),
            // splunkd writes booleans as JSON booleans, older ones as "0"/"1".
            disabled: match e.content.get("disabled") {
                Some(serde_json::Value::Bool(b)) => *b,
                Some(serde_json::Value::String(s)) => {
                    crate::config::conf::parse_bool(s).unwrap_or(false)
                }
                Some(serde_json::Value::Number(n)) => n.as_u64() == Some(1),
                _ => false,
            },
            name: e.name,
        })
        .collect();
    apps.sort_by_key(|a| a.name.to_ascii_lowercase());
    Ok(apps)
}

/// `apps`: prints the listing.
pub fn run(rest: &Rest, format: OutFormat) -> anyhow::Result<()> {
    let apps = fetch(rest)?;
    let mut out = super::output::stdout();
    match format {
        OutFormat::Table => {
            let w = apps.iter().map(|a| a.name.len()).max().unwrap_or(4).max(4);
            let v = apps
                .iter()
                .map(|a| a.version.len())
                .max()
                .unwrap_or(7)
                .max(7);
            writeln!(
                out,
                "{:<w$} {:<v$} {:<8} LABEL",
                "NAME", "VERSION", "DISABLED"
            )?;
            for a in &apps {
                let disabled = if a.disabled { "yes" } else { "no" };
                writeln!(
                    out,
                    "{:<w$} {:<v$} {disabled:<8} {}",
                    a.name, a.version, a.label
                )?;
            }
        }
        OutFormat::Csv => {
            let mut w = csv::Writer::from_writer(&mut out);
            w.write_record(["name", "version", "label", "disabled"])?;
            for a in &apps {
                w.write_record([
                    a.name.as_str(),
                    a.version.as_str(),
                    a.label.as_str(),
                    if a.disabled { "1" } else { "0" },
                ])?;
            }
            w.flush()?;
        }
        OutFormat::Json => {
            for a in &apps {
                serde_json::to_writer(&mut out, a)?;
                out.write_all(b"\n")?;
            }
        }
    }
    out.flush()?;
    Ok(())
}
