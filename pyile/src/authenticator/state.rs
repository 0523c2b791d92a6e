//! The authenticator's rules, as a plain synchronous state machine: who is a member, which
//! handshakes are pending, which addresses are banned, the member list's versions and when
//! each was published, how long a member's distribution writer waits between two lists, and
//! when a member still lacking a list counts as having lost its distribution connection.
//!
//! Nothing here touches a socket, a timer or tokio: time comes in as a [`Duration`] since
//! the authenticator started, and what a task attaches to a member or a pending handshake
//! (its cancellation token, the channel that hands it the distribution connection) is a type
//! parameter the state only stores and gives back. So every rule can be unit-tested directly
//! (the tests at the bottom), the async tasks in the sibling modules only move bytes and
//! timers, and `sim`'s cost model calls [`Pacing`] instead of re-deriving it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::config::AuthenticatorConfig;
use crate::member_list::MemberList;

/// How long a member's distribution writer waits after sending a list before it sends the
/// newest one again: the coalescing window of a member's protocol (the distribution interval
/// for protocol 2, the v1 pacing for reference joiners), stretched under a distribution budget
/// to what one full round of the current list costs at that budget, but never longer than
/// [`AuthenticatorConfig::max_distribution_gap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pacing {
    budget: u64,
    min_gap: Duration,
    max_gap: Duration,
}

impl Pacing {
    /// The pacing an authenticator configured with `cfg` applies to a protocol-2 member
    /// (`v2`) or to a reference (v1) member.
    pub fn of(cfg: &AuthenticatorConfig, v2: bool) -> Self {
        Pacing {
            budget: cfg.distribution_budget,
            min_gap: if v2 { cfg.distribution_interval } else { cfg.v1_pacing },
            max_gap: cfg.max_distribution_gap(),
        }
    }

    /// The gap after a list of `list_bytes` encoded bytes while the list has `list_len`
    /// entries (one round sends it to every entry but the authenticator; the budget counts
    /// `list_len` for simplicity and a little slack).
    pub fn gap(&self, list_bytes: usize, list_len: usize) -> Duration {
        self.min_gap.max(self.round_gap(list_bytes, list_len))
    }

    /// One round of the list at the budget, capped at the longest gap (zero without budget).
    fn round_gap(&self, list_bytes: usize, list_len: usize) -> Duration {
        if self.budget == 0 {
            return Duration::ZERO;
        }
        let round = list_bytes as u128 * list_len as u128;
        let nanos = u64::try_from(round * 1_000_000_000 / self.budget as u128).unwrap_or(u64::MAX);
        Duration::from_nanos(nanos).min(self.max_gap)
    }
}

/// The outcome of a password check for one source IP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasswordCheck {
    /// Right password; the IP's failed attempts are forgotten.
    Accepted,
    /// Right password, but another connection from the same IP got it banned meanwhile.
    BannedMeanwhile,
    /// Wrong password: `attempts` failures so far from this IP, and whether that just
    /// banned it (its count is then reset).
    Wrong {
        /// Failed attempts from this IP, this one included.
        attempts: u32,
        /// Whether this attempt banned the IP.
        banned: bool,
    },
}

/// A member, with what the tasks attached to it.
#[derive(Clone, Debug)]
struct Member<M> {
    id: u64,
    peer_addr: SocketAddr,
    attached: M,
}

/// A handshake that sent its peer address and waits for its distribution connection.
#[derive(Debug)]
struct Pending<P> {
    ip: IpAddr,
    v2: bool,
    attached: P,
}

/// A member that left the list.
#[derive(Debug)]
pub struct Removed<M> {
    /// Its peer address.
    pub peer_addr: SocketAddr,
    /// What its tasks attached to it.
    pub attached: M,
}

/// A joiner that just became a member.
#[derive(Debug)]
pub struct Admission<M> {
    /// Its member id (never reused).
    pub id: u64,
    /// Offset of its heartbeat ticks within one interval (drawn from the seeded RNG).
    pub phase: Duration,
    /// Members with the same peer address, replaced by it (in list order).
    pub replaced: Vec<Removed<M>>,
    /// The list that admitted it (already published).
    pub list: MemberList,
}

