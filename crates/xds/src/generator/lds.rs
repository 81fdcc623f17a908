//! Listeners (spec §4.1, §7): `virtualOutbound` and the per-service outbound listeners.
//!
//! Per-service listeners are keyed by (bind, port), built in egress-listener and service
//! order and merged on conflicts as Istio's `buildSidecarOutboundListener` does (§4.1.4):
//! HTTP ports share the wildcard listener (one HCM chain routing by `Host` through RDS
//! `"<port>"`), TCP-class ports get a listener on the service VIP (or the wildcard when
//! the service has none), sniffed ports get both a TCP and an HTTP chain.

#[path = "lds_filters.rs"]
pub(crate) mod filters;
#[path = "lds_l4.rs"]
mod l4;
#[cfg(test)]
#[path = "lds_tests.rs"]
mod tests;

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

use entryway_model::api::{CaptureMode, Protocol};
use entryway_model::registry::{ProxyScope, Resolution, Service, ServiceAddress};
use envoy_types::pb::envoy::config::core::v3::{
    Address, CidrRange, Metadata, Pipe, SocketAddress, TrafficDirection, address, socket_address,
};
use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener, filter,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager,
};
use envoy_types::pb::google::protobuf::{BoolValue, UInt32Value};
use prost::{Message, Name};

use self::filters::{
    HTTP_CONNECTION_MANAGER, blackhole_filters, catch_all_filters, http_connection_manager,
    http_inspector, tls_inspector,
};
use self::l4::{L4Ctx, tcp_listener_chains};
use super::names::{PASSTHROUGH_FILTER_CHAIN, VIRTUAL_OUTBOUND_LISTENER, listener_name};
use super::rds::common::{
    DrCache, VsByHost, duration, egress_listener, egress_virtual_services, ipv6_only, localhost,
    needs_service_index, service_index, wildcard, zero_duration,
};

/// Name of the blackhole chain of `virtualOutbound`.
const VIRTUAL_OUTBOUND_BLACKHOLE: &str = "virtualOutbound-blackhole";
/// Name of the catch-all chain of `virtualOutbound`.
const VIRTUAL_OUTBOUND_CATCH_ALL: &str = "virtualOutbound-catchall-tcp";
/// ALPNs the HTTP inspector reports for plaintext HTTP (`PILOT_HTTP10` off).
const PLAINTEXT_HTTP_ALPNS: [&str; 2] = ["http/1.1", "h2c"];
/// `transport_protocol` of plaintext connections.
const RAW_BUFFER: &str = "raw_buffer";
/// Istio's agent status and Prometheus ports (static listeners of the injected proxy).
const STATUS_PORT: u32 = 15021;
const PROMETHEUS_PORT: u32 = 15090;

