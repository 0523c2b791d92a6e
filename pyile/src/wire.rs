//! The v1 wire format: every message type, its exact JSON encoding, and a
//! streaming decoder.
//!
//! The reference implementation writes one JSON object per `send()` with no
//! framing and reads with a single `recv()`, so on a real TCP stream two
//! objects may arrive in one read and one object may arrive over many reads.
//! [`MessageReader`] therefore treats a stream as a sequence of concatenated
//! JSON values: it scans bytes incrementally (keeping its scan state between
//! reads, so a value split byte by byte costs O(n), not O(n²)) until one
//! top-level object is complete, then hands exactly those bytes to
//! `serde_json`. The buffer for one value is bounded by a configurable limit;
//! past it, the reader fails with [`DecodeError::TooLarge`] instead of growing.
//!
//! Messages are classified by the key the reference itself looks at
//! (`banned`, `shadow`, `authenticated`, `peer_address`, `distro`,
//! `dist_addr`, `<3`, `data`). Extra keys are ignored, exactly as the
//! reference ignores them; this crate uses that as its extension point (see
//! [`PROTOCOL_VERSION`]). Extension keys go only to a peer that announced
//! protocol 2, so a reference peer sees byte-for-byte v1.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::scram::{Challenge, MECHANISM};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::member_list::{Delta, Departure};

/// Default bound on the size of one JSON value: room for a 10,000-member list
/// (about 25 bytes per member) with a wide margin.
pub const DEFAULT_MAX_VALUE_LEN: usize = 1 << 20;

/// The extension key both Rust roles add to the objects the reference ignores
/// extra keys in (`banned` from the authenticator, `shadow` from the joiner).
pub const EXTENSION_KEY: &str = "pyile";

/// Protocol revision this crate announces under [`EXTENSION_KEY`]. A peer that
/// announces nothing speaks plain v1 (the reference); with 2 on both sides the
/// authenticator skips the reference's compatibility pacing, numbers member
/// lists (`version`), pairs distribution connections by `dist_token`, and the
/// joiner's heartbeat answers carry the `version` of the newest list it holds
/// ([`Message::VersionedHeartbeat`]), which lets the authenticator notice a
/// member whose distribution connection died while its auth connection lives.
/// After its first full list, a protocol-2 member receives [`Message::Delta`]s
/// (`docs/protocol-2.md`, "Member-list deltas").
pub const PROTOCOL_VERSION: u64 = 2;

/// Whom a chat message is addressed to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recipient {
    /// Sent to every member but the sender (`"to": "Broadcast"`).
    Broadcast,
    /// Sent to one member's peer address.
    Direct(SocketAddr),
}

/// A chat message as it travels on a temporary connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chat {
    /// The text.
    pub data: String,
    /// The sender's alias.
    pub alias: String,
    /// Broadcast or one recipient.
    pub to: Recipient,
    /// The sender's peer address.
    pub from: SocketAddr,
    /// Protocol-2 extension (`"msg_id":{"epoch":E,"seq":S}`): the sender-unique id that lets
    /// a protocol-2 receiver drop duplicates ([`crate::dedup`]). `None` from the reference
    /// (and from a joiner that does not announce protocol 2); a `msg_id` that is not an object
    /// of two unsigned integers decodes as `None` (the message is then delivered as v1).
    pub msg_id: Option<ChatId>,
}

/// A chat message's id within its sender's stream (the sender is the chat's `from`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChatId {
    /// Drawn by the sender once per start (from its seeded RNG).
    pub epoch: u64,
    /// The sender's sequence number within the epoch, one per message (a broadcast's copies
    /// and a message's retries share it).
    pub seq: u64,
}

/// Every message of the v1 protocol, plus the extension fields this crate adds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Authenticator → joiner, first message: whether the source IP is banned.
    /// `version` is the extension announcement (None from the reference); `scram` (key
    /// `"scram": "SCRAM-SHA-256"`, only with a version) says the authenticator takes the
    /// [`Message::ScramStart`] exchange instead of a cleartext `shadow`.
    Banned { banned: bool, version: Option<u64>, scram: bool },
    /// Joiner → authenticator: the password (`{"shadow": ...}`); a protocol-2 joiner adds
    /// its `alias` and may ask for its lists on the auth connection (`"one_connection":
    /// true`, see [`Message::ListsHere`]); both extensions are written only next to `version`.
    Shadow { password: String, version: Option<u64>, alias: Option<String>, one_connection: bool },
    /// Authenticator → joiner: result of the password check.
    Authenticated(bool),
    /// Authenticator → protocol-2 joiner: the password was right but the join is refused
    /// (extension, `{"authenticated": false, "refused": "alias_taken"}`; see [`Refusal`]).
    /// Not counted toward bans.
    Refused(Refusal),
    /// Joiner → authenticator, instead of `shadow`, only to an authenticator that announced
    /// `scram` (extension, `{"scram_client_nonce": "...", "pyile": 2, "alias": "bob"}`): the
    /// joiner's nonce.
    ScramStart {
        /// The joiner's nonce (base64).
        nonce: String,
        /// The joiner's protocol announcement, as in `shadow`.
        version: Option<u64>,
        /// The alias it joins with, as in `shadow`.
        alias: Option<String>,
        /// Asks for the member lists on the auth connection, as in `shadow`.
        one_connection: bool,
    },
    /// Authenticator → joiner: the challenge (extension, `{"scram_nonce": "...",
    /// "scram_salt": "...", "scram_iterations": N}`).
    ScramChallenge(Challenge),
    /// Joiner → authenticator: the proof (extension, `{"scram_nonce": "...", "scram_proof": "..."}`).
    ScramProof {
        /// The combined nonce, echoed.
        nonce: String,
        /// Base64 ClientProof.
        proof: String,
    },
    /// Authenticator → joiner: proof accepted, and the authenticator's own proof (extension,
    /// `{"authenticated": true, "scram_signature": "..."}`). A refusal is the plain
    /// `{"authenticated": false}`.
    ScramAccepted {
        /// Base64 ServerSignature.
        signature: String,
    },
    /// Joiner → authenticator: where the joiner listens for chat messages.
    PeerAddress(SocketAddr),
    /// Authenticator → joiner: the whole member list, authenticator first.
    /// `version` numbers lists from our authenticator (None from the reference); `aliases`
    /// (extension, protocol-2 members' distribution connections only) is parallel to
    /// `members`, `null` for a member without one.
    Distro { members: Vec<SocketAddr>, version: Option<u64>, aliases: Option<Vec<Option<Arc<str>>>> },
    /// Authenticator → joiner: the distribution socket to connect to, and the
    /// token that pairs that connection with this joiner (extension).
    DistAddr { addr: SocketAddr, token: Option<u64> },
    /// Joiner → authenticator, first message on the distribution connection
    /// (extension; the reference never reads that socket).
    DistToken(u64),
    /// Authenticator → protocol-2 joiner that asked for `one_connection`, instead of
    /// [`Message::DistAddr`] (extension, `{"lists_here": true}`): its member lists (snapshots
    /// and deltas) come on the auth connection, between the heartbeats; no distribution
    /// connection is opened. The joiner echoes it (the same object), in place of opening a
    /// distribution connection: the authenticator admits it only then.
    ListsHere,
    /// Authenticator → protocol-2 joiner, on the distribution connection only
    /// (extension): the change from list version `base` to `version`,
    /// `{"delta":true,"base":B,"version":V,"removed":[...],"added":[...]}`.
    Delta(Delta),
    /// Protocol-2 joiner → authenticator, on the auth connection (extension,
    /// `{"leaving": true}`): it leaves on purpose; the authenticator removes it with
    /// reason `left` and closes.
    Leaving,
    /// Heartbeat, both directions (`{"<3": true}`): exactly what the
    /// reference sends and what is sent to it.
    Heartbeat,
    /// Heartbeat with the version of a member list (extension,
    /// `{"<3": true, "version": N}`): a protocol-2 joiner's answer to the
    /// authenticator, carrying the version of the newest committed list it
    /// holds (0 while it holds none). Sent only to an authenticator that
    /// announced protocol 2. Decoding is tolerant both ways: every reader of
    /// heartbeats in this crate takes it as a heartbeat, and a `version` that
    /// is not an unsigned integer makes it a plain [`Message::Heartbeat`].
    VersionedHeartbeat {
        /// Version of the newest committed member list the sender holds.
        version: u64,
    },
    /// A chat message on a temporary connection.
    Chat(Chat),
    /// The receiver's answer to a chat message: the whole object received,
    /// echoed, with the receiver's alias. `version` (extension, top-level `"pyile": 2`) is
    /// added by a protocol-2 receiver to its echo of a message that carried a `msg_id`: it
    /// tells the sender that this receiver drops duplicates, so a retry is safe. (The
    /// reference echoes the whole object, `msg_id` included, inside `data`, so only a
    /// top-level key can say anything about the receiver.)
    Echo { data: Value, alias: String, version: Option<u64> },
}

/// Why an authenticator refused a protocol-2 joiner whose password was right (the
/// `"refused"` key of `{"authenticated": false, ...}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Another live member (or a handshake in progress) holds the alias: `"alias_taken"`.
    AliasTaken,
    /// The alias is empty, too long or holds control characters: `"bad_alias"`.
    BadAlias,
    /// A refusal this version does not know, kept as sent.
    Other(String),
}

impl Refusal {
    /// The wire name.
    pub fn as_str(&self) -> &str {
        match self {
            Refusal::AliasTaken => "alias_taken",
            Refusal::BadAlias => "bad_alias",
            Refusal::Other(s) => s,
        }
    }

    /// From its wire name.
    pub fn parse(s: &str) -> Refusal {
        match s {
            "alias_taken" => Refusal::AliasTaken,
            "bad_alias" => Refusal::BadAlias,
            other => Refusal::Other(other.to_owned()),
        }
    }
}

/// Bytes of `s` written as a JSON string (quotes and escapes included), as `serde_json`
/// writes it.
pub fn json_str_len(s: &str) -> usize {
    2 + s
        .chars()
        .map(|c| match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{08}' | '\u{0c}' => 2,
            c if (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        })
        .sum::<usize>()
}

