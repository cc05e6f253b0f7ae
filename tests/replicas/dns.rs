//! The DNS server the replica tests look names up on: hickory-server on a
//! loopback UDP port, one zone whose A records a test changes while it runs.

use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::proto::rr::rdata::{A, SOA};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType, RrKey};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};

/// The zone the tests' names are in.
const ZONE: &str = "replicas.test.";

/// The TTL of every record: the shortest the resolver honours.
pub(crate) const TTL_SECS: u32 = 1;

/// A running DNS server for [`ZONE`].
pub(crate) struct Dns {
    pub(crate) address: SocketAddr,
    zone: Arc<InMemoryZoneHandler<TokioRuntimeProvider>>,
    _server: hickory_server::Server<Catalog>,
}

impl Dns {
    /// Serves an empty zone on a free UDP port of 127.0.0.1.
    pub(crate) async fn start() -> Dns {
        let origin = Name::from_str(ZONE).unwrap();
        let mut zone =
            InMemoryZoneHandler::empty(origin.clone(), ZoneType::Primary, AxfrPolicy::Deny);
        let soa = SOA::new(
            Name::from_str("ns.replicas.test.").unwrap(),
            Name::from_str("admin.replicas.test.").unwrap(),
            1,
            60,
            60,
            600,
            TTL_SECS,
        );
        assert!(zone.upsert_mut(
            Record::from_rdata(origin.clone(), TTL_SECS, RData::SOA(soa)),
            1
        ));
        let zone = Arc::new(zone);
        let mut catalog = Catalog::new();
        catalog.upsert(LowerName::new(&origin), vec![zone.clone()]);
        let mut server = hickory_server::Server::new(catalog);
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let address = socket.local_addr().unwrap();
        server.register_socket(socket);
        Dns {
            address,
            zone,
            _server: server,
        }
    }

    /// `name` (under the zone: `svc` is `svc.replicas.test.`) has exactly
    /// `addresses` from now on, as A records.
    pub(crate) async fn set(&self, name: &str, addresses: &[Ipv4Addr]) {
        self.set_with_ttl(name, addresses, TTL_SECS).await;
    }

    /// As [`Dns::set`], with records of TTL `ttl_secs`.
    pub(crate) async fn set_with_ttl(&self, name: &str, addresses: &[Ipv4Addr], ttl_secs: u32) {
        let name = Name::from_str(&format!("{name}.{ZONE}")).unwrap();
        self.zone
            .records_mut()
            .await
            .remove(&RrKey::new(LowerName::new(&name), RecordType::A));
        for &address in addresses {
            let record = Record::from_rdata(name.clone(), ttl_secs, RData::A(A(address)));
            assert!(self.zone.upsert(record, 1).await);
        }
    }
}

/// A name's full form, as a URL's host.
pub(crate) fn host(name: &str) -> String {
    format!("{name}.{}", ZONE.trim_end_matches('.'))
}