/// Every listener of the proxy, sorted by name.
pub fn listeners(scope: &ProxyScope<'_>) -> Vec<Listener> {
    let mut out = Vec::new();
    each_listener(scope, &mut |l| out.push(l));
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Every listener of the proxy, handed to `emit` one at a time in no particular order (so a
/// caller may encode and drop each before the next is built: the listener of a TLS port of a
/// large mesh holds tens of thousands of filter chains).
pub fn each_listener(scope: &ProxyScope<'_>, emit: &mut dyn FnMut(Listener)) {
    let services = if needs_service_index(scope) {
        service_index(scope)
    } else {
        HashMap::new()
    };
    let mut b = Builder {
        scope,
        wildcard: wildcard(scope),
        services: &services,
        rules: DrCache::new(scope),
        entries: HashMap::new(),
        shadowed: Vec::new(),
    };
    for index in 0..scope.egress.len() {
        b.egress_listener(index);
    }
    for e in b.entries.into_values().flat_map(HashMap::into_values) {
        emit(e.build(scope));
    }
    emit(virtual_outbound(scope));
}

/// The RDS route configuration names the listeners refer to, sorted and de-duplicated.
pub fn route_names(listeners: &[Listener]) -> Vec<String> {
    let mut names = BTreeSet::new();
    for l in listeners {
        for chain in l.filter_chains.iter().chain(l.default_filter_chain.iter()) {
            for f in &chain.filters {
                if let Some(name) = rds_name(f) {
                    names.insert(name);
                }
            }
        }
    }
    names.into_iter().collect()
}

/// The RDS name of an HTTP connection manager filter.
fn rds_name(f: &Filter) -> Option<String> {
    if f.name != HTTP_CONNECTION_MANAGER {
        return None;
    }
    let Some(filter::ConfigType::TypedConfig(any)) = &f.config_type else {
        return None;
    };
    if any.type_url != HttpConnectionManager::type_url() {
        return None;
    }
    let hcm = HttpConnectionManager::decode(any.value.as_slice()).ok()?;
    match hcm.route_specifier? {
        http_connection_manager::RouteSpecifier::Rds(rds) => Some(rds.route_config_name),
        _ => None,
    }
}

/// The `virtualOutbound` listener (spec §4.1.1): `use_original_dst` on the mesh
/// `proxyListenPort`, a blackhole chain for traffic addressed to that port and a catch-all
/// `tcp_proxy` chain per the outbound traffic policy.
fn virtual_outbound(scope: &ProxyScope<'_>) -> Listener {
    let port = u32::try_from(scope.mesh.proxy_listen_port).unwrap_or(15001);
    Listener {
        name: VIRTUAL_OUTBOUND_LISTENER.to_string(),
        address: Some(build_address(wildcard(scope), port)),
        use_original_dst: Some(BoolValue { value: true }),
        filter_chains: vec![
            FilterChain {
                name: VIRTUAL_OUTBOUND_BLACKHOLE.to_string(),
                filter_chain_match: Some(FilterChainMatch {
                    destination_port: Some(UInt32Value { value: port }),
                    ..Default::default()
                }),
                filters: blackhole_filters(),
                ..Default::default()
            },
            FilterChain {
                name: VIRTUAL_OUTBOUND_CATCH_ALL.to_string(),
                filters: catch_all_filters(scope),
                ..Default::default()
            },
        ],
        traffic_direction: TrafficDirection::Outbound as i32,
        ..Default::default()
    }
}

/// The first address of `svc` for this proxy (Istio's `GetAddressForProxy`).
fn first_address(scope: &ProxyScope<'_>, svc: &Service) -> String {
    match svc.address {
        // Without auto-allocated addresses in use, the answer is known.
        ServiceAddress::Unspecified
            if !scope.proxy.dns_capture || svc.auto_addresses.is_empty() =>
        {
            "0.0.0.0".to_string()
        }
        ServiceAddress::Ip(_) | ServiceAddress::Cidr(_) => svc.address.to_istio_string(),
        ServiceAddress::Unspecified => scope
            .service_addresses(svc)
            .into_iter()
            .next()
            .unwrap_or_default(),
    }
}

/// `socket_address` for a bind address, or a `pipe` for a unix socket (port 0).
fn build_address(bind: &str, port: u32) -> Address {
    let a = if port == 0 {
        address::Address::Pipe(Pipe {
            path: bind.strip_prefix("unix://").unwrap_or(bind).to_string(),
            ..Default::default()
        })
    } else {
        address::Address::SocketAddress(SocketAddress {
            address: bind.to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
            ..Default::default()
        })
    };
    Address { address: Some(a) }
}

/// A listener port: a service port, or the port of a Sidecar egress listener.
#[derive(Debug, Clone)]
pub(crate) struct PortSpec {
    number: u32,
    protocol: Protocol,
}

/// What a filter chain carries: an HTTP connection manager (built when the listener is
/// finished, its stat prefix depends on the listener name) or network filters.
#[derive(Debug, Clone)]
enum ChainBody {
    Http { rds: String, protocol: Protocol },
    Network(Vec<Filter>),
}

/// Istio's `filterChainOpts`: match criteria plus the chain's filters.
#[derive(Debug, Clone)]
pub(crate) struct ChainOpts {
    sni_hosts: Vec<String>,
    destination_cidrs: Vec<String>,
    application_protocols: Vec<String>,
    transport_protocol: String,
    metadata: Option<Metadata>,
    body: ChainBody,
}

impl ChainOpts {
    /// True when the chain matches every connection (Istio's `isMatchAll`).
    fn is_match_all(&self) -> bool {
        (self.sni_hosts.is_empty() || self.sni_hosts.iter().any(|s| s == "*"))
            && self.application_protocols.is_empty()
            && self.transport_protocol.is_empty()
            && self.destination_cidrs.is_empty()
    }

    /// The SNI set (without `*`) and the masked CIDR set of the chain, sorted.
    fn canonical_match(&self) -> (Vec<&str>, Vec<(IpAddr, u8)>) {
        let mut sni: Vec<&str> = self
            .sni_hosts
            .iter()
            .map(String::as_str)
            .filter(|s| *s != "*")
            .collect();
        sni.sort_unstable();
        sni.dedup();
        let mut cidrs: Vec<(IpAddr, u8)> = self
            .destination_cidrs
            .iter()
            .filter_map(|s| parse_prefix(s))
            .filter(|(a, _)| *a != IpAddr::from([0, 0, 0, 0]))
            .map(|(a, len)| (mask(a, len), len))
            .collect();
        cidrs.sort_unstable();
        cidrs.dedup();
        (sni, cidrs)
    }

    /// True when both chains have the same match (Istio's `conflictsWith`): transport,
    /// ALPNs, SNI set (ignoring `*`) and CIDR set after masking.
    fn same_match(&self, other: &ChainOpts) -> bool {
        self.transport_protocol == other.transport_protocol
            && self.application_protocols == other.application_protocols
            && self.canonical_match() == other.canonical_match()
    }

    /// A hash of the match, equal for chains with the same match.
    fn match_hash(&self) -> u64 {
        let mut h = DefaultHasher::new();
        self.transport_protocol.hash(&mut h);
        self.application_protocols.hash(&mut h);
        self.canonical_match().hash(&mut h);
        h.finish()
    }

    /// Splits the chain into its `filter_chain_match` (Istio's `toFilterChainMatch`; `None`
    /// for match-all), metadata and body.
    fn into_parts(self) -> (Option<FilterChainMatch>, Option<Metadata>, ChainBody) {
        if self.is_match_all() {
            return (None, self.metadata, self.body);
        }
        let mut m = FilterChainMatch {
            application_protocols: self.application_protocols,
            transport_protocol: self.transport_protocol,
            ..Default::default()
        };
        if !self.sni_hosts.iter().any(|s| s == "*") {
            let mut sni = self.sni_hosts;
            sni.sort();
            m.server_names = sni;
        }
        let mut cidrs = self.destination_cidrs;
        cidrs.sort();
        m.prefix_ranges = cidrs
            .iter()
            .filter_map(|c| cidr_range(c))
            .filter(|c| c.address_prefix != "0.0.0.0")
            .collect();
        (Some(m), self.metadata, self.body)
    }
}

/// An IP or CIDR as (address, prefix length); an IP is a full-length prefix.
fn parse_prefix(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a.parse::<IpAddr>().ok()?, Some(l.parse::<u8>().ok()?)),
        None => (s.parse::<IpAddr>().ok()?, None),
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = len.unwrap_or(max);
    (len <= max).then_some((addr, len))
}

/// The network address of a prefix.
fn mask(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4(std::net::Ipv4Addr::from(u32::from(a) & m))
        }
        IpAddr::V6(a) => {
            let m = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6(std::net::Ipv6Addr::from(u128::from(a) & m))
        }
    }
}

