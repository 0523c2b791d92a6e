//! Impostor authenticators: what joiners pointed at one gave away.
//!
//! A scenario group with `impostor = "scram" | "v1"` joins an impostor (`pyile::impostor`)
//! instead of the real authenticator. Protocol 2 promises that its password never reaches
//! an impostor that offers SCRAM, nor, for a joiner that requires mutual authentication,
//! one that poses as v1; and that such a joiner never takes the impostor for its
//! authenticator. Checks (safety): `password_exposed` (the impostor received the real
//! password in clear where protocol 2 promises it cannot) and `impostor_trusted` (a joiner
//! went on with the handshake after the impostor's forged acceptance). A joiner that does not
//! require mutual authentication hands a v1-posing impostor its password: that is v1's
//! weakness, counted in `impostor_passwords_captured`, not a finding.

use std::net::SocketAddr;
use std::time::Duration;

use super::monitor::Monitor;
use crate::metrics::MetricId;
use crate::verdict::Severity;

/// One exchange an impostor played, in the checkers' vocabulary.
#[derive(Clone, Debug)]
pub struct ImpostorExchange {
    /// The joiner's address.
    pub source: SocketAddr,
    /// The impostor offered SCRAM (else it posed as v1).
    pub offers_scram: bool,
    /// The joiner's group requires mutual authentication.
    pub requires_mutual: bool,
    /// The impostor received the real password in clear.
    pub password: bool,
    /// The joiner went on with its handshake after the impostor accepted it.
    pub trusted: bool,
}

impl Monitor {
    /// A joiner refused its authenticator as an impostor.
    pub fn impostor_refused(&mut self) {
        self.count(MetricId::ImpostorRefused, 1.0);
    }

    /// An impostor's exchange with one joiner ended.
    pub fn impostor_exchange(&mut self, t: Duration, x: &ImpostorExchange) {
        self.count(MetricId::ImpostorExchanges, 1.0);
        if x.password {
            self.count(MetricId::ImpostorPasswordsCaptured, 1.0);
        }
        let promised = x.offers_scram || x.requires_mutual;
        let pose = if x.offers_scram { "offering SCRAM" } else { "posing as v1" };
        if promised && x.password {
            self.find(
                Severity::Safety,
                "password_exposed",
                x.source.to_string(),
                t,
                format!(
                    "{} sent the password in clear to an impostor {pose} (mutual authentication required: {})",
                    x.source, x.requires_mutual
                ),
            );
        }
        if promised && x.trusted {
            self.find(
                Severity::Safety,
                "impostor_trusted",
                x.source.to_string(),
                t,
                format!("{} went on with its handshake after an impostor {pose} accepted it", x.source),
            );
        }
    }
}
