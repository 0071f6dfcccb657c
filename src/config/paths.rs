//! Where things live on disk, worked out in one place: `SPLUNK_HOME`, the
//! app folder, the state database.
//!
//! splunkd runs the command with `SPLUNK_HOME` set and the binary inside the
//! app folder; a person runs the CLI from anywhere. The rules below are the
//! same for both, except that only a person's run falls back to a state
//! database in their home directory (a search without `SPLUNK_HOME` has no
//! place that outlives it that an admin would look for).

use std::path::{Path, PathBuf};

/// The state database under `$SPLUNK_HOME`.
pub const STATE_DB_IN_SPLUNK_HOME: &str = "var/lib/sysmonenrich/state.db";

/// The places one run uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Paths {
    /// `$SPLUNK_HOME`, when running under (or next to) Splunk.
    pub splunk_home: Option<PathBuf>,
    /// The app folder (`default/`, `local/`, `lookups/`), when known.
    pub app_dir: Option<PathBuf>,
    /// A person's home directory: set only for CLI runs.
    pub user_home: Option<PathBuf>,
}

impl Paths {
    /// The places of a search that splunkd started.
    pub fn for_search() -> Paths {
        Paths {
            splunk_home: splunk_home(),
            app_dir: app_dir(),
            user_home: None,
        }
    }

    /// The places of a person's CLI run: a search's, plus `$HOME`.
    pub fn for_person() -> Paths {
        Paths {
            user_home: crate::platform::user_home(),
            ..Paths::for_search()
        }
    }

    /// The state database: `configured` (`[state] path`), else the one
    /// under `$SPLUNK_HOME` (the search head's), else, for a person, the
    /// one under `$HOME`.
    pub fn state_db(&self, configured: Option<&Path>) -> Option<PathBuf> {
        if let Some(p) = configured {
            return Some(p.to_path_buf());
        }
        if let Some(home) = &self.splunk_home {
            return Some(
                home.join(
                    Path::new(STATE_DB_IN_SPLUNK_HOME)
                        .components()
                        .collect::<PathBuf>(),
                ),
            );
        }
        self.user_home
            .as_deref()
            .map(crate::platform::user_state_db)
    }
}

/// `SPLUNK_HOME`, when we run under Splunk.
pub fn splunk_home() -> Option<PathBuf> {
    std::env::var_os("SPLUNK_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Whether the Splunk at `splunk_home` is set up as a search head cluster
/// member: `[shclustering]` in `etc/system/local/server.conf` and not
/// disabled (`splunk init shcluster-config` writes it there; Splunk's own
/// default has it disabled). `[state] shared = auto` reads this file before
/// asking splunkd anything, so a single search head (most of them) spends
/// no request on the shared tier; an unreadable file counts as "not a
/// member".
pub fn shc_member_configured(splunk_home: &Path) -> bool {
    let path = splunk_home
        .join("etc")
        .join("system")
        .join("local")
        .join("server.conf");
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    let Ok(conf) = crate::config::conf::ConfFile::parse(&text) else {
        return false;
    };
    conf.stanza("shclustering").is_some()
        && !matches!(conf.get_bool("shclustering", "disabled"), Ok(Some(true)))
}

/// The app folder this binary runs from: `SYSMONENRICH_APP_DIR` if set, else
/// the folder above `bin/` or `<platform>/bin/` when it holds `default/`.
pub fn app_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("SYSMONENRICH_APP_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    let exe = std::env::current_exe().ok()?;
    let mut dir = exe.parent()?;
    if dir.file_name()? == "bin" {
        dir = dir.parent()?;
    }
    if !dir.join("default").is_dir() {
        // `<app>/linux_x86_64/bin/`: one more level.
        dir = dir.parent()?;
    }
    dir.join("default").is_dir().then(|| dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_is_one_whose_local_server_conf_enables_shclustering() {
        let home = tempfile::tempdir().unwrap();
        assert!(!shc_member_configured(home.path()), "no server.conf");
        let local = home.path().join("etc/system/local");
        std::fs::create_dir_all(&local).unwrap();
        let conf = local.join("server.conf");
        for (text, member) in [
            ("[general]\nserverName = sh1\n", false),
            ("[shclustering]\ndisabled = true\n", false),
            (
                "[shclustering]\ndisabled = 0\nmgmt_uri = https://sh1:8089\n",
                true,
            ),
            ("[shclustering]\nshcluster_label = shc1\n", true),
        ] {
            std::fs::write(&conf, text).unwrap();
            assert_eq!(shc_member_configured(home.path()), member, "{text}");
        }
    }

    #[test]
    fn state_db_prefers_the_conf_then_splunk_home_then_a_persons_home() {
        let mut p = Paths {
            splunk_home: Some("/opt/splunk".into()),
            app_dir: None,
            user_home: Some("/home/ana".into()),
        };
        assert_eq!(
            p.state_db(Some(Path::new("/data/s.db"))),
            Some(PathBuf::from("/data/s.db"))
        );
        assert_eq!(
            p.state_db(None),
            Some(PathBuf::from("/opt/splunk/var/lib/sysmonenrich/state.db"))
        );
        p.splunk_home = None;
        assert_eq!(
            p.state_db(None),
            Some(PathBuf::from(
                "/home/ana/.local/state/sysmonenrich/state.db"
            ))
        );
        p.user_home = None;
        assert_eq!(
            p.state_db(None),
            None,
            "a search without SPLUNK_HOME has none"
        );
    }
}