/// Why bytes could not be decoded into a [`Message`].
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The underlying read failed.
    #[error("read failed")]
    Io(#[from] std::io::Error),
    /// The stream ended before a value was complete (or before any value).
    #[error("connection closed{}", if *.partial { " in the middle of a value" } else { "" })]
    Eof {
        /// Whether some bytes of an unfinished value had been received.
        partial: bool,
    },
    /// One value exceeded the configured bound.
    #[error("value exceeds {limit} bytes")]
    TooLarge {
        /// The bound in bytes.
        limit: usize,
    },
    /// The bytes are not valid JSON.
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// Valid JSON, but not a message of this protocol.
    #[error("unknown message: {0}")]
    Unknown(String),
}

impl DecodeError {
    fn unknown(v: &Value) -> Self {
        let mut s = v.to_string();
        if s.len() > 120 {
            let mut cut = 120;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
            s.push('…');
        }
        DecodeError::Unknown(s)
    }
}

fn addr_to_json(a: &SocketAddr) -> Value {
    json!([a.ip().to_string(), a.port()])
}

fn addr_from_json(v: &Value) -> Option<SocketAddr> {
    let arr = v.as_array()?;
    if arr.len() != 2 {
        return None;
    }
    let ip: IpAddr = arr[0].as_str()?.parse().ok()?;
    let port = u16::try_from(arr[1].as_u64()?).ok()?;
    Some(SocketAddr::new(ip, port))
}

impl Message {
    /// The JSON object exactly as the reference expects it.
    pub fn to_json(&self) -> Value {
        match self {
            Message::Banned { banned, version, scram } => {
                let mut m = Map::new();
                m.insert("banned".into(), Value::Bool(*banned));
                if let Some(v) = version {
                    m.insert(EXTENSION_KEY.into(), json!(v));
                    if *scram {
                        m.insert("scram".into(), json!(MECHANISM));
                    }
                }
                Value::Object(m)
            }
            Message::Shadow { password, version, alias, one_connection } => {
                let mut m = Map::new();
                m.insert("shadow".into(), Value::String(password.clone()));
                insert_joiner_extensions(&mut m, *version, alias.as_deref(), *one_connection);
                Value::Object(m)
            }
            Message::Authenticated(ok) => json!({ "authenticated": ok }),
            Message::Refused(r) => json!({ "authenticated": false, "refused": r.as_str() }),
            Message::ScramStart { nonce, version, alias, one_connection } => {
                let mut m = Map::new();
                m.insert("scram_client_nonce".into(), json!(nonce));
                insert_joiner_extensions(&mut m, *version, alias.as_deref(), *one_connection);
                Value::Object(m)
            }
            Message::ScramChallenge(c) => {
                json!({ "scram_nonce": c.nonce, "scram_salt": c.salt, "scram_iterations": c.iterations })
            }
            Message::ScramProof { nonce, proof } => json!({ "scram_nonce": nonce, "scram_proof": proof }),
            Message::ScramAccepted { signature } => json!({ "authenticated": true, "scram_signature": signature }),
            Message::PeerAddress(a) => json!({ "peer_address": addr_to_json(a) }),
            Message::Distro { members, version, aliases } => {
                let mut m = Map::new();
                m.insert("distro".into(), Value::Array(members.iter().map(addr_to_json).collect()));
                if let Some(v) = version {
                    m.insert("version".into(), json!(v));
                }
                if let Some(a) = aliases {
                    m.insert("aliases".into(), aliases_to_json(a));
                }
                Value::Object(m)
            }
            Message::DistAddr { addr, token } => {
                let mut m = Map::new();
                m.insert("dist_addr".into(), addr_to_json(addr));
                if let Some(t) = token {
                    m.insert("dist_token".into(), json!(t));
                }
                Value::Object(m)
            }
            Message::DistToken(t) => json!({ "dist_token": t }),
            Message::ListsHere => json!({ "lists_here": true }),
            Message::Delta(d) => {
                let mut m = Map::new();
                m.insert("delta".into(), Value::Bool(true));
                m.insert("base".into(), json!(d.base));
                m.insert("version".into(), json!(d.version));
                m.insert("removed".into(), Value::Array(d.removed.iter().map(addr_to_json).collect()));
                if !d.reasons.is_empty() {
                    m.insert("reasons".into(), d.reasons.iter().map(|r| json!(r.as_str())).collect());
                }
                m.insert("added".into(), Value::Array(d.added.iter().map(addr_to_json).collect()));
                if !d.aliases.is_empty() {
                    m.insert("aliases".into(), aliases_to_json(&d.aliases));
                }
                Value::Object(m)
            }
            Message::Leaving => json!({ "leaving": true }),
            Message::Heartbeat => json!({ "<3": true }),
            Message::VersionedHeartbeat { version } => json!({ "<3": true, "version": version }),
            Message::Chat(c) => {
                let mut v = json!({
                    "data": c.data,
                    "alias": c.alias,
                    "to": match &c.to {
                        Recipient::Broadcast => Value::String("Broadcast".into()),
                        Recipient::Direct(a) => addr_to_json(a),
                    },
                    "from": addr_to_json(&c.from),
                });
                if let (Some(id), Value::Object(m)) = (c.msg_id, &mut v) {
                    m.insert("msg_id".into(), json!({ "epoch": id.epoch, "seq": id.seq }));
                }
                v
            }
            Message::Echo { data, alias, version } => {
                let mut v = json!({ "data": data, "alias": alias });
                if let (Some(version), Value::Object(m)) = (version, &mut v) {
                    m.insert(EXTENSION_KEY.into(), json!(version));
                }
                v
            }
        }
    }

    /// A heartbeat, carrying `version` when given (protocol-2 peers only).
    pub fn heartbeat(version: Option<u64>) -> Message {
        match version {
            Some(version) => Message::VersionedHeartbeat { version },
            None => Message::Heartbeat,
        }
    }

    /// Whether this is a heartbeat (plain or versioned), and the list version
    /// it carries: `None` if it is not a heartbeat.
    pub fn as_heartbeat(&self) -> Option<Option<u64>> {
        match self {
            Message::Heartbeat => Some(None),
            Message::VersionedHeartbeat { version } => Some(Some(*version)),
            _ => None,
        }
    }

