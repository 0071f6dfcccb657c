//! Search arguments → [`Options`].
//!
//! splunkd passes `| sysmonenrich a=1 b=2` as the tokens `["a=1","b=2"]`
//! in getinfo's `searchinfo.args`, SPL quoting already removed. We follow
//! the Python SDK's conventions (split on the first `=`, its boolean and
//! duration spellings, its "Unrecognized option" / "Illegal value" wording)
//! because that is what Splunk users have seen from every other command.
//! Every problem is collected, not just the first, so one round trip shows
//! the user all of them.

use crate::sysmon::event::FieldOverrides;
use std::time::Duration;

/// Reputation providers the command knows.
pub const PROVIDERS: &[&str] = &["local", "hashlookup", "virustotal", "malwarebazaar"];

/// Everything the user can set in the search bar.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Add lineage fields.
    pub lineage: bool,
    /// Add reputation fields.
    pub reputation: bool,
    /// Search splunkd for ancestors missing locally.
    pub backfill: bool,
    /// Providers to ask, in order.
    pub providers: Vec<String>,
    /// Most provider requests this search may make.
    pub max_lookups: u64,
    /// Longest a search waits for reputation.
    pub lookup_budget: Duration,
    /// Longest ancestor chain followed.
    pub max_depth: usize,
    /// Ignore cached answers.
    pub refresh: bool,
    /// Ask splunkd for `_raw` so the XML can be parsed when fields are missing.
    pub raw: bool,
    /// Field name overrides.
    pub fields: FieldOverrides,
    /// Run the Sigma rules of `[sigma] rules` (when there are any).
    pub sigma: bool,
    /// Only Sigma rules at this level or above; `None` = `[sigma] min_level`.
    pub sigma_min_level: Option<crate::sigma::Level>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            lineage: true,
            reputation: true,
            backfill: true,
            providers: PROVIDERS.iter().map(|s| s.to_string()).collect(),
            max_lookups: 100,
            lookup_budget: Duration::from_secs(10),
            max_depth: 64,
            refresh: false,
            raw: false,
            fields: FieldOverrides::default(),
            sigma: true,
            sigma_min_level: None,
        }
    }
}

impl Options {
    /// Defaults for a run without network: lineage on, reputation from the
    /// local list only, no backfill.
    pub fn default_offline() -> Options {
        Options {
            backfill: false,
            providers: vec!["local".to_string()],
            ..Options::default()
        }
    }
}

/// The options, one line each, for error messages.
const USAGE: &str = "lineage=<bool> reputation=<bool> backfill=<bool> providers=<name,...> \
max_lookups=<int> lookup_budget=<duration> max_depth=<int> refresh=<bool> raw=<bool> \
sigma=<bool> sigma_min_level=<level> guid_field=<field> parent_guid_field=<field> image_field=<field> hashes_field=<field>";

/// Parses the argument tokens over `defaults` (from the conf file).
/// Returns every problem found, each naming the argument and what is
/// accepted.
pub fn parse(args: &[String], defaults: &Options) -> Result<Options, Vec<String>> {
    let mut o = defaults.clone();
    let mut errors = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for token in args {
        let Some((name, value)) = token.split_once('=') else {
            errors.push(format!(
                "Unexpected argument \"{token}\": sysmonenrich takes only name=value options ({USAGE})"
            ));
            continue;
        };
        let name = name.trim();
        if seen.iter().any(|s| s == name) {
            errors.push(format!("Option \"{name}\" is given more than once"));
            continue;
        }
        seen.push(name.to_string());
        let result = match name {
            "lineage" => boolean(value).map(|v| o.lineage = v),
            "reputation" => boolean(value).map(|v| o.reputation = v),
            "backfill" => boolean(value).map(|v| o.backfill = v),
            "refresh" => boolean(value).map(|v| o.refresh = v),
            "raw" => boolean(value).map(|v| o.raw = v),
            "sigma" => boolean(value).map(|v| o.sigma = v),
            "sigma_min_level" => level(value).map(|v| o.sigma_min_level = Some(v)),
            "providers" => providers(value).map(|v| o.providers = v),
            "max_lookups" => integer(value, 0, 1_000_000).map(|v| o.max_lookups = v),
            "max_depth" => integer(value, 1, 1000).map(|v| o.max_depth = v as usize),
            "lookup_budget" => duration(value).map(|v| o.lookup_budget = v),
            "guid_field" => fieldname(value).map(|v| o.fields.guid = Some(v)),
            "parent_guid_field" => fieldname(value).map(|v| o.fields.parent_guid = Some(v)),
            "image_field" => fieldname(value).map(|v| o.fields.image = Some(v)),
            "hashes_field" => fieldname(value).map(|v| o.fields.hashes = Some(v)),
            _ => {
                errors.push(format!(
                    "Unrecognized option: {token} (sysmonenrich accepts {USAGE})"
                ));
                continue;
            }
        };
        if let Err(expected) = result {
            errors.push(format!("Illegal value: {name}={value} ({expected})"));
        }
    }
    if errors.is_empty() {
        Ok(o)
    } else {
        Err(errors)
    }
}

