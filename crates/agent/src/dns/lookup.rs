//! The agent-side lookup table built from a [`NameTable`] (Istio's `LookupTable` rules,
//! spec §8):
//!
//! - External entries are stored as `host.`; Kubernetes entries also as `name.ns.`,
//!   `name.ns.<first proxy-domain label>.` and, for the proxy's own namespace, `name.`.
//! - Each stored name `h` also gets `h.<first search domain>.` as a CNAME to `h`, so the
//!   first query of a resolver walking its search list is answered at once (CNAME + A).
//! - A name not found is tried as `*.<parent>` for each shorter parent.
//! - A known name with no record of the asked family answers NOERROR with no records; query
//!   types other than A/AAAA are not answered here (forwarded).
//!
//! All answers are built once when the table changes; a query only clones records.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::nds::NameTable;

/// TTL of every local answer (Istio's `defaultTTLInSeconds`).
pub const TTL: u32 = 30;

const KUBERNETES: &str = "Kubernetes";

/// Settings that shape the table besides the name table itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LookupSettings {
    /// The proxy's namespace (short names only for it).
    pub proxy_namespace: String,
    /// The proxy's DNS domain, e.g. `ns.svc.cluster.local` (a leading namespace label is
    /// dropped, as Istio does).
    pub proxy_domain: String,
    /// resolv.conf search domains; only the first one is used for CNAME short-cuts.
    pub search: Vec<String>,
}

#[derive(Debug, Clone)]
struct CnameEntry {
    record: Record,
    target: String,
}

/// The lookup table.
#[derive(Debug, Default)]
pub struct LookupTable {
    all_hosts: BTreeSet<String>,
    name4: HashMap<String, Vec<Record>>,
    name6: HashMap<String, Vec<Record>>,
    cname: HashMap<String, CnameEntry>,
}

/// The result of a lookup.
#[derive(Debug, PartialEq)]
pub enum Answer {
    /// Not ours (or not an A/AAAA query): forward upstream.
    NotFound,
    /// Ours: NOERROR with these records (possibly none).
    Records(Vec<Record>),
}

fn fqdn(h: &str) -> String {
    let mut s = h.to_ascii_lowercase();
    if !s.ends_with('.') {
        s.push('.');
    }
    s
}

fn name(s: &str) -> Option<Name> {
    Name::from_ascii(s).ok()
}

fn alt_hosts(
    hostname: &str,
    info: &crate::nds::NameInfo,
    settings: &LookupSettings,
    domain: &str,
    domain_parts: &[&str],
) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    out.insert(fqdn(hostname));
    if info.registry != KUBERNETES {
        return out;
    }
    if domain.is_empty() || !hostname.ends_with(domain) {
        return out;
    }
    let (short, ns) = (&info.shortname, &info.namespace);
    out.insert(fqdn(&format!("{short}.{ns}")));
    if settings.proxy_namespace == *ns {
        out.insert(fqdn(short));
    }
    if let Some(first) = domain_parts.first() {
        out.insert(fqdn(&format!("{short}.{ns}.{first}")));
    }
    for alt in &info.alt_hosts {
        out.insert(fqdn(alt));
    }
    out
}

impl LookupTable {
    /// Builds the table for `nt` with `settings`.
    pub fn build(nt: &NameTable, settings: &LookupSettings) -> LookupTable {
        let mut parts: Vec<&str> = settings
            .proxy_domain
            .split('.')
            .filter(|p| !p.is_empty())
            .collect();
        if parts.first() == Some(&settings.proxy_namespace.as_str()) {
            parts.remove(0);
        }
        let domain = parts.join(".");
        let search = settings.search.first().map(|s| fqdn(s));
        let mut t = LookupTable::default();
        for (hostname, info) in &nt.table {
            let hosts = alt_hosts(hostname, info, settings, &domain, &parts);
            let ips: Vec<IpAddr> = info.ips.iter().filter_map(|i| i.parse().ok()).collect();
            if ips.is_empty() {
                continue; // malformed IPs
            }
            for h in &hosts {
                let Some(owner) = name(h) else {
                    continue;
                };
                t.all_hosts.insert(h.clone());
                let v4: Vec<Record> = ips
                    .iter()
                    .filter_map(|ip| match ip {
                        IpAddr::V4(a) => {
                            Some(Record::from_rdata(owner.clone(), TTL, RData::A(A(*a))))
                        }
                        IpAddr::V6(_) => None,
                    })
                    .collect();
                let v6: Vec<Record> = ips
                    .iter()
                    .filter_map(|ip| match ip {
                        IpAddr::V6(a) => Some(Record::from_rdata(
                            owner.clone(),
                            TTL,
                            RData::AAAA(AAAA(*a)),
                        )),
                        IpAddr::V4(_) => None,
                    })
                    .collect();
                if !v4.is_empty() {
                    t.name4.insert(h.clone(), v4);
                }
                if !v6.is_empty() {
                    t.name6.insert(h.clone(), v6);
                }
                if let Some(search) = &search {
                    let expanded = format!("{h}{search}");
                    if !hosts.contains(&expanded)
                        && let Some(ename) = name(&expanded)
                    {
                        t.cname.insert(
                            expanded.clone(),
                            CnameEntry {
                                record: Record::from_rdata(
                                    ename,
                                    TTL,
                                    RData::CNAME(CNAME(owner.clone())),
                                ),
                                target: h.clone(),
                            },
                        );
                        t.all_hosts.insert(expanded);
                    }
                }
            }
        }
        t
    }

