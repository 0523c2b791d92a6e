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
//!
//! Every table here is bounded by configuration, never by what peers send: handshakes in
//! progress (in all and per source), bans and failed attempts. A *source* is one IPv4
//! address or one IPv6 /64 ([`source_key`]): one host usually holds a whole /64, so
//! counting IPv6 per address would let it take 2^64 slots.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use subtle::ConstantTimeEq;

use super::config::AuthenticatorConfig;
use crate::member_list::{AliasMap, Delta, Departure, MemberList};
use crate::wire::Refusal;

/// How long a member's distribution writer waits after sending a list before it sends the
/// newest one again: the coalescing window of a member's protocol (the distribution interval
/// for protocol 2, the v1 pacing for reference joiners), stretched under a distribution budget
/// to what one full round of the current list costs at that budget, but never longer than
/// [`AuthenticatorConfig::max_distribution_gap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pacing {
    budget: u64,
    /// Writes per second one round may cost (protocol 2; 0 = unbounded).
    writes: u64,
    min_gap: Duration,
    max_gap: Duration,
}

impl Pacing {
    /// The pacing an authenticator configured with `cfg` applies to a protocol-2 member
    /// (`v2`) or to a reference (v1) member. Protocol-2 members receive deltas, which cost
    /// O(change) bytes whatever the list's size, so the byte budget does not pace them; the
    /// delta rate does, by writes: a round is one write per member.
    pub fn of(cfg: &AuthenticatorConfig, v2: bool) -> Self {
        Pacing {
            budget: if v2 { 0 } else { cfg.distribution_budget },
            writes: if v2 { cfg.delta_rate } else { 0 },
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
        let (round, rate) = match (self.budget, self.writes) {
            (0, 0) => return Duration::ZERO,
            (0, writes) => (list_len as u128, writes),
            (budget, _) => (list_bytes as u128 * list_len as u128, budget),
        };
        let nanos = u64::try_from(round * 1_000_000_000 / rate as u128).unwrap_or(u64::MAX);
        Duration::from_nanos(nanos).min(self.max_gap)
    }
}

/// The key handshakes, attempts and bans are counted under: an IPv4 address as it is, an
/// IPv6 address as its /64 network (an IPv4-mapped IPv6 address as the IPv4 address).
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

/// Why a new connection got no handshake slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceFull;

/// A handshake shed to make room for a new connection.
#[derive(Debug)]
pub struct Shed<H> {
    /// Its source IP.
    pub ip: IpAddr,
    /// What its task attached to it.
    pub attached: H,
}

/// Why a joiner that completed its handshake was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdmitRefusal {
    /// Its source was banned meanwhile.
    Banned,
    /// Its peer address belongs to a member from another source.
    AddressTaken,
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
    source: IpAddr,
    peer_addr: SocketAddr,
    /// Its entry's key in the published [`MemberList`].
    key: u64,
    /// The alias it holds (protocol 2), reserved in [`AuthState`]'s alias table.
    alias: Option<Arc<str>>,
    attached: M,
}

/// Who holds an alias: a handshake that was granted it and is still in progress, or the
/// member it became.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Holder {
    Handshake(u64),
    Member(u64),
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
    /// The alias it held.
    pub alias: Option<Arc<str>>,
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
    /// The list that admitted it, and the change from the previous version.
    pub published: Publication,
}

/// A version of the list, as [`AuthState`] publishes it on every change: the list (an
/// O(1) clone of the state's own) and the change from the version before, both built in
/// O(change × log members).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publication {
    /// The new list.
    pub list: MemberList,
    /// The change from the previous version to this one (with its announcements: a reason
    /// per removal, an alias per addition).
    pub delta: Delta,
    /// The members' aliases at this version (an O(1) clone).
    pub aliases: AliasMap,
}

/// A connection in its handshake (from accept to admission).
#[derive(Debug)]
struct Handshake<H> {
    ip: IpAddr,
    /// The alias it was granted ([`AuthState::reserve_alias`]), if any.
    alias: Option<Arc<str>>,
    attached: H,
}