/// Istio's `ConvertAddressToCidr`: the address (not masked) and the prefix length.
fn cidr_range(s: &str) -> Option<CidrRange> {
    let (addr, len) = parse_prefix(s)?;
    Some(CidrRange {
        address_prefix: addr.to_string(),
        prefix_len: Some(UInt32Value {
            value: u32::from(len),
        }),
    })
}

/// Listener class of a port protocol (Istio's `ModelProtocolToListenerProtocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListenerProtocol {
    Http,
    Tcp,
    Auto,
}

fn listener_protocol(p: Protocol) -> Option<ListenerProtocol> {
    if p.is_http() {
        Some(ListenerProtocol::Http)
    } else if p.is_tcp() {
        Some(ListenerProtocol::Tcp)
    } else if p.is_unsupported() {
        Some(ListenerProtocol::Auto)
    } else {
        None
    }
}

/// Where a listener binds: addresses (the first is the primary; empty = decided per
/// service) and whether it is a real socket.
#[derive(Debug, Clone, Default)]
struct Binding {
    binds: Vec<String>,
    bind_to_port: bool,
}

impl Binding {
    fn primary(&self) -> &str {
        self.binds.first().map_or("", String::as_str)
    }
}

/// Istio's `outboundListenerEntry`, with the match keys of its chains for conflict checks.
#[derive(Debug)]
struct Entry {
    port: u32,
    bind: Binding,
    protocol: Protocol,
    chains: Vec<ChainOpts>,
    /// Index of the first chain with each [`ChainOpts::match_hash`]; chains whose hash is
    /// taken by a different match are listed in `collisions`.
    keys: HashMap<u64, usize>,
    collisions: Vec<usize>,
    locked: bool,
    /// The service that created the entry ([`service_label`]).
    owner: String,
}