    /// Encodes the message as the bytes of one `send()`.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Message::Distro { members, version, aliases: None } => encode_distro(members.iter(), *version),
            Message::Delta(d) => encode_delta(d),
            // Serializing a `Value` cannot fail: its keys are strings.
            _ => serde_json::to_vec(&self.to_json()).unwrap_or_default(),
        }
    }

    /// Decodes one JSON value's bytes.
    ///
    /// Member lists are most of the bytes a member receives (each change sends
    /// the whole list to every member), so a plain `{"distro": [...]}` (with
    /// our optional `version`) is parsed straight into addresses, at about
    /// twice the speed of going through a [`Value`] (10 KB list: 48 µs vs
    /// 100 µs here). Anything else, or anything that fast path rejects, takes
    /// the general path, so both classify every input the same way.
    pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct PlainDistro {
            distro: Vec<(IpAddr, u16)>,
            #[serde(default)]
            version: Option<u64>,
            #[serde(default)]
            aliases: Option<Vec<Option<String>>>,
        }
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct PlainDelta {
            delta: bool,
            base: u64,
            version: u64,
            removed: Vec<(IpAddr, u16)>,
            added: Vec<(IpAddr, u16)>,
            #[serde(default)]
            reasons: Vec<String>,
            #[serde(default)]
            aliases: Vec<Option<String>>,
        }
        if bytes.starts_with(b"{\"distro\":[")
            && let Some(m) = decode_own_distro(bytes)
        {
            return Ok(m);
        }
        let addrs = |v: Vec<(IpAddr, u16)>| v.into_iter().map(|(ip, port)| SocketAddr::new(ip, port)).collect();
        let arcs = |v: Vec<Option<String>>| v.into_iter().map(|a| a.map(Arc::from)).collect::<Vec<_>>();
        if let Ok(d) = serde_json::from_slice::<PlainDistro>(bytes) {
            let aliases = d.aliases.map(arcs);
            return Ok(Message::Distro { members: addrs(d.distro), version: d.version, aliases });
        }
        if let Ok(d) = serde_json::from_slice::<PlainDelta>(bytes)
            && d.delta
        {
            let (removed, added) = (addrs(d.removed), addrs(d.added));
            let reasons = d.reasons.iter().map(|r| Departure::parse(r)).collect();
            return Ok(Message::Delta(Delta {
                base: d.base,
                version: d.version,
                removed,
                added,
                reasons,
                aliases: arcs(d.aliases),
            }));
        }
        let value = serde_json::from_slice::<Value>(bytes).map_err(|e| DecodeError::InvalidJson(e.to_string()))?;
        Message::from_json(value)
    }

    /// Classifies one decoded JSON value by the keys the reference reads.
    pub fn from_json(v: Value) -> Result<Message, DecodeError> {
        let Some(obj) = v.as_object() else {
            return Err(DecodeError::unknown(&v));
        };
        let version = obj.get(EXTENSION_KEY).and_then(Value::as_u64);
        let bad = || DecodeError::unknown(&v);
        if let Some(b) = obj.get("banned") {
            let scram = version.is_some() && obj.get("scram").and_then(Value::as_str) == Some(MECHANISM);
            return Ok(Message::Banned { banned: b.as_bool().ok_or_else(bad)?, version, scram });
        }
        // The joiner's alias (protocol 2 only, next to its announcement); a non-string one
        // is read as an empty one, which the authenticator refuses as a bad alias.
        let alias = match (version, obj.get("alias")) {
            (Some(_), Some(a)) => Some(a.as_str().unwrap_or_default().to_owned()),
            _ => None,
        };
        // Lists on the auth connection (protocol 2 only, next to the announcement).
        let one_connection = version.is_some() && obj.get("one_connection") == Some(&Value::Bool(true));
        if let Some(p) = obj.get("shadow") {
            let password = p.as_str().ok_or_else(bad)?.to_owned();
            return Ok(Message::Shadow { password, version, alias, one_connection });
        }
        if let Some(a) = obj.get("authenticated") {
            let ok = a.as_bool().ok_or_else(bad)?;
            if let (false, Some(r)) = (ok, obj.get("refused").and_then(Value::as_str)) {
                return Ok(Message::Refused(Refusal::parse(r)));
            }
            if let (true, Some(sig)) = (ok, obj.get("scram_signature")) {
                return Ok(Message::ScramAccepted { signature: sig.as_str().ok_or_else(bad)?.to_owned() });
            }
            return Ok(Message::Authenticated(ok));
        }
        let text = |key: &str| obj.get(key).and_then(Value::as_str).map(str::to_owned);
        if obj.contains_key("scram_client_nonce") {
            let nonce = text("scram_client_nonce").ok_or_else(bad)?;
            return Ok(Message::ScramStart { nonce, version, alias, one_connection });
        }
        if obj.contains_key("scram_proof") {
            let (Some(nonce), Some(proof)) = (text("scram_nonce"), text("scram_proof")) else {
                return Err(bad());
            };
            return Ok(Message::ScramProof { nonce, proof });
        }
        if obj.contains_key("scram_salt") {
            let iterations = obj.get("scram_iterations").and_then(Value::as_u64).and_then(|i| u32::try_from(i).ok());
            let (Some(nonce), Some(salt), Some(iterations)) = (text("scram_nonce"), text("scram_salt"), iterations)
            else {
                return Err(bad());
            };
            return Ok(Message::ScramChallenge(Challenge { nonce, salt, iterations }));
        }
        if let Some(a) = obj.get("peer_address") {
            return Ok(Message::PeerAddress(addr_from_json(a).ok_or_else(bad)?));
        }
        if let Some(list) = obj.get("distro") {
            let members = list
                .as_array()
                .ok_or_else(bad)?
                .iter()
                .map(addr_from_json)
                .collect::<Option<Vec<_>>>()
                .ok_or_else(bad)?;
            let version = obj.get("version").and_then(Value::as_u64);
            let aliases = match obj.get("aliases") {
                None => None,
                Some(a) => Some(aliases_from_json(a).ok_or_else(bad)?),
            };
            return Ok(Message::Distro { members, version, aliases });
        }
        if let Some(a) = obj.get("dist_addr") {
            let addr = addr_from_json(a).ok_or_else(bad)?;
            let token = obj.get("dist_token").and_then(Value::as_u64);
            return Ok(Message::DistAddr { addr, token });
        }
        if let Some(t) = obj.get("dist_token") {
            return Ok(Message::DistToken(t.as_u64().ok_or_else(bad)?));
        }
        if obj.get("lists_here") == Some(&Value::Bool(true)) {
            return Ok(Message::ListsHere);
        }
        if obj.get("delta") == Some(&Value::Bool(true)) {
            let num = |k: &str| obj.get(k).and_then(Value::as_u64).ok_or_else(bad);
            let list = |k: &str| {
                obj.get(k)
                    .and_then(Value::as_array)
                    .and_then(|l| l.iter().map(addr_from_json).collect::<Option<Vec<_>>>())
                    .ok_or_else(bad)
            };
            let reasons = match obj.get("reasons") {
                None => Vec::new(),
                Some(r) => r
                    .as_array()
                    .and_then(|l| l.iter().map(|r| r.as_str().map(Departure::parse)).collect::<Option<Vec<_>>>())
                    .ok_or_else(bad)?,
            };
            let aliases = match obj.get("aliases") {
                None => Vec::new(),
                Some(a) => aliases_from_json(a).ok_or_else(bad)?,
            };
            return Ok(Message::Delta(Delta {
                base: num("base")?,
                version: num("version")?,
                removed: list("removed")?,
                added: list("added")?,
                reasons,
                aliases,
            }));
        }
        if obj.get("leaving") == Some(&Value::Bool(true)) {
            return Ok(Message::Leaving);
        }
        if obj.contains_key("<3") {
            return Ok(match obj.get("version").and_then(Value::as_u64) {
                Some(version) => Message::VersionedHeartbeat { version },
                None => Message::Heartbeat,
            });
        }
        if let Some(data) = obj.get("data") {
            let alias = obj.get("alias").and_then(Value::as_str).unwrap_or_default().to_owned();
            if let (Some(text), Some(to), Some(from)) = (data.as_str(), obj.get("to"), obj.get("from")) {
                let to = match to {
                    Value::String(s) if s == "Broadcast" => Recipient::Broadcast,
                    other => Recipient::Direct(addr_from_json(other).ok_or_else(bad)?),
                };
                let from = addr_from_json(from).ok_or_else(bad)?;
                let msg_id = obj
                    .get("msg_id")
                    .and_then(|id| Some(ChatId { epoch: id.get("epoch")?.as_u64()?, seq: id.get("seq")?.as_u64()? }));
                return Ok(Message::Chat(Chat { data: text.to_owned(), alias, to, from, msg_id }));
            }
            if data.is_object() {
                let version = obj.get(EXTENSION_KEY).and_then(Value::as_u64);
                return Ok(Message::Echo { data: data.clone(), alias, version });
            }
        }
        Err(bad())
    }

    /// Short name of the message kind, for errors and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Banned { .. } => "banned",
            Message::Shadow { .. } => "shadow",
            Message::Authenticated(_) | Message::ScramAccepted { .. } | Message::Refused(_) => "authenticated",
            Message::ScramStart { .. } => "scram_client_nonce",
            Message::ScramChallenge(_) => "scram_challenge",
            Message::ScramProof { .. } => "scram_proof",
            Message::PeerAddress(_) => "peer_address",
            Message::Distro { .. } => "distro",
            Message::DistAddr { .. } => "dist_addr",
            Message::DistToken(_) => "dist_token",
            Message::ListsHere => "lists_here",
            Message::Delta(_) => "delta",
            Message::Leaving => "leaving",
            Message::Heartbeat | Message::VersionedHeartbeat { .. } => "heartbeat",
            Message::Chat(_) => "chat",
            Message::Echo { .. } => "echo",
        }
    }
}

/// A whole list exactly as our authenticator writes it ([`encode_distro`],
/// [`encode_distro_aliased`]: IPv4 members, no spaces, keys in that order, aliases without
/// escapes), parsed by hand; `None` for anything else, which takes the `serde` path and gets
/// its verdict. Every joiner's first list is one (230 KB at 10,000 members): this parses it
/// ~4× faster than `serde`, one allocation per alias instead of two.
fn decode_own_distro(b: &[u8]) -> Option<Message> {
    let mut p = Bytes { b, i: 0 };
    p.lit(b"{\"distro\":[")?;
    let mut members = Vec::with_capacity(b.len() / 20);
    if !p.eat(b']') {
        loop {
            p.lit(b"[\"")?;
            let ip: std::net::Ipv4Addr = p.until_quote()?.parse().ok()?;
            p.lit(b"\",")?;
            let port = u16::try_from(p.number()?).ok()?;
            p.lit(b"]")?;
            members.push(SocketAddr::from((ip, port)));
            if !p.eat(b',') {
                p.lit(b"]")?;
                break;
            }
        }
    }
    let version = if p.eat_lit(b",\"version\":") { Some(p.number()?) } else { None };
    let aliases = if p.eat_lit(b",\"aliases\":[") {
        let mut a: Vec<Option<Arc<str>>> = Vec::with_capacity(members.len());
        if !p.eat(b']') {
            loop {
                if p.eat_lit(b"null") {
                    a.push(None);
                } else {
                    p.lit(b"\"")?;
                    a.push(Some(Arc::from(p.until_quote()?)));
                    p.lit(b"\"")?;
                }
                if !p.eat(b',') {
                    p.lit(b"]")?;
                    break;
                }
            }
        }
        Some(a)
    } else {
        None
    };
    p.lit(b"}")?;
    (p.i == b.len()).then_some(Message::Distro { members, version, aliases })
}

/// A cursor over bytes for [`decode_own_distro`].
struct Bytes<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Bytes<'a> {
    /// Consumes `lit` if the bytes go on with it.
    fn eat_lit(&mut self, lit: &[u8]) -> bool {
        let found = self.b[self.i..].starts_with(lit);
        if found {
            self.i += lit.len();
        }
        found
    }

    fn lit(&mut self, lit: &[u8]) -> Option<()> {
        self.eat_lit(lit).then_some(())
    }

    fn eat(&mut self, c: u8) -> bool {
        self.eat_lit(&[c])
    }

    /// A string's body up to its closing quote (not consumed): valid UTF-8 without escapes
    /// or control characters, else `None`.
    fn until_quote(&mut self) -> Option<&'a str> {
        let rest = &self.b[self.i..];
        let n = memchr::memchr(b'"', rest)?;
        let body = &rest[..n];
        if body.iter().any(|&c| c == b'\\' || c < 0x20) {
            return None;
        }
        self.i += n;
        std::str::from_utf8(body).ok()
    }

    /// A JSON non-negative integer (no leading zero, no fraction or exponent; what follows is
    /// the caller's to check) that fits a `u64`.
    fn number(&mut self) -> Option<u64> {
        let rest = &self.b[self.i..];
        let n = rest.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 || (n > 1 && rest[0] == b'0') || matches!(rest.get(n), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        let mut v: u64 = 0;
        for &c in &rest[..n] {
            v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
        }
        self.i += n;
        Some(v)
    }
}

/// A joiner's extension keys in its first handshake message (`shadow` or
/// `scram_client_nonce`): its announcement, and next to it only, its alias and its request
/// for lists on the auth connection (written only when asked).
fn insert_joiner_extensions(m: &mut Map<String, Value>, version: Option<u64>, alias: Option<&str>, one: bool) {
    let Some(v) = version else { return };
    m.insert(EXTENSION_KEY.into(), json!(v));
    if let Some(a) = alias {
        m.insert("alias".into(), json!(a));
    }
    if one {
        m.insert("one_connection".into(), Value::Bool(true));
    }
}

fn aliases_to_json(a: &[Option<Arc<str>>]) -> Value {
    Value::Array(a.iter().map(|a| a.as_deref().map_or(Value::Null, |s| Value::String(s.to_owned()))).collect())
}

fn aliases_from_json(v: &Value) -> Option<Vec<Option<Arc<str>>>> {
    v.as_array()?
        .iter()
        .map(|a| match a {
            Value::Null => Some(None),
            Value::String(s) => Some(Some(Arc::from(s.as_str()))),
            _ => None,
        })
        .collect()
}