/// The authenticator's state: members (in admission order, the list's order), pending
/// handshakes, failed attempts and bans, and the published versions. `M` is what the tasks
/// attach to a member, `P` what they attach to a pending handshake.
#[derive(Debug)]
pub struct AuthState<M, P> {
    password: String,
    password_attempts: u32,
    heartbeat_interval: Duration,
    distribution_timeout: Duration,
    own_addr: SocketAddr,
    version: u64,
    /// When recent versions were published, oldest first (see
    /// [`AuthState::distribution_overdue`]); always holds the current version.
    published: VecDeque<(u64, Duration)>,
    members: Vec<Member<M>>,
    attempts: BTreeMap<IpAddr, u32>,
    banned: BTreeSet<IpAddr>,
    pending: BTreeMap<u64, Pending<P>>,
    next_token: u64,
    next_member: u64,
    rng: ChaCha8Rng,
}

impl<M, P> AuthState<M, P> {
    /// A state with no members, list version 0 published at `now`; `own_addr` is the
    /// authenticator's own peer address, first in every list.
    pub fn new(cfg: &AuthenticatorConfig, own_addr: SocketAddr, now: Duration) -> Self {
        AuthState {
            password: cfg.password.clone(),
            password_attempts: cfg.password_attempts,
            heartbeat_interval: cfg.heartbeat_interval,
            distribution_timeout: cfg.effective_distribution_timeout(),
            own_addr,
            version: 0,
            published: VecDeque::from([(0, now)]),
            members: Vec::new(),
            attempts: BTreeMap::new(),
            banned: BTreeSet::new(),
            pending: BTreeMap::new(),
            next_token: 1,
            next_member: 1,
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
        }
    }

    /// The current list: the authenticator first, then the members in admission order.
    pub fn list(&self) -> MemberList {
        MemberList::new(Some(self.version), self.addrs())
    }

    fn addrs(&self) -> Vec<SocketAddr> {
        std::iter::once(self.own_addr).chain(self.members.iter().map(|m| m.peer_addr)).collect()
    }

    /// The current list's version.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Number of members (the authenticator not counted).
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// Whether `ip` is banned.
    pub fn is_banned(&self, ip: IpAddr) -> bool {
        self.banned.contains(&ip)
    }

    /// Banned IPs, in order.
    pub fn banned(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.banned.iter().copied()
    }

    /// Checks a password from `ip`, counting failures per IP and banning at the limit.
    pub fn check_password(&mut self, ip: IpAddr, password: &str) -> PasswordCheck {
        if password != self.password {
            let n = self.attempts.entry(ip).or_insert(0);
            *n += 1;
            let attempts = *n;
            let banned = attempts >= self.password_attempts;
            if banned {
                self.attempts.remove(&ip);
                self.banned.insert(ip);
            }
            return PasswordCheck::Wrong { attempts, banned };
        }
        self.attempts.remove(&ip);
        if self.banned.contains(&ip) { PasswordCheck::BannedMeanwhile } else { PasswordCheck::Accepted }
    }

    /// Records a handshake from `ip` that sent `peer_addr` and now waits for its distribution
    /// connection. Returns its token (sent to protocol-2 joiners in `dist_addr`) and the
    /// joiner's first, provisional list: the current list without `peer_addr`, then
    /// `peer_addr` last (the reference sends the joiner itself too).
    pub fn add_pending(&mut self, ip: IpAddr, v2: bool, peer_addr: SocketAddr, attached: P) -> (u64, Vec<SocketAddr>) {
        let token = self.next_token;
        self.next_token += 1;
        self.pending.insert(token, Pending { ip, v2, attached });
        let mut list = self.addrs();
        list.retain(|m| *m != peer_addr);
        list.push(peer_addr);
        (token, list)
    }

    /// Forgets pending handshake `token` (it failed or completed); false if it was gone.
    pub fn drop_pending(&mut self, token: u64) -> bool {
        self.pending.remove(&token).is_some()
    }

    /// Handshakes waiting for their distribution connection.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Whether a distribution connection from `ip` should start with a token: some pending
    /// protocol-2 handshake from that IP waits for one.
    pub fn expects_token(&self, ip: IpAddr) -> bool {
        self.pending.values().any(|p| p.ip == ip && p.v2)
    }

