//! Connecting the CLI to splunkd: `.splunkrc` says where and who, the
//! app's conf says whether a loopback splunkd's self-signed certificate is
//! accepted (the same `[splunkd] insecure_loopback` the search command
//! follows), and `--insecure` extends that to a remote splunkd.

use super::splunkrc::{Auth, SplunkRc};
use crate::splunk::{is_loopback, namespace, Client, Target};

/// Connects: builds the client and, for a username/password, logs in
/// (one request). Warnings go to stderr.
pub fn connect(rc: &SplunkRc, insecure: bool) -> anyhow::Result<Client> {
    for w in &rc.warnings {
        eprintln!("sysmonenrich: warning: {w}");
    }
    let base = rc.base_url();
    let loopback = is_loopback(&base);
    let app_dir = crate::config::paths::app_dir();
    // Its warnings are printed by the enrichment, when there is one.
    let (settings, _) = crate::config::settings::Settings::load(app_dir.as_deref());
    if insecure && !loopback && rc.scheme == "https" {
        eprintln!(
            "sysmonenrich: warning: --insecure: the certificate of {} is not verified",
            rc.host
        );
    }
    if rc.scheme == "http" && !loopback {
        eprintln!(
            "sysmonenrich: warning: scheme=http: credentials go to {} unencrypted",
            rc.host
        );
    }
    let target = Target {
        insecure_loopback: settings.splunkd_insecure_loopback,
        insecure,
        namespace: namespace(rc.owner.as_deref(), rc.app.as_deref()),
        ..Target::new(&base)
    };
    let client = Client::new(&target)?;
    let path = rc.path.display();
    Ok(match rc.auth()? {
        Auth::Header(h) => client.with_authorization(
            h,
            format!("check token= in {path} (expired, revoked, or token authentication disabled?)"),
        ),
        Auth::Login { username, password } => client.login(
            &username,
            &password,
            &format!("check username= and password= in {path}"),
        )?,
    })
}
