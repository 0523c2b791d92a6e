//! Source addresses: parsing `--source-ips`, the default range, and the safety rules.
//!
//! Spreading joiners over many source IPs keeps one IP's ephemeral ports and one IP's ban from
//! capping or coupling a run. Because loadgen opens thousands of connections, it must never
//! pick a source address the user did not ask for outside the loopback range, and it must
//! never mix loopback and non-loopback: against a loopback target every source must be in
//! `127.0.0.0/8` (or be `::1`). This module owns those rules so nothing else has to.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use crate::error::Error;

/// Most addresses one `--source-ips` value may expand to (a /16 of loopback).
pub const MAX_ADDRESSES: usize = 65_536;

/// The range used when the target is IPv4 loopback and `--source-ips` is not given.
pub const DEFAULT_LOOPBACK_V4: &str = "127.0.1.1-127.0.3.254";

/// The range `--attack` uses when the target is IPv4 loopback and `--attack-source-ips` is
/// not given: disjoint from [`DEFAULT_LOOPBACK_V4`].
pub const DEFAULT_ATTACK_LOOPBACK_V4: &str = "127.0.8.1-127.0.15.254";

/// The addresses of hostile traffic: the user's range (checked against the target), else
/// [`DEFAULT_ATTACK_LOOPBACK_V4`] for an IPv4 loopback target. Anywhere else there is no
/// default: IPv6 loopback has only `::1`, and a remote network's spare addresses are the
/// user's to name.
pub fn resolve_attack_sources(given: Option<SourceRange>, target: SocketAddr) -> Result<SourceRange, Error> {
    match given {
        Some(range) => {
            range.check_for_target(target)?;
            Ok(range)
        }
        None if target.is_ipv4() && target.ip().is_loopback() => DEFAULT_ATTACK_LOOPBACK_V4.parse(),
        None => Err(Error::Config(format!(
            "--attack against {target} needs --attack-source-ips: addresses of this machine, none of them a joiner's"
        ))),
    }
}

/// An ordered list of distinct source addresses, parsed from text such as
/// `127.0.1.1-127.0.3.254`, `127.0.2.0/24`, `::1` or a comma-separated mix of those.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceRange {
    text: String,
    addrs: Vec<IpAddr>,
}

impl SourceRange {
    /// The addresses, in the order given.
    pub fn addrs(&self) -> &[IpAddr] {
        &self.addrs
    }

    /// Number of addresses.
    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    /// Whether the range is empty (never true for a parsed range).
    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    /// Checks that these sources may be used against `target`: one address family, and
    /// loopback sources if and only if the target is loopback.
    pub fn check_for_target(&self, target: SocketAddr) -> Result<(), Error> {
        let reject = |reason: String| Error::SourceIps { input: self.text.clone(), reason };
        for &ip in &self.addrs {
            if ip.is_ipv4() != target.is_ipv4() {
                return Err(reject(format!("{ip} is not of the same address family as the target {target}")));
            }
            if target.ip().is_loopback() && !ip.is_loopback() {
                return Err(reject(format!(
                    "{ip} is not a loopback address; against the loopback target {target} \
                     every source must be in 127.0.0.0/8 or be ::1"
                )));
            }
            if !target.ip().is_loopback() && ip.is_loopback() {
                return Err(reject(format!("{ip} is a loopback address and cannot reach the target {target}")));
            }
        }
        Ok(())
    }
}

impl fmt::Display for SourceRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for SourceRange {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        let reject = |reason: String| Error::SourceIps { input: text.to_string(), reason };
        let mut addrs = Vec::new();
        for part in text.split(',').map(str::trim) {
            if part.is_empty() {
                return Err(reject("empty item; write e.g. 127.0.1.1-127.0.3.254".into()));
            }
            let (first, last) = parse_item(part).map_err(reject)?;
            let (lo, hi) = (to_u128(first), to_u128(last));
            if lo > hi {
                return Err(reject(format!("{part}: the range runs backwards")));
            }
            if hi - lo >= (MAX_ADDRESSES - addrs.len()) as u128 {
                return Err(reject(format!("more than {MAX_ADDRESSES} addresses")));
            }
            addrs.extend((lo..=hi).map(|n| from_u128(n, first.is_ipv4())));
        }
        let mut seen = HashSet::with_capacity(addrs.len());
        if let Some(dup) = addrs.iter().find(|a| !seen.insert(**a)) {
            return Err(reject(format!("{dup} is listed twice")));
        }
        if addrs.iter().any(|a| a.is_ipv4() != addrs[0].is_ipv4()) {
            return Err(reject("mixes IPv4 and IPv6 addresses".into()));
        }
        if let Some(bad) = addrs.iter().find(|a| a.is_unspecified() || a.is_multicast()) {
            return Err(reject(format!("{bad} cannot be a source address")));
        }
        Ok(SourceRange { text: text.to_string(), addrs })
    }
}