    /// Claims the pending handshake a distribution connection from `ip` belongs to: the one
    /// with `token` (which must come from the same IP), or without a token the oldest pending
    /// reference handshake from that IP (the reference pairs blindly).
    pub fn claim_pending(&mut self, ip: IpAddr, token: Option<u64>) -> Option<P> {
        let key = match token {
            Some(t) => self.pending.get(&t).filter(|p| p.ip == ip).map(|_| t),
            None => self.pending.iter().find(|(_, p)| p.ip == ip && !p.v2).map(|(k, _)| *k),
        };
        key.and_then(|k| self.pending.remove(&k)).map(|p| p.attached)
    }

    /// Makes the joiner from `ip` at `peer_addr` a member and publishes the new list at
    /// `now`. A member already listed at `peer_addr` is replaced. Refused (None) if `ip` was
    /// banned meanwhile.
    pub fn admit(&mut self, ip: IpAddr, peer_addr: SocketAddr, attached: M, now: Duration) -> Option<Admission<M>> {
        if self.banned.contains(&ip) {
            return None;
        }
        let mut replaced = Vec::new();
        while let Some(pos) = self.members.iter().position(|m| m.peer_addr == peer_addr) {
            let m = self.members.remove(pos);
            replaced.push(Removed { peer_addr: m.peer_addr, attached: m.attached });
        }
        let id = self.next_member;
        self.next_member += 1;
        self.members.push(Member { id, peer_addr, attached });
        let interval_ms = self.heartbeat_interval.as_millis().max(1) as u64;
        let phase = Duration::from_millis(self.rng.random_range(0..interval_ms));
        let list = self.publish(now);
        Some(Admission { id, phase, replaced, list })
    }

    /// Removes member `id` and publishes the new list at `now`; None if it is no longer a
    /// member (removed meanwhile).
    pub fn remove(&mut self, id: u64, now: Duration) -> Option<(Removed<M>, MemberList)> {
        let pos = self.members.iter().position(|m| m.id == id)?;
        let m = self.members.remove(pos);
        let list = self.publish(now);
        Some((Removed { peer_addr: m.peer_addr, attached: m.attached }, list))
    }

    /// Bumps the version and records its publication time.
    fn publish(&mut self, now: Duration) -> MemberList {
        self.version += 1;
        self.published.push_back((self.version, now));
        // Keep what `distribution_overdue` can need: versions published in the last two
        // bounds (older ones are overdue for anyone lacking them).
        let horizon = self.distribution_timeout * 2;
        while self.published.len() > 1 && self.published.front().is_some_and(|&(_, t)| now.saturating_sub(t) > horizon)
        {
            self.published.pop_front();
        }
        self.list()
    }

    /// For a protocol-2 member whose newest list is version `held`: the oldest version it
    /// lacks and how long ago that was published, if longer ago than the distribution timeout
    /// ([`AuthenticatorConfig::effective_distribution_timeout`]): it should have reported it
    /// by now, so its distribution connection is lost.
    pub fn distribution_overdue(&self, held: u64, now: Duration) -> Option<(u64, Duration)> {
        let &(first, _) = self.published.front()?;
        if first > held.saturating_add(1) {
            // `held + 1` was pruned: published more than two bounds ago.
            return Some((held + 1, self.distribution_timeout * 2));
        }
        let &(missing, at) = self.published.iter().find(|(v, _)| *v > held)?;
        let age = now.saturating_sub(at);
        (age > self.distribution_timeout).then_some((missing, age))
    }
}

/// One member's liveness, from its heartbeat answers: when it was last heard and which list
/// version it reported holding. The heartbeat task feeds it answers and asks it on each tick.
#[derive(Clone, Debug)]
pub struct Liveness {
    interval: Duration,
    timeout: Duration,
    last_heard: Duration,
    missed_reported: bool,
    /// For a protocol-2 member: the version it is known to hold so far.
    floor: Option<u64>,
    held: Option<u64>,
}

/// What a heartbeat tick finds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tick {
    /// Heard from recently enough.
    Alive,
    /// Silent for more than one and a half intervals (reported once per silence).
    Missed(Duration),
    /// Silent for more than the heartbeat timeout: remove it.
    TimedOut,
}

impl Liveness {
    /// A member admitted at `now`. `floor` is given for a protocol-2 member: the version it
    /// holds so far (one below the list that admitted it). Once its answers carry list
    /// versions it is held to them (see [`Liveness::held`]); a member answering with plain
    /// heartbeats does not report, so it is never judged by versions.
    pub fn new(cfg: &AuthenticatorConfig, now: Duration, floor: Option<u64>) -> Self {
        Liveness {
            interval: cfg.heartbeat_interval,
            timeout: cfg.effective_heartbeat_timeout(),
            last_heard: now,
            missed_reported: false,
            floor,
            held: None,
        }
    }

