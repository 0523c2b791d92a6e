//! Where everything lives: the simulated hosts of a scenario and the joiners packed on them.
//!
//! Turmoil's cost is the number of hosts, so joiners are packed `joiners_per_host` to a host.
//! This module fixes the mapping once per run, in a deterministic order that also fixes the
//! IP addresses turmoil hands out (first lookup order: `auth` is 192.168.0.1, then each
//! group's hosts in file order, then ban-flood attackers, then `attack` hosts, then impostor
//! authenticators). Host names are stable and appear in traces: `auth`, `<group>-<n>`,
//! `attacker-<flood>-<n>`, `attack-<attack>-<n>`, `impostor-<group>`; joiners are `<group>.<n>`.

use crate::scenario::{Action, AttackKind, Scenario};

/// What a simulated host runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostRole {
    /// The authenticator (host 0).
    Authenticator,
    /// Joiners of group `group` (index into [`Layout::groups`]).
    Joiners {
        /// Group index.
        group: usize,
    },
    /// Attackers of the `flood`-th ban flood.
    Attacker {
        /// Index into [`Layout::floods`].
        flood: usize,
    },
    /// Hosts of the `attack`-th `attack` entry: raw-wire hostile clients.
    Hostile {
        /// Index into [`Layout::attacks`].
        attack: usize,
    },
    /// The impostor authenticator of joiner group `group`.
    Impostor {
        /// Group index.
        group: usize,
    },
}

/// One simulated host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostSpec {
    /// Turmoil host name.
    pub name: String,
    /// Role.
    pub role: HostRole,
    /// Joiner ids on this host (empty unless a joiner host).
    pub joiners: Vec<usize>,
}

/// One joiner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinerSpec {
    /// Id (index into [`Layout::joiners`]).
    pub id: usize,
    /// `<group>.<n>`.
    pub name: String,
    /// Group index.
    pub group: usize,
    /// Host index.
    pub host: usize,
}

/// A joiner group's hosts and joiners.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupInfo {
    /// Group name.
    pub name: String,
    /// Host indices.
    pub hosts: Vec<usize>,
    /// Joiner ids.
    pub joiners: Vec<usize>,
    /// The host of the impostor authenticator the group's joiners are pointed at, if any.
    pub impostor: Option<usize>,
}

/// A ban flood's attackers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FloodInfo {
    /// The timeline entry index of the `ban_flood`.
    pub entry: usize,
    /// Attacker host indices.
    pub hosts: Vec<usize>,
}

/// An `attack` entry's hosts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttackInfo {
    /// The timeline entry index of the `attack`.
    pub entry: usize,
    /// What its connections do.
    pub kind: AttackKind,
    /// Attacker host indices.
    pub hosts: Vec<usize>,
}

/// The placement of a whole scenario.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Hosts in registration order (index 0 is the authenticator).
    pub hosts: Vec<HostSpec>,
    /// Every joiner.
    pub joiners: Vec<JoinerSpec>,
    /// Groups in file order.
    pub groups: Vec<GroupInfo>,
    /// Ban floods in file order.
    pub floods: Vec<FloodInfo>,
    /// Attacks in file order.
    pub attacks: Vec<AttackInfo>,
}

/// Index of the authenticator's host.
pub const AUTH_HOST: usize = 0;

