//! Exactly-once broadcast (issue 12 part 3) on real loopback sockets: a protocol-2 receiver
//! delivers each message id once and echoes duplicates with `"pyile":2`; a sender retries an
//! unconfirmed message only to a receiver that told it it drops duplicates, never to one that
//! did not (a retry there could deliver twice).

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use pyile::dedup::ExactlyOnceConfig;
use pyile::wire::{Chat, ChatId, Message, MessageReader, Recipient};
use pyile::{Authenticator, EventKind, Joiner, TokioNet};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Authenticator settings whose heartbeat timeout outlives the test, so a raw member that
/// never answers heartbeats stays a member.
fn patient_auth() -> pyile::AuthenticatorConfig {
    auth_config("pw").heartbeat_interval(Duration::from_secs(10)).heartbeat_timeout(Duration::from_secs(60))
}

fn joiner(alias: &str) -> pyile::JoinerConfig {
    joiner_config("pw", alias).heartbeat_interval(Duration::from_secs(10)).heartbeat_timeout(Duration::from_secs(60))
}

/// Writes `chat` on a new connection to `to` and returns the raw echo (empty if none).
async fn send_raw(to: SocketAddr, chat: &Message) -> Vec<u8> {
    let mut s = connect_from(ip("127.0.0.1"), to).await.unwrap();
    s.write_all(&chat.encode()).await.unwrap();
    let mut echo = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut echo)).await;
    echo
}

#[tokio::test]
async fn a_repeated_id_is_delivered_once_and_still_echoed() {
    let auth = Authenticator::start(TokioNet, patient_auth()).await.unwrap();
    let mut alice = Joiner::join(TokioNet, auth.auth_addr(), joiner("alice")).await.unwrap();
    let mut events = alice.events().unwrap();
    let from: SocketAddr = "127.0.0.1:40001".parse().unwrap();
    let chat = |seq| {
        Message::Chat(Chat {
            data: "same text".into(),
            alias: "raw".into(),
            to: Recipient::Broadcast,
            from,
            msg_id: Some(ChatId { epoch: 9, seq }),
        })
    };
    // seq 0, seq 0 again (a retry), then seq 1 with the same text in the same second (a new
    // message, which a (text, second) filter would merge).
    for seq in [0, 0, 1] {
        let echo = send_raw(alice.peer_addr(), &chat(seq)).await;
        let echo: Value = serde_json::from_slice(&echo).expect("an echo for every copy");
        assert_eq!(echo["pyile"], 2, "a protocol-2 receiver marks its echo: {echo}");
        assert_eq!(echo["data"]["msg_id"]["seq"], seq);
    }
    let (mut delivered, mut duplicates) = (Vec::new(), Vec::new());
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, events.recv()).await {
        match ev.kind {
            EventKind::MessageReceived { msg_id, data, .. } => delivered.push((msg_id, data)),
            EventKind::MessageDuplicate { msg_id, too_old, .. } => duplicates.push((msg_id, too_old)),
            _ => {}
        }
    }
    let id = |seq| Some(ChatId { epoch: 9, seq });
    assert_eq!(delivered, vec![(id(0), "same text".to_owned()), (id(1), "same text".to_owned())]);
    assert_eq!(duplicates, vec![(ChatId { epoch: 9, seq: 0 }, false)]);

    // A message without an id (the reference's) is delivered as in v1, and its echo carries
    // nothing new.
    let v1 =
        Message::Chat(Chat { data: "v1".into(), alias: "py".into(), to: Recipient::Broadcast, from, msg_id: None });
    for _ in 0..2 {
        let echo: Value = serde_json::from_slice(&send_raw(alice.peer_addr(), &v1).await).unwrap();
        assert!(echo.get("pyile").is_none(), "a v1 sender's echo stays v1: {echo}");
    }
    let mut v1_delivered = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, events.recv()).await {
        if matches!(ev.kind, EventKind::MessageReceived { msg_id: None, .. }) {
            v1_delivered += 1;
        }
    }
    assert_eq!(v1_delivered, 2, "v1 messages are never filtered");
    alice.leave().await;
    auth.leave().await;
}

/// What the fake receiver does with one connection.
#[derive(Clone, Copy, Debug)]
enum Answer {
    /// Echo as the reference does (no `"pyile"`).
    EchoV1,
    /// Echo as a protocol-2 receiver does.
    EchoV2,
    /// Read the message and close without an echo (the echo was "lost").
    Close,
}

/// A member joined by hand whose peer listener answers each connection as the script says
/// (then `EchoV1` once the script is used up), recording every chat message it read.
struct FakeMember {
    addr: SocketAddr,
    script: Arc<Mutex<Vec<Answer>>>,
    seen: Arc<Mutex<Vec<Chat>>>,
    _auth: RawClient,
    _dist: tokio::net::TcpStream,
}

