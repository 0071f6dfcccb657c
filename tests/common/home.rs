//! A temporary `$SPLUNK_HOME` and app folder for tests that run the binary
//! more than once against the same state database and log.
//!
//! Why: the binary keeps its state under `$SPLUNK_HOME/var/lib` and logs to
//! `$SPLUNK_HOME/var/log/splunk`; a test that checks what a second search or
//! the `state` CLI sees must keep the home alive across runs, and must never
//! touch a real Splunk installation.

use super::splunkd::{FinalChunk, Options, BINARY};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A temporary `$SPLUNK_HOME`, removed when dropped.
pub struct Home(tempfile::TempDir);

impl Home {
    /// `prefix` names the test file, so that a folder left behind by a
    /// killed run says where it came from.
    pub fn new(prefix: &str) -> Home {
        Home(
            tempfile::Builder::new()
                .prefix(prefix)
                .tempdir()
                .expect("temp SPLUNK_HOME"),
        )
    }

    /// A home set up as a search head cluster member, as `splunk init
    /// shcluster-config` leaves `etc/system/local/server.conf`
    /// (`[state] shared = auto` uses the KV store only on one).
    pub fn member(prefix: &str) -> Home {
        let home = Home::new(prefix);
        let local = home.path().join("etc/system/local");
        std::fs::create_dir_all(&local).expect("etc/system/local");
        std::fs::write(
            local.join("server.conf"),
            "[shclustering]\ndisabled = 0\nshcluster_label = shc_test\n",
        )
        .expect("server.conf");
        home
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// Stand-in options against this home (and `app`'s conf if given), in
    /// splunkd's chunk styles: 8.2.1's at 50,000 rows per chunk, 6.3's at
    /// smaller sizes.
    pub fn options(&self, args: &[&str], rows: usize, app: Option<&Path>) -> Options {
        let mut o = Options::with_args(args);
        o.rows_per_chunk = rows;
        if rows >= 50_000 {
            o.header_only_unfinished = true;
            o.final_chunk = FinalChunk::HeaderOnly;
        } else {
            o.final_chunk = FinalChunk::WithLastRows;
        }
        o.env.push((
            "SPLUNK_HOME".into(),
            self.path().to_string_lossy().into_owned(),
        ));
        if let Some(d) = app {
            o.env.push((
                "SYSMONENRICH_APP_DIR".into(),
                d.to_string_lossy().into_owned(),
            ));
        }
        o
    }

    /// Where the binary keeps its state database under this home.
    pub fn db(&self) -> PathBuf {
        self.path().join("var/lib/sysmonenrich/state.db")
    }

    /// The binary's log so far (empty before the first run).
    pub fn log(&self) -> String {
        std::fs::read(self.path().join("var/log/splunk/sysmonenrich.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// `sysmonenrich state ARGS --db <ours>`: (stdout, stderr, success).
    pub fn state_cli(&self, args: &[&str]) -> (String, String, bool) {
        let out = Command::new(BINARY)
            .arg("state")
            .args(args)
            .arg("--db")
            .arg(self.db())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path())
            .stdin(Stdio::null())
            .output()
            .expect("run the state CLI");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            out.status.success(),
        )
    }

    /// The value of one line of `state stats`.
    pub fn stat(&self, name: &str) -> String {
        let (out, err, ok) = self.state_cli(&["stats"]);
        assert!(ok, "state stats failed: {err}");
        out.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} line:\n{out}"))[name.len()..]
            .trim()
            .to_string()
    }
}

/// An app folder with only `local/sysmonenrich.conf` (the binary lays it
/// over its built-in defaults); `prefix` as for [`Home::new`].
pub fn app_dir_with(prefix: &str, local_conf: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temp app dir");
    std::fs::create_dir_all(dir.path().join("local")).expect("local/");
    std::fs::write(dir.path().join("local/sysmonenrich.conf"), local_conf).expect("local conf");
    dir
}
