//! Istio's resource names.

/// `BlackHoleCluster`: drops everything.
pub const BLACKHOLE_CLUSTER: &str = "BlackHoleCluster";
/// `PassthroughCluster`: ORIGINAL_DST to wherever the application connected.
pub const PASSTHROUGH_CLUSTER: &str = "PassthroughCluster";
/// `InboundPassthroughCluster`.
pub const INBOUND_PASSTHROUGH_CLUSTER: &str = "InboundPassthroughCluster";
/// The outbound capture listener.
pub const VIRTUAL_OUTBOUND_LISTENER: &str = "virtualOutbound";
/// Default filter chain of per-port listeners.
pub const PASSTHROUGH_FILTER_CHAIN: &str = "PassthroughFilterChain";

/// `outbound|<port>|<subset>|<host>`.
pub fn outbound_cluster(port: u32, subset: &str, host: &str) -> String {
    format!("outbound|{port}|{subset}|{host}")
}

/// Splits an outbound cluster name into (port, subset, host).
pub fn parse_outbound_cluster(name: &str) -> Option<(u32, &str, &str)> {
    let mut it = name.splitn(4, '|');
    if it.next()? != "outbound" {
        return None;
    }
    let port = it.next()?.parse().ok()?;
    let subset = it.next()?;
    let host = it.next()?;
    Some((port, subset, host))
}

/// The inbound capture listener.
pub const VIRTUAL_INBOUND_LISTENER: &str = "virtualInbound";

/// `inbound|<port>||` (Istio's `BuildInboundSubsetKey`): the inbound cluster of a workload
/// port, and the name of its inline route configuration.
pub fn inbound_cluster(port: u32) -> String {
    format!("inbound|{port}||")
}

/// Listener name `<bind>_<port>` (`0.0.0.0_80`, `10.0.0.5_443`, `::_80`).
pub fn listener_name(bind: &str, port: u32) -> String {
    format!("{bind}_{port}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_names_round_trip() {
        let n = outbound_cluster(443, "", "api.example.com");
        assert_eq!(n, "outbound|443||api.example.com");
        assert_eq!(
            parse_outbound_cluster(&n),
            Some((443, "", "api.example.com"))
        );
        assert_eq!(
            parse_outbound_cluster("outbound|80|v1|a.b"),
            Some((80, "v1", "a.b"))
        );
        assert_eq!(parse_outbound_cluster("inbound|80||"), None);
        assert_eq!(listener_name("0.0.0.0", 80), "0.0.0.0_80");
    }
}