/// One item: `A`, `A-B` or `A/prefix`; returns its first and last address.
fn parse_item(part: &str) -> Result<(IpAddr, IpAddr), String> {
    let ip = |s: &str| s.trim().parse::<IpAddr>().map_err(|_| format!("{s:?} is not an IP address"));
    if let Some((a, b)) = part.split_once('-') {
        let (a, b) = (ip(a)?, ip(b)?);
        if a.is_ipv4() != b.is_ipv4() {
            return Err(format!("{part}: the two ends are of different address families"));
        }
        Ok((a, b))
    } else if let Some((a, prefix)) = part.split_once('/') {
        let a = ip(a)?;
        let bits: u32 = if a.is_ipv4() { 32 } else { 128 };
        let prefix: u32 =
            prefix.trim().parse().ok().filter(|p| *p <= bits).ok_or_else(|| format!("{part}: bad prefix length"))?;
        let host_bits = bits - prefix;
        let mask = if host_bits >= 128 { u128::MAX } else { (1u128 << host_bits) - 1 };
        let base = to_u128(a) & !mask;
        let (mut lo, mut hi) = (base, base | mask);
        // For IPv4 networks with room for hosts, skip the network and broadcast addresses.
        if a.is_ipv4() && host_bits >= 2 {
            lo += 1;
            hi -= 1;
        }
        Ok((from_u128(lo, a.is_ipv4()), from_u128(hi, a.is_ipv4())))
    } else {
        let a = ip(part)?;
        Ok((a, a))
    }
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u32::from(v4) as u128,
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_u128(n: u128, v4: bool) -> IpAddr {
    if v4 { IpAddr::V4(Ipv4Addr::from(n as u32)) } else { IpAddr::V6(Ipv6Addr::from(n)) }
}

/// Where joiners' connections come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sources {
    /// Bind each joiner to one of these addresses.
    Range(SourceRange),
    /// Let the operating system choose (only for a non-loopback target without `--source-ips`).
    System,
}

impl Sources {
    /// Chooses the sources for `target`: the user's range (checked against the target), else
    /// the default loopback range for a loopback target, else the system's choice. A
    /// non-loopback source is only ever used if the user listed it.
    pub fn resolve(given: Option<SourceRange>, target: SocketAddr) -> Result<Sources, Error> {
        match given {
            Some(range) => {
                range.check_for_target(target)?;
                Ok(Sources::Range(range))
            }
            None if target.is_ipv4() && target.ip().is_loopback() => Ok(Sources::Range(DEFAULT_LOOPBACK_V4.parse()?)),
            None if target.ip().is_loopback() => Ok(Sources::Range("::1".parse()?)),
            None => Ok(Sources::System),
        }
    }

    /// The addresses, empty for [`Sources::System`].
    pub fn addrs(&self) -> &[IpAddr] {
        match self {
            Sources::Range(r) => r.addrs(),
            Sources::System => &[],
        }
    }
}

