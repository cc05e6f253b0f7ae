//! Which addresses an upstream has: its URL's host, or its static endpoints,
//! resolved to every A and AAAA record and resolved again when their TTL
//! runs out (within a floor and a ceiling), as the change stream that the
//! balancer reads.
//!
//! A lookup that fails keeps the addresses the name had, and is tried again
//! with a backoff from the floor to the ceiling; a name that has no records
//! (a headless Service scaled to zero) has no addresses. An IP address is its
//! own endpoint and is never looked up.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use tokio::sync::mpsc;
use tower::discover::Change;
use tower::load::{CompleteOnResponse, PeakEwma};

use super::EndpointSet;
use super::endpoint::{EndpointService, EndpointShared};

/// The service the balancer holds per endpoint: its load is the peak-EWMA
/// latency of its answers times its calls in flight.
pub(crate) type Balanced = PeakEwma<EndpointService, CompleteOnResponse>;

/// The latency an endpoint is assumed to have before it has answered when
/// no other endpoint has answered either (Linkerd's default), and how fast
/// an old latency is forgotten.
pub(crate) const DEFAULT_RTT: Duration = Duration::from_millis(30);
const DECAY: Duration = Duration::from_secs(10);

/// The balancer's service for `shared`, assumed to answer in `rtt` until it
/// has: the latency its peers have, so that a replica added to a set of fast
/// ones takes calls at once (a fixed default above their latency would keep
/// it idle), and one added to slow ones is not flooded before it answers.
pub(crate) fn balanced(shared: Arc<EndpointShared>, rtt: Duration) -> Balanced {
    PeakEwma::new(
        EndpointService::new(shared),
        rtt,
        DECAY.as_nanos() as f64,
        CompleteOnResponse::default(),
    )
}

/// The endpoints' comings and goings, as the balancer reads them.
pub(crate) struct Discovered(pub(crate) mpsc::UnboundedReceiver<Change<SocketAddr, Balanced>>);

impl futures_core::Stream for Discovered {
    type Item = Result<Change<SocketAddr, Balanced>, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|change| change.map(Ok))
    }
}

/// A host and port to resolve into endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// A DNS name, or an IP address (without brackets).
    pub(crate) host: String,
    pub(crate) port: u16,
}

/// The host of `authority`, an IPv6 address without its brackets: what is
/// looked up, and the name a TLS server's certificate is checked against.
pub(crate) fn bare_host(authority: &http::uri::Authority) -> &str {
    authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
}

impl Target {
    /// Parses `host:port` or `host` (then `default_port`), `[v6]:port` too.
    pub(crate) fn parse(text: &str, default_port: u16) -> Result<Target, String> {
        let authority: http::uri::Authority = text
            .parse()
            .map_err(|_| format!("endpoint `{text}` is not a host or host:port"))?;
        if authority.as_str().contains('@') {
            return Err(format!("endpoint `{text}` must not hold credentials"));
        }
        let host = bare_host(&authority);
        if host.is_empty() {
            return Err(format!("endpoint `{text}` has no host"));
        }
        Ok(Target {
            host: host.to_owned(),
            port: authority.port_u16().unwrap_or(default_port),
        })
    }

    fn address(&self) -> Option<SocketAddr> {
        self.host
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, self.port))
    }
}

/// How names are looked up.
#[derive(Clone)]
pub(crate) enum Lookup {
    /// By DNS, with each answer's TTL.
    Dns(Arc<TokioResolver>),
    /// By the system's resolver (`getaddrinfo`), which tells no TTL: when the
    /// DNS configuration cannot be read.
    System,
}

/// How often names are looked up again: never sooner than `floor`, never
/// later than `ceiling`, as the TTL says in between.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Refresh {
    pub(crate) floor: Duration,
    pub(crate) ceiling: Duration,
}

enum Resolved {
    Found(BTreeSet<SocketAddr>, Duration),
    /// The name exists nowhere or has no addresses.
    None,
}

impl Lookup {
    async fn resolve(&self, target: &Target, refresh: Refresh) -> Result<Resolved, String> {
        match self {
            Lookup::Dns(resolver) => match resolver.lookup_ip(target.host.as_str()).await {
                Ok(found) => {
                    let valid_for = found
                        .valid_until()
                        .saturating_duration_since(Instant::now());
                    let addresses = found
                        .iter()
                        .map(|ip| SocketAddr::new(ip, target.port))
                        .collect();
                    Ok(Resolved::Found(addresses, valid_for))
                }
                Err(error) if error.is_no_records_found() => Ok(Resolved::None),
                Err(error) => Err(error.to_string()),
            },
            Lookup::System => {
                match tokio::net::lookup_host((target.host.as_str(), target.port)).await {
                    Ok(found) => Ok(Resolved::Found(found.collect(), refresh.floor)),
                    Err(error) => Err(error.to_string()),
                }
            }
        }
    }
}

/// Sends the endpoints of fixed addresses at once; returns the targets that
/// are names, to be looked up.
pub(crate) fn insert_addresses(
    targets: &[Target],
    set: &EndpointSet,
    changes: &mpsc::UnboundedSender<Change<SocketAddr, Balanced>>,
) -> Vec<Target> {
    let addresses: BTreeSet<SocketAddr> = targets.iter().filter_map(Target::address).collect();
    set.apply(&addresses, changes, &[]);
    targets
        .iter()
        .filter(|target| target.address().is_none())
        .cloned()
        .collect()
}

/// Looks `names` up, and again and again, until the upstream is gone; the
/// fixed addresses stay.
pub(crate) async fn run(
    names: Vec<Target>,
    fixed: BTreeSet<SocketAddr>,
    lookup: Lookup,
    refresh: Refresh,
    set: Weak<EndpointSet>,
    changes: mpsc::UnboundedSender<Change<SocketAddr, Balanced>>,
) {
    let mut known: BTreeMap<usize, BTreeSet<SocketAddr>> = BTreeMap::new();
    let mut backoff = refresh.floor;
    loop {
        let mut errors = Vec::new();
        let mut next = refresh.ceiling;
        for (index, target) in names.iter().enumerate() {
            match lookup.resolve(target, refresh).await {
                Ok(Resolved::Found(addresses, valid_for)) => {
                    known.insert(index, addresses);
                    next = next.min(valid_for);
                }
                Ok(Resolved::None) => {
                    known.insert(index, BTreeSet::new());
                    next = next.min(refresh.floor);
                }
                // What the name had stays.
                Err(error) => errors.push(format!("cannot resolve `{}`: {error}", target.host)),
            }
        }
        let Some(set) = set.upgrade() else { return };
        let mut addresses = fixed.clone();
        addresses.extend(known.values().flatten().copied());
        set.apply(&addresses, &changes, &errors);
        drop(set);
        let wait = if errors.is_empty() {
            backoff = refresh.floor;
            next
        } else {
            let wait = backoff;
            backoff = backoff.saturating_mul(2).min(refresh.ceiling);
            wait.min(next)
        };
        tokio::time::sleep(wait.clamp(refresh.floor, refresh.ceiling)).await;
    }
}