impl FakeMember {
    async fn join(auth: SocketAddr) -> FakeMember {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = RawClient::connect(ip("127.0.0.1"), auth).await;
        let hs = client.handshake("pw", addr, true).await;
        let mut dist = connect_from(ip("127.0.0.1"), hs.dist_addr).await.unwrap();
        dist.write_all(&Message::DistToken(hs.token.unwrap()).encode()).await.unwrap();
        let script = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (script2, seen2) = (script.clone(), seen.clone());
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let (r, mut w) = s.into_split();
                let mut reader = MessageReader::new(r);
                let Ok(value) = reader.next_value().await else { continue };
                let Ok(Message::Chat(chat)) = Message::from_json(value.clone()) else { continue };
                seen2.lock().unwrap().push(chat);
                let answer = {
                    let mut s = script2.lock().unwrap();
                    if s.is_empty() { Answer::EchoV1 } else { s.remove(0) }
                };
                let version = match answer {
                    Answer::EchoV1 => None,
                    Answer::EchoV2 => Some(2),
                    Answer::Close => continue,
                };
                let _ = w.write_all(&Message::Echo { data: value, alias: "fake".into(), version }.encode()).await;
            }
        });
        FakeMember { addr, script, seen, _auth: client, _dist: dist }
    }

    fn answer(&self, answers: &[Answer]) {
        *self.script.lock().unwrap() = answers.to_vec();
    }

    /// The ids of the messages read so far, in order.
    fn ids(&self) -> Vec<Option<ChatId>> {
        self.seen.lock().unwrap().iter().map(|c| c.msg_id).collect()
    }
}

async fn retry_setup(retries: u32) -> (Authenticator, Joiner, FakeMember) {
    let auth = Authenticator::start(TokioNet, patient_auth()).await.unwrap();
    let cfg = ExactlyOnceConfig { retries, retry_backoff: Duration::from_millis(20), ..ExactlyOnceConfig::default() };
    let alice = Joiner::join(TokioNet, auth.auth_addr(), joiner("alice").exactly_once(cfg)).await.unwrap();
    let fake = FakeMember::join(auth.auth_addr()).await;
    assert!(eventually(Duration::from_secs(3), || alice.members().contains(&fake.addr)).await);
    (auth, alice, fake)
}

#[tokio::test]
async fn unconfirmed_messages_are_retried_only_to_a_receiver_known_to_drop_duplicates() {
    let (auth, alice, fake) = retry_setup(2).await;

    // Not known to dedup (it echoes like the reference): one attempt, even unconfirmed.
    fake.answer(&[Answer::EchoV1, Answer::Close]);
    assert_eq!(alice.send(fake.addr, "one").await.unwrap(), pyile::Delivery::Echoed);
    assert_eq!(alice.send(fake.addr, "two").await.unwrap(), pyile::Delivery::Unconfirmed);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(fake.ids().len(), 2, "a receiver not known to drop duplicates got a retry: {:?}", fake.ids());

    // It echoes "pyile":2 once: from then on an unconfirmed message is retried, same id.
    fake.answer(&[Answer::EchoV2, Answer::Close, Answer::Close, Answer::EchoV2]);
    assert_eq!(alice.send(fake.addr, "three").await.unwrap(), pyile::Delivery::Echoed);
    assert_eq!(alice.send(fake.addr, "four").await.unwrap(), pyile::Delivery::Echoed);
    let ids = fake.ids();
    assert_eq!(ids.len(), 6, "three and four (twice retried): {ids:?}");
    assert!(ids[3] == ids[4] && ids[4] == ids[5], "a retry carries the same id: {ids:?}");
    let seqs: Vec<u64> = ids.iter().map(|i| i.expect("a protocol-2 sender ids every message").seq).collect();
    assert_eq!(seqs, vec![0, 1, 2, 3, 3, 3]);

    // Retries are bounded: it never echoes again, so three attempts in all.
    fake.answer(&[Answer::Close; 8]);
    assert_eq!(alice.send(fake.addr, "five").await.unwrap(), pyile::Delivery::Unconfirmed);
    assert_eq!(fake.ids().len(), 9);
    alice.leave().await;
    auth.leave().await;
}

#[tokio::test]
async fn retries_off_means_one_attempt() {
    let (auth, alice, fake) = retry_setup(0).await;
    fake.answer(&[Answer::EchoV2, Answer::Close, Answer::EchoV2]);
    assert_eq!(alice.send(fake.addr, "one").await.unwrap(), pyile::Delivery::Echoed);
    assert_eq!(alice.send(fake.addr, "two").await.unwrap(), pyile::Delivery::Unconfirmed);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(fake.ids().len(), 2);
    alice.leave().await;
    auth.leave().await;
}

#[tokio::test]
async fn a_v1_joiner_sends_no_ids_and_marks_no_echo() {
    let auth = Authenticator::start(TokioNet, patient_auth()).await.unwrap();
    let bob = Joiner::join(TokioNet, auth.auth_addr(), joiner("bob").announce_extensions(false)).await.unwrap();
    let fake = FakeMember::join(auth.auth_addr()).await;
    assert!(eventually(Duration::from_secs(3), || bob.members().contains(&fake.addr)).await);
    fake.answer(&[Answer::EchoV2, Answer::Close]);
    bob.send(fake.addr, "one").await.unwrap();
    assert_eq!(bob.send(fake.addr, "two").await.unwrap(), pyile::Delivery::Unconfirmed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.ids(), vec![None, None], "a v1 joiner stays v1 on the wire and never retries");
    let from: SocketAddr = "127.0.0.1:40002".parse().unwrap();
    let chat = Message::Chat(Chat {
        data: "x".into(),
        alias: "raw".into(),
        to: Recipient::Broadcast,
        from,
        msg_id: Some(ChatId { epoch: 1, seq: 0 }),
    });
    let echo: Value = serde_json::from_slice(&send_raw(bob.peer_addr(), &chat).await).unwrap();
    assert!(echo.get("pyile").is_none(), "a v1 joiner's echo stays v1: {echo}");
    bob.leave().await;
    auth.leave().await;
}
