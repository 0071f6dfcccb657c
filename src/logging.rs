//! Where log lines go.
//!
//! Under Splunk, stderr lands in the job's `search.log` as ERROR whatever it
//! says, so a normal search must write nothing there. We log to
//! `$SPLUNK_HOME/var/log/splunk/sysmonenrich.log`, which Splunk's default
//! monitor indexes into `_internal`, rotating by size so a busy search head
//! never fills its disk. Outside Splunk (no `SPLUNK_HOME`) warnings go to
//! stderr, where a person running the CLI will see them.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Rotation policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate when the file would grow past this many bytes.
    pub max_bytes: u64,
    /// Keep this many old files (`.1` newest … `.N` oldest).
    pub keep: u32,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_bytes: 10 << 20,
            keep: 5,
        }
    }
}

struct FileSink {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    rotation: Rotation,
}

impl FileSink {
    fn write_line(&mut self, line: &[u8]) {
        if self.file.is_none() || self.size + line.len() as u64 > self.rotation.max_bytes {
            self.rotate_if_needed(line.len() as u64);
        }
        if let Some(f) = self.file.as_mut() {
            if f.write_all(line).is_ok() {
                self.size += line.len() as u64;
            }
        }
    }

    fn rotate_if_needed(&mut self, incoming: u64) {
        let current = fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        if current + incoming > self.rotation.max_bytes && current > 0 {
            self.file = None;
            for i in (1..self.rotation.keep).rev() {
                let _ = fs::rename(numbered(&self.path, i), numbered(&self.path, i + 1));
            }
            if self.rotation.keep > 0 {
                let _ = fs::rename(&self.path, numbered(&self.path, 1));
            } else {
                let _ = fs::remove_file(&self.path);
            }
        }
        // Another search may have rotated the file under us: always reopen.
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .ok();
        self.size = fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
    }
}

fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

enum Sink {
    File(Mutex<FileSink>),
    Stderr,
}

struct Logger {
    sink: Sink,
    level: LevelFilter,
    tag: String,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        };
        match &self.sink {
            Sink::File(m) => {
                // Splunk's own log style: time, level, component, message.
                let line = format!(
                    "{} {level} sysmonenrich pid={} {}- {}\n",
                    timestamp(),
                    std::process::id(),
                    self.tag,
                    record.args()
                );
                if let Ok(mut s) = m.lock() {
                    s.write_line(line.as_bytes());
                }
            }
            Sink::Stderr => eprintln!("sysmonenrich: {level}: {}", record.args()),
        }
    }

    fn flush(&self) {
        if let Sink::File(m) = &self.sink {
            if let Ok(mut s) = m.lock() {
                if let Some(f) = s.file.as_mut() {
                    let _ = f.flush();
                }
            }
        }
    }
}

/// `2026-11-28 06:11:31.123 +0000`, UTC, without a date crate.
fn timestamp() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}.{:03} +0000",
        crate::calendar::utc_date_time(now.as_secs() as i64, ' '),
        now.subsec_millis()
    )
}

/// This process's peak resident memory in KiB (`VmHWM`), for the
/// end-of-search log line: memory is a promise we make, so we report it.
pub fn peak_rss_kb() -> Option<u64> {
    crate::platform::peak_rss_kb()
}

/// The log file under a Splunk home.
pub fn splunk_log_path(splunk_home: &Path) -> PathBuf {
    splunk_home
        .join("var")
        .join("log")
        .join("splunk")
        .join("sysmonenrich.log")
}

/// Installs the global logger: a rotating file under `SPLUNK_HOME` when
/// given (falling back to stderr if the directory cannot be created), else
/// stderr. `tag` goes on every line (e.g. the search id). Safe to call
/// once per process; later calls are ignored.
pub fn init(splunk_home: Option<&Path>, level: LevelFilter, rotation: Rotation, tag: &str) {
    let sink = match splunk_home {
        Some(home) => {
            let path = splunk_log_path(home);
            match path.parent().map(fs::create_dir_all) {
                Some(Ok(())) => Sink::File(Mutex::new(FileSink {
                    path,
                    file: None,
                    size: 0,
                    rotation,
                })),
                _ => Sink::Stderr,
            }
        }
        None => Sink::Stderr,
    };
    let level = match sink {
        // A person at a terminal wants warnings, not chatter.
        Sink::Stderr => level.min(LevelFilter::Warn),
        Sink::File(_) => level,
    };
    let logger = Logger {
        sink,
        level,
        tag: if tag.is_empty() {
            String::new()
        } else {
            format!("{tag} ")
        },
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(level);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        let mut s = FileSink {
            path: path.clone(),
            file: None,
            size: 0,
            rotation: Rotation {
                max_bytes: 100,
                keep: 2,
            },
        };
        for _ in 0..30 {
            s.write_line(&[b'a'; 30]);
        }
        assert!(fs::metadata(&path).unwrap().len() <= 100);
        assert!(numbered(&path, 1).exists() && numbered(&path, 2).exists());
        assert!(!numbered(&path, 3).exists());
    }
}