    /// Number of names answered (stored names and their search-domain variants).
    pub fn len(&self) -> usize {
        self.all_hosts.len()
    }

    /// True when no name is answered.
    pub fn is_empty(&self) -> bool {
        self.all_hosts.is_empty()
    }

    /// Answers `qtype` for `qname` (lower case, with the trailing dot).
    pub fn lookup(&self, qtype: RecordType, qname: &str) -> Answer {
        let mut host: &str = qname;
        let wildcard_key: String;
        let mut wildcard = false;
        if !self.all_hosts.contains(host) {
            let labels: Vec<&str> = qname.trim_end_matches('.').split('.').collect();
            let found = (0..labels.len()).find_map(|i| {
                let candidate = format!("*.{}.", labels[i + 1..].join("."));
                self.all_hosts.contains(&candidate).then_some(candidate)
            });
            match found {
                Some(k) => {
                    wildcard_key = k;
                    host = &wildcard_key;
                    wildcard = true;
                }
                None => return Answer::NotFound,
            }
        }
        let question = name(qname);
        let mut out: Vec<Record> = Vec::new();
        if let Some(cn) = self.cname.get(host) {
            let mut r = cn.record.clone();
            if let Some(q) = &question {
                r.set_name(q.clone());
            }
            out.push(r);
            host = &cn.target;
        }
        let ips = match qtype {
            RecordType::A => self.name4.get(host),
            RecordType::AAAA => self.name6.get(host),
            _ => return Answer::NotFound,
        };
        let Some(ips) = ips.filter(|v| !v.is_empty()) else {
            return Answer::Records(Vec::new());
        };
        if wildcard && out.is_empty() {
            // Expand the wildcard to the name asked for.
            for r in ips {
                let mut r = r.clone();
                if let Some(q) = &question {
                    r.set_name(q.clone());
                }
                out.push(r);
            }
        } else {
            // Plain name, or a CNAME chain whose target (possibly `*.parent.`) owns the records.
            out.extend(ips.iter().cloned());
        }
        Answer::Records(out)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::nds::NameInfo;

    fn info(ips: &[&str], registry: &str, short: &str, ns: &str) -> NameInfo {
        NameInfo {
            ips: ips.iter().map(|s| s.to_string()).collect(),
            registry: registry.into(),
            shortname: short.into(),
            namespace: ns.into(),
            alt_hosts: Vec::new(),
        }
    }

    /// Istio's `pkg/dns/client` test table.
    fn table() -> LookupTable {
        let mut t = BTreeMap::new();
        t.insert(
            "www.google.com".into(),
            info(&["1.1.1.1"], "External", "", ""),
        );
        t.insert(
            "productpage.ns1.svc.cluster.local".into(),
            info(&["9.9.9.9"], KUBERNETES, "productpage", "ns1"),
        );
        t.insert(
            "example.ns2.svc.cluster.local".into(),
            info(&["10.10.10.10"], KUBERNETES, "example", "ns2"),
        );
        t.insert(
            "details.ns2.svc.cluster.remote".into(),
            info(&["11.11.11.11"], KUBERNETES, "details", "ns2"),
        );
        t.insert(
            "dual.localhost".into(),
            info(&["2.2.2.2", "2001:db8::ff00:42:8329"], "External", "", ""),
        );
        t.insert(
            "ipv4.localhost".into(),
            info(&["2.2.2.2"], "External", "", ""),
        );
        t.insert(
            "*.wildcard".into(),
            info(&["10.10.10.10"], "External", "", ""),
        );
        t.insert(
            "*.b.wildcard".into(),
            info(&["11.11.11.11"], "External", "", ""),
        );
        t.insert("bad.ips".into(), info(&["not-an-ip"], "External", "", ""));
        LookupTable::build(
            &NameTable {
                table: t,
                name_info: None,
            },
            &LookupSettings {
                proxy_namespace: "ns1".into(),
                proxy_domain: "ns1.svc.cluster.local".into(),
                search: vec![
                    "ns1.svc.cluster.local".into(),
                    "svc.cluster.local".into(),
                    "cluster.local".into(),
                ],
            },
        )
    }

    fn show(a: &Answer) -> Vec<String> {
        match a {
            Answer::NotFound => vec!["<forward>".into()],
            Answer::Records(rs) => rs
                .iter()
                .map(|r| format!("{} {} {} {}", r.name(), r.ttl(), r.record_type(), r.data()))
                .collect(),
        }
    }

    #[test]
    fn istio_client_cases() {
        let t = table();
        let a = |n: &str| show(&t.lookup(RecordType::A, n));
        let aaaa = |n: &str| show(&t.lookup(RecordType::AAAA, n));
        assert_eq!(a("www.google.com."), vec!["www.google.com. 30 A 1.1.1.1"]);
        assert_eq!(
            a("www.google.com.ns1.svc.cluster.local."),
            vec![
                "www.google.com.ns1.svc.cluster.local. 30 CNAME www.google.com.",
                "www.google.com. 30 A 1.1.1.1"
            ]
        );
        assert_eq!(a("www.bing.com."), vec!["<forward>"]);
        assert_eq!(
            a("productpage.ns1.svc.cluster.local."),
            vec!["productpage.ns1.svc.cluster.local. 30 A 9.9.9.9"]
        );
        assert_eq!(a("productpage.ns1."), vec!["productpage.ns1. 30 A 9.9.9.9"]);
        assert_eq!(a("productpage."), vec!["productpage. 30 A 9.9.9.9"]);
        assert_eq!(
            a("productpage.ns1.ns1.svc.cluster.local."),
            vec![
                "productpage.ns1.ns1.svc.cluster.local. 30 CNAME productpage.ns1.",
                "productpage.ns1. 30 A 9.9.9.9"
            ]
        );
        // AAAA for an IPv4-only name: NOERROR, nothing (the CNAME is dropped too).
        assert!(aaaa("productpage.ns1.ns1.svc.cluster.local.").is_empty());
        assert_eq!(a("example.ns2."), vec!["example.ns2. 30 A 10.10.10.10"]);
        assert_eq!(
            a("example.ns2.svc."),
            vec!["example.ns2.svc. 30 A 10.10.10.10"]
        );
        // Short names only for the proxy's namespace; other domains get no variants.
        assert_eq!(a("example."), vec!["<forward>"]);
        assert_eq!(a("details.ns2."), vec!["<forward>"]);
        assert_eq!(a("dual.localhost."), vec!["dual.localhost. 30 A 2.2.2.2"]);
        assert_eq!(
            aaaa("dual.localhost."),
            vec!["dual.localhost. 30 AAAA 2001:db8::ff00:42:8329"]
        );
        assert!(a("ipv6.localhost.").contains(&"<forward>".to_string()));
        assert!(aaaa("ipv4.localhost.").is_empty());
        assert_eq!(a("foo.wildcard."), vec!["foo.wildcard. 30 A 10.10.10.10"]);
        assert_eq!(a("a.b.wildcard."), vec!["a.b.wildcard. 30 A 11.11.11.11"]);
        // A wildcard through the search-domain CNAME: the A record keeps `*.wildcard.`.
        assert_eq!(
            a("foo.wildcard.ns1.svc.cluster.local."),
            vec![
                "foo.wildcard.ns1.svc.cluster.local. 30 CNAME *.wildcard.",
                "*.wildcard. 30 A 10.10.10.10"
            ]
        );
        // Other types for a local name are forwarded.
        assert_eq!(
            show(&t.lookup(RecordType::TXT, "www.google.com.")),
            vec!["<forward>"]
        );
        assert_eq!(a("bad.ips."), vec!["<forward>"]);
    }
}
