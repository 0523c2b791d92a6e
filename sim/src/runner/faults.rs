//! Faults: applying and ending crashes, restarts, partitions, holds and link loss.
//!
//! Each fault goes to turmoil (crash/bounce, partition/repair, hold/release, fail rates) and
//! to the [`Monitor`](crate::checkers::Monitor) as ground truth: which hosts' links to the
//! authenticator it impairs, from when until when. A cut is always between the chosen hosts
//! and every other host; the pairs it touched are kept so that ending it undoes exactly those.
//!
//! Partitions and holds may overlap on one link (a random pick can choose the same host for
//! both), but a turmoil link has one state per direction and its `hold`/`release` and
//! `repair` overwrite a partition (turmoil documents the combination as unsupported): a hold
//! released mid-partition would silently heal the partition. So the driver counts the faults
//! in force on each link ([`LinkFaults`]) and sets the link from all of them whenever one
//! starts or ends: cut directions drop, a hold holds the rest, and only a link with nothing
//! left is healthy (its held segments delivered).

use std::net::IpAddr;
use std::time::Duration;

use serde_json::json;

use super::driver::{Driver, Item, Slot};
use super::hosts::Cmd;
use crate::checkers::Impairment;
use crate::layout::AUTH_HOST;
use crate::scenario::Direction;
use crate::timeline::Selection;
use crate::trace::TraceError;

/// The partitions and holds in force on one link (key `(x, y)` with `x < y`: `cut_xy`
/// partitions drop what `x` sends to `y`).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct LinkFaults {
    cut_xy: i32,
    cut_yx: i32,
    held: i32,
}

impl Direction {
    /// How many cuts a partition in this direction puts on (chosen → other, other → chosen).
    fn cuts(self) -> (i32, i32) {
        match self {
            Direction::Both => (1, 1),
            Direction::Outbound => (1, 0),
            Direction::Inbound => (0, 1),
        }
    }
}

/// A fault in force: the host pairs it cut, how, and the hosts it impairs.
pub(super) struct FaultRecord {
    pairs: Vec<(IpAddr, IpAddr)>,
    direction: Direction,
    impaired: Vec<usize>,
}