/// The SDK's Boolean validator spellings.
pub fn boolean(v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "t" | "true" | "y" | "yes" => Ok(true),
        "0" | "f" | "false" | "n" | "no" => Ok(false),
        _ => Err("expected a boolean: true/false, t/f, yes/no, y/n, 1/0".into()),
    }
}

/// A Sigma rule level.
pub fn level(v: &str) -> Result<crate::sigma::Level, String> {
    crate::sigma::Level::parse(v).ok_or_else(|| {
        "expected a Sigma level: informational, low, medium, high or critical".into()
    })
}

fn integer(v: &str, min: u64, max: u64) -> Result<u64, String> {
    match v.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("expected a whole number from {min} to {max}")),
    }
}

/// `[[h:]m:]s` as the SDK's Duration validator, or `30s`/`5m`/`2h`/`1d`, or
/// fractional seconds (`2.5`).
pub fn duration(v: &str) -> Result<Duration, String> {
    let err = || {
        "expected a duration: seconds (10, 2.5), 500ms, 30s, 5m, 2h, 1d, or [[h:]m:]s".to_string()
    };
    let v = v.trim();
    if v.is_empty() {
        return Err(err());
    }
    let secs = if v.contains(':') {
        let parts: Vec<&str> = v.split(':').collect();
        if parts.len() > 3 {
            return Err(err());
        }
        let mut total = 0f64;
        for p in parts {
            let n: f64 = p.parse().map_err(|_| err())?;
            total = total * 60.0 + n;
        }
        total
    } else {
        let (num, unit) = match v.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
            Some((i, _)) => (&v[..i], &v[i..]),
            None => (v, "s"),
        };
        let n: f64 = num.trim().parse().map_err(|_| err())?;
        let mult = match unit.to_ascii_lowercase().as_str() {
            "ms" => 0.001,
            "s" | "sec" | "secs" => 1.0,
            "m" | "min" | "mins" => 60.0,
            "h" | "hr" | "hrs" => 3600.0,
            "d" | "day" | "days" => 86400.0,
            _ => return Err(err()),
        };
        n * mult
    };
    if !secs.is_finite() || !(0.0..=31_536_000.0).contains(&secs) {
        return Err(err());
    }
    Ok(Duration::from_secs_f64(secs))
}

fn providers(v: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for p in v.split(',').map(|p| p.trim().to_ascii_lowercase()) {
        if p.is_empty() {
            continue;
        }
        if !PROVIDERS.contains(&p.as_str()) {
            return Err(format!(
                "unknown provider \"{p}\"; expected a comma list of {}",
                PROVIDERS.join(", ")
            ));
        }
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

/// The SDK's Fieldname validator: `[_.a-zA-Z-][_.a-zA-Z0-9-]*`.
fn fieldname(v: &str) -> Result<String, String> {
    let ok = !v.is_empty()
        && v.chars().enumerate().all(|(i, c)| {
            c == '_'
                || c == '.'
                || c == '-'
                || c.is_ascii_alphabetic()
                || (i > 0 && c.is_ascii_digit())
        });
    if ok {
        Ok(v.to_string())
    } else {
        Err("expected a field name: letters, digits, _ . -, not starting with a digit".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_all_options() {
        let o = parse(
            &args(&[
                "lineage=f",
                "reputation=NO",
                "backfill=0",
                "providers=virustotal, local",
                "max_lookups=7",
                "lookup_budget=1:30",
                "max_depth=5",
                "refresh=yes",
                "guid_field=my_guid",
                "hashes_field=h",
            ]),
            &Options::default(),
        )
        .unwrap();
        assert!(!o.lineage && !o.reputation && !o.backfill && o.refresh);
        assert_eq!(o.providers, vec!["virustotal", "local"]);
        assert_eq!(o.max_lookups, 7);
        assert_eq!(o.lookup_budget, Duration::from_secs(90));
        assert_eq!(o.max_depth, 5);
        assert_eq!(o.fields.guid.as_deref(), Some("my_guid"));
    }

    #[test]
    fn every_problem_is_reported() {
        let e = parse(
            &args(&[
                "frobnicate=1",
                "max_depth=abc",
                "lineage=maybe",
                "bare",
                "providers=vt",
            ]),
            &Options::default(),
        )
        .unwrap_err();
        assert_eq!(e.len(), 5, "{e:?}");
        assert!(e[0].starts_with("Unrecognized option: frobnicate=1"));
        assert!(e[1].contains("max_depth=abc") && e[1].contains("1 to 1000"));
        assert!(e[2].contains("lineage=maybe"));
        assert!(e[3].contains("\"bare\""));
        assert!(e[4].contains("unknown provider \"vt\""));
    }

    #[test]
    fn durations() {
        assert_eq!(duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(duration("1:00:00").unwrap(), Duration::from_secs(3600));
        assert_eq!(duration("2.5").unwrap(), Duration::from_millis(2500));
        assert!(duration("-1").is_err());
        assert!(duration("5 parsecs").is_err());
    }
}
