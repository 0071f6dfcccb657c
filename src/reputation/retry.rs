//! Which failures are worth another attempt, and how long to wait first.
//!
//! All retry decisions are here, in one trait (lychee's `RetryExt`):
//!
//! - retry: timeouts, connection resets (also a connection closed before
//!   the reply was complete), HTTP 408, 429 and 5xx — the
//!   server or the path was busy, and the same request may work a moment
//!   later;
//! - never: other 4xx (the request itself is wrong or the key is refused;
//!   repeating it only burns quota), connection refused/DNS failures
//!   (nothing is listening; fail fast instead of eating the budget), and
//!   unreadable bodies.
//!
//! Backoff doubles from `retry_base_delay` up to `retry_max_delay`; a
//! `Retry-After` from the server is honoured when longer. The caller also
//! never sleeps past the search's deadline (see `service.rs`).

use super::client::HttpReply;
use std::error::Error as _;
use std::io;
use std::time::Duration;

/// Whether a failed attempt should be repeated.
pub trait RetryExt {
    /// True for transient failures.
    fn should_retry(&self) -> bool;
}

impl RetryExt for reqwest::StatusCode {
    fn should_retry(&self) -> bool {
        *self == reqwest::StatusCode::REQUEST_TIMEOUT
            || *self == reqwest::StatusCode::TOO_MANY_REQUESTS
            || self.is_server_error()
    }
}

impl RetryExt for HttpReply {
    fn should_retry(&self) -> bool {
        reqwest::StatusCode::from_u16(self.status).is_ok_and(|s| s.should_retry())
    }
}

impl RetryExt for reqwest::Error {
    fn should_retry(&self) -> bool {
        if self.is_timeout() {
            return true;
        }
        if self.is_connect() || self.is_builder() || self.is_decode() {
            return false;
        }
        let mut cause = self.source();
        while let Some(c) = cause {
            if let Some(io) = c.downcast_ref::<io::Error>() {
                return io.should_retry();
            }
            // hyper's IncompleteMessage: the server closed the connection
            // without (finishing) a reply — a reset by another name. hyper
            // is not a direct dependency, so its stable text identifies it.
            if c.to_string() == "connection closed before message completed" {
                return true;
            }
            cause = c.source();
        }
        false
    }
}

impl RetryExt for io::Error {
    fn should_retry(&self) -> bool {
        matches!(
            self.kind(),
            io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof
                | io::ErrorKind::TimedOut
        )
    }
}

/// Exponential backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first retry.
    pub base: Duration,
    /// Largest delay.
    pub max: Duration,
}

impl Backoff {
    /// Delay before retry number `retry` (0 = the first retry), at least
    /// the server's `Retry-After`, at most `max`.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let doubled = self.base.saturating_mul(1u32 << retry.min(20));
        doubled.max(retry_after.unwrap_or_default()).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    #[test]
    fn transient_statuses_only() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(StatusCode::from_u16(s).unwrap().should_retry(), "{s}");
            assert!(HttpReply::new(s, "").should_retry());
        }
        for s in [200, 400, 401, 403, 404, 409, 424] {
            assert!(!StatusCode::from_u16(s).unwrap().should_retry(), "{s}");
        }
    }

    #[test]
    fn resets_retry_refusals_do_not() {
        assert!(io::Error::from(io::ErrorKind::ConnectionReset).should_retry());
        assert!(io::Error::from(io::ErrorKind::UnexpectedEof).should_retry());
        assert!(!io::Error::from(io::ErrorKind::ConnectionRefused).should_retry());
        assert!(!io::Error::from(io::ErrorKind::PermissionDenied).should_retry());
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        assert_eq!(b.delay(0, None), Duration::from_millis(100));
        assert_eq!(b.delay(2, None), Duration::from_millis(400));
        assert_eq!(b.delay(9, None), Duration::from_secs(1));
        assert_eq!(b.delay(40, None), Duration::from_secs(1));
        assert_eq!(
            b.delay(0, Some(Duration::from_millis(700))),
            Duration::from_millis(700)
        );
        assert_eq!(
            b.delay(0, Some(Duration::from_secs(60))),
            Duration::from_secs(1)
        );
    }
}