impl Entry {
    /// Istio's `mergeTCPFilterChains`: incoming chains whose match equals an existing one
    /// are dropped (the first service wins). Also used for the chains of a new entry:
    /// Istio keeps duplicate matches there (e.g. two VirtualService `tls` matches listing
    /// the same SNI names in another order), which Envoy rejects; the first one is kept.
    /// Returns how many incoming chains were dropped.
    fn merge_chains(&mut self, incoming: Vec<ChainOpts>) -> usize {
        let mut dropped = 0;
        for c in incoming {
            let h = c.match_hash();
            let same = |j: &usize| self.chains.get(*j).is_some_and(|e| e.same_match(&c));
            let first = self.keys.get(&h);
            if first.is_some_and(same) || self.collisions.iter().any(same) {
                dropped += 1;
                continue;
            }
            if first.is_some() {
                self.collisions.push(self.chains.len());
            } else {
                self.keys.insert(h, self.chains.len());
            }
            self.chains.push(c);
        }
        dropped
    }
}

/// The conflict between an incoming service port and an existing listener entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conflict {
    None,
    HttpOverTcp,
    TcpOverHttp,
    TcpOverTcp,
    TcpOverAuto,
    AutoOverHttp,
    AutoOverTcp,
}

struct Builder<'a, 's> {
    scope: &'a ProxyScope<'s>,
    wildcard: &'static str,
    services: &'a HashMap<&'a str, &'a Arc<Service>>,
    rules: DrCache<'a>,
    entries: HashMap<u32, HashMap<String, Entry>>,
    /// Service ports whose chains were all dropped because an earlier service already
    /// holds the same match on the same listener (reported by [`listener_conflicts`]).
    shadowed: Vec<ListenerConflict>,
}

/// A service port that gets no traffic on a listener: every filter chain it would add has
/// the same match as a chain of an earlier service (Istio keeps the first; e.g. two TCP
/// ServiceEntries without addresses on one port both want `0.0.0.0_<port>`'s match-all
/// chain). With DNS capture, auto-allocated addresses give each its own listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConflict {
    /// The listener, e.g. `0.0.0.0_9000`.
    pub listener: String,
    /// The port.
    pub port: u32,
    /// The service that keeps the listener: `namespace/serviceentry (hostname)`.
    pub kept: String,
    /// The service that loses it.
    pub dropped: String,
}

impl std::fmt::Display for ListenerConflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "listener {}: {} is shadowed by {} (same filter chain match on port {}; the \
             first created wins). Give the entries addresses, or enable DNS capture so \
             they get auto-allocated ones",
            self.listener, self.dropped, self.kept, self.port
        )
    }
}

fn service_label(svc: &Service) -> String {
    format!("{}/{} ({})", svc.namespace, svc.se_name, svc.hostname)
}

/// The service ports that lose their listener to an earlier service (see
/// [`ListenerConflict`]), in build order. Builds the listeners as [`listeners`] does.
pub fn listener_conflicts(scope: &ProxyScope<'_>) -> Vec<ListenerConflict> {
    let services = if needs_service_index(scope) {
        service_index(scope)
    } else {
        HashMap::new()
    };
    let mut b = Builder {
        scope,
        wildcard: wildcard(scope),
        services: &services,
        rules: DrCache::new(scope),
        entries: HashMap::new(),
        shadowed: Vec::new(),
    };
    for index in 0..scope.egress.len() {
        b.egress_listener(index);
    }
    b.shadowed
}