/// Bans and failed attempts per source, each table bounded (oldest entry forgotten first),
/// bans optionally expiring.
#[derive(Debug)]
struct Bans {
    attempts_to_ban: u32,
    limit: usize,
    ban_for: Option<Duration>,
    /// Banned sources and since when.
    banned: BTreeMap<IpAddr, Duration>,
    /// Failed attempts per source, and when the last one was.
    attempts: BTreeMap<IpAddr, (u32, Duration)>,
}

impl Bans {
    fn is_banned(&self, key: IpAddr, now: Duration) -> bool {
        self.banned.get(&key).is_some_and(|&since| self.ban_for.is_none_or(|d| now.saturating_sub(since) < d))
    }

    /// Inserts into a table bounded at `limit`, forgetting the oldest entry when full.
    fn insert_bounded<V>(
        table: &mut BTreeMap<IpAddr, V>,
        limit: usize,
        key: IpAddr,
        v: V,
        at: impl Fn(&V) -> Duration,
    ) {
        if !table.contains_key(&key) && table.len() >= limit {
            // O(table) only when full; the first oldest in key order, deterministically.
            if let Some(oldest) = table.iter().min_by_key(|(k, v)| (at(v), **k)).map(|(k, _)| *k) {
                table.remove(&oldest);
            }
        }
        table.insert(key, v);
    }

    fn fail(&mut self, key: IpAddr, now: Duration) -> (u32, bool) {
        let n = self.attempts.get(&key).map_or(0, |&(n, _)| n) + 1;
        if n >= self.attempts_to_ban {
            self.attempts.remove(&key);
            self.banned.remove(&key); // an expired ban is renewed from now
            Self::insert_bounded(&mut self.banned, self.limit, key, now, |&t| t);
            (n, true)
        } else {
            Self::insert_bounded(&mut self.attempts, self.limit, key, (n, now), |&(_, t)| t);
            (n, false)
        }
    }
}

/// The authenticator's state: members (in admission order, the list's order), handshakes in
/// progress and pending their distribution connection, failed attempts and bans, and the
/// published versions. `M` is what the tasks attach to a member, `P` to a handshake waiting
/// for its distribution connection, `H` to a handshake in progress.
#[derive(Debug)]
pub struct AuthState<M, P, H = ()> {
    password: String,
    heartbeat_interval: Duration,
    distribution_timeout: Duration,
    own_addr: SocketAddr,
    version: u64,
    /// When recent versions were published, oldest first (see
    /// [`AuthState::distribution_overdue`]); always holds the current version.
    published: VecDeque<(u64, Duration)>,
    /// Members by id (ids grow with admissions, so this is list order).
    members: BTreeMap<u64, Member<M>>,
    /// Member ids by peer address (looked up, never iterated: no order reaches output).
    by_addr: HashMap<SocketAddr, u64>,
    /// The current list, kept up to date change by change (O(log n) each).
    list: MemberList,
    /// Who holds each alias (members and handshakes in progress: bounded by both tables).
    aliases: BTreeMap<Arc<str>, Holder>,
    /// The members' aliases by peer address, as published.
    alias_of: AliasMap,
    max_alias_len: usize,
    pending: BTreeMap<u64, Pending<P>>,
    handshakes: BTreeMap<u64, Handshake<H>>,
    per_source: BTreeMap<IpAddr, usize>,
    max_handshakes: usize,
    max_per_source: usize,
    foreign_peer_addresses: bool,
    bans: Bans,
    next_token: u64,
    next_member: u64,
    next_handshake: u64,
    rng: ChaCha8Rng,
}

