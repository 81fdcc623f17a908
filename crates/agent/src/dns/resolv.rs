//! The parts of resolv.conf the DNS proxy uses: `nameserver` lines (port 53) and the
//! `search` list (`domain` when there is no `search`, as glibc does).

use std::net::{IpAddr, SocketAddr};

/// Parsed resolv.conf.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    /// Upstream resolvers.
    pub nameservers: Vec<SocketAddr>,
    /// Search domains, in order.
    pub search: Vec<String>,
}

/// Parses resolv.conf text. Unknown lines and bad addresses are skipped.
pub fn parse(text: &str) -> ResolvConf {
    let mut out = ResolvConf::default();
    let mut domain: Option<String> = None;
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                // `fe80::1%eth0` zones are not supported by std's parser: skipped.
                if let Some(ip) = words.next().and_then(|w| w.parse::<IpAddr>().ok()) {
                    out.nameservers.push(SocketAddr::new(ip, 53));
                }
            }
            Some("search") => {
                out.search = words.map(|w| w.trim_end_matches('.').to_string()).collect();
            }
            Some("domain") => domain = words.next().map(|w| w.trim_end_matches('.').to_string()),
            _ => {}
        }
    }
    if out.search.is_empty()
        && let Some(d) = domain
    {
        out.search.push(d);
    }
    out
}

/// Reads and parses `path`.
pub fn read(path: &std::path::Path) -> std::io::Result<ResolvConf> {
    Ok(parse(&std::fs::read_to_string(path)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nameservers_and_search() {
        let c = parse(
            "# comment\nnameserver 10.96.0.10\nnameserver ::1\nnameserver bogus\nsearch ns1.svc.cluster.local svc.cluster.local cluster.local.\noptions ndots:5\n",
        );
        assert_eq!(
            c.nameservers,
            vec![
                "10.96.0.10:53".parse().expect("addr"),
                "[::1]:53".parse().expect("addr")
            ]
        );
        assert_eq!(
            c.search,
            vec![
                "ns1.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local"
            ]
        );
        assert_eq!(parse("domain example.org\n").search, vec!["example.org"]);
        assert_eq!(parse(""), ResolvConf::default());
    }
}
