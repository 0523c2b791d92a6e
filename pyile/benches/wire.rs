//! The wire's hot paths at the sizes issue 9 is about (10,000 members): finding where each
//! value ends in a stream (every member of a loadgen process reads every delta), decoding a
//! whole list, and encoding one (the authenticator writes one a join).
//!
//! `cargo bench -p pyile --bench wire`; compare two builds with criterion's
//! `--save-baseline NAME` and `--baseline NAME`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pyile::member_list::Delta;
use pyile::wire::{Message, MessageReader, encode_delta, encode_distro_aliased};

/// `n` loopback members, as loadgen's joiners come: 127.0.x.y, ports from 40000.
fn members(n: usize) -> Vec<SocketAddr> {
    (0..n)
        .map(|i| SocketAddr::from(([127, 0, (i / 250) as u8, (i % 250) as u8 + 1], 40_000 + (i % 20_000) as u16)))
        .collect()
}

/// An alias for every other member, looked up by address as the authenticator's map is.
fn aliases(members: &[SocketAddr]) -> HashMap<SocketAddr, Arc<str>> {
    members.iter().step_by(2).map(|a| (*a, Arc::from(format!("joiner-{}", a.port())))).collect()
}

/// 1,000 one-join deltas back to back, as a member's connection carries them.
fn delta_stream() -> Vec<u8> {
    let mut out = Vec::new();
    for (i, a) in members(1_000).into_iter().enumerate() {
        let d = Delta {
            base: 10_000 + i as u64,
            version: 10_001 + i as u64,
            added: vec![a],
            aliases: vec![Some(format!("joiner-{i}").into())],
            ..Default::default()
        };
        out.extend(encode_delta(&d));
    }
    out
}

/// Reads every value of `bytes` with `parse`, as a member's reader does.
fn read_all<T>(rt: &tokio::runtime::Runtime, bytes: &[u8], parse: impl Fn(&[u8]) -> T) -> usize {
    rt.block_on(async {
        let mut reader = MessageReader::with_limit(bytes, 4 << 20);
        let mut n = 0;
        while let Ok(v) = reader.next_with(|b| Ok(parse(b))).await {
            std::hint::black_box(v);
            n += 1;
        }
        n
    })
}

fn reading(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let deltas = delta_stream();
    let m = members(10_000);
    let names = aliases(&m);
    let whole = encode_distro_aliased(m.iter(), Some(10_000), |a| names.get(a).cloned());

    let mut g = c.benchmark_group("read");
    g.throughput(Throughput::Bytes(deltas.len() as u64));
    g.bench_function("scan 1,000 deltas", |b| b.iter(|| assert_eq!(read_all(&rt, &deltas, |b| b.len()), 1_000)));
    g.bench_function("decode 1,000 deltas", |b| {
        b.iter(|| assert_eq!(read_all(&rt, &deltas, |b| Message::decode(b).is_ok()), 1_000))
    });
    g.throughput(Throughput::Bytes(whole.len() as u64));
    g.bench_function("scan a 10,000-member list", |b| b.iter(|| assert_eq!(read_all(&rt, &whole, |b| b.len()), 1)));
    g.bench_function("decode a 10,000-member list", |b| {
        b.iter(|| assert_eq!(read_all(&rt, &whole, |b| Message::decode(b).is_ok()), 1))
    });
    g.finish();
}

fn writing(c: &mut Criterion) {
    let m = members(10_000);
    let names = aliases(&m);
    let mut g = c.benchmark_group("write");
    g.throughput(Throughput::Elements(m.len() as u64));
    g.bench_function("encode a 10,000-member list with aliases", |b| {
        b.iter(|| encode_distro_aliased(m.iter(), Some(10_000), |a| names.get(a).cloned()))
    });
    g.finish();
}

criterion_group!(benches, reading, writing);
criterion_main!(benches);