    /// A heartbeat answer at `now`, with the list version it reports, if any.
    pub fn heard(&mut self, now: Duration, version: Option<u64>) {
        self.last_heard = now;
        self.missed_reported = false;
        if let (Some(floor), Some(v)) = (self.floor, version) {
            self.held = Some(self.held.unwrap_or(floor).max(v));
        }
    }

    /// The newest list version the member has reported, once it reports versions.
    pub fn held(&self) -> Option<u64> {
        self.held
    }

    /// How long it has been silent at `now`.
    pub fn silent(&self, now: Duration) -> Duration {
        now.saturating_sub(self.last_heard)
    }

    /// The verdict at a tick at `now`.
    pub fn tick(&mut self, now: Duration) -> Tick {
        let silent = self.silent(now);
        if silent > self.timeout {
            return Tick::TimedOut;
        }
        if silent > self.interval + self.interval / 2 && !self.missed_reported {
            self.missed_reported = true;
            return Tick::Missed(silent);
        }
        Tick::Alive
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }
    const AUTH: &str = "10.0.0.1:5000";
    fn cfg() -> AuthenticatorConfig {
        AuthenticatorConfig::new("pw").password_attempts(3).heartbeat_interval(Duration::from_secs(2))
    }
    fn state() -> AuthState<&'static str, u32> {
        AuthState::new(&cfg(), addr(AUTH), Duration::ZERO)
    }
    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn starts_with_the_authenticator_alone_at_version_0() {
        let st = state();
        assert_eq!(st.list(), MemberList::new(Some(0), vec![addr(AUTH)]));
        assert_eq!((st.member_count(), st.pending_count()), (0, 0));
    }

    #[test]
    fn wrong_passwords_ban_at_the_limit_and_a_right_one_resets_the_count() {
        let mut st = state();
        let a = ip("10.0.0.7");
        assert_eq!(st.check_password(a, "x"), PasswordCheck::Wrong { attempts: 1, banned: false });
        assert_eq!(st.check_password(a, "pw"), PasswordCheck::Accepted);
        assert_eq!(st.check_password(a, "x"), PasswordCheck::Wrong { attempts: 1, banned: false });
        assert_eq!(st.check_password(a, "y"), PasswordCheck::Wrong { attempts: 2, banned: false });
        assert!(!st.is_banned(a));
        assert_eq!(st.check_password(a, "z"), PasswordCheck::Wrong { attempts: 3, banned: true });
        assert!(st.is_banned(a));
        assert_eq!(st.banned().collect::<Vec<_>>(), vec![a]);
        // A connection that had the right password in flight learns of the ban.
        assert_eq!(st.check_password(a, "pw"), PasswordCheck::BannedMeanwhile);
        // Other addresses are unaffected.
        assert_eq!(st.check_password(ip("10.0.0.8"), "pw"), PasswordCheck::Accepted);
    }

    #[test]
    fn a_joiner_is_a_member_only_once_admitted() {
        let mut st = state();
        let j = addr("10.0.0.2:6000");
        let (token, first) = st.add_pending(ip("10.0.0.2"), true, j, 7);
        // The provisional list holds the joiner itself, last, but nothing is published.
        assert_eq!(first, vec![addr(AUTH), j]);
        assert_eq!(st.list().members.to_vec(), vec![addr(AUTH)]);
        assert_eq!(st.version(), 0);
        // A failed handshake leaves no trace.
        assert!(st.drop_pending(token));
        assert_eq!(st.pending_count(), 0);
        assert_eq!(st.version(), 0);
        let adm = st.admit(ip("10.0.0.2"), j, "j", secs(1)).unwrap();
        assert_eq!(adm.list, MemberList::new(Some(1), vec![addr(AUTH), j]));
        assert!(adm.replaced.is_empty());
        assert!(adm.phase < secs(2));
        assert_eq!(st.list(), adm.list);
    }

    #[test]
    fn distribution_connections_pair_by_token_or_oldest_reference_handshake_from_the_ip() {
        let mut st = state();
        let (v2a, _) = st.add_pending(ip("10.0.0.2"), true, addr("10.0.0.2:1"), 1);
        let (_v1a, _) = st.add_pending(ip("10.0.0.3"), false, addr("10.0.0.3:1"), 2);
        let (_v1b, _) = st.add_pending(ip("10.0.0.3"), false, addr("10.0.0.3:2"), 3);
        assert!(st.expects_token(ip("10.0.0.2")));
        assert!(!st.expects_token(ip("10.0.0.3")));
        // A token only pairs from the IP that owns it.
        assert_eq!(st.claim_pending(ip("10.0.0.9"), Some(v2a)), None);
        assert_eq!(st.claim_pending(ip("10.0.0.2"), Some(v2a)), Some(1));
        assert_eq!(st.claim_pending(ip("10.0.0.2"), Some(v2a)), None);
        // Without a token: the oldest reference handshake from that IP, never a v2 one.
        assert_eq!(st.claim_pending(ip("10.0.0.3"), None), Some(2));
        assert_eq!(st.claim_pending(ip("10.0.0.3"), None), Some(3));
        assert_eq!(st.claim_pending(ip("10.0.0.3"), None), None);
        let (_, _) = st.add_pending(ip("10.0.0.4"), true, addr("10.0.0.4:1"), 4);
        assert_eq!(st.claim_pending(ip("10.0.0.4"), None), None);
    }

    #[test]
    fn a_ban_during_the_handshake_refuses_admission() {
        let mut st = state();
        for _ in 0..3 {
            st.check_password(ip("10.0.0.2"), "bad");
        }
        assert!(st.admit(ip("10.0.0.2"), addr("10.0.0.2:1"), "x", secs(1)).is_none());
        assert_eq!(st.version(), 0);
    }

    #[test]
    fn the_same_peer_address_replaces_the_old_member_and_removal_publishes() {
        let mut st = state();
        let a = addr("10.0.0.2:1");
        let b = addr("10.0.0.3:1");
        let first = st.admit(ip("10.0.0.2"), a, "a1", secs(1)).unwrap();
        st.admit(ip("10.0.0.3"), b, "b", secs(1)).unwrap();
        let again = st.admit(ip("10.0.0.2"), a, "a2", secs(2)).unwrap();
        assert_eq!(again.replaced.len(), 1);
        assert_eq!((again.replaced[0].peer_addr, again.replaced[0].attached), (a, "a1"));
        assert_eq!(again.list, MemberList::new(Some(3), vec![addr(AUTH), b, a]));
        // The replaced member's id is gone; removing it again is a no-op.
        assert!(st.remove(first.id, secs(3)).is_none());
        let (gone, list) = st.remove(again.id, secs(3)).unwrap();
        assert_eq!((gone.peer_addr, gone.attached), (a, "a2"));
        assert_eq!(list, MemberList::new(Some(4), vec![addr(AUTH), b]));
        assert!(again.id > first.id);
    }

    #[test]
    fn heartbeat_phases_come_from_the_seed() {
        let phases = |seed| {
            let mut st: AuthState<(), ()> = AuthState::new(&cfg().seed(seed), addr(AUTH), Duration::ZERO);
            (1..=20u16)
                .map(|p| st.admit(ip("10.0.0.2"), SocketAddr::new(ip("10.0.0.2"), p), (), secs(1)).unwrap().phase)
                .collect::<Vec<_>>()
        };
        assert_eq!(phases(7), phases(7));
        assert_ne!(phases(7), phases(8));
    }

    #[test]
    fn a_member_lacking_a_list_is_overdue_only_after_the_distribution_timeout() {
        let c = cfg();
        let bound = c.effective_distribution_timeout();
        let mut st: AuthState<(), ()> = AuthState::new(&c, addr(AUTH), Duration::ZERO);
        let t1 = secs(10);
        st.admit(ip("10.0.0.2"), addr("10.0.0.2:1"), (), t1).unwrap(); // v1
        // Holding v0 while v1 is fresh: fine; at the bound: fine; past it: overdue.
        assert_eq!(st.distribution_overdue(0, t1), None);
        assert_eq!(st.distribution_overdue(0, t1 + bound), None);
        let late = t1 + bound + Duration::from_millis(1);
        assert_eq!(st.distribution_overdue(0, late), Some((1, bound + Duration::from_millis(1))));
        // Holding the newest list: never overdue.
        assert_eq!(st.distribution_overdue(1, late), None);
        // A member that skipped to a newer list (coalescing) is judged by what it lacks.
        let t2 = late;
        st.admit(ip("10.0.0.3"), addr("10.0.0.3:1"), (), t2).unwrap(); // v2
        assert_eq!(st.distribution_overdue(1, t2 + bound), None);
        assert_eq!(st.distribution_overdue(0, t2), Some((1, t2 - t1)));
    }

    #[test]
    fn versions_older_than_two_bounds_are_pruned_and_still_overdue() {
        let c = cfg();
        let bound = c.effective_distribution_timeout();
        let mut st: AuthState<(), ()> = AuthState::new(&c, addr(AUTH), Duration::ZERO);
        for i in 1..=5u16 {
            st.admit(ip("10.0.0.2"), SocketAddr::new(ip("10.0.0.2"), i), (), bound * 3 * u32::from(i)).unwrap();
        }
        // Only what can still matter is kept (the newest always).
        assert!(st.published.len() <= 2, "{:?}", st.published);
        assert_eq!(st.published.back().map(|p| p.0), Some(5));
        let now = bound * 15;
        assert_eq!(st.distribution_overdue(0, now), Some((1, bound * 2)));
        assert_eq!(st.distribution_overdue(5, now), None);
    }

    #[test]
    fn pacing_spaces_lists_by_a_round_at_the_budget_within_its_bounds() {
        let c = AuthenticatorConfig::new("pw")
            .distribution_budget(1_000_000)
            .distribution_interval(Duration::from_millis(10))
            .v1_pacing(Duration::from_millis(50))
            .heartbeat_interval(Duration::from_secs(1));
        let v2 = Pacing::of(&c, true);
        let v1 = Pacing::of(&c, false);
        // Small lists: the coalescing window of the member's protocol.
        assert_eq!(v2.gap(100, 4), Duration::from_millis(10));
        assert_eq!(v1.gap(100, 4), Duration::from_millis(50));
        // 100 entries of 23 bytes to 100 members at 1 MB/s: 230 ms, for either protocol.
        assert_eq!(v2.gap(2_300, 100), Duration::from_millis(230));
        assert_eq!(v1.gap(2_300, 100), Duration::from_millis(230));
        // Capped at the longest gap, the heartbeat timeout (3 s).
        assert_eq!(v2.gap(230_000, 10_000), c.max_distribution_gap());
        assert_eq!(c.max_distribution_gap(), Duration::from_secs(3));
        // Unbounded: only the window, whatever the size.
        let free = Pacing::of(&c.clone().distribution_budget(0), true);
        assert_eq!(free.gap(230_000, 10_000), Duration::from_millis(10));
    }

    #[test]
    fn silence_is_reported_once_past_one_and_a_half_intervals_and_removed_past_the_timeout() {
        let c = cfg(); // 2 s interval, 6 s timeout
        let mut l = Liveness::new(&c, secs(0), None);
        assert_eq!(l.tick(secs(3)), Tick::Alive);
        assert_eq!(l.tick(Duration::from_millis(3001)), Tick::Missed(Duration::from_millis(3001)));
        assert_eq!(l.tick(secs(4)), Tick::Alive, "a silence is reported once");
        l.heard(secs(5), None);
        assert_eq!(l.tick(Duration::from_millis(8001)), Tick::Missed(Duration::from_millis(3001)));
        assert_eq!(l.tick(secs(11)), Tick::Alive);
        assert_eq!(l.tick(Duration::from_millis(11_001)), Tick::TimedOut);
    }

    #[test]
    fn only_protocol_2_members_are_held_to_the_versions_they_report() {
        let c = cfg();
        let mut v1 = Liveness::new(&c, secs(0), None);
        v1.heard(secs(1), Some(9));
        assert_eq!(v1.held(), None);
        let mut v2 = Liveness::new(&c, secs(0), Some(4));
        v2.heard(secs(1), None);
        assert_eq!(v2.held(), None, "plain heartbeats report nothing");
        v2.heard(secs(2), Some(3));
        assert_eq!(v2.held(), Some(4), "never below the list that admitted it");
        v2.heard(secs(3), Some(7));
        v2.heard(secs(4), Some(6));
        assert_eq!(v2.held(), Some(7), "an older report does not move it back");
    }
}
