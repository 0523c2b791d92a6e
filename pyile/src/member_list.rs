//! The member list: what a distribution carries, and the deltas that change it.
//!
//! The authenticator is itself a member: its own peer address is always the
//! first entry. Lists from our authenticator carry a `version` (an extension
//! key the reference ignores), strictly increasing with every change, so a
//! joiner can refuse to regress to an older list and a simulator can tell
//! which list each joiner holds. Lists from the reference have no version.
//!
//! A list is a persistent structure (`imbl`'s B-tree maps, nodes shared between
//! versions): cloning it is O(1), and appending or removing one address is
//! O(log n), whatever the list's size. That is what lets the authenticator
//! publish a version per change without copying the list under its lock, and a
//! protocol-2 joiner apply a [`Delta`] in O(change) while still handing every
//! new [`MemberList`] to its users (events, the peer listener) at no copy
//! cost. Entries keep list order by a key each list assigns as addresses are
//! appended (additions always go last, removals leave the order of the rest),
//! plus an index by address, so `contains` and removal by address are
//! O(log n) too. Reference lists may repeat an address (the reference admits a
//! spoofer at a member's address and keeps both); the index allows that.
//!
//! A list received whole (a snapshot, a reference list) stays flat, one `Arc<[SocketAddr]>`
//! as cheap to build as a copy, until it first changes: a joiner following whole lists (a
//! reference authenticator, a v1 joiner of ours) never pays for the persistent form.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use std::sync::Arc;

use imbl::{OrdMap, OrdSet};

/// A member list as distributed: peer addresses, authenticator first.
#[derive(Clone, Default)]
pub struct MemberList {
    /// Monotonic list number from our authenticator; `None` from the reference.
    pub version: Option<u64>,
    /// A list received whole and not changed since, kept as it came (one allocation, 32
    /// bytes an entry, as cheap to build as a copy); the persistent form below is empty
    /// then, and is built from it on the first change (a delta applied, an address pushed).
    flat: Option<Arc<[SocketAddr]>>,
    /// The entries in list order, by the key each got when appended.
    entries: OrdMap<u64, SocketAddr>,
    /// Every entry by address (and key, so that duplicates can be told apart).
    index: OrdSet<(SocketAddr, u64)>,
    /// The key of the next appended entry.
    next_key: u64,
    /// Sum of the entries' encoded sizes (`["ip",port]`), for [`MemberList::snapshot_len`].
    entries_len: usize,
    /// Sum of the entries' hashes, for [`MemberList::fingerprint`] (kept for both forms).
    sum: u64,
}

/// A fixed 64-bit hash of one address (FNV-1a over its IP octets and port, then a
/// finaliser that spreads every bit), the same on every run and machine.
fn addr_hash(a: &SocketAddr) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    match a.ip() {
        IpAddr::V4(ip) => eat(&ip.octets()),
        IpAddr::V6(ip) => eat(&ip.octets()),
    }
    eat(&a.port().to_be_bytes());
    // splitmix64's finaliser.
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// A change of a member list from version `base` to version `version`: remove every
/// address of `removed` (each one entry of the list at `base`), then append `added` in
/// order. Between two committed versions of our authenticator the result is exactly the
/// list at `version`: additions only ever go last. The wire form is in `docs/protocol-2.md`;
/// `reasons` and `aliases` (the announcements, `docs/protocol-2-extensions.md`) are parallel
/// to `removed` and `added` when the authenticator sends them, empty otherwise.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    /// The version it applies to.
    pub base: u64,
    /// The version it produces.
    pub version: u64,
    /// Addresses leaving the list.
    pub removed: Vec<SocketAddr>,
    /// Addresses appended to the list, in order.
    pub added: Vec<SocketAddr>,
    /// Why each address of `removed` left (same length), or empty: not announced.
    pub reasons: Vec<Departure>,
    /// The alias each address of `added` joined with (same length; `None` for a member
    /// without one, a v1 joiner), or empty: not announced.
    pub aliases: Vec<Option<Arc<str>>>,
}

/// Why a member left the list, as deltas announce it (`"reasons"`, wire names in
/// [`Departure::as_str`]).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Departure {
    /// It said it was leaving (`{"leaving":true}`): `"left"`.
    Left,
    /// It stopped answering heartbeats: `"timeout"`.
    Timeout,
    /// Its connection closed without a word (a crash, a killed process): `"closed"`.
    Closed,
    /// It stopped reading member lists: `"stalled"`.
    Stalled,
    /// Its distribution connection died under a live auth connection: `"distribution_lost"`.
    DistributionLost,
    /// A new handshake at its address replaced it: `"replaced"`.
    Replaced,
    /// It broke the protocol: `"error"`.
    Error,
    /// A reason this version does not know (a newer authenticator's), kept as sent.
    Other(String),
}

impl Departure {
    /// The wire name.
    pub fn as_str(&self) -> &str {
        match self {
            Departure::Left => "left",
            Departure::Timeout => "timeout",
            Departure::Closed => "closed",
            Departure::Stalled => "stalled",
            Departure::DistributionLost => "distribution_lost",
            Departure::Replaced => "replaced",
            Departure::Error => "error",
            Departure::Other(s) => s,
        }
    }

