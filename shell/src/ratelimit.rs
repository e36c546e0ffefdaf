//! Failed-login rate limiting, per account and per client IP, in memory (reset on restart).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

pub const WINDOW: Duration = Duration::from_secs(15 * 60);
pub const PER_ACCOUNT: usize = 5;
pub const PER_IP: usize = 20;

/// Failure times per key, pruned to the window.
#[derive(Default)]
pub struct LoginLimiter {
    accounts: HashMap<String, Vec<Instant>>,
    ips: HashMap<IpAddr, Vec<Instant>>,
}

impl LoginLimiter {
    /// `Some(wait)` if the account or the IP has used up its failures in the window.
    pub fn blocked(&mut self, account: &str, ip: IpAddr, now: Instant) -> Option<Duration> {
        let a = Self::wait(self.accounts.get_mut(account), PER_ACCOUNT, now);
        let i = Self::wait(self.ips.get_mut(&ip), PER_IP, now);
        a.max(i)
    }

    pub fn failed(&mut self, account: &str, ip: IpAddr, now: Instant) {
        self.accounts.entry(account.to_owned()).or_default().push(now);
        self.ips.entry(ip).or_default().push(now);
        if self.accounts.len() + self.ips.len() > 100_000 {
            self.accounts.retain(|_, v| v.last().is_some_and(|t| now.duration_since(*t) < WINDOW));
            self.ips.retain(|_, v| v.last().is_some_and(|t| now.duration_since(*t) < WINDOW));
        }
    }

    /// A successful login clears the account's failures (not the IP's).
    pub fn succeeded(&mut self, account: &str) {
        self.accounts.remove(account);
    }

    fn wait(times: Option<&mut Vec<Instant>>, max: usize, now: Instant) -> Option<Duration> {
        let times = times?;
        times.retain(|t| now.duration_since(*t) < WINDOW);
        if times.len() >= max {
            Some(WINDOW - now.duration_since(times[times.len() - max]))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_and_releases_after_the_window() {
        let mut l = LoginLimiter::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..PER_ACCOUNT {
            assert!(l.blocked("ada", ip, t0).is_none());
            l.failed("ada", ip, t0);
        }
        assert!(l.blocked("ada", ip, t0).is_some());
        assert!(l.blocked("bob", "10.0.0.2".parse().unwrap(), t0).is_none());
        assert!(l.blocked("ada", ip, t0 + WINDOW).is_none());
    }

    #[test]
    fn one_ip_trying_many_accounts_is_blocked() {
        let mut l = LoginLimiter::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..PER_IP {
            l.failed(&format!("user{i}"), ip, t0);
        }
        assert!(l.blocked("fresh", ip, t0).is_some());
    }
}