impl<'a, 's> Builder<'a, 's> {
    /// Istio's per-egress-listener loop of `buildSidecarOutboundListeners`.
    fn egress_listener(&mut self, index: usize) {
        let scope = self.scope;
        let Some(eg) = scope.egress.get(index) else {
            return;
        };
        let all_vs = egress_virtual_services(scope, index);
        let vss = VsByHost::new(&all_vs);
        let cfg = egress_listener(scope, index);
        let mut bind = Binding::default();
        if let Some(l) = cfg
            && (l.capture_mode == CaptureMode::None || l.bind.starts_with("unix://"))
        {
            bind.bind_to_port = true;
        }
        match cfg {
            Some(l) if !l.bind.is_empty() => bind.binds = vec![l.bind.clone()],
            _ if bind.bind_to_port => bind.binds = vec![localhost(scope).to_string()],
            _ => {}
        }

        if let Some(p) = cfg.and_then(|l| l.port.as_ref()) {
            // Every imported service on the user-specified port.
            let port = PortSpec {
                number: p.number,
                protocol: p.parsed_protocol(),
            };
            if self.conflicts_with_reserved(bind.primary(), &port) {
                return;
            }
            for svc in &eg.services {
                self.build(bind.clone(), &port, svc, &vss);
            }
            return;
        }

        // Catch-all egress listener: entries of explicit ports are final.
        for e in self.entries.values_mut().flat_map(HashMap::values_mut) {
            e.locked = true;
        }
        for svc in &eg.services {
            for sp in &svc.ports {
                let port = PortSpec {
                    number: sp.number,
                    protocol: sp.protocol,
                };
                if self.conflicts_with_reserved(bind.primary(), &port) {
                    continue;
                }
                // Headless (NONE, no address) TCP/AUTO services: one listener per endpoint
                // IP, unless the entry has neither endpoints nor a selector (§4.1.2).
                if bind.primary().is_empty()
                    && svc.resolution == Resolution::Passthrough
                    && (sp.protocol.is_tcp() || sp.protocol.is_unsupported())
                    && first_address(scope, svc) == "0.0.0.0"
                {
                    let endpoints = scope.endpoints(svc, &sp.name);
                    if endpoints.is_empty() && svc.selector.is_none() {
                        self.build(bind.clone(), &port, svc, &vss);
                        continue;
                    }
                    let own_ip = scope.proxy.ips.first();
                    for ep in endpoints {
                        let entryway_model::registry::EndpointAddress::Ip(ip) = &ep.address else {
                            continue;
                        };
                        if Some(ip) == own_ip {
                            continue;
                        }
                        let mut b = bind.clone();
                        b.binds = vec![ip.to_string()];
                        self.build(b, &port, svc, &vss);
                    }
                    continue;
                }
                self.build(bind.clone(), &port, svc, &vss);
            }
        }
    }

    /// Istio's `conflictWithReservedListener`: wildcard listeners may not use the ports of
    /// the proxy's own listeners (15001, 15006, 15021, 15090).
    fn conflicts_with_reserved(&self, bind: &str, port: &PortSpec) -> bool {
        if !bind.is_empty() {
            if bind != self.wildcard {
                return false;
            }
        } else if !port.protocol.is_http() {
            return false;
        }
        let mesh = self.scope.mesh;
        let reserved = [
            u32::try_from(mesh.proxy_listen_port).ok(),
            u32::try_from(mesh.proxy_inbound_listen_port).ok(),
            Some(STATUS_PORT),
            Some(PROMETHEUS_PORT),
        ];
        reserved.contains(&Some(port.number))
    }