/// Appends `a` as a JSON string (escaped as `serde_json` escapes it).
fn push_str(out: &mut Vec<u8>, a: &str) {
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, a);
}

/// Appends a JSON array of aliases (`null` for none) to `out`.
fn push_aliases(out: &mut Vec<u8>, aliases: &[Option<Arc<str>>]) {
    out.push(b'[');
    push_alias_items(out, aliases.iter().map(|a| a.as_deref()));
    out.push(b']');
}

/// Appends `["ip",port]` to `out`.
fn push_addr(out: &mut Vec<u8>, a: &SocketAddr) {
    // Whole lists are 10,000 of these: IPv4 (every list of a real network) is written digit
    // by digit, as `fmt` would but several times faster; IPv6 through `fmt`.
    match a {
        SocketAddr::V4(v4) => {
            out.extend_from_slice(b"[\"");
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_decimal(out, u32::from(octet));
            }
            out.extend_from_slice(b"\",");
            push_decimal(out, u32::from(a.port()));
            out.push(b']');
        }
        SocketAddr::V6(_) => {
            use std::io::Write;
            // Writing into a Vec cannot fail.
            let _ = write!(out, "[\"{}\",{}]", a.ip(), a.port());
        }
    }
}

/// Appends `v` in decimal, as `fmt` writes it.
fn push_decimal(out: &mut Vec<u8>, v: u32) {
    let mut buf = [0u8; 10];
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Appends a JSON array of addresses to `out`.
fn push_addrs<'a>(out: &mut Vec<u8>, addrs: impl IntoIterator<Item = &'a SocketAddr>) {
    out.push(b'[');
    push_addr_items(out, addrs);
    out.push(b']');
}

/// A whole member list as it goes on the wire, `{"distro":[[ip,port],...],"version":N}`
/// (`version` only when given): byte for byte what [`Message::Distro`] encodes to, written
/// straight from the addresses (no intermediate `Value`).
pub fn encode_distro<'a>(members: impl IntoIterator<Item = &'a SocketAddr>, version: Option<u64>) -> Vec<u8> {
    let members = members.into_iter();
    let mut out = Vec::with_capacity(16 + 24 * members.size_hint().0);
    out.extend_from_slice(b"{\"distro\":");
    push_addrs(&mut out, members);
    if let Some(v) = version {
        out.extend_from_slice(format!(",\"version\":{v}").as_bytes());
    }
    out.push(b'}');
    out
}

/// A protocol-2 whole list (a member's distribution connection only): the bytes of
/// [`encode_distro`] with `,"aliases":[...]` (parallel to the members, `null` for a member
/// without one) before the closing brace.
pub fn encode_distro_aliased<'a>(
    members: impl IntoIterator<Item = &'a SocketAddr>,
    version: Option<u64>,
    alias_of: impl Fn(&SocketAddr) -> Option<Arc<str>>,
) -> Vec<u8> {
    let members: Vec<&SocketAddr> = members.into_iter().collect();
    let mut out = encode_distro(members.iter().copied(), version);
    out.pop();
    out.extend_from_slice(b",\"aliases\":");
    let aliases: Vec<Option<Arc<str>>> = members.iter().map(|m| alias_of(m)).collect();
    push_aliases(&mut out, &aliases);
    out.push(b'}');
    out
}

/// Appends `addrs` as the items of a JSON array (`["ip",port],...`, no brackets): one
/// piece of a whole list, for [`assemble_distro`].
pub(crate) fn push_addr_items<'a>(out: &mut Vec<u8>, addrs: impl IntoIterator<Item = &'a SocketAddr>) {
    for (i, a) in addrs.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_addr(out, a);
    }
}

/// Appends `aliases` as the items of a JSON array (`"name"` or `null`, no brackets).
pub(crate) fn push_alias_items<'a>(out: &mut Vec<u8>, aliases: impl IntoIterator<Item = Option<&'a str>>) {
    for (i, a) in aliases.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match a {
            Some(a) => push_str(out, a),
            None => out.extend_from_slice(b"null"),
        }
    }
}

/// A whole list from pieces of array items ([`push_addr_items`], [`push_alias_items`]),
/// byte for byte what [`encode_distro`] (no `aliases`) or [`encode_distro_aliased`] writes.
/// Empty pieces are skipped.
pub(crate) fn assemble_distro<'a>(
    addrs: impl IntoIterator<Item = &'a [u8]> + Clone,
    version: Option<u64>,
    aliases: Option<impl IntoIterator<Item = &'a [u8]>>,
) -> Vec<u8> {
    fn join<'a>(out: &mut Vec<u8>, pieces: impl IntoIterator<Item = &'a [u8]>) {
        out.push(b'[');
        let mut first = true;
        for p in pieces.into_iter().filter(|p| !p.is_empty()) {
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(p);
        }
        out.push(b']');
    }
    let len: usize = addrs.clone().into_iter().map(|p| p.len() + 1).sum();
    let mut out = Vec::with_capacity(48 + len + if aliases.is_some() { len / 2 } else { 0 });
    out.extend_from_slice(b"{\"distro\":");
    join(&mut out, addrs);
    if let Some(v) = version {
        out.extend_from_slice(format!(",\"version\":{v}").as_bytes());
    }
    if let Some(aliases) = aliases {
        out.extend_from_slice(b",\"aliases\":");
        join(&mut out, aliases);
    }
    out.push(b'}');
    out
}

/// A delta as it goes on the wire (protocol 2, distribution connection only), keys in this
/// order: `{"delta":true,"base":B,"version":V,"removed":[...],"reasons":[...],"added":[...],
/// "aliases":[...]}` (`reasons` and `aliases` only when the delta carries them).
pub fn encode_delta(d: &Delta) -> Vec<u8> {
    let mut out = Vec::with_capacity(d.wire_len());
    out.extend_from_slice(
        format!("{{\"delta\":true,\"base\":{},\"version\":{},\"removed\":", d.base, d.version).as_bytes(),
    );
    push_addrs(&mut out, &d.removed);
    if !d.reasons.is_empty() {
        out.extend_from_slice(b",\"reasons\":[");
        for (i, r) in d.reasons.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_str(&mut out, r.as_str());
        }
        out.push(b']');
    }
    out.extend_from_slice(b",\"added\":");
    push_addrs(&mut out, &d.added);
    if !d.aliases.is_empty() {
        out.extend_from_slice(b",\"aliases\":");
        push_aliases(&mut out, &d.aliases);
    }
    out.push(b'}');
    out
}

/// Incremental scanner that finds where one top-level JSON object ends.
///
/// It tracks only nesting depth and string/escape state; full validation is
/// left to `serde_json` once the value is complete.
#[derive(Default, Debug)]
struct Scanner {
    /// Bytes of the buffer already scanned for the current value.
    pos: usize,
    /// Offset of the value's first byte, once seen.
    start: Option<usize>,
    depth: usize,
    in_string: bool,
    escaped: bool,
}

#[derive(Clone, Copy, Debug)]
enum Scan {
    /// The value occupies `start..end` of the buffer.
    Complete { start: usize, end: usize },
    /// More bytes are needed.
    Incomplete,
    /// A top-level value that is not an object (or stray closing bracket).
    NotAnObject(u8),
}

/// How [`Scanner::scan`] treats each byte outside strings: most bytes (digits, letters,
/// commas, colons, whitespace) are skipped by one table load and one compare.
const PLAIN: u8 = 0;
const OPEN: u8 = 1;
const CLOSE: u8 = 2;
const QUOTE: u8 = 3;
static CLASS: [u8; 256] = {
    let mut t = [PLAIN; 256];
    t[b'{' as usize] = OPEN;
    t[b'[' as usize] = OPEN;
    t[b'}' as usize] = CLOSE;
    t[b']' as usize] = CLOSE;
    t[b'"' as usize] = QUOTE;
    t
};

impl Scanner {
    /// Scans `buf` from where the last call stopped. Every member of a process reads every
    /// delta, so this runs over each delta's bytes once per joiner: the state lives in locals
    /// while scanning, and a string's body is skipped with `memchr` (to its `"` or `\\`).
    fn scan(&mut self, buf: &[u8]) -> Scan {
        let mut pos = self.pos;
        if self.start.is_none() {
            loop {
                let Some(&b) = buf.get(pos) else {
                    self.pos = pos;
                    return Scan::Incomplete;
                };
                pos += 1;
                match b {
                    b' ' | b'\t' | b'\r' | b'\n' => {}
                    b'{' => {
                        self.start = Some(pos - 1);
                        self.depth = 1;
                        break;
                    }
                    other => {
                        self.pos = pos;
                        return Scan::NotAnObject(other);
                    }
                }
            }
        }
        let mut depth = self.depth;
        let mut in_string = self.in_string;
        let mut escaped = self.escaped;
        let scan = 'scan: loop {
            if in_string {
                if escaped {
                    if pos >= buf.len() {
                        break Scan::Incomplete;
                    }
                    pos += 1;
                    escaped = false;
                }
                match memchr::memchr2(b'"', b'\\', &buf[pos..]) {
                    None => {
                        pos = buf.len();
                        break Scan::Incomplete;
                    }
                    Some(i) => {
                        pos += i + 1;
                        if buf[pos - 1] == b'\\' {
                            escaped = true;
                        } else {
                            in_string = false;
                        }
                    }
                }
            } else {
                loop {
                    let Some(&b) = buf.get(pos) else { break 'scan Scan::Incomplete };
                    pos += 1;
                    match CLASS[usize::from(b)] {
                        PLAIN => {}
                        OPEN => depth += 1,
                        CLOSE => {
                            depth -= 1;
                            if depth == 0 {
                                let start = self.start.take().unwrap_or(0);
                                break 'scan Scan::Complete { start, end: pos };
                            }
                        }
                        _ => {
                            in_string = true;
                            continue 'scan;
                        }
                    }
                }
            }
        };
        self.pos = pos;
        self.depth = depth;
        self.in_string = in_string;
        self.escaped = escaped;
        scan
    }
}