    /// From its wire name (an unknown one is kept as [`Departure::Other`]).
    pub fn parse(s: &str) -> Departure {
        match s {
            "left" => Departure::Left,
            "timeout" => Departure::Timeout,
            "closed" => Departure::Closed,
            "stalled" => Departure::Stalled,
            "distribution_lost" => Departure::DistributionLost,
            "replaced" => Departure::Replaced,
            "error" => Departure::Error,
            other => Departure::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for Departure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Aliases by peer address, for the members that joined with one (protocol 2): a persistent
/// map, cloned in O(1) and changed in O(log n), like [`MemberList`].
pub type AliasMap = imbl::OrdMap<SocketAddr, Arc<str>>;

/// Why a [`Delta`] could not be applied to a held list.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeltaError {
    /// The held list has no version (it came from a reference authenticator).
    #[error("a delta for an unversioned list")]
    Unversioned,
    /// The delta applies to another version than the one held: not an error of the
    /// sender's as such (the member missed something), it waits for a snapshot.
    #[error("a delta from v{base} while holding v{held}")]
    BaseMismatch {
        /// The delta's base.
        base: u64,
        /// The version held.
        held: u64,
    },
    /// The delta does not lead to a newer version.
    #[error("a delta from v{base} to v{version} does not go forward")]
    NotForward {
        /// The delta's base.
        base: u64,
        /// The version it claims to produce.
        version: u64,
    },
    /// It removes an address the list does not hold.
    #[error("the delta removes {0}, which is not in the list")]
    UnknownRemoved(SocketAddr),
    /// It adds an address the list already holds.
    #[error("the delta adds {0}, which is already in the list")]
    DuplicateAdded(SocketAddr),
    /// The result would exceed the configured bound on a list's length.
    #[error("the delta makes the list {len} entries long, over the bound of {max}")]
    TooLong {
        /// The length it would reach.
        len: usize,
        /// The bound.
        max: usize,
    },
}

/// Encoded size of one address as the wire writes it: `["ip",port]`.
pub fn addr_wire_len(a: &SocketAddr) -> usize {
    use std::fmt::Write;
    struct Count(usize);
    impl Write for Count {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            self.0 += s.len();
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = write!(c, "{}", a.ip());
    let port = a.port();
    let digits = if port >= 10_000 {
        5
    } else if port >= 1_000 {
        4
    } else if port >= 100 {
        3
    } else if port >= 10 {
        2
    } else {
        1
    };
    c.0 + digits + 5 // [" ", ]
}

/// Number of decimal digits of `v`.
fn digits(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 10 {
        v /= 10;
        n += 1;
    }
    n
}

impl MemberList {
    /// A list from its parts.
    /// A list from its parts (kept flat until it first changes).
    pub fn new(version: Option<u64>, members: impl IntoIterator<Item = SocketAddr>) -> Self {
        let flat: Arc<[SocketAddr]> = members.into_iter().collect();
        let sum = flat.iter().fold(0u64, |s, a| s.wrapping_add(addr_hash(a)));
        MemberList { version, flat: Some(flat), sum, ..MemberList::default() }
    }

    /// Builds the persistent form from the flat one, once (O(n log n)).
    fn make_tree(&mut self) {
        if let Some(flat) = self.flat.take() {
            self.sum = 0;
            for a in flat.iter() {
                self.push(*a);
            }
        }
    }

    /// Appends `addr` (list order: last); returns the key it was given.
    pub(crate) fn push(&mut self, addr: SocketAddr) -> u64 {
        self.make_tree();
        let key = self.next_key;
        self.next_key += 1;
        self.entries.insert(key, addr);
        self.index.insert((addr, key));
        self.entries_len += addr_wire_len(&addr);
        self.sum = self.sum.wrapping_add(addr_hash(&addr));
        key
    }

    /// Removes the entry appended under `key`; returns its address.
    pub(crate) fn remove_key(&mut self, key: u64) -> Option<SocketAddr> {
        self.make_tree();
        let addr = self.entries.remove(&key)?;
        self.index.remove(&(addr, key));
        self.entries_len -= addr_wire_len(&addr);
        self.sum = self.sum.wrapping_sub(addr_hash(&addr));
        Some(addr)
    }

    /// The key of the first entry at `addr`.
    fn key_of(&self, addr: &SocketAddr) -> Option<u64> {
        self.index.get_next(&(*addr, 0)).filter(|(a, _)| a == addr).map(|&(_, k)| k)
    }

    /// Removes the first entry at `addr`; whether there was one.
    pub(crate) fn remove_addr(&mut self, addr: &SocketAddr) -> bool {
        self.make_tree();
        self.key_of(addr).and_then(|k| self.remove_key(k)).is_some()
    }

    /// The provisional first list of a joiner at `addr` built from this list: unversioned,
    /// `addr` removed and appended last (an O(log n) change of a persistent list).
    pub(crate) fn provisional_for(&self, addr: SocketAddr) -> MemberList {
        let mut list = self.clone();
        list.version = None;
        while list.remove_addr(&addr) {}
        list.push(addr);
        list
    }

    /// Whether [`MemberList::contains`] is an index lookup (O(log n)): false while the list is
    /// still flat as received whole, where it is a scan.
    pub fn is_indexed(&self) -> bool {
        self.flat.is_none()
    }

    /// Whether `addr` is a member.
    pub fn contains(&self, addr: &SocketAddr) -> bool {
        if let Some(f) = &self.flat {
            return f.contains(addr);
        }
        self.key_of(addr).is_some()
    }

    /// Whether some member's peer address has this IP (the reference's check
    /// for accepting an incoming message).
    pub fn contains_ip(&self, ip: IpAddr) -> bool {
        if let Some(f) = &self.flat {
            return f.iter().any(|m| m.ip() == ip);
        }
        self.index.get_next(&(SocketAddr::new(ip, 0), 0)).is_some_and(|(a, _)| a.ip() == ip)
    }

    /// Number of members, the authenticator included.
    pub fn len(&self) -> usize {
        self.flat.as_ref().map_or(self.entries.len(), |f| f.len())
    }

    /// Whether the list is empty (never true for a list from an authenticator).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The members in list order.
    pub fn iter(&self) -> impl Iterator<Item = &SocketAddr> {
        // At most one of the two is non-empty.
        self.flat.iter().flat_map(|f| f.iter()).chain(self.entries.values())
    }

    /// The members in list order with the keys they were appended under (a key is never
    /// given twice in one list's history, so a key names one entry of every later version);
    /// `None` for a list still flat (received whole and never changed).
    pub(crate) fn keyed(&self) -> Option<impl Iterator<Item = (u64, SocketAddr)> + '_> {
        self.flat.is_none().then(|| self.entries.iter().map(|(k, a)| (*k, *a)))
    }

    /// The first member (the authenticator, in a list from one).
    pub fn first(&self) -> Option<SocketAddr> {
        if let Some(f) = &self.flat {
            return f.first().copied();
        }
        self.entries.get_min().map(|(_, a)| *a)
    }

    /// The members in list order, copied out (O(n)).
    pub fn to_vec(&self) -> Vec<SocketAddr> {
        self.iter().copied().collect()
    }

    /// Size in bytes of this list encoded as a distribution message,
    /// `{"distro":[...],"version":N}` (without `version` when unversioned), in O(1) (O(n)
    /// for a list received whole and never changed).
    pub fn snapshot_len(&self) -> usize {
        let sum = match &self.flat {
            Some(f) => f.iter().map(addr_wire_len).sum(),
            None => self.entries_len,
        };
        let entries = sum + self.len().saturating_sub(1);
        let version = self.version.map_or(0, |v| ",\"version\":".len() + digits(v));
        "{\"distro\":[]}".len() + entries + version
    }

    /// A 64-bit fingerprint of the list's contents, kept up to date in O(1) per change: equal
    /// lists have equal fingerprints, and lists with different addresses almost surely do
    /// not. It ignores order (and the version), so it is a fast first check, not a proof of
    /// equality: a simulator compares it on every list and the lists themselves now and then.
    pub fn fingerprint(&self) -> u64 {
        self.sum ^ (self.len() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }

    /// Whether a joiner holding `self` should take `newer`: always for
    /// unversioned lists (the reference), else only a strictly newer version.
    pub fn is_superseded_by(&self, newer: &MemberList) -> bool {
        match (self.version, newer.version) {
            (Some(old), Some(new)) => new > old,
            _ => true,
        }
    }

    /// This list with `delta` applied, in O(change × log n): the list at `delta.version`.
    /// `self` is left as it was on any error. `max_len` bounds the result's length.
    pub fn apply(&self, delta: &Delta, max_len: usize) -> Result<MemberList, DeltaError> {
        let held = self.version.ok_or(DeltaError::Unversioned)?;
        if delta.version <= delta.base {
            return Err(DeltaError::NotForward { base: delta.base, version: delta.version });
        }
        if delta.base != held {
            return Err(DeltaError::BaseMismatch { base: delta.base, held });
        }
        let len = (self.len() + delta.added.len()).saturating_sub(delta.removed.len());
        if len > max_len {
            return Err(DeltaError::TooLong { len, max: max_len });
        }
        let mut next = self.clone();
        next.make_tree();
        for r in &delta.removed {
            if !next.remove_addr(r) {
                return Err(DeltaError::UnknownRemoved(*r));
            }
        }
        for a in &delta.added {
            if next.contains(a) {
                return Err(DeltaError::DuplicateAdded(*a));
            }
            next.push(*a);
        }
        next.version = Some(delta.version);
        Ok(next)
    }
}

impl Delta {
    /// One delta equivalent to applying `deltas` in order (each based on the previous one's
    /// version), in O(total change): an address added and removed again within the run
    /// vanishes; one removed and added again (a member replaced by a rejoin) stays in both,
    /// since it moved to the end. None if `deltas` is empty or does not chain.
    pub fn merge<'a>(deltas: impl IntoIterator<Item = &'a Delta>) -> Option<Delta> {
        use std::collections::{BTreeMap, BTreeSet};
        let mut it = deltas.into_iter();
        let first = it.next()?;
        let base = first.base;
        let mut version = base;
        // Additions by their order of arrival (a sequence number), and where each is.
        let mut added: BTreeMap<u64, (SocketAddr, Option<Arc<str>>)> = BTreeMap::new();
        let mut added_at: BTreeMap<SocketAddr, u64> = BTreeMap::new();
        let mut removed: Vec<(SocketAddr, Option<Departure>)> = Vec::new();
        let mut removed_set: BTreeSet<SocketAddr> = BTreeSet::new();
        let mut announced = true;
        let mut seq = 0u64;
        for d in std::iter::once(first).chain(it) {
            if d.base != version {
                return None;
            }
            announced &= d.reasons.len() == d.removed.len() && d.aliases.len() == d.added.len();
            for (i, r) in d.removed.iter().enumerate() {
                if let Some(s) = added_at.remove(r) {
                    added.remove(&s);
                } else if removed_set.insert(*r) {
                    removed.push((*r, d.reasons.get(i).cloned()));
                }
            }
            for (i, a) in d.added.iter().enumerate() {
                added.insert(seq, (*a, d.aliases.get(i).cloned().flatten()));
                added_at.insert(*a, seq);
                seq += 1;
            }
            version = d.version;
        }
        let (removed, reasons): (Vec<_>, Vec<_>) = removed.into_iter().unzip();
        let (added, aliases): (Vec<_>, Vec<_>) = added.into_values().unzip();
        let (reasons, aliases) = if announced {
            (reasons.into_iter().map(|r| r.unwrap_or(Departure::Closed)).collect(), aliases)
        } else {
            (Vec::new(), Vec::new())
        };
        Some(Delta { base, version, removed, added, reasons, aliases })
    }

    /// Size in bytes of its wire form (see [`crate::wire::encode_delta`]).
    pub fn wire_len(&self) -> usize {
        let addrs = |v: &[SocketAddr]| v.iter().map(addr_wire_len).sum::<usize>() + v.len().saturating_sub(1);
        let list = |n: usize, items: usize| if n == 0 { 0 } else { items + n - 1 + 2 };
        let reasons = self.reasons.iter().map(|r| crate::wire::json_str_len(r.as_str())).sum::<usize>();
        let aliases = self.aliases.iter().map(|a| a.as_deref().map_or(4, crate::wire::json_str_len)).sum::<usize>();
        r#"{"delta":true,"base":,"version":,"removed":[],"added":[]}"#.len()
            + digits(self.base)
            + digits(self.version)
            + addrs(&self.removed)
            + addrs(&self.added)
            + if self.reasons.is_empty() { 0 } else { r#","reasons":"#.len() + list(self.reasons.len(), reasons) }
            + if self.aliases.is_empty() { 0 } else { r#","aliases":"#.len() + list(self.aliases.len(), aliases) }
    }
}

/// How many versions a [`SharedLists`] keeps (each an O(1) clone of a list).
const SHARED_VERSIONS: usize = 256;

/// Lists shared by the joiners of one process (a load generator's thousands, a
/// simulation's): every joiner following one authenticator builds the same list at each
/// version, so the process keeps one list per version and its joiners take that one instead
/// of each building (and holding) its own copy. Memory and work then grow with the changes,
/// not with changes × joiners.
///
/// Nothing is taken on trust. A snapshot is taken from the kept list only when its addresses
/// equal the kept ones (an O(n) comparison instead of an O(n) list). A delta applied to the
/// kept list of its base gives the kept list of its version only after a check, in
/// O(change × log n) and without allocating, that the kept list is the base with the delta
/// applied: its length, every removed address gone, every added one present and last, in
/// order, and its 64-bit content fingerprint (which alone covers the members that stay: a
/// kept list built from another, lying delta of the same versions can differ only there). A
/// list built apart (a joiner that got there another way) is swapped for
/// the kept one when their contents are equal (an O(n) comparison, done once, when their
/// fingerprints agree). So a lying or restarted authenticator changes only the share rate:
/// a joiner whose delta does not check out applies it to its own copy, exactly as without
/// sharing. A joiner alone in its process gains nothing; [`crate::JoinerConfig::shared_lists`]
/// is how a process hands one to its joiners.
///
/// Deltas are shared one step further: every joiner of a process is sent the same bytes for
/// a delta (the authenticator encodes each once), so the first joiner that applies one to the
/// kept list of its base records the *step* — the bytes, the decoded delta, the lists and
/// aliases before and after — and every other joiner holding that very base (the same shared
/// structure, an O(1) pointer check) takes the result without parsing, checking or building
/// anything ([`SharedLists::step`]). Same bytes applied to the same list give the same list,
/// so this takes nothing on trust either. The aliases a protocol-2 list carries are kept per
/// version alongside it, so thousands of joiners hold one alias map, not one each.
#[derive(Clone, Default)]
pub struct SharedLists {
    inner: Arc<std::sync::RwLock<SharedInner>>,
    counts: Arc<SharedCounts>,
}

#[derive(Default)]
struct SharedCounts {
    shared: std::sync::atomic::AtomicU64,
    built: std::sync::atomic::AtomicU64,
}

/// One delta as the joiners of a process received it (see [`SharedLists`]): its wire bytes'
/// decoding, and the kept lists and aliases it took the first joiner from and to.
#[derive(Debug)]
pub(crate) struct Step {
    /// The delta the bytes decoded to.
    pub(crate) delta: Arc<Delta>,
    /// The kept list of `delta.base` it was applied to.
    pub(crate) base: MemberList,
    /// The kept aliases of `delta.base`.
    pub(crate) base_aliases: AliasMap,
    /// The list at `delta.version`.
    pub(crate) result: MemberList,
    /// The aliases at `delta.version`.
    pub(crate) result_aliases: AliasMap,
}

/// How many deltas' steps a [`SharedLists`] remembers (each ~100 bytes plus O(1) clones).
const SHARED_STEPS: usize = 4096;

/// How many whole lists' wire bytes a [`SharedLists`] remembers.
const SHARED_BYTES: usize = 16;
/// Lists shorter than this on the wire are decoded every time (cheap, and they would only
/// push the big ones out).
const SHARED_BYTES_MIN: usize = 1024;

#[derive(Default)]
struct SharedInner {
    /// Recent whole lists as they came on the wire, and the list each decoded to.
    by_bytes: std::collections::VecDeque<(Arc<[u8]>, MemberList, Option<AliasMap>)>,
    /// The kept list of each recent version, and its kept aliases once a joiner had them.
    by_version: std::collections::BTreeMap<u64, (MemberList, Option<AliasMap>)>,
    /// Recent deltas' steps by their wire bytes (only looked up, never iterated), and the
    /// order they came in, for eviction.
    steps: std::collections::HashMap<Arc<[u8]>, Arc<Step>>,
    step_order: std::collections::VecDeque<Arc<[u8]>>,
}

impl SharedInner {
    fn keep(&mut self, list: &MemberList) {
        let Some(v) = list.version else { return };
        if self.by_version.contains_key(&v) {
            return;
        }
        if self.by_version.len() >= SHARED_VERSIONS {
            // The oldest go first: joiners move forward.
            if self.by_version.first_key_value().is_some_and(|(&oldest, _)| oldest > v) {
                return;
            }
            self.by_version.pop_first();
        }
        self.by_version.insert(v, (list.clone(), None));
    }

    /// Whether `list` and `aliases` are the kept ones of their version (pointer checks).
    fn is_kept(&self, list: &MemberList, aliases: &AliasMap) -> bool {
        list.version
            .and_then(|v| self.by_version.get(&v))
            .is_some_and(|(l, a)| l.same_as(list) && a.as_ref().is_some_and(|a| a.ptr_eq(aliases)))
    }
}

impl fmt::Debug for SharedLists {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (shared, built) = self.counts();
        f.debug_struct("SharedLists").field("shared", &shared).field("built", &built).finish()
    }
}

impl SharedLists {
    /// An empty set of shared lists.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, SharedInner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, SharedInner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    fn count_shared(&self) {
        self.counts.shared.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn count_built(&self) {
        self.counts.built.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The list of `members` at `version`: the kept one when its addresses are these, else a
    /// new one (kept if none is).
    pub fn snapshot(&self, version: Option<u64>, members: Vec<SocketAddr>) -> MemberList {
        let Some(v) = version else { return MemberList::new(None, members) };
        if let Some((kept, _)) = self.read().by_version.get(&v)
            && kept.len() == members.len()
            && kept.iter().eq(members.iter())
        {
            self.count_shared();
            return kept.clone();
        }
        let list = MemberList::new(version, members);
        self.count_built();
        self.write().keep(&list);
        list
    }

    /// The list these wire bytes (one whole `{"distro":...}` value) decoded to when another
    /// joiner received the very same bytes: every joiner of a process is sent the same
    /// snapshot bytes, so one decodes them and the others compare (a `memcmp`, not a parse).
    /// The aliases the bytes carried (a protocol-2 snapshot's `"aliases"`) come with it.
    pub fn decoded(&self, bytes: &[u8]) -> Option<(MemberList, Option<AliasMap>)> {
        if bytes.len() < SHARED_BYTES_MIN {
            return None;
        }
        let found =
            self.read().by_bytes.iter().rev().find(|(b, _, _)| **b == *bytes).map(|(_, l, a)| (l.clone(), a.clone()));
        if found.is_some() {
            self.count_shared();
        }
        found
    }

    /// Remembers that `bytes` decoded to `list` (and `aliases`), for [`SharedLists::decoded`].
    pub fn remember(&self, bytes: &[u8], list: &MemberList, aliases: Option<&AliasMap>) {
        if bytes.len() < SHARED_BYTES_MIN {
            return;
        }
        let mut g = self.write();
        if g.by_bytes.len() >= SHARED_BYTES {
            g.by_bytes.pop_front();
        }
        g.by_bytes.push_back((bytes.into(), list.clone(), aliases.cloned()));
    }

    /// `held.apply(delta, max_len)`: the kept list at `delta.version` when `held` is (or
    /// equals) the kept list at `delta.base` and the kept result checks out against `delta`;
    /// else `held` with `delta` applied (kept if no list at that version is).
    pub fn apply(&self, held: &MemberList, delta: &Delta, max_len: usize) -> Result<MemberList, DeltaError> {
        let g = self.read();
        if let (Some((base, _)), Some((result, _))) = (g.by_version.get(&delta.base), g.by_version.get(&delta.version))
            && held.version == Some(delta.base)
            && delta.version > delta.base
            && result.len() <= max_len
            && (base.same_as(held)
                || (base.len() == held.len()
                    && base.fingerprint() == held.fingerprint()
                    && base.iter().eq(held.iter())))
            && result.is_result_of(base, delta)
        {
            let result = result.clone();
            drop(g);
            self.count_shared();
            return Ok(result);
        }
        drop(g);
        let r = held.apply(delta, max_len)?;
        self.count_built();
        self.write().keep(&r);
        Ok(r)
    }

    /// The step another joiner of this process recorded for these delta bytes, if any: the
    /// caller may take its result when it holds exactly the step's base (`same_as`, and
    /// `ptr_eq` aliases), and otherwise still skips decoding the bytes.
    pub(crate) fn step(&self, bytes: &[u8]) -> Option<Arc<Step>> {
        let step = self.read().steps.get(bytes).cloned();
        if step.is_some() {
            self.count_shared();
        }
        step
    }

    /// Records that `bytes` took `step.base` (with `step.base_aliases`) to `step.result` (with
    /// `step.result_aliases`), when the base is the kept list and aliases of its version (so
    /// every joiner on the kept path can take it) and no step for these bytes is kept yet.
    /// The result's aliases become the kept ones of its version.
    pub(crate) fn record_step(&self, bytes: &[u8], step: Step) {
        let mut g = self.write();
        if g.steps.contains_key(bytes) || !g.is_kept(&step.base, &step.base_aliases) {
            return;
        }
        g.keep(&step.result);
        if let Some((kept, aliases @ None)) = step.result.version.and_then(|v| g.by_version.get_mut(&v))
            && kept.same_as(&step.result)
        {
            *aliases = Some(step.result_aliases.clone());
        }
        if g.step_order.len() >= SHARED_STEPS
            && let Some(old) = g.step_order.pop_front()
        {
            g.steps.remove(&old);
        }
        let bytes: Arc<[u8]> = bytes.into();
        g.step_order.push_back(bytes.clone());
        g.steps.insert(bytes, Arc::new(step));
    }

    /// The aliases a whole list carried, as (member, alias) `pairs` in list order: the kept
    /// aliases of `list`'s version when `list` is the kept list there and the pairs make
    /// exactly that map (checked without building one: sorted by address, the last alias of
    /// an address winning as it would in a map built from them, then compared in order);
    /// else a map built from the pairs. A joiner of a large network takes such a list each
    /// join, and building 10,000 entries only to find them equal to the kept ones was most
    /// of that work.
    pub(crate) fn aliases_from(&self, list: &MemberList, mut pairs: Vec<(SocketAddr, Arc<str>)>) -> AliasMap {
        let kept = list.version.and_then(|v| match self.read().by_version.get(&v) {
            Some((l, Some(a))) if l.same_as(list) => Some(a.clone()),
            _ => None,
        });
        let Some(kept) = kept else { return pairs.into_iter().collect() };
        // Stable: equal addresses keep their list order, so the last of each run wins.
        pairs.sort_by_key(|(m, _)| *m);
        let mut last: Vec<&(SocketAddr, Arc<str>)> = Vec::with_capacity(pairs.len());
        for p in &pairs {
            match last.last_mut() {
                Some(l) if l.0 == p.0 => *l = p,
                _ => last.push(p),
            }
        }
        let same = kept.len() == last.len() && kept.iter().zip(&last).all(|((km, ka), (m, a))| km == m && ka == a);
        if same {
            self.count_shared();
            kept
        } else {
            pairs.into_iter().collect()
        }
    }

    /// The kept aliases of `list`'s version when `list` is the kept list there and `aliases`
    /// equal the kept ones (an O(n) comparison, made when a joiner takes a whole list);
    /// `aliases` themselves otherwise, which become the kept ones if none are yet.
    pub(crate) fn aliases_of(&self, list: &MemberList, aliases: AliasMap) -> AliasMap {
        let Some(v) = list.version else { return aliases };
        {
            let g = self.read();
            match g.by_version.get(&v) {
                Some((kept, Some(a))) if kept.same_as(list) => {
                    return if a.ptr_eq(&aliases) || *a == aliases { a.clone() } else { aliases };
                }
                Some((kept, None)) if kept.same_as(list) => {}
                _ => return aliases,
            }
        }
        let mut g = self.write();
        match g.by_version.get_mut(&v) {
            Some((kept, slot @ None)) if kept.same_as(list) => {
                *slot = Some(aliases.clone());
                aliases
            }
            Some((kept, Some(a))) if kept.same_as(list) && *a == aliases => a.clone(),
            _ => aliases,
        }
    }

    /// How many lists (and steps) joiners took from the kept ones, and how many lists they
    /// built themselves.
    pub fn counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.counts.shared.load(Relaxed), self.counts.built.load(Relaxed))
    }
}

impl MemberList {
    /// Whether `other` is this very list: the same version and the same shared structure
    /// (O(1); equal lists built separately are not the same).
    pub fn same_as(&self, other: &MemberList) -> bool {
        self.version == other.version
            && match (&self.flat, &other.flat) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => {
                    self.next_key == other.next_key
                        && self.entries.ptr_eq(&other.entries)
                        && self.index.ptr_eq(&other.index)
                }
                _ => false,
            }
    }

    /// Whether this list is exactly `base` with `delta` applied (its version included), in
    /// O(change × log n) without allocating: the length adds up, every removed address that
    /// is not added again is gone, and the last entries are the added ones, in order. The
    /// members that stay are not compared one by one: the fingerprint, kept in O(1) per
    /// change, must equal the base's with the delta applied. Without it a kept list whose
    /// survivors differ passes (the proptest found one: an empty delta onto a list whose
    /// last member a lie had swapped); with it such a list gets through only on a 64-bit
    /// hash collision, and order among the survivors is still taken on trust (neither an
    /// honest authenticator nor [`MemberList::apply`] reorders them).
    fn is_result_of(&self, base: &MemberList, delta: &Delta) -> bool {
        if self.version != Some(delta.version) || base.version != Some(delta.base) {
            return false;
        }
        let len = (base.len() + delta.added.len()).checked_sub(delta.removed.len());
        if len != Some(self.len()) {
            return false;
        }
        use std::collections::BTreeSet;
        let removed: BTreeSet<&SocketAddr> = delta.removed.iter().collect();
        let added: BTreeSet<&SocketAddr> = delta.added.iter().collect();
        // Which of the delta's addresses the base holds: by lookups in a changed list, by one
        // pass in a list received whole (where a lookup is a scan).
        let in_base: BTreeSet<&SocketAddr> = match &base.flat {
            Some(f) => f.iter().filter_map(|a| removed.get(a).or_else(|| added.get(a)).copied()).collect(),
            None => removed.iter().chain(added.iter()).filter(|a| base.contains(a)).copied().collect(),
        };
        let removed_ok = removed.len() == delta.removed.len()
            && removed.iter().all(|r| in_base.contains(r) && (added.contains(r) || !self.contains(r)));
        let added_ok =
            added.len() == delta.added.len() && added.iter().all(|a| !in_base.contains(a) || removed.contains(a));
        // The tail, newest last, is `added` in order.
        let tail_ok = if let Some(f) = &self.flat {
            f.len() >= delta.added.len() && f[f.len() - delta.added.len()..] == delta.added[..]
        } else {
            self.entries.values().rev().take(delta.added.len()).eq(delta.added.iter().rev())
        };
        removed_ok && added_ok && tail_ok && self.fingerprint() == base.fingerprint_after(delta)
    }

    /// The fingerprint this list would have with `delta` applied (O(change)).
    fn fingerprint_after(&self, delta: &Delta) -> u64 {
        let sum = delta
            .added
            .iter()
            .fold(delta.removed.iter().fold(self.sum, |s, a| s.wrapping_sub(addr_hash(a))), |s, a| {
                s.wrapping_add(addr_hash(a))
            });
        let len = (self.len() + delta.added.len()).saturating_sub(delta.removed.len());
        sum ^ (len as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

impl PartialEq for MemberList {
    fn eq(&self, other: &Self) -> bool {
        self.version == other.version && self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for MemberList {}

impl fmt::Debug for MemberList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemberList").field("version", &self.version).field("members", &self.to_vec()).finish()
    }
}

impl<'a> IntoIterator for &'a MemberList {
    type Item = &'a SocketAddr;
    type IntoIter = Box<dyn Iterator<Item = &'a SocketAddr> + 'a>;
    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn order_lookup_and_removal_by_address_or_key() {
        let mut l = MemberList::new(Some(1), [a("10.0.0.1:1"), a("10.0.0.2:2"), a("10.0.0.3:3")]);
        assert_eq!(l.first(), Some(a("10.0.0.1:1")));
        assert!(l.contains(&a("10.0.0.2:2")) && !l.contains(&a("10.0.0.2:3")));
        assert!(l.contains_ip("10.0.0.3".parse().unwrap()) && !l.contains_ip("10.0.0.4".parse().unwrap()));
        assert!(l.remove_addr(&a("10.0.0.2:2")));
        assert!(!l.remove_addr(&a("10.0.0.2:2")));
        l.push(a("10.0.0.2:2"));
        assert_eq!(l.to_vec(), vec![a("10.0.0.1:1"), a("10.0.0.3:3"), a("10.0.0.2:2")]);
        assert_eq!(l.remove_key(0), Some(a("10.0.0.1:1")));
        assert_eq!(l.first(), Some(a("10.0.0.3:3")));
        // The fingerprint follows the contents, whatever the way there.
        assert_eq!(l.fingerprint(), MemberList::new(Some(9), [a("10.0.0.3:3"), a("10.0.0.2:2")]).fingerprint());
        assert_ne!(l.fingerprint(), MemberList::new(None, [a("10.0.0.3:3")]).fingerprint());
        assert_ne!(l.fingerprint(), MemberList::new(None, [a("10.0.0.3:3"), a("10.0.0.2:3")]).fingerprint());
        // Duplicates (reference lists): both kept, removed one at a time.
        let mut d = MemberList::new(None, [a("10.0.0.1:1"), a("10.0.0.1:1")]);
        assert_eq!(d.len(), 2);
        assert!(d.remove_addr(&a("10.0.0.1:1")) && d.contains(&a("10.0.0.1:1")));
    }

    #[test]
    fn a_list_is_indexed_once_it_changed() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let whole = MemberList::new(Some(1), [a]);
        assert!(!whole.is_indexed(), "a list received whole is flat");
        let mut changed = whole.clone();
        changed.push(b);
        assert!(changed.is_indexed() && changed.contains(&a) && changed.contains(&b));
        assert!(!whole.is_indexed(), "the original is untouched");
    }

    #[test]
    fn snapshot_len_is_the_encoded_size() {
        for version in [None, Some(0), Some(7), Some(123_456)] {
            for n in [0usize, 1, 2, 30] {
                let members: Vec<SocketAddr> = (0..n)
                    .map(|i| {
                        if i % 3 == 2 {
                            a(&format!("[2001:db8::{i:x}]:{}", i * 977))
                        } else {
                            SocketAddr::from(([127, 0, (i / 7) as u8, i as u8], (i * 3001) as u16))
                        }
                    })
                    .collect();
                let l = MemberList::new(version, members.clone());
                let wire = crate::wire::Message::Distro { members, version, aliases: None }.encode();
                assert_eq!(l.snapshot_len(), wire.len(), "{}", String::from_utf8_lossy(&wire));
            }
        }
    }

    #[test]
    fn malformed_deltas_are_errors_and_leave_the_list_alone() {
        let l = MemberList::new(Some(4), [a("10.0.0.1:1"), a("10.0.0.2:2")]);
        let d = |base, version, removed: &[&str], added: &[&str]| Delta {
            base,
            version,
            removed: removed.iter().map(|s| a(s)).collect(),
            added: added.iter().map(|s| a(s)).collect(),
            ..Default::default()
        };
        assert_eq!(l.apply(&d(3, 5, &[], &[]), 10), Err(DeltaError::BaseMismatch { base: 3, held: 4 }));
        assert_eq!(l.apply(&d(4, 4, &[], &[]), 10), Err(DeltaError::NotForward { base: 4, version: 4 }));
        assert_eq!(l.apply(&d(4, 5, &["10.0.0.9:9"], &[]), 10), Err(DeltaError::UnknownRemoved(a("10.0.0.9:9"))));
        assert_eq!(
            l.apply(&d(4, 5, &["10.0.0.2:2", "10.0.0.2:2"], &[]), 10),
            Err(DeltaError::UnknownRemoved(a("10.0.0.2:2")))
        );
        assert_eq!(l.apply(&d(4, 5, &[], &["10.0.0.2:2"]), 10), Err(DeltaError::DuplicateAdded(a("10.0.0.2:2"))));
        assert_eq!(
            l.apply(&d(4, 5, &[], &["10.0.0.3:3", "10.0.0.4:4"]), 3),
            Err(DeltaError::TooLong { len: 4, max: 3 })
        );
        assert_eq!(
            MemberList::new(None, [a("10.0.0.1:1")]).apply(&d(0, 1, &[], &[]), 10),
            Err(DeltaError::Unversioned)
        );
        assert_eq!(l.to_vec(), vec![a("10.0.0.1:1"), a("10.0.0.2:2")]);
        // A replacement: removed and added again, it moves to the end.
        let r = l.apply(&d(4, 6, &["10.0.0.1:1"], &["10.0.0.3:3", "10.0.0.1:1"]), 10).unwrap();
        assert_eq!(r, MemberList::new(Some(6), [a("10.0.0.2:2"), a("10.0.0.3:3"), a("10.0.0.1:1")]));
    }

    #[test]
    fn merged_deltas_cancel_and_keep_moves() {
        let x = a("10.0.0.5:5");
        let y = a("10.0.0.6:6");
        let z = a("10.0.0.1:1");
        let ds = [
            Delta { base: 1, version: 2, removed: vec![], added: vec![x], ..Default::default() },
            Delta { base: 2, version: 3, removed: vec![z], added: vec![z], ..Default::default() },
            Delta { base: 3, version: 4, removed: vec![], added: vec![y], ..Default::default() },
            Delta { base: 4, version: 5, removed: vec![x], added: vec![], ..Default::default() },
        ];
        let m = Delta::merge(&ds).unwrap();
        assert_eq!(m, Delta { base: 1, version: 5, removed: vec![z], added: vec![z, y], ..Default::default() });
        assert_eq!(Delta::merge(&[ds[0].clone(), ds[2].clone()]), None, "a gap does not chain");
        assert_eq!(Delta::merge(&[]), None);
    }

    #[test]
    fn shared_lists_give_every_joiner_the_one_list_of_a_version() {
        let lists = SharedLists::new();
        let members = vec![a("10.0.0.1:1"), a("10.0.0.2:2")];
        let one = lists.snapshot(Some(3), members.clone());
        let two = lists.snapshot(Some(3), members.clone());
        assert!(one.same_as(&two), "an equal snapshot is the kept one");
        let other = lists.snapshot(Some(3), vec![a("10.0.0.1:1")]);
        assert!(!other.same_as(&one) && other.len() == 1, "different addresses are not taken");
        let d = Delta {
            base: 3,
            version: 4,
            removed: vec![a("10.0.0.1:1")],
            added: vec![a("10.0.0.3:3")],
            ..Default::default()
        };
        let r1 = lists.apply(&one, &d, 10).unwrap();
        let r2 = lists.apply(&two, &d, 10).unwrap();
        assert!(r1.same_as(&r2), "the second joiner takes the first's result");
        assert_eq!(r2, one.apply(&d, 10).unwrap());
        // A list built apart but equal is swapped for the kept one.
        let apart = MemberList::new(Some(3), members.clone());
        assert!(lists.apply(&apart, &d, 10).unwrap().same_as(&r1));
        // A delta to the same version that says something else is applied, not shared.
        let lie = Delta { base: 3, version: 4, removed: vec![], added: vec![a("10.0.0.9:9")], ..Default::default() };
        let own = lists.apply(&one, &lie, 10).unwrap();
        assert!(!own.same_as(&r1));
        assert_eq!(own, one.apply(&lie, 10).unwrap());
        // Errors stay errors, and bounds hold for shared results too.
        assert_eq!(lists.apply(&one, &d, 1), Err(DeltaError::TooLong { len: 2, max: 1 }));
        let bad = Delta { base: 3, version: 4, removed: vec![a("10.0.0.7:7")], added: vec![], ..Default::default() };
        assert_eq!(lists.apply(&one, &bad, 10), Err(DeltaError::UnknownRemoved(a("10.0.0.7:7"))));
        let (shared, built) = lists.counts();
        assert!(shared >= 3 && built >= 3, "{shared} shared, {built} built");

        // Wire bytes seen before give the list they decoded to; other bytes of the same
        // length do not, and small lists are not remembered at all.
        let big: Vec<SocketAddr> = (0..100).map(|i| SocketAddr::from(([10, 1, 0, i as u8], 2000 + i))).collect();
        let bytes = crate::wire::encode_distro(big.iter(), Some(9));
        let list = MemberList::new(Some(9), big.clone());
        assert!(lists.decoded(&bytes).is_none());
        lists.remember(&bytes, &list, None);
        assert!(lists.decoded(&bytes).is_some_and(|(l, _)| l.same_as(&list)));
        let mut other = bytes.clone();
        let i = other.len() - 20;
        other[i] = if other[i] == b'1' { b'2' } else { b'1' };
        assert!(lists.decoded(&other).is_none(), "same length, other bytes");
        let small = crate::wire::encode_distro(members.iter(), Some(3));
        lists.remember(&small, &one, None);
        assert!(lists.decoded(&small).is_none());
    }

    mod shared_props {
        use super::super::*;
        use proptest::prelude::*;

        fn addr(i: u16) -> SocketAddr {
            SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 1000 + i))
        }

        /// One step of an authenticator's history: add `add` new members, remove the ones
        /// at these positions (mod len).
        fn history(steps: &[(u8, Vec<u16>)]) -> Vec<Delta> {
            let mut list: Vec<SocketAddr> = (0..4).map(addr).collect();
            let mut next = 4u16;
            let mut out = Vec::new();
            for (v, (add, removes)) in steps.iter().enumerate() {
                let mut removed = Vec::new();
                for r in removes {
                    if list.len() > 1 {
                        removed.push(list.remove(usize::from(*r) % list.len()));
                    }
                }
                // Sometimes a removed member comes back at once (a replacement).
                let mut added: Vec<SocketAddr> = Vec::new();
                if add % 5 == 4
                    && let Some(r) = removed.first()
                {
                    added.push(*r);
                }
                for _ in 0..(add % 4) {
                    added.push(addr(next));
                    next += 1;
                }
                list.extend(&added);
                out.push(Delta { base: v as u64, version: v as u64 + 1, removed, added, ..Default::default() });
            }
            out
        }

        proptest! {
            /// Joiners following one history by different paths (single deltas, merged
            /// jumps, lies now and then), through one `SharedLists`: every list a joiner gets
            /// equals what it would have built alone.
            #[test]
            fn shared_results_equal_own_results(
                steps in proptest::collection::vec((any::<u8>(), proptest::collection::vec(any::<u16>(), 0..3)), 1..40),
                paths in proptest::collection::vec(proptest::collection::vec((1u8..4, any::<bool>()), 1..40), 1..5),
            ) {
                let deltas = history(&steps);
                let lists = SharedLists::new();
                let start: Vec<SocketAddr> = (0..4).map(addr).collect();
                for path in &paths {
                    let mut held = lists.snapshot(Some(0), start.clone());
                    let mut alone = MemberList::new(Some(0), start.clone());
                    let mut v = 0usize;
                    for &(jump, lie) in path {
                        if v >= deltas.len() { break; }
                        let to = (v + usize::from(jump)).min(deltas.len());
                        let mut d = Delta::merge(&deltas[v..to]).unwrap();
                        // A lie that changes the length, and one that keeps it.
                        let lie = lie && match (jump % 2, d.added.last_mut()) {
                            (0, Some(last)) => {
                                *last = addr(60_001);
                                true
                            }
                            _ => {
                                d.added.push(addr(60_000));
                                true
                            }
                        };
                        let shared = lists.apply(&held, &d, 1000);
                        let own = alone.apply(&d, 1000);
                        prop_assert_eq!(&shared, &own);
                        if lie {
                            break;
                        }
                        held = shared.unwrap();
                        alone = own.unwrap();
                        v = to;
                    }
                }
            }

            /// A whole list's aliases (any pairs: repeated addresses, some without an
            /// alias) give the map built from them, and the kept map itself (the same
            /// structure) exactly when they equal it, whatever the kept map is.
            #[test]
            fn aliases_from_a_whole_list_equal_the_map_built_from_them(
                pairs in proptest::collection::vec((0u16..12, proptest::option::of(0u8..3)), 0..30),
                kept_from in proptest::collection::vec((0u16..12, proptest::option::of(0u8..3)), 0..30),
                kind in 0u8..3,
            ) {
                let to_pairs = |v: &[(u16, Option<u8>)]| -> (Vec<SocketAddr>, Vec<(SocketAddr, Arc<str>)>) {
                    let members: Vec<SocketAddr> = v.iter().map(|(m, _)| addr(*m)).collect();
                    let pairs = v.iter().filter_map(|(m, a)| a.map(|a| (addr(*m), Arc::from(format!("n{a}"))))).collect();
                    (members, pairs)
                };
                let (members, pairs) = to_pairs(&pairs);
                let lists = SharedLists::new();
                let list = lists.snapshot(Some(7), members);
                // The kept map: these very pairs' map, another one's, or theirs with one alias
                // changed (the same addresses).
                let mut kept: AliasMap = match kind {
                    1 => to_pairs(&kept_from).1.into_iter().collect(),
                    _ => pairs.iter().cloned().collect(),
                };
                if kind == 2
                    && let Some((m, _)) = kept.iter().next().map(|(m, a)| (*m, a.clone()))
                {
                    kept.insert(m, Arc::from("changed"));
                }
                let kept = lists.aliases_of(&list, kept);
                let built: AliasMap = pairs.iter().cloned().collect();
                let got = lists.aliases_from(&list, pairs);
                prop_assert_eq!(&got, &built);
                prop_assert_eq!(got.ptr_eq(&kept), built == kept);
                // A list that is not the kept one never takes the kept map.
                let apart = MemberList::new(Some(7), list.iter().copied().collect::<Vec<_>>());
                let again = lists.aliases_from(&apart, built.iter().map(|(m, a)| (*m, a.clone())).collect());
                prop_assert!(!again.ptr_eq(&kept) || kept.is_empty());
                prop_assert_eq!(again, built);
            }
        }
    }
}