impl fmt::Display for Sources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sources::Range(r) => write!(f, "{r} ({} addresses)", r.len()),
            Sources::System => f.write_str("chosen by the system"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(s: &str) -> SourceRange {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> String {
        s.parse::<SourceRange>().unwrap_err().to_string()
    }

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn dash_range_is_inclusive_and_crosses_octets() {
        let r = range("127.0.1.254-127.0.2.1");
        let expect: Vec<IpAddr> =
            ["127.0.1.254", "127.0.1.255", "127.0.2.0", "127.0.2.1"].into_iter().map(v4).collect();
        assert_eq!(r.addrs(), &expect[..]);
        // 127.0.1.1 ..= 127.0.3.254: 255 + 256 + 255 addresses.
        assert_eq!(range(DEFAULT_LOOPBACK_V4).len(), 766);
    }

    #[test]
    fn single_address_cidr_and_lists() {
        assert_eq!(range("127.0.0.5").addrs(), &[v4("127.0.0.5")]);
        assert_eq!(range("::1").addrs(), &[IpAddr::V6(Ipv6Addr::LOCALHOST)]);
        let c = range("127.0.9.0/30");
        assert_eq!(c.addrs(), &[v4("127.0.9.1"), v4("127.0.9.2")]);
        assert_eq!(range("127.0.9.7/32").addrs(), &[v4("127.0.9.7")]);
        assert_eq!(range("127.0.0.0/24").len(), 254);
        let l = range("127.0.0.2, 127.0.0.4-127.0.0.5");
        assert_eq!(l.addrs(), &[v4("127.0.0.2"), v4("127.0.0.4"), v4("127.0.0.5")]);
        assert_eq!(l.to_string(), "127.0.0.2, 127.0.0.4-127.0.0.5");
    }

    #[test]
    fn malformed_ranges_are_rejected() {
        assert!(err("127.0.0.9-127.0.0.1").contains("backwards"));
        assert!(err("127.0.0.1-::1").contains("families"));
        assert!(err("127.0.0.1,::1").contains("mixes"));
        assert!(err("127.0.0.1,127.0.0.1").contains("twice"));
        assert!(err("127.0.0.1-127.0.0.3,127.0.0.2").contains("twice"));
        assert!(err("127.0.0.0/8").contains("more than"));
        assert!(err("127.0.0.0/33").contains("prefix"));
        assert!(err("localhost").contains("not an IP"));
        assert!(err("").contains("empty"));
        assert!(err("127.0.0.1,").contains("empty"));
        assert!(err("0.0.0.0").contains("cannot be a source"));
        assert!(err("127.0.0.256").contains("not an IP"));
    }

    #[test]
    fn exactly_the_maximum_is_accepted() {
        assert_eq!(range("127.1.0.0-127.1.255.255").len(), MAX_ADDRESSES);
        assert!(err("127.1.0.0-127.2.0.0").contains("more than"));
    }

    #[test]
    fn loopback_target_accepts_only_loopback_sources() {
        let target: SocketAddr = "127.0.0.1:4702".parse().unwrap();
        assert!(range("127.0.1.1-127.0.1.9").check_for_target(target).is_ok());
        let e = range("127.0.0.1,10.0.0.1").check_for_target(target).unwrap_err();
        assert!(e.to_string().contains("10.0.0.1 is not a loopback"), "{e}");
        let e = range("192.168.1.10").check_for_target(target).unwrap_err();
        assert!(e.to_string().contains("not a loopback"), "{e}");
        let e = range("::1").check_for_target(target).unwrap_err();
        assert!(e.to_string().contains("family"), "{e}");
        let v6: SocketAddr = "[::1]:4702".parse().unwrap();
        assert!(range("::1").check_for_target(v6).is_ok());
    }

    #[test]
    fn loopback_sources_cannot_reach_a_remote_target() {
        let target: SocketAddr = "10.1.2.3:4702".parse().unwrap();
        assert!(range("127.0.0.1").check_for_target(target).is_err());
        assert!(range("10.1.2.10-10.1.2.20").check_for_target(target).is_ok());
    }

    #[test]
    fn attack_sources_default_to_a_disjoint_loopback_range() {
        let lo: SocketAddr = "127.0.0.1:4702".parse().unwrap();
        let attack = resolve_attack_sources(None, lo).unwrap();
        let joiners = range(DEFAULT_LOOPBACK_V4);
        assert!(attack.addrs().iter().all(|a| a.is_loopback() && !joiners.addrs().contains(a)));
        assert_eq!(attack.len(), 8 * 256 - 2);
        assert!(resolve_attack_sources(None, "[::1]:4702".parse().unwrap()).is_err());
        assert!(resolve_attack_sources(None, "10.0.0.7:4702".parse().unwrap()).is_err());
        assert!(resolve_attack_sources(Some(range("10.0.0.9")), lo).is_err());
    }

    #[test]
    fn defaults_never_leave_loopback() {
        let lo: SocketAddr = "127.0.0.1:4702".parse().unwrap();
        match Sources::resolve(None, lo).unwrap() {
            Sources::Range(r) => assert!(r.addrs().iter().all(|a| a.is_loopback())),
            Sources::System => panic!("loopback target must get a loopback range"),
        }
        let lo6: SocketAddr = "[::1]:4702".parse().unwrap();
        assert_eq!(Sources::resolve(None, lo6).unwrap().addrs(), &[IpAddr::V6(Ipv6Addr::LOCALHOST)]);
        let remote: SocketAddr = "10.0.0.7:4702".parse().unwrap();
        assert_eq!(Sources::resolve(None, remote).unwrap(), Sources::System);
        assert!(Sources::resolve(Some(range("127.0.0.2")), remote).is_err());
    }
}
