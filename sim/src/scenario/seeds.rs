//! Seed sets: `seeds = [1, 2, 3]` or `"1..20"` in a file, `--seeds 1..=20,40` on the command
//! line; one parser for both.

use std::collections::BTreeSet;
use std::fmt;

use serde::Deserialize;

/// A set of seeds: `[1, 2, 3]` or a range string `"1..20"` (end exclusive) / `"1..=20"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedSet(pub Vec<u64>);

impl SeedSet {
    /// Parses `N`, `A..B` (end exclusive), `A..=B`, or a comma list of those.
    pub fn parse(s: &str) -> Result<SeedSet, String> {
        let mut seeds = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let num = |t: &str| {
                t.trim()
                    .parse::<u64>()
                    .map_err(|_| format!("bad seed {t:?} in {s:?} (write 7, 1..20, 1..=20 or 1,5,9)"))
            };
            if let Some((a, b)) = part.split_once("..=") {
                let (a, b) = (num(a)?, num(b)?);
                if b < a {
                    return Err(format!("empty seed range {part:?}"));
                }
                seeds.extend(a..=b);
            } else if let Some((a, b)) = part.split_once("..") {
                let (a, b) = (num(a)?, num(b)?);
                if b <= a {
                    return Err(format!("empty seed range {part:?} (the end is exclusive; use ..= to include it)"));
                }
                seeds.extend(a..b);
            } else {
                seeds.push(num(part)?);
            }
        }
        if seeds.is_empty() {
            return Err(format!("no seeds in {s:?}"));
        }
        let mut seen = BTreeSet::new();
        seeds.retain(|s| seen.insert(*s));
        Ok(SeedSet(seeds))
    }
}

impl<'de> Deserialize<'de> for SeedSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = SeedSet;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of seeds like [1, 2, 3] or a range string like \"1..20\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SeedSet, E> {
                SeedSet::parse(v).map_err(E::custom)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<SeedSet, A::Error> {
                let mut v = Vec::new();
                while let Some(s) = a.next_element::<u64>()? {
                    v.push(s);
                }
                if v.is_empty() {
                    return Err(serde::de::Error::custom("seeds must not be empty"));
                }
                Ok(SeedSet(v))
            }
        }
        d.deserialize_any(V)
    }
}