impl Layout {
    /// Lays out a (resolved) scenario.
    pub fn new(s: &Scenario) -> Layout {
        let mut hosts = vec![HostSpec { name: "auth".into(), role: HostRole::Authenticator, joiners: vec![] }];
        let mut joiners = Vec::new();
        let mut groups = Vec::new();
        for (gi, g) in s.joiners.iter().map(|g| g.get_ref()).enumerate() {
            let mut info = GroupInfo { name: g.name.clone(), hosts: vec![], joiners: vec![], impostor: None };
            let per = g.joiners_per_host.max(1) as usize;
            for k in 0..g.count as usize {
                if k % per == 0 {
                    info.hosts.push(hosts.len());
                    hosts.push(HostSpec {
                        name: format!("{}-{}", g.name, k / per),
                        role: HostRole::Joiners { group: gi },
                        joiners: vec![],
                    });
                }
                let host = *info.hosts.last().unwrap();
                let id = joiners.len();
                hosts[host].joiners.push(id);
                info.joiners.push(id);
                joiners.push(JoinerSpec { id, name: format!("{}.{}", g.name, k), group: gi, host });
            }
            groups.push(info);
        }
        let mut floods = Vec::new();
        for (ei, e) in s.timeline.iter().map(|e| e.get_ref()).enumerate() {
            if e.action != Action::BanFlood {
                continue;
            }
            let fi = floods.len();
            let mut info = FloodInfo { entry: ei, hosts: vec![] };
            for a in 0..e.attackers.unwrap_or(1) {
                info.hosts.push(hosts.len());
                hosts.push(HostSpec {
                    name: format!("attacker-{fi}-{a}"),
                    role: HostRole::Attacker { flood: fi },
                    joiners: vec![],
                });
            }
            floods.push(info);
        }
        // After every flood, so that adding an attack never moves a flood's IPs.
        let mut attacks = Vec::new();
        for (ei, e) in s.timeline.iter().map(|e| e.get_ref()).enumerate() {
            let (Action::Attack, Some(kind)) = (e.action, e.kind) else { continue };
            let ai = attacks.len();
            let mut info = AttackInfo { entry: ei, kind, hosts: vec![] };
            for a in 0..e.attackers.unwrap_or(1) {
                info.hosts.push(hosts.len());
                hosts.push(HostSpec {
                    name: format!("attack-{ai}-{a}"),
                    role: HostRole::Hostile { attack: ai },
                    joiners: vec![],
                });
            }
            attacks.push(info);
        }
        // Last, so that an impostor never moves anyone else's IP.
        for (gi, g) in s.joiners.iter().map(|g| g.get_ref()).enumerate() {
            if g.impostor.is_some() {
                groups[gi].impostor = Some(hosts.len());
                hosts.push(HostSpec {
                    name: format!("impostor-{}", g.name),
                    role: HostRole::Impostor { group: gi },
                    joiners: vec![],
                });
            }
        }
        Layout { hosts, joiners, groups, floods, attacks }
    }

    /// Hosts of every attack whose kind is (`insiders`) or is not an insider kind.
    pub fn attack_hosts(&self, insiders: bool) -> Vec<usize> {
        self.attacks.iter().filter(|a| a.kind.insider() == insiders).flat_map(|a| a.hosts.iter().copied()).collect()
    }

    /// The group called `name`.
    pub fn group_index(&self, name: &str) -> Option<usize> {
        self.groups.iter().position(|g| g.name == name)
    }

    /// Host indices a timeline `target` names: `authenticator`, `joiners`, or a group.
    pub fn target_hosts(&self, target: &str) -> Vec<usize> {
        match target {
            "authenticator" => vec![AUTH_HOST],
            "joiners" => self.groups.iter().flat_map(|g| g.hosts.iter().copied()).collect(),
            g => self.group_index(g).map(|i| self.groups[i].hosts.clone()).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::LoadedScenario;

    #[test]
    fn packs_joiners_and_orders_hosts() {
        let text = r#"name = "l"
duration = "10s"
settle = "0s"
[[joiners]]
name = "a"
count = 5
joiners_per_host = 2
[[joiners]]
name = "b"
count = 3
joiners_per_host = 3
[[timeline]]
at = "1s"
action = "attack"
kind = "silent"
attackers = 2
[[timeline]]
at = "1s"
action = "ban_flood"
attackers = 2
"#;
        let s = LoadedScenario::from_text("l.toml", text.into()).unwrap().resolve(1).unwrap().scenario;
        let l = Layout::new(&s);
        let names: Vec<&str> = l.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            ["auth", "a-0", "a-1", "a-2", "b-0", "attacker-0-0", "attacker-0-1", "attack-0-0", "attack-0-1"],
            "floods first, whatever the file order"
        );
        assert_eq!(l.hosts.len() as u64, s.host_count());
        assert_eq!(l.hosts[1].joiners, [0, 1]);
        assert_eq!(l.hosts[3].joiners, [4], "the last host of a group may be partly filled");
        assert_eq!(l.hosts[4].joiners, [5, 6, 7]);
        assert_eq!(l.joiners[6].name, "b.1");
        assert_eq!(l.joiners[6].host, 4);
        assert_eq!(l.target_hosts("authenticator"), [0]);
        assert_eq!(l.target_hosts("joiners"), [1, 2, 3, 4]);
        assert_eq!(l.target_hosts("b"), [4]);
        assert_eq!(l.floods, [FloodInfo { entry: 1, hosts: vec![5, 6] }]);
        assert_eq!(l.attacks, [AttackInfo { entry: 0, kind: AttackKind::Silent, hosts: vec![7, 8] }]);
        assert_eq!(l.attack_hosts(false), [7, 8]);
    }
}
