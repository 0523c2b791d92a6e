//! Bans: wrong password attempts, the bans they earn, and who may not get in.
//!
//! Checks: `honest_banned` (an IP was banned that made no wrong attempts by design) and
//! `banned_admitted` (an attacker got in after its ban, or with a wrong password). Metrics:
//! ban latency from an attacker's first attempt, and the wrong attempts an IP made before its
//! ban — counted from the attackers' side (attempts whose password the authenticator refused,
//! started before the ban), not taken from the authenticator's own count, so an authenticator
//! that miscounts is caught.

use std::net::IpAddr;
use std::time::Duration;

use super::monitor::Monitor;
use crate::metrics::MetricId;
use crate::verdict::Severity;

impl Monitor {
    /// An attempt from `ip` started at `started` had its password refused (the attacker's or
    /// joiner's own report).
    pub fn password_refused(&mut self, ip: IpAddr, started: Duration) {
        self.password_refusals.entry(ip).or_default().push(started);
    }

    /// Join attempt `inst` from `ip` had its password refused (before [`Monitor::join_failed`]).
    pub fn join_refused(&mut self, inst: u64, ip: IpAddr) {
        if let Some(started) = self.instances.get(&inst).map(|i| i.join_started) {
            self.password_refusals.entry(ip).or_default().push(started);
        }
    }

    /// End of run: for each banned IP, the refused attempts it started before its ban.
    pub(super) fn finish_bans(&mut self) {
        for (ip, at) in &self.ban_at {
            let n = self.password_refusals.get(ip).map_or(0, |v| v.iter().filter(|s| *s < at).count());
            self.attempts_before_ban.push(n as f64);
        }
    }

    /// The authenticator banned `ip`.
    pub fn banned(&mut self, t: Duration, ip: IpAddr) {
        self.views.changed();
        if !self.banned.insert(ip) {
            return;
        }
        self.count(MetricId::BannedIps, 1.0);
        if let Some(first) = self.ban_first_attempt.get(&ip) {
            self.ban_latency.push((t - *first).as_secs_f64());
        }
        self.ban_at.insert(ip, t);
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