impl Driver<'_> {
    /// Running hosts of `sel` crash; their joiners' instances end.
    pub(super) fn crash(&mut self, now: Duration, sel: &Selection) -> Result<(), TraceError> {
        let eligible: Vec<usize> = sel.hosts.iter().copied().filter(|&h| self.running[h]).collect();
        let chosen = sel.choose(&eligible, &mut self.rng);
        self.monitor.fault(!chosen.is_empty());
        for &h in &chosen {
            self.running[h] = false;
            self.shared.inboxes[h].clear();
            self.shared.inboxes[h].send(Cmd::Crash);
            self.crashing.push(h);
            if h == AUTH_HOST {
                self.monitor.auth_crashed(now);
                continue;
            }
            self.monitor.impaired(now, h, Impairment::Crash, h as u64);
            let mut were_in = Vec::new();
            for &slot in &self.layout.hosts[h].joiners {
                match self.slots[slot] {
                    Slot::Idle => {}
                    Slot::Joining(i) | Slot::Active(i) | Slot::Leaving(i) => {
                        if !matches!(self.slots[slot], Slot::Leaving(_)) {
                            were_in.push(slot);
                        }
                        if matches!(self.slots[slot], Slot::Joining(_)) {
                            self.monitor.join_cut(i);
                        }
                        self.monitor.ended(now, i);
                        self.slots[slot] = Slot::Idle;
                    }
                }
            }
            self.crashed_slots.insert(h, were_in);
        }
        let names = self.names(&chosen);
        self.record(now, "sim", "crash", json!({"hosts": names}))?;
        Ok(())
    }

    /// Crashed hosts of `sel` restart; with `rejoin`, the joiners they had join again.
    pub(super) fn restart(&mut self, now: Duration, sel: &Selection, rejoin: bool) -> Result<(), TraceError> {
        let eligible: Vec<usize> = sel.hosts.iter().copied().filter(|&h| !self.running[h]).collect();
        let chosen = sel.choose(&eligible, &mut self.rng);
        for &h in &chosen {
            self.sim.bounce(self.layout.hosts[h].name.as_str());
            self.running[h] = true;
            if h == AUTH_HOST {
                self.monitor.auth_restarted(now);
            } else {
                self.monitor.restored(now, h, Impairment::Crash, h as u64);
            }
            let slots = self.crashed_slots.remove(&h).unwrap_or_default();
            if rejoin {
                for (k, slot) in slots.into_iter().enumerate() {
                    // One tick after the restart, so the host's software is up; spaced 1 ms.
                    let at = now + self.sc.tick.get() + Duration::from_millis(k as u64);
                    self.schedule_at(at, Item::Rejoin(slot));
                }
            }
        }
        let names = self.names(&chosen);
        self.record(now, "sim", "restart", json!({"hosts": names, "rejoin": rejoin}))?;
        Ok(())
    }

    /// Partition `id` between `sel`'s hosts and every other host starts.
    pub(super) fn partition(
        &mut self,
        now: Duration,
        id: usize,
        sel: &Selection,
        direction: Direction,
    ) -> Result<(), TraceError> {
        let (a, b) = self.sides(sel);
        let mut pairs = Vec::new();
        for &x in &a {
            for &y in &b {
                let (ix, iy) = (self.ips[x], self.ips[y]);
                let (out, inb) = direction.cuts();
                self.change_link(ix, iy, out, inb, 0);
                pairs.push((ix, iy));
            }
        }
        let impaired = Self::impaired_by(&a, &b);
        self.monitor.fault(!pairs.is_empty());
        for &h in &impaired {
            self.monitor.impaired(now, h, Impairment::Partition, id as u64);
        }
        let names = self.names(&a);
        self.record(
            now,
            "sim",
            "partition",
            json!({"id": id, "hosts": names, "direction": format!("{direction:?}").to_lowercase()}),
        )?;
        self.partitions.insert(id, FaultRecord { pairs, direction, impaired });
        Ok(())
    }

    /// Partition `id` heals.
    pub(super) fn heal(&mut self, now: Duration, id: usize) -> Result<(), TraceError> {
        if let Some(f) = self.partitions.remove(&id) {
            for (x, y) in f.pairs {
                let (out, inb) = f.direction.cuts();
                self.change_link(x, y, -out, -inb, 0);
            }
            for h in f.impaired {
                self.monitor.restored(now, h, Impairment::Partition, id as u64);
            }
            self.record(now, "sim", "heal", json!({"id": id}))?;
        }
        Ok(())
    }

    /// Every partition heals.
    pub(super) fn heal_all(&mut self, now: Duration) -> Result<(), TraceError> {
        let ids: Vec<usize> = self.partitions.keys().copied().collect();
        for id in ids {
            self.heal(now, id)?;
        }
        Ok(())
    }

    /// Hold `id` between `sel`'s hosts and every other host starts.
    pub(super) fn hold(&mut self, now: Duration, id: usize, sel: &Selection) -> Result<(), TraceError> {
        let (a, b) = self.sides(sel);
        let mut pairs = Vec::new();
        for &x in &a {
            for &y in &b {
                let (ix, iy) = (self.ips[x], self.ips[y]);
                self.change_link(ix, iy, 0, 0, 1);
                pairs.push((ix, iy));
            }
        }
        let impaired = Self::impaired_by(&a, &b);
        self.monitor.fault(!pairs.is_empty());
        for &h in &impaired {
            self.monitor.impaired(now, h, Impairment::Hold, id as u64);
        }
        let names = self.names(&a);
        self.record(now, "sim", "hold", json!({"id": id, "hosts": names}))?;
        self.holds.insert(id, FaultRecord { pairs, direction: Direction::Both, impaired });
        Ok(())
    }

    /// Hold `id` is released.
    pub(super) fn release(&mut self, now: Duration, id: usize) -> Result<(), TraceError> {
        if let Some(f) = self.holds.remove(&id) {
            for (x, y) in f.pairs {
                self.change_link(x, y, 0, 0, -1);
            }
            for h in f.impaired {
                self.monitor.restored(now, h, Impairment::Hold, id as u64);
            }
            self.record(now, "sim", "release", json!({"id": id}))?;
        }
        Ok(())
    }

    /// Every hold is released.
    pub(super) fn release_all(&mut self, now: Duration) -> Result<(), TraceError> {
        let ids: Vec<usize> = self.holds.keys().copied().collect();
        for id in ids {
            self.release(now, id)?;
        }
        Ok(())
    }

    /// Loss `id` starts on links touching `sel`'s hosts (`None`: every link).
    pub(super) fn loss_start(
        &mut self,
        now: Duration,
        id: usize,
        sel: Option<&Selection>,
        fail_rate: f64,
    ) -> Result<(), TraceError> {
        let (pairs, impaired, names) = match sel {
            None => {
                self.sim.set_fail_rate(fail_rate);
                (Vec::new(), vec![AUTH_HOST], vec!["all".to_string()])
            }
            Some(sel) => {
                let (a, b) = self.sides(sel);
                let mut pairs = Vec::new();
                for &x in &a {
                    for &y in &b {
                        self.sim.set_link_fail_rate(self.ips[x], self.ips[y], fail_rate);
                        pairs.push((self.ips[x], self.ips[y]));
                    }
                }
                let names = self.names(&a);
                (pairs, Self::impaired_by(&a, &b), names)
            }
        };
        self.monitor.fault(true);
        for &h in &impaired {
            self.monitor.impaired(now, h, Impairment::Loss, id as u64);
        }
        self.record(now, "sim", "loss", json!({"id": id, "hosts": names, "fail_rate": fail_rate}))?;
        self.losses.insert(id, FaultRecord { pairs, direction: Direction::Both, impaired });
        Ok(())
    }

    /// Loss `id` ends: its links go back to the network's base fail rate.
    pub(super) fn loss_end(&mut self, now: Duration, id: usize) -> Result<(), TraceError> {
        if let Some(f) = self.losses.remove(&id) {
            let base = self.sc.network.fail_rate;
            if f.pairs.is_empty() {
                self.sim.set_fail_rate(base);
            }
            for (x, y) in f.pairs {
                self.sim.set_link_fail_rate(x, y, base);
            }
            for h in f.impaired {
                self.monitor.restored(now, h, Impairment::Loss, id as u64);
            }
            self.record(now, "sim", "loss_end", json!({"id": id}))?;
        }
        Ok(())
    }

    /// Changes the faults in force on link `(x, y)` and sets the turmoil link from all of
    /// them: held if any hold is in force (else healthy, delivering what was held), then each
    /// cut direction dropped. With a single fault this is exactly turmoil's own
    /// partition/repair/hold/release.
    fn change_link(&mut self, x: IpAddr, y: IpAddr, cut_xy: i32, cut_yx: i32, held: i32) {
        let (x, y, cut_xy, cut_yx) = if x < y { (x, y, cut_xy, cut_yx) } else { (y, x, cut_yx, cut_xy) };
        let l = self.links.entry((x, y)).or_default();
        l.cut_xy += cut_xy;
        l.cut_yx += cut_yx;
        l.held += held;
        let l = *l;
        if l.held > 0 {
            self.sim.hold(x, y);
        } else {
            self.sim.release(x, y);
        }
        if l.cut_xy > 0 {
            self.sim.partition_oneway(x, y);
        }
        if l.cut_yx > 0 {
            self.sim.partition_oneway(y, x);
        }
        if l.cut_xy <= 0 && l.cut_yx <= 0 && l.held <= 0 {
            self.links.remove(&(x, y));
        }
    }

    /// The two sides of a cut: the chosen hosts and everyone else.
    fn sides(&mut self, sel: &Selection) -> (Vec<usize>, Vec<usize>) {
        let chosen = sel.choose(&sel.hosts, &mut self.rng);
        let rest = (0..self.layout.hosts.len()).filter(|h| !chosen.contains(h)).collect();
        (chosen, rest)
    }

    /// Hosts whose link to the authenticator a cut between `a` and `b` impairs.
    fn impaired_by(a: &[usize], b: &[usize]) -> Vec<usize> {
        if a.contains(&AUTH_HOST) || b.is_empty() {
            vec![AUTH_HOST]
        } else if b.contains(&AUTH_HOST) {
            a.to_vec()
        } else {
            Vec::new()
        }
    }
}