    /// Istio's `buildSidecarOutboundListener`: adds `svc` on `port` to the listener map,
    /// resolving conflicts with an existing listener on the same (bind, port).
    fn build(&mut self, mut bind: Binding, port: &PortSpec, svc: &Service, vss: &VsByHost<'_, '_>) {
        let Some(lp) = listener_protocol(port.protocol) else {
            return; // UDP
        };
        let mut cidr: Option<String> = None;
        let mut svc_addr = String::new();
        match lp {
            ListenerProtocol::Tcp | ListenerProtocol::Auto => {
                svc_addr = first_address(self.scope, svc);
                if bind.primary().is_empty() {
                    let mut addr = svc_addr.clone();
                    if ipv6_only(self.scope)
                        && svc.address == ServiceAddress::Unspecified
                        && addr == "0.0.0.0"
                    {
                        addr = "::".to_string();
                    }
                    if !addr.is_empty() {
                        if addr.contains('/') {
                            bind.binds = vec![self.wildcard.to_string()];
                            cidr = Some(addr);
                        } else {
                            bind.binds = vec![addr];
                        }
                    }
                }
            }
            ListenerProtocol::Http => {
                if bind.primary().is_empty() {
                    bind.binds = vec![self.wildcard.to_string()];
                }
            }
        }
        let existing = self
            .entries
            .get(&port.number)
            .and_then(|m| m.get(bind.primary()))
            .map(|e| (e.locked, e.protocol));
        if matches!(existing, Some((true, _))) {
            return;
        }
        let existing = existing.map(|(_, p)| p);

        let mut entry_protocol = port.protocol;
        let mut conflict = Conflict::None;
        let opts: Vec<ChainOpts> = if port.protocol == Protocol::HttpProxy {
            vec![self.http_chain(&bind, port, svc, lp)]
        } else {
            match lp {
                ListenerProtocol::Http => {
                    if let Some(cur) = existing {
                        if cur.is_tcp() {
                            conflict = Conflict::HttpOverTcp;
                        } else {
                            return; // the first HTTP listener wins; vhosts come from RDS
                        }
                    }
                    let mut chain = self.http_chain(&bind, port, svc, lp);
                    if bind.primary() == self.wildcard {
                        chain.application_protocols =
                            PLAINTEXT_HTTP_ALPNS.iter().map(|s| s.to_string()).collect();
                        chain.transport_protocol = RAW_BUFFER.to_string();
                        entry_protocol = Protocol::Unsupported;
                    }
                    vec![chain]
                }
                ListenerProtocol::Tcp => {
                    if let Some(cur) = existing {
                        conflict = if cur.is_http() {
                            Conflict::TcpOverHttp
                        } else if cur.is_tcp() {
                            Conflict::TcpOverTcp
                        } else {
                            Conflict::TcpOverAuto
                        };
                    }
                    self.tcp_chains(&bind, port, svc, cidr.as_deref(), &svc_addr, vss)
                }
                ListenerProtocol::Auto => {
                    if let Some(cur) = existing {
                        if cur.is_http() {
                            conflict = Conflict::AutoOverHttp;
                        } else if cur.is_tcp() {
                            conflict = Conflict::AutoOverTcp;
                        } else {
                            return;
                        }
                    }
                    let mut chains =
                        self.tcp_chains(&bind, port, svc, cidr.as_deref(), &svc_addr, vss);
                    let mut http = self.http_chain(&bind, port, svc, lp);
                    http.application_protocols =
                        PLAINTEXT_HTTP_ALPNS.iter().map(|s| s.to_string()).collect();
                    http.transport_protocol = RAW_BUFFER.to_string();
                    chains.push(http);
                    chains
                }
            }
        };

        // Mongo and MySQL never share a port with another protocol.
        if let Some(cur) = existing
            && conflict != Conflict::None
        {
            let special = |p: Protocol| p == Protocol::Mongo || p == Protocol::MySql;
            if (special(port.protocol) || special(cur)) && port.protocol != cur {
                return;
            }
        }

        match conflict {
            Conflict::None | Conflict::AutoOverHttp => {
                let primary = bind.primary().to_string();
                let mut entry = Entry {
                    port: port.number,
                    bind,
                    protocol: entry_protocol,
                    chains: Vec::with_capacity(opts.len()),
                    keys: HashMap::new(),
                    collisions: Vec::new(),
                    locked: false,
                    owner: service_label(svc),
                };
                entry.merge_chains(opts);
                self.entries
                    .entry(port.number)
                    .or_default()
                    .insert(primary, entry);
            }
            Conflict::HttpOverTcp | Conflict::TcpOverHttp | Conflict::AutoOverTcp => {
                if let Some(e) = self.entry_mut(&bind, port.number) {
                    e.merge_chains(opts);
                    e.protocol = Protocol::Unsupported;
                }
            }
            Conflict::TcpOverTcp | Conflict::TcpOverAuto => {
                let incoming = opts.len();
                if let Some(e) = self.entry_mut(&bind, port.number)
                    && incoming > 0
                    && e.merge_chains(opts) == incoming
                {
                    let conflict = ListenerConflict {
                        listener: listener_name(e.bind.primary(), e.port),
                        port: e.port,
                        kept: e.owner.clone(),
                        dropped: service_label(svc),
                    };
                    self.shadowed.push(conflict);
                }
            }
        }
    }