/// Bytes asked of one read while values are small.
const SMALL_READ: usize = 4096;
/// Buffers larger than this are given back after the value that grew them (a member list:
/// thousands of idle connections in one process must not each keep a list's worth).
const SHRINK_ABOVE: usize = 4 * SMALL_READ;

/// Reads a sequence of concatenated JSON messages from any `AsyncRead`.
///
/// Each call to [`MessageReader::next`] returns one message; leftover bytes
/// stay buffered for the next call. The buffer never holds more than one
/// value's bound plus one read's worth of bytes.
#[derive(Debug)]
pub struct MessageReader<R> {
    inner: R,
    buf: Vec<u8>,
    scanner: Scanner,
    scratch: Vec<u8>,
    max_len: usize,
    read_chunk: usize,
    last_len: usize,
    /// Bytes of `buf` already returned as values.
    head: usize,
    /// What [`MessageReader::has_buffered_value`] found, for the next call to take.
    peeked: Option<Scan>,
}

impl<R: AsyncRead + Unpin> MessageReader<R> {
    /// A reader bounded at [`DEFAULT_MAX_VALUE_LEN`] bytes per value.
    pub fn new(inner: R) -> Self {
        Self::with_limit(inner, DEFAULT_MAX_VALUE_LEN)
    }

    /// A reader bounded at `max_len` bytes per value.
    pub fn with_limit(inner: R, max_len: usize) -> Self {
        MessageReader {
            inner,
            buf: Vec::new(),
            scanner: Scanner::default(),
            scratch: Vec::new(),
            max_len: max_len.max(16),
            read_chunk: SMALL_READ,
            last_len: 0,
            head: 0,
            peeked: None,
        }
    }

    /// The next message on the stream.
    ///
    /// Cancel-safe: dropping the future loses no bytes (they stay buffered).
    pub async fn next(&mut self) -> Result<Message, DecodeError> {
        self.next_with(Message::decode).await
    }

    /// The next raw JSON value on the stream (must be an object).
    pub async fn next_value(&mut self) -> Result<Value, DecodeError> {
        self.next_with(|b| serde_json::from_slice::<Value>(b).map_err(|e| DecodeError::InvalidJson(e.to_string())))
            .await
    }

    /// Reads until one whole value is buffered and hands its bytes to `parse` (for a reader
    /// that can sometimes skip decoding, e.g. bytes it has seen before).
    pub async fn next_with<T>(&mut self, parse: impl Fn(&[u8]) -> Result<T, DecodeError>) -> Result<T, DecodeError> {
        loop {
            // Positions are relative to `head`: values consumed from one read are skipped
            // over, not moved out one by one (a burst of small deltas in one read).
            let scan = match self.peeked.take() {
                Some(scan) => scan,
                None => self.scanner.scan(&self.buf[self.head..]),
            };
            match scan {
                Scan::Complete { start, end } => {
                    let parsed = parse(&self.buf[self.head + start..self.head + end]);
                    self.last_len = end - start;
                    self.head += end;
                    self.scanner = Scanner::default();
                    let left = self.buf.len() - self.head;
                    if left == 0 || (self.buf.capacity() > SHRINK_ABOVE && left <= SMALL_READ) {
                        // All consumed, or a large value was: what is left moves to the front
                        // (little or nothing) and the memory goes back.
                        self.buf.drain(..self.head);
                        self.head = 0;
                        self.shrink();
                    }
                    return parsed;
                }
                Scan::NotAnObject(b) => {
                    self.buf.clear();
                    self.head = 0;
                    self.scanner = Scanner::default();
                    self.shrink();
                    return Err(DecodeError::InvalidJson(format!("expected a JSON object, found byte 0x{b:02x}")));
                }
                Scan::Incomplete => {}
            }
            let unread = self.buf.len() - self.head;
            let pending = unread - self.scanner.start.unwrap_or(unread);
            if pending > self.max_len {
                self.buf.clear();
                self.head = 0;
                self.scanner = Scanner::default();
                self.shrink();
                return Err(DecodeError::TooLarge { limit: self.max_len });
            }
            // Whitespace before a value is dropped so it never accumulates.
            if self.scanner.start.is_none() && unread > 0 {
                self.buf.clear();
                self.head = 0;
                self.scanner.pos = 0;
            }
            // What was consumed goes before reading more (once per read, not per value).
            if self.head > 0 {
                self.buf.drain(..self.head);
                self.head = 0;
            }
            let room = (self.max_len + 1 - pending).min(self.read_chunk);
            self.scratch.resize(room, 0);
            // Reading into scratch keeps this cancel-safe: an abandoned read
            // leaves `buf` untouched.
            let n = self.inner.read(&mut self.scratch[..room]).await?;
            if n == 0 {
                return Err(DecodeError::Eof { partial: self.scanner.start.is_some() });
            }
            self.buf.extend_from_slice(&self.scratch[..n]);
            // Grow reads for large values (member lists) to keep syscalls few.
            self.read_chunk = if pending > 16 * 1024 { 64 * 1024 } else { SMALL_READ };
        }
    }

    /// Gives back the memory of a large value once it and everything read with it are
    /// consumed, so a connection that once carried a big list (or a hostile one) holds no
    /// more than a small buffer after.
    fn shrink(&mut self) {
        if self.buf.capacity() > SHRINK_ABOVE {
            self.buf.shrink_to(self.buf.len().max(SMALL_READ));
        }
        if self.scratch.capacity() > SMALL_READ {
            self.scratch = Vec::new();
        }
        self.read_chunk = SMALL_READ;
    }

    /// Whether the next value (or a malformed start) is already buffered, read together
    /// with the last one: [`MessageReader::next`] will return it without waiting. A reader
    /// of a burst (deltas written back to back) uses it to act once at the end of the run.
    pub fn has_buffered_value(&mut self) -> bool {
        if self.peeked.is_none() {
            match self.scanner.scan(&self.buf[self.head..]) {
                Scan::Incomplete => return false,
                scan => self.peeked = Some(scan),
            }
        }
        true
    }

    /// Size in bytes of the last value returned.
    pub fn last_len(&self) -> usize {
        self.last_len
    }

