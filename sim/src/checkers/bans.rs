//! Bans: wrong password attempts, the bans they earn, and who may not get in.
//!
//! Checks: `honest_banned` (an IP was banned that made no wrong attempts by design) and
//! `banned_admitted` (an attacker got in after its ban, or with a wrong password). Metrics:
//! ban latency from an attacker's first attempt, and attempts counted before the ban.

use std::net::IpAddr;
use std::time::Duration;

use super::monitor::Monitor;
use crate::metrics::MetricId;
use crate::verdict::Severity;

impl Monitor {
    /// The authenticator counted a wrong password from `ip` (`attempts` so far).
    pub fn auth_failed(&mut self, _t: Duration, ip: IpAddr, attempts: u32) {
        if !self.banned.contains(&ip) {
            let c = self.fail_counts.entry(ip).or_default();
            *c = (*c).max(attempts);
        }
    }

    /// The authenticator banned `ip`.
    pub fn banned(&mut self, t: Duration, ip: IpAddr) {
        if !self.banned.insert(ip) {
            return;
        }
        self.count(MetricId::BannedIps, 1.0);
        if let Some(first) = self.ban_first_attempt.get(&ip) {
            self.ban_latency.push((t - *first).as_secs_f64());
        }
        self.attempts_before_ban.push(f64::from(self.fail_counts.get(&ip).copied().unwrap_or(0)));
        if !self.attacker_ips.contains(&ip) {
            let host = self.host_ips.iter().position(|h| *h == ip);
            self.find(
                Severity::Safety,
                "honest_banned",
                format!("{ip}"),
                t,
                format!("{ip} (host {host:?}) banned though it is not an attacker"),
            );
        }
    }

    // ---------------------------------------------------------------- attackers

    /// An attacker on `ip` started a password attempt.
    pub fn attempt_started(&mut self, t: Duration, ip: IpAddr) {
        self.ban_first_attempt.entry(ip).or_insert(t);
    }

    /// An attacker's attempt ended; `admitted` if the join succeeded.
    pub fn attempt_result(&mut self, t: Duration, ip: IpAddr, correct: bool, admitted: bool) {
        if admitted && (self.banned.contains(&ip) || !correct) {
            self.find(
                Severity::Safety,
                "banned_admitted",
                format!("{ip}"),
                t,
                format!("attacker {ip} admitted (correct password: {correct}) after its ban"),
            );
        }
    }
}