impl<M, P, H> AuthState<M, P, H> {
    /// A state with no members, list version 0 published at `now`; `own_addr` is the
    /// authenticator's own peer address, first in every list.
    pub fn new(cfg: &AuthenticatorConfig, own_addr: SocketAddr, now: Duration) -> Self {
        AuthState {
            password: cfg.password.clone(),
            heartbeat_interval: cfg.heartbeat_interval,
            distribution_timeout: cfg.effective_distribution_timeout(),
            own_addr,
            version: 0,
            published: VecDeque::from([(0, now)]),
            members: BTreeMap::new(),
            by_addr: HashMap::new(),
            list: MemberList::new(Some(0), [own_addr]),
            aliases: BTreeMap::new(),
            alias_of: AliasMap::new(),
            max_alias_len: cfg.max_alias_len,
            pending: BTreeMap::new(),
            handshakes: BTreeMap::new(),
            per_source: BTreeMap::new(),
            max_handshakes: cfg.max_handshakes,
            max_per_source: cfg.max_handshakes_per_source,
            foreign_peer_addresses: cfg.foreign_peer_addresses,
            bans: Bans {
                attempts_to_ban: cfg.password_attempts,
                limit: cfg.max_bans,
                ban_for: cfg.ban_for,
                banned: BTreeMap::new(),
                attempts: BTreeMap::new(),
            },
            next_token: 1,
            next_member: 1,
            next_handshake: 1,
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
        }
    }

    /// The current list: the authenticator first, then the members in admission order
    /// (an O(1) clone).
    pub fn list(&self) -> MemberList {
        self.list.clone()
    }

    /// The current list's version.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Number of members (the authenticator not counted).
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// Whether `ip`'s source is banned at `now`.
    pub fn is_banned(&self, ip: IpAddr, now: Duration) -> bool {
        self.bans.is_banned(source_key(ip), now)
    }

