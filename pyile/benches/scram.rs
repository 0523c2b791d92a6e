//! What SCRAM costs a join: one PBKDF2 at the iterations the authenticator asks (4,096 by
//! default, RFC 7677's least), which a fresh joiner runs once before its proof and an
//! authenticator checking cleartext passwords against a stored verifier runs per join.
//! A joiner that has run it for this authenticator's salt before skips it (`KeyCache`), so
//! this is the floor under the join latency of a joiner that has not.
//!
//! `cargo bench -p pyile --bench scram`

use criterion::{Criterion, criterion_group, criterion_main};
use pyile::scram::{DEFAULT_ITERATIONS, Verifier};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn key_derivation(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    c.bench_function("derive the SCRAM keys at 4,096 iterations", |b| {
        b.iter(|| Verifier::new("correct horse battery staple", DEFAULT_ITERATIONS, &mut rng).unwrap())
    });
}

criterion_group!(benches, key_derivation);
criterion_main!(benches);