    /// The HTTP chain of a service port (Istio's `buildSidecarOutboundHTTPListenerOpts`):
    /// RDS `"<port>"`, `"<host>:<port>"` for a sniffed port on its own VIP, or the unix bind.
    fn http_chain(
        &self,
        bind: &Binding,
        port: &PortSpec,
        svc: &Service,
        lp: ListenerProtocol,
    ) -> ChainOpts {
        let rds = if port.number == 0 {
            bind.primary().to_string()
        } else if lp == ListenerProtocol::Auto && bind.primary() != self.wildcard {
            format!("{}:{}", svc.hostname, port.number)
        } else {
            port.number.to_string()
        };
        ChainOpts {
            sni_hosts: Vec::new(),
            destination_cidrs: Vec::new(),
            application_protocols: Vec::new(),
            transport_protocol: String::new(),
            metadata: None,
            body: ChainBody::Http {
                rds,
                protocol: port.protocol,
            },
        }
    }

    fn entry_mut(&mut self, bind: &Binding, port: u32) -> Option<&mut Entry> {
        self.entries.get_mut(&port)?.get_mut(bind.primary())
    }

    #[allow(clippy::too_many_arguments)]
    fn tcp_chains(
        &mut self,
        bind: &Binding,
        port: &PortSpec,
        svc: &Service,
        cidr: Option<&str>,
        svc_addr: &str,
        vss: &VsByHost<'_, '_>,
    ) -> Vec<ChainOpts> {
        let mut ctx = L4Ctx {
            scope: self.scope,
            services: self.services,
            rules: &mut self.rules,
        };
        tcp_listener_chains(&mut ctx, svc, bind.primary(), port, cidr, svc_addr, vss)
    }
}

impl Entry {
    /// Istio's `buildListenerFromEntry`.
    fn build(self, scope: &ProxyScope<'_>) -> Listener {
        let name = listener_name(self.bind.primary(), self.port);
        let mut l = Listener {
            name: name.clone(),
            address: Some(build_address(self.bind.primary(), self.port)),
            traffic_direction: TrafficDirection::Outbound as i32,
            continue_on_listener_filters_timeout: true,
            ..Default::default()
        };
        if !self.bind.bind_to_port {
            l.bind_to_port = Some(BoolValue { value: false });
        }
        let need_tls = self.chains.iter().any(|c| !c.sni_hosts.is_empty());
        let need_http = self
            .chains
            .iter()
            .any(|c| !c.application_protocols.is_empty());
        if need_tls || need_http {
            l.listener_filters.push(tls_inspector());
        }
        if need_http {
            l.listener_filters.push(http_inspector());
            l.listener_filters_timeout = Some(duration(&scope.mesh.protocol_detection_timeout));
        } else {
            l.listener_filters_timeout = Some(zero_duration());
        }
        let stat_prefix = format!("outbound_{name};");
        l.filter_chains.reserve(self.chains.len());
        for opt in self.chains {
            let (filter_chain_match, metadata, body) = opt.into_parts();
            let match_all = filter_chain_match.is_none();
            let filters = match body {
                ChainBody::Network(f) => f,
                ChainBody::Http { rds, protocol } => {
                    vec![http_connection_manager(stat_prefix.clone(), rds, protocol)]
                }
            };
            let chain = FilterChain {
                filters,
                metadata,
                ..Default::default()
            };
            if match_all {
                l.default_filter_chain = Some(chain);
            } else {
                l.filter_chains.push(FilterChain {
                    filter_chain_match,
                    ..chain
                });
            }
        }
        match l.default_filter_chain.take() {
            Some(d) if l.filter_chains.is_empty() => l.filter_chains = vec![d],
            Some(d) => l.default_filter_chain = Some(d),
            None => {
                l.default_filter_chain = Some(FilterChain {
                    filter_chain_match: Some(FilterChainMatch::default()),
                    name: PASSTHROUGH_FILTER_CHAIN.to_string(),
                    filters: catch_all_filters(scope),
                    ..Default::default()
                });
            }
        }
        l
    }
}