    /// The wrapped reader.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn samples() -> Vec<Message> {
        vec![
            Message::Banned { banned: false, version: None, scram: false },
            Message::Banned { banned: true, version: Some(2), scram: false },
            Message::Banned { banned: false, version: Some(2), scram: true },
            Message::Shadow {
                password: "p\"w{}\\".into(),
                version: Some(2),
                alias: Some("bob \"b\"".into()),
                one_connection: false,
            },
            Message::Shadow { password: "pw".into(), version: Some(2), alias: None, one_connection: true },
            Message::Authenticated(true),
            Message::ScramStart { nonce: "abc+/=".into(), version: Some(2), alias: None, one_connection: false },
            Message::ScramStart {
                nonce: "abc".into(),
                version: Some(2),
                alias: Some("a".into()),
                one_connection: true,
            },
            Message::ListsHere,
            Message::ScramChallenge(Challenge { nonce: "abcdef".into(), salt: "c2FsdA==".into(), iterations: 4096 }),
            Message::ScramProof { nonce: "abcdef".into(), proof: "cHJvb2Y=".into() },
            Message::ScramAccepted { signature: "c2ln".into() },
            Message::PeerAddress(a("127.0.0.1:49123")),
            Message::Distro { members: vec![a("127.0.0.1:1"), a("127.0.0.2:2")], version: Some(7), aliases: None },
            Message::DistAddr { addr: a("127.0.0.1:50001"), token: Some(3) },
            Message::DistToken(3),
            Message::Delta(Delta {
                base: 4,
                version: 6,
                removed: vec![a("127.0.0.1:1")],
                added: vec![a("[::1]:9"), a("127.0.0.1:1")],
                ..Default::default()
            }),
            Message::Delta(Delta {
                base: 6,
                version: 7,
                removed: vec![a("127.0.0.1:1")],
                added: vec![a("127.0.0.1:2"), a("127.0.0.1:3")],
                reasons: vec![Departure::Left],
                aliases: vec![Some("zoë \"z\"".into()), None],
            }),
            Message::Distro {
                members: vec![a("127.0.0.1:1"), a("127.0.0.2:2")],
                version: Some(8),
                aliases: Some(vec![None, Some("bob".into())]),
            },
            Message::Refused(Refusal::AliasTaken),
            Message::Refused(Refusal::BadAlias),
            Message::Leaving,
            Message::Heartbeat,
            Message::VersionedHeartbeat { version: 12 },
            Message::Chat(Chat {
                data: "hi ]}".into(),
                alias: "bob".into(),
                to: Recipient::Broadcast,
                from: a("127.0.0.3:4"),
                msg_id: None,
            }),
            Message::Chat(Chat {
                data: "again".into(),
                alias: "bob".into(),
                to: Recipient::Direct(a("127.0.0.1:4")),
                from: a("127.0.0.3:4"),
                msg_id: Some(ChatId { epoch: u64::MAX, seq: 3 }),
            }),
        ]
    }

    async fn decode_all(bytes: Vec<u8>, chunk: usize) -> Vec<Result<Message, String>> {
        let (mut w, r) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            for c in bytes.chunks(chunk.max(1)) {
                w.write_all(c).await.unwrap();
            }
        });
        let mut reader = MessageReader::with_limit(r, 4096);
        let mut out = Vec::new();
        loop {
            match reader.next().await {
                Ok(m) => out.push(Ok(m)),
                Err(DecodeError::Eof { partial: false }) => break,
                Err(e) => {
                    out.push(Err(e.to_string()));
                    if matches!(e, DecodeError::Eof { .. }) {
                        break;
                    }
                }
            }
        }
        writer.await.unwrap();
        out
    }

    #[test]
    fn reference_encodings() {
        assert_eq!(Message::Heartbeat.encode(), br#"{"<3":true}"#);
        assert_eq!(Message::PeerAddress(a("127.0.0.1:49123")).encode(), br#"{"peer_address":["127.0.0.1",49123]}"#);
        assert_eq!(Message::Banned { banned: false, version: None, scram: false }.encode(), br#"{"banned":false}"#);
        // Python writes a space after the colon; any valid JSON is accepted.
        let v: Value = serde_json::from_str(r#"{"banned": false}"#).unwrap();
        assert_eq!(Message::from_json(v).unwrap(), Message::Banned { banned: false, version: None, scram: false });
    }

    #[test]
    fn versioned_heartbeat_encoding_and_tolerant_decoding() {
        let decode = |s: &str| Message::from_json(serde_json::from_str(s).unwrap()).unwrap();
        // What a v1 peer gets, and what it sends: the plain reference heartbeat.
        assert_eq!(Message::heartbeat(None), Message::Heartbeat);
        assert_eq!(Message::heartbeat(None).encode(), br#"{"<3":true}"#);
        assert_eq!(decode(r#"{"<3": true}"#), Message::Heartbeat);
        assert_eq!(decode(r#"{"<3": true}"#).as_heartbeat(), Some(None));
        // The protocol-2 answer: the key the distro message already uses for
        // list versions, beside the reference's key.
        let v2 = Message::heartbeat(Some(41));
        assert_eq!(v2, Message::VersionedHeartbeat { version: 41 });
        assert_eq!(v2.encode(), br#"{"<3":true,"version":41}"#);
        assert_eq!(v2.kind(), "heartbeat");
        assert_eq!(decode(r#"{"<3": true, "version": 41}"#), v2);
        assert_eq!(decode(r#"{"version": 41, "<3": true}"#).as_heartbeat(), Some(Some(41)));
        assert_eq!(decode(r#"{"<3": true, "version": 0}"#), Message::VersionedHeartbeat { version: 0 });
        // Tolerant: a version that is not an unsigned integer, or other extra
        // keys, still make a heartbeat.
        for s in [
            r#"{"<3": true, "version": null}"#,
            r#"{"<3": true, "version": -1}"#,
            r#"{"<3": true, "version": "7"}"#,
            r#"{"<3": true, "pyile": 2, "x": [1]}"#,
        ] {
            assert_eq!(decode(s), Message::Heartbeat, "{s}");
        }
        assert_eq!(Message::Authenticated(true).as_heartbeat(), None);
        // As the reference's parser sees it: one JSON object whose "<3" is true.
        let seen: Value = serde_json::from_slice(&v2.encode()).unwrap();
        assert_eq!(seen["<3"], Value::Bool(true));
    }

    #[tokio::test]
    async fn coalesced_values_in_one_read() {
        let mut bytes = Vec::new();
        for m in samples() {
            bytes.extend(m.encode());
        }
        let out = decode_all(bytes, usize::MAX).await;
        assert_eq!(out, samples().into_iter().map(Ok).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn split_byte_by_byte_with_whitespace() {
        let mut bytes = Vec::new();
        for m in samples() {
            bytes.extend(b" \n\t");
            bytes.extend(m.encode());
        }
        bytes.extend(b"\r\n  ");
        let out = decode_all(bytes, 1).await;
        assert_eq!(out, samples().into_iter().map(Ok).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn oversized_value_is_an_error_not_a_buffer() {
        let mut bytes = br#"{"shadow": ""#.to_vec();
        bytes.extend(std::iter::repeat_n(b'x', 10_000));
        bytes.extend(br#""}"#);
        let out = decode_all(bytes, 100).await;
        assert_eq!(out[0], Err("value exceeds 4096 bytes".into()));
    }

    #[tokio::test]
    async fn endless_string_stops_at_the_bound() {
        let (mut w, r) = tokio::io::duplex(1024);
        tokio::spawn(async move {
            let _ = w.write_all(br#"{"shadow": ""#).await;
            loop {
                if w.write_all(&[b'a'; 512]).await.is_err() {
                    break;
                }
            }
        });
        let mut reader = MessageReader::with_limit(r, 64 * 1024);
        let err = reader.next().await.unwrap_err();
        assert!(matches!(err, DecodeError::TooLarge { limit: 65536 }), "{err}");
        assert!(reader.buf.capacity() < 2 * 65536 + 8192);
    }

    #[tokio::test]
    async fn invalid_json_and_garbage() {
        let out = decode_all(br#"{"banned": fals}"#.to_vec(), 3).await;
        assert!(out[0].as_ref().unwrap_err().starts_with("invalid JSON"), "{out:?}");
        let out = decode_all(b"GET / HTTP/1.1\r\n\r\n".to_vec(), 5).await;
        assert!(out[0].as_ref().unwrap_err().contains("expected a JSON object"), "{out:?}");
    }

    #[tokio::test]
    async fn unknown_message() {
        let out = decode_all(br#"{"hello": 1}{"banned": 3}"#.to_vec(), 4).await;
        assert_eq!(out.len(), 2);
        assert!(out[0].as_ref().unwrap_err().starts_with("unknown message"), "{out:?}");
        assert!(out[1].as_ref().unwrap_err().starts_with("unknown message"), "{out:?}");
    }

    #[tokio::test]
    async fn eof_mid_value_is_reported_as_partial() {
        let out = decode_all(br#"{"<3": tr"#.to_vec(), 2).await;
        assert_eq!(out, vec![Err("connection closed in the middle of a value".into())]);
    }

    #[test]
    fn echo_and_reference_chat_shapes() {
        let chat: Value =
            serde_json::from_str(r#"{"data": "yo", "alias": "py", "to": ["127.0.0.1", 4], "from": ["127.0.0.2", 5]}"#)
                .unwrap();
        let m = Message::from_json(chat.clone()).unwrap();
        assert!(matches!(&m, Message::Chat(c) if c.to == Recipient::Direct(a("127.0.0.1:4"))));
        let echo = json!({"data": chat, "alias": "rust"});
        assert!(matches!(Message::from_json(echo).unwrap(), Message::Echo { version: None, .. }));
        assert!(matches!(&m, Message::Chat(c) if c.msg_id.is_none()));
    }

    #[test]
    fn msg_id_and_echo_extension_exact_json() {
        let chat = Message::Chat(Chat {
            data: "hi".into(),
            alias: "bob".into(),
            to: Recipient::Broadcast,
            from: a("127.0.0.3:4"),
            msg_id: Some(ChatId { epoch: 7, seq: 0 }),
        });
        let bytes = chat.encode();
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            r#"{"alias":"bob","data":"hi","from":["127.0.0.3",4],"msg_id":{"epoch":7,"seq":0},"to":"Broadcast"}"#
        );
        let echo =
            Message::Echo { data: serde_json::from_slice(&bytes).unwrap(), alias: "al".into(), version: Some(2) };
        assert_eq!(
            String::from_utf8(echo.encode()).unwrap(),
            r#"{"alias":"al","data":{"alias":"bob","data":"hi","from":["127.0.0.3",4],"msg_id":{"epoch":7,"seq":0},"to":"Broadcast"},"pyile":2}"#
        );
        assert_eq!(Message::decode(&echo.encode()).unwrap(), echo);
        // The reference echoes the whole object: msg_id inside `data` says nothing about it.
        let reference_echo = json!({"data": serde_json::from_slice::<Value>(&bytes).unwrap(), "alias": "py"});
        assert!(matches!(Message::from_json(reference_echo).unwrap(), Message::Echo { version: None, .. }));
        // A malformed id is ignored: the message is delivered as v1.
        let odd = json!({"data": "x", "alias": "a", "to": "Broadcast", "from": ["127.0.0.1", 1], "msg_id": {"epoch": -1, "seq": 2}});
        assert!(matches!(Message::from_json(odd).unwrap(), Message::Chat(c) if c.msg_id.is_none()));
    }

    #[test]
    fn delta_wire_form_and_tolerant_classification() {
        let d = Delta {
            base: 41,
            version: 43,
            removed: vec![a("127.0.0.1:49002")],
            added: vec![a("127.0.0.1:49001")],
            ..Default::default()
        };
        assert_eq!(
            String::from_utf8(Message::Delta(d.clone()).encode()).unwrap(),
            r#"{"delta":true,"base":41,"version":43,"removed":[["127.0.0.1",49002]],"added":[["127.0.0.1",49001]]}"#
        );
        let general = |s: &str| Message::from_json(serde_json::from_str(s).unwrap());
        // Any key order and spacing; the fast path and the general one agree.
        for s in [
            r#"{"added": [["127.0.0.1", 49001]], "removed": [["127.0.0.1", 49002]], "version": 43, "base": 41, "delta": true}"#,
            r#"{"delta": true, "base": 41, "version": 43, "removed": [["127.0.0.1", 49002]], "added": [["127.0.0.1", 49001]], "x": 1}"#,
        ] {
            assert_eq!(Message::decode(s.as_bytes()).unwrap(), Message::Delta(d.clone()), "{s}");
            assert_eq!(general(s).unwrap(), Message::Delta(d.clone()), "{s}");
        }
        // Malformed: errors, never a panic, on both paths.
        for s in [
            r#"{"delta": true, "base": -1, "version": 43, "removed": [], "added": []}"#,
            r#"{"delta": true, "base": 41, "removed": [], "added": []}"#,
            r#"{"delta": true, "base": 41, "version": 43, "removed": [["x", 1]], "added": []}"#,
            r#"{"delta": true, "base": 41, "version": 43, "removed": [], "added": {"a": 1}}"#,
            r#"{"delta": true, "base": 41, "version": 43, "removed": []}"#,
            r#"{"delta": "yes", "base": 41, "version": 43, "removed": [], "added": []}"#,
        ] {
            assert!(matches!(Message::decode(s.as_bytes()), Err(DecodeError::Unknown(_))), "{s}");
        }
    }

    #[test]
    fn one_connection_exact_wire_form() {
        let enc = |m: Message| String::from_utf8(m.encode()).unwrap();
        let decode = |s: &str| Message::decode(s.as_bytes()).unwrap();
        // The request rides in the first handshake message, next to the announcement only.
        assert_eq!(
            enc(Message::Shadow {
                password: "pw".into(),
                version: Some(2),
                alias: Some("bob".into()),
                one_connection: true
            }),
            r#"{"alias":"bob","one_connection":true,"pyile":2,"shadow":"pw"}"#
        );
        assert_eq!(
            enc(Message::ScramStart { nonce: "n".into(), version: Some(2), alias: None, one_connection: true }),
            r#"{"one_connection":true,"pyile":2,"scram_client_nonce":"n"}"#
        );
        assert_eq!(
            enc(Message::Shadow { password: "pw".into(), version: None, alias: None, one_connection: true }),
            r#"{"shadow":"pw"}"#,
            "never to a v1 peer"
        );
        assert_eq!(
            enc(Message::Shadow { password: "pw".into(), version: Some(2), alias: None, one_connection: false }),
            r#"{"pyile":2,"shadow":"pw"}"#,
            "not written unless asked"
        );
        assert_eq!(
            decode(r#"{"shadow": "pw", "one_connection": true}"#),
            Message::Shadow { password: "pw".into(), version: None, alias: None, one_connection: false },
            "a request without an announcement is ignored"
        );
        assert_eq!(
            decode(r#"{"scram_client_nonce": "n", "pyile": 2, "one_connection": 1}"#),
            Message::ScramStart { nonce: "n".into(), version: Some(2), alias: None, one_connection: false },
            "only true asks"
        );
        // The authenticator's answer, in place of `dist_addr`.
        assert_eq!(enc(Message::ListsHere), r#"{"lists_here":true}"#);
        assert_eq!(decode(r#"{ "lists_here" : true }"#), Message::ListsHere);
        assert!(Message::decode(br#"{"lists_here": false}"#).is_err());
    }

    #[test]
    fn names_announcements_and_leaving_exact_wire_form() {
        let enc = |m: Message| String::from_utf8(m.encode()).unwrap();
        // The alias rides in the first handshake message, next to the announcement only.
        assert_eq!(
            enc(Message::Shadow {
                password: "pw".into(),
                version: Some(2),
                alias: Some("bob".into()),
                one_connection: false
            }),
            r#"{"alias":"bob","pyile":2,"shadow":"pw"}"#
        );
        assert_eq!(
            enc(Message::ScramStart {
                nonce: "n".into(),
                version: Some(2),
                alias: Some("bob".into()),
                one_connection: false
            }),
            r#"{"alias":"bob","pyile":2,"scram_client_nonce":"n"}"#
        );
        assert_eq!(
            enc(Message::Shadow {
                password: "pw".into(),
                version: None,
                alias: Some("bob".into()),
                one_connection: false
            }),
            r#"{"shadow":"pw"}"#,
            "never to a v1 peer"
        );
        let decode = |s: &str| Message::decode(s.as_bytes()).unwrap();
        assert_eq!(
            decode(r#"{"shadow": "pw", "alias": "bob"}"#),
            Message::Shadow { password: "pw".into(), version: None, alias: None, one_connection: false },
            "an alias without an announcement is ignored"
        );
        assert_eq!(
            decode(r#"{"shadow": "pw", "pyile": 2, "alias": 7}"#),
            Message::Shadow {
                password: "pw".into(),
                version: Some(2),
                alias: Some(String::new()),
                one_connection: false
            },
            "a non-string alias reads as empty (refused as bad)"
        );
        assert_eq!(enc(Message::Refused(Refusal::AliasTaken)), r#"{"authenticated":false,"refused":"alias_taken"}"#);
        assert_eq!(enc(Message::Refused(Refusal::BadAlias)), r#"{"authenticated":false,"refused":"bad_alias"}"#);
        assert_eq!(decode(r#"{"authenticated": false}"#), Message::Authenticated(false));
        assert_eq!(enc(Message::Leaving), r#"{"leaving":true}"#);
        assert_eq!(decode(r#"{"leaving": true}"#), Message::Leaving);
        let d = Delta {
            base: 41,
            version: 42,
            removed: vec![a("127.0.0.1:49002")],
            added: vec![a("127.0.0.1:49003"), a("127.0.0.1:49004")],
            reasons: vec![Departure::Timeout],
            aliases: vec![Some("carol".into()), None],
        };
        let wire = enc(Message::Delta(d.clone()));
        assert_eq!(
            wire,
            r#"{"delta":true,"base":41,"version":42,"removed":[["127.0.0.1",49002]],"reasons":["timeout"],"added":[["127.0.0.1",49003],["127.0.0.1",49004]],"aliases":["carol",null]}"#
        );
        assert_eq!(wire.len(), d.wire_len());
        assert_eq!(decode(&wire), Message::Delta(d));
        let members = vec![a("127.0.0.1:4702"), a("127.0.0.1:49001")];
        let bob: Arc<str> = Arc::from("bob");
        let whole = encode_distro_aliased(members.iter(), Some(41), |m| (m.port() == 49001).then(|| bob.clone()));
        assert_eq!(
            String::from_utf8(whole.clone()).unwrap(),
            r#"{"distro":[["127.0.0.1",4702],["127.0.0.1",49001]],"version":41,"aliases":[null,"bob"]}"#
        );
        assert_eq!(
            Message::decode(&whole).unwrap(),
            Message::Distro { members, version: Some(41), aliases: Some(vec![None, Some(bob)]) }
        );
    }

    #[test]
    fn member_list_fast_path_classifies_like_the_general_path() {
        let general = |s: &str| Message::from_json(serde_json::from_str(s).unwrap());
        for s in [
            r#"{"distro": [["127.0.0.1", 49001], ["::1", 2]]}"#,
            r#"{"distro": [], "version": 3}"#,
            r#"{"distro": [["127.0.0.1", 1]], "version": "x"}"#,
            r#"{"distro": [["127.0.0.1", 1]], "banned": true}"#,
            r#"{"distro": [["127.0.0.1", 1, 2]]}"#,
            r#"{"distro": [["localhost", 1]]}"#,
            r#"{"distro": [["127.0.0.1", 70000]]}"#,
            r#"{"distro": [["127.0.0.1", 1.0]]}"#,
            r#"{"distro": {"a": 1}}"#,
        ] {
            let fast = Message::decode(s.as_bytes());
            assert_eq!(format!("{fast:?}"), format!("{:?}", general(s)), "{s}");
        }
        assert!(matches!(Message::decode(b"{\"distro\": [}"), Err(DecodeError::InvalidJson(_))));
        // Our own compact form (the hand parser's), and its near misses: what it cannot take
        // exactly goes to serde, so both paths agree on valid JSON and reject the invalid.
        for s in [
            r#"{"distro":[["127.0.0.1",49001],["127.0.0.2",2]],"version":7,"aliases":["a",null]}"#,
            r#"{"distro":[],"version":0,"aliases":[]}"#,
            r#"{"distro":[["127.0.0.1",1]],"version":18446744073709551615}"#,
            r#"{"distro":[["127.0.0.1",1]],"version":18446744073709551616}"#,
            r#"{"distro":[["127.0.0.1",65536]]}"#,
            r#"{"distro":[["::1",1]],"version":1}"#,
            r#"{"distro":[["127.0.0.1",1]],"aliases":["b\"ob","\u00e9"]}"#,
            r#"{"distro":[["127.0.0.1",1]],"aliases":["zoë"]}"#,
            r#"{"distro":[["127.0.0.1",1]],"aliases":[1]}"#,
            r#"{"distro":[["127.0.0.1",1]],"version":null}"#,
            r#"{"distro":[["127.0.0.1",1]],"version":1e3}"#,
            r#"{"distro":[["127.0.0.1",1]],"version":2,"version":3}"#,
            r#"{"distro":[["127.0.0.1",1]],"aliases":["a"],"version":2}"#,
            r#"{"distro":[["127.0.0.1",1]],"version":2,"extra":1}"#,
            r#"{"distro":[["127.0.0.1",1]]} "#,
            r#"{"distro":[["\u0031\u0032\u0037.0.0.1",1]]}"#,
            r#"{"distro":[["127.000.0.1",1]]}"#,
        ] {
            let fast = Message::decode(s.as_bytes());
            assert_eq!(format!("{fast:?}"), format!("{:?}", general(s)), "{s}");
        }
        for s in [
            r#"{"distro":[["127.0.0.1",01]]}"#,
            r#"{"distro":[["127.0.0.1",1]],"version":012}"#,
            "{\"distro\":[[\"127.0.0.1\",1]],\"aliases\":[\"a\u{1}b\"]}",
            r#"{"distro":[["127.0.0.1",1]],"aliases":["a"]"#,
            r#"{"distro":[["127.0.0.1",1],]}"#,
            r#"{"distro":[["127.0.0.1",1]]}}"#,
        ] {
            assert!(serde_json::from_str::<Value>(s).is_err(), "{s} is not JSON");
            assert!(matches!(Message::decode(s.as_bytes()), Err(DecodeError::InvalidJson(_))), "{s}");
        }
        let bad_utf8 = b"{\"distro\":[[\"127.0.0.1\",1]],\"aliases\":[\"\xff\"]}";
        assert!(matches!(Message::decode(bad_utf8), Err(DecodeError::InvalidJson(_))));
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        fn arb_addr() -> impl Strategy<Value = SocketAddr> {
            (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port)))
        }

        fn arb_message() -> impl Strategy<Value = Message> {
            prop_oneof![
                (any::<bool>(), proptest::option::of(0u64..10), any::<bool>()).prop_map(|(banned, version, scram)| {
                    Message::Banned { banned, version, scram: scram && version.is_some() }
                }),
                (
                    "[A-Za-z0-9+/=]{0,30}",
                    proptest::option::of(0u64..10),
                    proptest::option::of(".{0,20}"),
                    any::<bool>()
                )
                    .prop_map(|(nonce, version, alias, one)| Message::ScramStart {
                        nonce,
                        alias: alias.filter(|_| version.is_some()),
                        one_connection: one && version.is_some(),
                        version
                    }),
                ("[A-Za-z0-9+/=]{0,30}", "[A-Za-z0-9+/=]{0,30}", any::<u32>()).prop_map(|(nonce, salt, iterations)| {
                    Message::ScramChallenge(Challenge { nonce, salt, iterations })
                }),
                ("[A-Za-z0-9+/=]{0,30}", "[A-Za-z0-9+/=]{0,30}")
                    .prop_map(|(nonce, proof)| Message::ScramProof { nonce, proof }),
                "[A-Za-z0-9+/=]{0,30}".prop_map(|signature| Message::ScramAccepted { signature }),
                (".{0,40}", proptest::option::of(0u64..10), proptest::option::of(".{0,20}"), any::<bool>()).prop_map(
                    |(password, version, alias, one)| Message::Shadow {
                        password,
                        alias: alias.filter(|_| version.is_some()),
                        one_connection: one && version.is_some(),
                        version
                    }
                ),
                Just(Message::ListsHere),
                prop_oneof![
                    Just(Refusal::AliasTaken),
                    Just(Refusal::BadAlias),
                    "[a-z_]{1,12}".prop_map(|s| Refusal::parse(&s))
                ]
                .prop_map(Message::Refused),
                Just(Message::Leaving),
                any::<bool>().prop_map(Message::Authenticated),
                arb_addr().prop_map(Message::PeerAddress),
                (proptest::collection::vec(arb_addr(), 0..30), proptest::option::of(any::<u64>()))
                    .prop_map(|(members, version)| Message::Distro { members, version, aliases: None }),
                (proptest::collection::vec((arb_addr(), proptest::option::of(".{0,12}")), 0..10), any::<u64>())
                    .prop_map(|(entries, version)| {
                        let (members, aliases): (Vec<_>, Vec<_>) =
                            entries.into_iter().map(|(m, a)| (m, a.map(|a: String| Arc::from(a.as_str())))).unzip();
                        Message::Distro { members, version: Some(version), aliases: Some(aliases) }
                    }),
                (arb_addr(), proptest::option::of(any::<u64>()))
                    .prop_map(|(addr, token)| Message::DistAddr { addr, token }),
                any::<u64>().prop_map(Message::DistToken),
                (
                    any::<u64>(),
                    any::<u64>(),
                    proptest::collection::vec(arb_addr(), 0..5),
                    proptest::collection::vec(arb_addr(), 0..5),
                    any::<bool>(),
                    "[a-z_]{1,10}",
                    proptest::option::of(".{0,12}"),
                )
                    .prop_map(|(base, version, removed, added, announced, reason, alias)| {
                        let (reasons, aliases) = if announced {
                            let alias: Option<Arc<str>> = alias.map(|a| Arc::from(a.as_str()));
                            (
                                removed.iter().map(|_| Departure::parse(&reason)).collect(),
                                added.iter().map(|_| alias.clone()).collect(),
                            )
                        } else {
                            (Vec::new(), Vec::new())
                        };
                        Message::Delta(Delta { base, version, removed, added, reasons, aliases })
                    }),
                Just(Message::Heartbeat),
                any::<u64>().prop_map(|version| Message::VersionedHeartbeat { version }),
                (
                    ".{0,60}",
                    "[a-z{}\\[\\]\"]{0,10}",
                    proptest::option::of(arb_addr()),
                    arb_addr(),
                    proptest::option::of((any::<u64>(), any::<u64>()))
                )
                    .prop_map(|(data, alias, to, from, id)| Message::Chat(Chat {
                        data,
                        alias,
                        to: to.map_or(Recipient::Broadcast, Recipient::Direct),
                        from,
                        msg_id: id.map(|(epoch, seq)| ChatId { epoch, seq }),
                    })),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
            #[test]
            fn decode_agrees_with_from_json(m in arb_message()) {
                let bytes = m.encode();
                let general = Message::from_json(serde_json::from_slice(&bytes).unwrap()).unwrap();
                prop_assert_eq!(Message::decode(&bytes).unwrap(), general);
            }

            #[test]
            fn hand_written_encodings_are_the_json_of_the_message(m in arb_message()) {
                // Same value as the generic path, so every reader sees the same thing, and for
                // lists the very bytes the generic path wrote before (v1 members: unchanged).
                let bytes = m.encode();
                let via_value = serde_json::to_vec(&m.to_json()).unwrap();
                let parsed: Value = serde_json::from_slice(&bytes).unwrap();
                prop_assert_eq!(&parsed, &m.to_json());
                if let Message::Distro { .. } = m {
                    prop_assert_eq!(&bytes, &via_value);
                }
                if let Message::Delta(d) = &m {
                    prop_assert_eq!(bytes.len(), d.wire_len());
                }
            }

            #[test]
            fn any_sequence_in_any_chunks_round_trips(
                msgs in proptest::collection::vec(arb_message(), 0..12),
                cuts in proptest::collection::vec(1usize..64, 1..40),
                ws in proptest::collection::vec(prop_oneof![Just(""), Just(" "), Just("\n"), Just("\r\n\t")], 12),
            ) {
                let mut bytes = Vec::new();
                for (i, m) in msgs.iter().enumerate() {
                    bytes.extend(ws[i % ws.len()].as_bytes());
                    bytes.extend(m.encode());
                }
                let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
                let decoded = rt.block_on(async move {
                    let (mut w, r) = tokio::io::duplex(256);
                    let writer = tokio::spawn(async move {
                        let mut rest = &bytes[..];
                        let mut i = 0;
                        while !rest.is_empty() {
                            let n = cuts[i % cuts.len()].min(rest.len());
                            w.write_all(&rest[..n]).await.unwrap();
                            rest = &rest[n..];
                            i += 1;
                        }
                    });
                    let mut reader = MessageReader::new(r);
                    let mut out = Vec::new();
                    loop {
                        match reader.next().await {
                            Ok(m) => out.push(m),
                            Err(DecodeError::Eof { partial: false }) => break,
                            Err(e) => panic!("decode error: {e}"),
                        }
                    }
                    writer.await.unwrap();
                    out
                });
                prop_assert_eq!(decoded, msgs);
            }

            #[test]
            fn the_scanner_finds_what_a_byte_at_a_time_scan_finds(
                bytes in proptest::collection::vec(
                    prop_oneof![
                        Just(b'{'), Just(b'}'), Just(b'['), Just(b']'), Just(b'"'), Just(b'\\'),
                        Just(b' '), Just(b'a'), Just(b'1'), Just(b','), Just(b':'), any::<u8>(),
                    ],
                    0..200,
                ),
                cuts in proptest::collection::vec(1usize..40, 1..20),
            ) {
                // Fed the same growing buffer in the same steps, both scanners give the same
                // answers (garbage included: the scanner only has to agree, serde_json judges).
                let (mut fast, mut slow) = (Scanner::default(), ByteScanner::default());
                let mut end = 0;
                let mut i = 0;
                let mut base = 0;
                while end < bytes.len() {
                    end = (end + cuts[i % cuts.len()]).min(bytes.len());
                    i += 1;
                    loop {
                        let (f, s) = (fast.scan(&bytes[base..end]), slow.scan(&bytes[base..end]));
                        prop_assert_eq!(format!("{f:?}"), format!("{s:?}"));
                        match f {
                            Scan::Complete { end: e, .. } => {
                                base += e;
                                (fast, slow) = (Scanner::default(), ByteScanner::default());
                            }
                            Scan::NotAnObject(_) => return Ok(()),
                            Scan::Incomplete => break,
                        }
                    }
                }
            }
        }

        /// The scanner as it was before the table and `memchr`: one byte at a time.
        #[derive(Default)]
        struct ByteScanner {
            pos: usize,
            start: Option<usize>,
            depth: usize,
            in_string: bool,
            escaped: bool,
        }

        impl ByteScanner {
            fn scan(&mut self, buf: &[u8]) -> Scan {
                while self.pos < buf.len() {
                    let b = buf[self.pos];
                    self.pos += 1;
                    if self.start.is_none() {
                        match b {
                            b' ' | b'\t' | b'\r' | b'\n' => continue,
                            b'{' => {
                                self.start = Some(self.pos - 1);
                                self.depth = 1;
                                continue;
                            }
                            other => return Scan::NotAnObject(other),
                        }
                    }
                    if self.in_string {
                        if self.escaped {
                            self.escaped = false;
                        } else if b == b'\\' {
                            self.escaped = true;
                        } else if b == b'"' {
                            self.in_string = false;
                        }
                        continue;
                    }
                    match b {
                        b'"' => self.in_string = true,
                        b'{' | b'[' => self.depth += 1,
                        b'}' | b']' => {
                            self.depth -= 1;
                            if self.depth == 0 {
                                let start = self.start.take().unwrap_or(0);
                                return Scan::Complete { start, end: self.pos };
                            }
                        }
                        _ => {}
                    }
                }
                Scan::Incomplete
            }
        }
    }

    #[tokio::test]
    async fn buffers_shrink_back_after_a_large_value() {
        let (mut w, r) = tokio::io::duplex(1 << 16);
        let members: Vec<SocketAddr> =
            (0..40_000u32).map(|i| SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 4000))).collect();
        let big = Message::Distro { members, version: Some(1), aliases: None }.encode();
        assert!(big.len() > 800_000);
        let writer = tokio::spawn(async move {
            w.write_all(&big).await.unwrap();
            w.write_all(&Message::Heartbeat.encode()).await.unwrap();
            w
        });
        let mut reader = MessageReader::with_limit(r, 2 << 20);
        assert!(matches!(reader.next().await.unwrap(), Message::Distro { .. }));
        assert!(reader.buf.capacity() <= SHRINK_ABOVE, "buf kept {} bytes", reader.buf.capacity());
        assert!(reader.scratch.capacity() <= SHRINK_ABOVE, "scratch kept {} bytes", reader.scratch.capacity());
        assert_eq!(reader.next().await.unwrap(), Message::Heartbeat);
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn a_reader_tells_whether_the_next_value_is_already_buffered() {
        let (mut w, r) = tokio::io::duplex(4096);
        let mut reader = MessageReader::new(r);
        w.write_all(br#"{"<3": true}{"<3": true, "version": 4} {"<3""#).await.unwrap();
        assert_eq!(reader.next().await.unwrap(), Message::Heartbeat);
        assert!(reader.has_buffered_value());
        assert!(reader.has_buffered_value(), "asking twice changes nothing");
        assert_eq!(reader.next().await.unwrap(), Message::VersionedHeartbeat { version: 4 });
        assert!(!reader.has_buffered_value(), "only the start of one is");
        w.write_all(br#": true}]"#).await.unwrap();
        assert_eq!(reader.next().await.unwrap(), Message::Heartbeat);
        assert!(reader.has_buffered_value(), "a malformed start counts: next() reports it at once");
        assert!(reader.next().await.is_err());
        assert!(!reader.has_buffered_value());
    }
}