    /// Banned sources (IPv4 addresses, IPv6 /64 networks) at `now`, in order.
    pub fn banned(&self, now: Duration) -> impl Iterator<Item = IpAddr> + '_ {
        self.bans.banned.keys().copied().filter(move |&k| self.bans.is_banned(k, now))
    }

    /// Checks a password from `ip` at `now` (in constant time for equal lengths), counting
    /// failures per source and banning it at the limit.
    pub fn check_password(&mut self, ip: IpAddr, password: &str, now: Duration) -> PasswordCheck {
        let right = bool::from(password.as_bytes().ct_eq(self.password.as_bytes()));
        self.record_password(ip, right, now)
    }

    /// Counts the outcome of a password check done elsewhere (a SCRAM proof, or a cleartext
    /// password checked against a stored verifier) exactly as [`AuthState::check_password`]
    /// counts its own: a failure counts toward the source's ban, a success forgets its
    /// failed attempts.
    pub fn record_password(&mut self, ip: IpAddr, right: bool, now: Duration) -> PasswordCheck {
        let key = source_key(ip);
        if !right {
            let (attempts, banned) = self.bans.fail(key, now);
            return PasswordCheck::Wrong { attempts, banned };
        }
        self.bans.attempts.remove(&key);
        if self.bans.is_banned(key, now) { PasswordCheck::BannedMeanwhile } else { PasswordCheck::Accepted }
    }

    /// A new connection from `ip` starts its handshake: refused if its source already has
    /// `max_handshakes_per_source` in progress; when all `max_handshakes` slots are taken,
    /// the oldest handshake in progress is shed (returned, for its task to be ended) to
    /// make room. Returns the handshake's id.
    pub fn begin_handshake(&mut self, ip: IpAddr, attached: H) -> Result<(u64, Option<Shed<H>>), SourceFull> {
        let key = source_key(ip);
        if self.per_source.get(&key).copied().unwrap_or(0) >= self.max_per_source {
            return Err(SourceFull);
        }
        let shed = if self.handshakes.len() >= self.max_handshakes {
            self.handshakes.keys().next().copied().and_then(|oldest| self.end_handshake(oldest))
        } else {
            None
        };
        let id = self.next_handshake;
        self.next_handshake += 1;
        self.handshakes.insert(id, Handshake { ip, alias: None, attached });
        *self.per_source.entry(key).or_insert(0) += 1;
        Ok((id, shed.map(|h| Shed { ip: h.ip, attached: h.attached })))
    }

    /// Handshake `id` ended (admitted, failed or shed); returns it if it was in progress.
    /// An alias it still holds (it was not admitted) is free again.
    fn end_handshake(&mut self, id: u64) -> Option<Handshake<H>> {
        let h = self.handshakes.remove(&id)?;
        if let Some(a) = &h.alias
            && self.aliases.get(a) == Some(&Holder::Handshake(id))
        {
            self.aliases.remove(a);
        }
        let key = source_key(h.ip);
        if let Some(n) = self.per_source.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&key);
            }
        }
        Some(h)
    }

    /// Handshake `id` ended, however it ended.
    pub fn finish_handshake(&mut self, id: u64) {
        self.end_handshake(id);
    }

    /// Grants `alias` to handshake `id` (a protocol-2 joiner whose password was right), in
    /// the same critical section as the check: refused as [`Refusal::BadAlias`] if it is
    /// empty, longer than the configured bound or holds control characters, as
    /// [`Refusal::AliasTaken`] if a member or another handshake in progress holds it. The
    /// alias passes to the member at admission and is free again when the handshake fails
    /// or the member is removed. So of two joins racing with one alias, exactly one gets it.
    pub fn reserve_alias(&mut self, id: u64, alias: &str) -> Result<Arc<str>, Refusal> {
        if alias.is_empty() || alias.len() > self.max_alias_len || alias.chars().any(char::is_control) {
            return Err(Refusal::BadAlias);
        }
        if self.aliases.contains_key(alias) {
            return Err(Refusal::AliasTaken);
        }
        let Some(h) = self.handshakes.get_mut(&id) else {
            // Shed meanwhile: its task is ending.
            return Err(Refusal::Other("handshake ended".into()));
        };
        let alias: Arc<str> = Arc::from(alias);
        if let Some(old) = h.alias.replace(alias.clone()) {
            self.aliases.remove(&old);
        }
        self.aliases.insert(alias.clone(), Holder::Handshake(id));
        Ok(alias)
    }

    /// The member (or handshake in progress) holding `alias`, as `Ok(member id)` or
    /// `Err(handshake id)`.
    pub fn alias_holder(&self, alias: &str) -> Option<Result<u64, u64>> {
        self.aliases.get(alias).map(|h| match *h {
            Holder::Member(id) => Ok(id),
            Holder::Handshake(id) => Err(id),
        })
    }

    /// The members' aliases by peer address (an O(1) clone).
    pub fn aliases(&self) -> AliasMap {
        self.alias_of.clone()
    }

    /// Handshakes in progress.
    pub fn handshake_count(&self) -> usize {
        self.handshakes.len()
    }

    /// Whether the connection from `ip` may announce `peer_addr`: its own IP, unless
    /// foreign peer addresses are allowed (NAT).
    pub fn peer_address_allowed(&self, ip: IpAddr, peer_addr: SocketAddr) -> bool {
        self.foreign_peer_addresses || peer_addr.ip() == ip
    }

    /// Records a handshake from `ip` that sent `peer_addr` and now waits for its distribution
    /// connection. Returns its token (sent to protocol-2 joiners in `dist_addr`) and the
    /// joiner's first, provisional list: the current list without `peer_addr`, then
    /// `peer_addr` last (the reference sends the joiner itself too), unversioned. O(log n):
    /// the caller encodes it after letting go of the state.
    pub fn add_pending(&mut self, ip: IpAddr, v2: bool, peer_addr: SocketAddr, attached: P) -> (u64, MemberList) {
        let token = self.next_token;
        self.next_token += 1;
        self.pending.insert(token, Pending { ip, v2, attached });
        (token, self.provisional_list(peer_addr))
    }

    /// The provisional first list of a joiner at `peer_addr`: the committed list with it
    /// last, unversioned (an O(log n) change of a persistent list). A one-connection joiner
    /// gets it without a pending entry: it waits for no distribution connection.
    pub fn provisional_list(&self, peer_addr: SocketAddr) -> MemberList {
        self.list.provisional_for(peer_addr)
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
    /// `now`. A member already listed at `peer_addr` is replaced if it came from the same
    /// source (a rejoin before its old session was noticed gone); from another source, the
    /// newcomer is refused. Refused too if the source was banned meanwhile.
    pub fn admit(
        &mut self,
        ip: IpAddr,
        peer_addr: SocketAddr,
        attached: M,
        now: Duration,
    ) -> Result<Admission<M>, AdmitRefusal> {
        self.admit_from(None, ip, peer_addr, attached, now)
    }

    /// [`AuthState::admit`] for handshake `handshake`: the alias it was granted
    /// ([`AuthState::reserve_alias`]) passes to the member, listed and announced with it.
    pub fn admit_from(
        &mut self,
        handshake: Option<u64>,
        ip: IpAddr,
        peer_addr: SocketAddr,
        attached: M,
        now: Duration,
    ) -> Result<Admission<M>, AdmitRefusal> {
        let key = source_key(ip);
        if self.bans.is_banned(key, now) {
            return Err(AdmitRefusal::Banned);
        }
        // The authenticator's own address is never a member's: lists never repeat an
        // address, so a delta's removal by address is unambiguous.
        let existing = self.by_addr.get(&peer_addr).copied();
        if peer_addr == self.own_addr
            || existing.is_some_and(|id| self.members.get(&id).is_some_and(|m| source_key(m.source) != key))
        {
            return Err(AdmitRefusal::AddressTaken);
        }
        let mut replaced = Vec::new();
        let mut removed = Vec::new();
        if let Some(m) = existing.and_then(|id| self.take_member(id)) {
            removed.push((m.peer_addr, Departure::Replaced));
            replaced.push(Removed { peer_addr: m.peer_addr, alias: m.alias, attached: m.attached });
        }
        let id = self.next_member;
        self.next_member += 1;
        let alias = handshake.and_then(|h| self.handshakes.get(&h).and_then(|h| h.alias.clone()));
        if let Some(a) = &alias {
            self.aliases.insert(a.clone(), Holder::Member(id));
            self.alias_of.insert(peer_addr, a.clone());
        }
        let list_key = self.list.push(peer_addr);
        self.members.insert(id, Member { source: ip, peer_addr, key: list_key, alias: alias.clone(), attached });
        self.by_addr.insert(peer_addr, id);
        let interval_ms = self.heartbeat_interval.as_millis().max(1) as u64;
        let phase = Duration::from_millis(self.rng.random_range(0..interval_ms));
        let published = self.publish(now, removed, vec![(peer_addr, alias)]);
        Ok(Admission { id, phase, replaced, published })
    }

    /// Takes member `id` out of the tables and the list (not yet published); its alias is
    /// free again.
    fn take_member(&mut self, id: u64) -> Option<Member<M>> {
        let m = self.members.remove(&id)?;
        self.by_addr.remove(&m.peer_addr);
        self.list.remove_key(m.key);
        if let Some(a) = &m.alias {
            if self.aliases.get(a) == Some(&Holder::Member(id)) {
                self.aliases.remove(a);
            }
            self.alias_of.remove(&m.peer_addr);
        }
        Some(m)
    }

    /// Removes member `id` for `reason` (announced in the delta) and publishes the new list
    /// at `now`; None if it is no longer a member (removed meanwhile).
    pub fn remove(&mut self, id: u64, reason: Departure, now: Duration) -> Option<(Removed<M>, Publication)> {
        let m = self.take_member(id)?;
        let published = self.publish(now, vec![(m.peer_addr, reason)], Vec::new());
        Some((Removed { peer_addr: m.peer_addr, alias: m.alias, attached: m.attached }, published))
    }

    /// Bumps the version, records its publication time, and returns the new list with the
    /// change that made it.
    fn publish(
        &mut self,
        now: Duration,
        removed: Vec<(SocketAddr, Departure)>,
        added: Vec<(SocketAddr, Option<Arc<str>>)>,
    ) -> Publication {
        let base = self.version;
        self.version += 1;
        self.published.push_back((self.version, now));
        // Keep what `distribution_overdue` can need: versions published in the last two
        // bounds (older ones are overdue for anyone lacking them).
        let horizon = self.distribution_timeout * 2;
        while self.published.len() > 1 && self.published.front().is_some_and(|&(_, t)| now.saturating_sub(t) > horizon)
        {
            self.published.pop_front();
        }
        self.list.version = Some(self.version);
        let (removed, reasons) = removed.into_iter().unzip();
        let (added, aliases) = added.into_iter().unzip();
        let delta = Delta { base, version: self.version, removed, added, reasons, aliases };
        Publication { list: self.list(), delta, aliases: self.alias_of.clone() }
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
    fn state() -> AuthState<&'static str, u32, u32> {
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
        assert_eq!(st.check_password(a, "x", secs(1)), PasswordCheck::Wrong { attempts: 1, banned: false });
        assert_eq!(st.check_password(a, "pw", secs(1)), PasswordCheck::Accepted);
        assert_eq!(st.check_password(a, "x", secs(1)), PasswordCheck::Wrong { attempts: 1, banned: false });
        assert_eq!(st.check_password(a, "y", secs(1)), PasswordCheck::Wrong { attempts: 2, banned: false });
        assert!(!st.is_banned(a, secs(1)));
        assert_eq!(st.check_password(a, "z", secs(1)), PasswordCheck::Wrong { attempts: 3, banned: true });
        assert!(st.is_banned(a, secs(1)));
        assert_eq!(st.banned(secs(1)).collect::<Vec<_>>(), vec![a]);
        // A connection that had the right password in flight learns of the ban.
        assert_eq!(st.check_password(a, "pw", secs(1)), PasswordCheck::BannedMeanwhile);
        // Other addresses are unaffected.
        assert_eq!(st.check_password(ip("10.0.0.8"), "pw", secs(1)), PasswordCheck::Accepted);
    }

    #[test]
    fn a_joiner_is_a_member_only_once_admitted() {
        let mut st = state();
        let j = addr("10.0.0.2:6000");
        let (token, first) = st.add_pending(ip("10.0.0.2"), true, j, 7);
        // The provisional list holds the joiner itself, last, but nothing is published.
        assert_eq!(first, MemberList::new(None, vec![addr(AUTH), j]));
        assert_eq!(st.list().to_vec(), vec![addr(AUTH)]);
        assert_eq!(st.version(), 0);
        // A failed handshake leaves no trace.
        assert!(st.drop_pending(token));
        assert_eq!(st.pending_count(), 0);
        assert_eq!(st.version(), 0);
        let adm = st.admit(ip("10.0.0.2"), j, "j", secs(1)).unwrap();
        assert_eq!(adm.published.list, MemberList::new(Some(1), vec![addr(AUTH), j]));
        assert_eq!(
            adm.published.delta,
            Delta { base: 0, version: 1, added: vec![j], aliases: vec![None], ..Default::default() }
        );
        assert!(adm.replaced.is_empty());
        assert!(adm.phase < secs(2));
        assert_eq!(st.list(), adm.published.list);
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
            st.check_password(ip("10.0.0.2"), "bad", secs(1));
        }
        assert_eq!(st.admit(ip("10.0.0.2"), addr("10.0.0.2:1"), "x", secs(1)).unwrap_err(), AdmitRefusal::Banned);
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
        assert_eq!(again.published.list, MemberList::new(Some(3), vec![addr(AUTH), b, a]));
        // A replacement is one change: the old entry out, the new one last.
        assert_eq!(
            again.published.delta,
            Delta {
                base: 2,
                version: 3,
                removed: vec![a],
                added: vec![a],
                reasons: vec![Departure::Replaced],
                aliases: vec![None]
            }
        );
        // The replaced member's id is gone; removing it again is a no-op.
        assert!(st.remove(first.id, Departure::Closed, secs(3)).is_none());
        let (gone, published) = st.remove(again.id, Departure::Closed, secs(3)).unwrap();
        assert_eq!((gone.peer_addr, gone.attached), (a, "a2"));
        assert_eq!(published.list, MemberList::new(Some(4), vec![addr(AUTH), b]));
        assert_eq!(
            published.delta,
            Delta { base: 3, version: 4, removed: vec![a], reasons: vec![Departure::Closed], ..Default::default() }
        );
        assert!(again.id > first.id);
    }

    #[test]
    fn heartbeat_phases_come_from_the_seed() {
        let phases = |seed| {
            let mut st: AuthState<(), (), ()> = AuthState::new(&cfg().seed(seed), addr(AUTH), Duration::ZERO);
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
        let mut st: AuthState<(), (), ()> = AuthState::new(&c, addr(AUTH), Duration::ZERO);
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
        let mut st: AuthState<(), (), ()> = AuthState::new(&c, addr(AUTH), Duration::ZERO);
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
        // 100 entries of 23 bytes to 100 members at 1 MB/s: 230 ms for reference members;
        // protocol-2 members get deltas and only their window, whatever the size.
        assert_eq!(v1.gap(2_300, 100), Duration::from_millis(230));
        // Protocol-2 members are paced by writes, not bytes: at the default 100,000 writes a
        // second, 1,000 members keep the window; 10,000 members get a delta every 100 ms.
        assert_eq!(v2.gap(2_300, 100), Duration::from_millis(10));
        assert_eq!(v2.gap(23_000, 1_000), Duration::from_millis(10));
        assert_eq!(v2.gap(230_000, 10_000), Duration::from_millis(100));
        assert_eq!(v2.gap(2_300_000, 1_000_000), c.max_distribution_gap());
        let unpaced = Pacing::of(&c.clone().delta_rate(0), true);
        assert_eq!(unpaced.gap(230_000, 10_000), Duration::from_millis(10));
        // Capped at the longest gap, the heartbeat timeout (3 s).
        assert_eq!(v1.gap(230_000, 10_000), c.max_distribution_gap());
        assert_eq!(c.max_distribution_gap(), Duration::from_secs(3));
        // Unbounded: only the window, whatever the size.
        let free = Pacing::of(&c.clone().distribution_budget(0), false);
        assert_eq!(free.gap(230_000, 10_000), Duration::from_millis(50));
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

    #[test]
    fn ipv6_sources_are_counted_per_64_and_ipv4_per_address() {
        assert_eq!(source_key(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        assert_eq!(source_key(ip("::ffff:10.0.0.7")), ip("10.0.0.7"));
        assert_eq!(source_key(ip("10.0.0.7")), ip("10.0.0.7"));
        let mut st = state();
        // Three wrong passwords from three addresses of one /64: one ban, for the /64.
        for host in ["2001:db8::1", "2001:db8::2", "2001:db8::3"] {
            st.check_password(ip(host), "bad", secs(1));
        }
        assert!(st.is_banned(ip("2001:db8::ffff"), secs(1)));
        assert!(!st.is_banned(ip("2001:db8:0:1::1"), secs(1)));
        assert_eq!(st.banned(secs(1)).collect::<Vec<_>>(), vec![ip("2001:db8::")]);
    }

    #[test]
    fn bans_expire_when_configured_and_the_tables_stay_bounded() {
        let c = cfg().password_attempts(1).ban_for(secs(60)).max_bans(3);
        let mut st: AuthState<(), (), ()> = AuthState::new(&c, addr(AUTH), Duration::ZERO);
        for (i, host) in ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"].into_iter().enumerate() {
            st.check_password(ip(host), "bad", secs(i as u64));
        }
        // Bounded at 3: the oldest ban was forgotten.
        assert_eq!(st.banned(secs(4)).collect::<Vec<_>>(), vec![ip("10.0.0.2"), ip("10.0.0.3"), ip("10.0.0.4")]);
        assert!(!st.is_banned(ip("10.0.0.1"), secs(4)));
        // Expiry: 60 s after the ban.
        assert!(st.is_banned(ip("10.0.0.4"), secs(62)));
        assert!(!st.is_banned(ip("10.0.0.4"), secs(63)));
        // The attempt table is bounded too: 1,000 sources with one failure each.
        let c = cfg().password_attempts(5).max_bans(10);
        let mut st: AuthState<(), (), ()> = AuthState::new(&c, addr(AUTH), Duration::ZERO);
        for i in 0..1000u32 {
            st.check_password(
                IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i)),
                "bad",
                Duration::from_millis(i.into()),
            );
        }
        assert_eq!(st.bans.attempts.len(), 10);
    }

    #[test]
    fn handshakes_are_capped_per_source_and_the_oldest_is_shed_under_pressure() {
        let c = cfg().max_handshakes(4).max_handshakes_per_source(2);
        let mut st: AuthState<(), (), &str> = AuthState::new(&c, addr(AUTH), Duration::ZERO);
        let (a1, _) = st.begin_handshake(ip("10.0.0.1"), "a1").unwrap();
        st.begin_handshake(ip("10.0.0.1"), "a2").unwrap();
        // A third from the same source is refused; other sources are not affected.
        assert_eq!(st.begin_handshake(ip("10.0.0.1"), "a3").unwrap_err(), SourceFull);
        st.begin_handshake(ip("10.0.0.2"), "b1").unwrap();
        let (_, shed) = st.begin_handshake(ip("10.0.0.3"), "c1").unwrap();
        assert!(shed.is_none());
        assert_eq!(st.handshake_count(), 4);
        // Full: the next one sheds the oldest (a1), which frees a slot of its source.
        let (_, shed) = st.begin_handshake(ip("10.0.0.4"), "d1").unwrap();
        let shed = shed.unwrap();
        assert_eq!((shed.ip, shed.attached), (ip("10.0.0.1"), "a1"));
        assert_eq!(st.handshake_count(), 4);
        st.finish_handshake(a1); // its task ends later: a no-op
        assert_eq!(st.handshake_count(), 4);
        let (_, shed) = st.begin_handshake(ip("10.0.0.1"), "a4").unwrap();
        assert_eq!(shed.unwrap().attached, "a2");
    }

    #[test]
    fn a_peer_address_is_bound_to_its_source() {
        let mut st = state();
        let a = addr("10.0.0.2:1");
        assert!(st.peer_address_allowed(ip("10.0.0.2"), a));
        assert!(!st.peer_address_allowed(ip("10.0.0.9"), a));
        let nat: AuthState<(), (), ()> =
            AuthState::new(&cfg().foreign_peer_addresses(true), addr(AUTH), Duration::ZERO);
        assert!(nat.peer_address_allowed(ip("10.0.0.9"), a));
        // Even where foreign addresses are allowed, a member is only replaced from its source.
        st.admit(ip("10.0.0.2"), a, "a", secs(1)).unwrap();
        assert_eq!(st.admit(ip("10.0.0.9"), a, "spoof", secs(2)).unwrap_err(), AdmitRefusal::AddressTaken);
        assert_eq!(st.list().to_vec(), vec![addr(AUTH), a]);
        // Nor is the authenticator's own address anyone's.
        let own = addr(AUTH);
        assert_eq!(st.admit(own.ip(), own, "me", secs(2)).unwrap_err(), AdmitRefusal::AddressTaken);
        assert_eq!(st.list().to_vec(), vec![addr(AUTH), a]);
    }

    #[test]
    fn every_publication_carries_the_delta_that_leads_to_it() {
        // Any sequence of admissions (replacements included) and removals: each version's
        // list is the previous one with its delta applied, and the list is the members in
        // admission order behind the authenticator.
        let mut st = state();
        let mut held = st.list();
        let mut ids = Vec::new();
        for step in 0..200u32 {
            let published = if step % 3 == 2 && !ids.is_empty() {
                let id = ids.remove((step as usize * 7) % ids.len());
                st.remove(id, Departure::Closed, secs(1)).map(|(_, p)| p)
            } else {
                let host = step % 5;
                let port = 1 + (step * 13) % 7;
                let peer = SocketAddr::new(IpAddr::from([10, 0, 1, host as u8]), port as u16);
                st.admit(peer.ip(), peer, "m", secs(1)).ok().map(|adm| {
                    ids.push(adm.id);
                    adm.published
                })
            };
            let Some(p) = published else { continue };
            assert_eq!(p.delta.base, held.version.unwrap());
            held = held.apply(&p.delta, usize::MAX).unwrap();
            assert_eq!(held, p.list, "step {step}");
            assert_eq!(held, st.list());
        }
        let expected: Vec<SocketAddr> =
            std::iter::once(addr(AUTH)).chain(st.members.values().map(|m| m.peer_addr)).collect();
        assert_eq!(st.list().to_vec(), expected);
        assert_eq!(st.by_addr.len(), st.members.len());
    }
}
