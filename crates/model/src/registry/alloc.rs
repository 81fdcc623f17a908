//! Automatic address allocation for ServiceEntry hosts (spec §3.5).
//!
//! Which entries qualify follows Istio's v2 allocator: resolution other than NONE, no
//! `spec.addresses`, not opted out with the label
//! `networking.istio.io/enable-autoallocate-ip: "false"`; every non-wildcard host (wildcards
//! only for DYNAMIC_DNS) gets one IPv4 address in 240.240.0.0/16 and one IPv6 address in
//! 2001:2::/48.
//!
//! Where the addresses come from differs on purpose. istiod keeps its assignments in the
//! ServiceEntry status; Entryway has no status to write back to, so an address is derived
//! from `namespace/host` (FNV-1a into the 65,534 usable slots, linear probing in key order on
//! collision). The same input always yields the same addresses, across restarts and
//! independent of the order of the files, and adding an entry does not renumber the others
//! unless it collides with them. The same host in two entries of one namespace shares an
//! address, as with Istio's legacy allocator.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Label that opts an entry out of allocation when set to `"false"`.
pub const OPT_OUT_LABEL: &str = "networking.istio.io/enable-autoallocate-ip";

const SLOTS: u32 = 65_534;

fn fnv1a(s: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Slot `n` (1..=65534) as an IPv4 address in 240.240.0.0/16.
pub fn v4(slot: u32) -> Ipv4Addr {
    let b = slot.to_be_bytes();
    Ipv4Addr::new(240, 240, b[2], b[3])
}

/// Slot `n` as an IPv6 address in 2001:2::/48.
pub fn v6(slot: u32) -> Ipv6Addr {
    let hi = u16::try_from(slot >> 16).unwrap_or(0);
    let lo = u16::try_from(slot & 0xffff).unwrap_or(0);
    Ipv6Addr::new(0x2001, 0x2, 0, 0, 0, 0, hi, lo)
}

/// Allocates addresses for `(namespace, host)` keys; keys are de-duplicated.
pub fn allocate<'a>(
    keys: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> BTreeMap<(String, String), Vec<IpAddr>> {
    let keys: BTreeSet<(String, String)> = keys
        .into_iter()
        .map(|(ns, h)| (ns.to_string(), h.to_string()))
        .collect();
    // used[slot] for slots 1..=SLOTS (index 0 unused).
    let mut used = vec![false; SLOTS as usize + 1];
    let mut out = BTreeMap::new();
    for (count, key) in keys.into_iter().enumerate() {
        if count >= SLOTS as usize {
            break; // the range is full: further hosts get no address (istiod logs and skips)
        }
        let mut slot = fnv1a(&format!("{}/{}", key.0, key.1)) % SLOTS + 1;
        while used.get(slot as usize).copied().unwrap_or(true) {
            slot = slot % SLOTS + 1;
        }
        if let Some(u) = used.get_mut(slot as usize) {
            *u = true;
        }
        out.insert(key, vec![IpAddr::V4(v4(slot)), IpAddr::V6(v6(slot))]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_in_range_stable_and_distinct() {
        let a = allocate([("ns", "a.com"), ("ns", "b.com"), ("other", "a.com")]);
        let b = allocate([
            ("other", "a.com"),
            ("ns", "b.com"),
            ("ns", "a.com"),
            ("ns", "a.com"),
        ]);
        assert_eq!(a, b, "independent of order and duplicates");
        assert_eq!(a.len(), 3);
        let mut seen = BTreeSet::new();
        for addrs in a.values() {
            let IpAddr::V4(v) = addrs[0] else {
                panic!("v4 first")
            };
            assert_eq!(&v.octets()[..2], &[240, 240]);
            assert_ne!(v.octets()[2..], [0, 0]);
            assert_ne!(v.octets()[2..], [255, 255]);
            let IpAddr::V6(v6) = addrs[1] else {
                panic!("v6 second")
            };
            assert_eq!(&v6.segments()[..3], &[0x2001, 2, 0]);
            assert!(seen.insert(v));
        }
        // Adding a host does not move the others (no collision here).
        let c = allocate([
            ("ns", "a.com"),
            ("ns", "b.com"),
            ("other", "a.com"),
            ("ns", "c.com"),
        ]);
        for (k, v) in &a {
            assert_eq!(c.get(k), Some(v));
        }
    }

    #[test]
    fn collisions_probe_to_a_free_slot() {
        let keys: Vec<(String, String)> = (0..70_000)
            .map(|i| ("ns".to_string(), format!("h{i}.com")))
            .collect();
        let out = allocate(keys.iter().map(|(a, b)| (a.as_str(), b.as_str())));
        assert_eq!(
            out.len(),
            SLOTS as usize,
            "every slot used once, the rest skipped"
        );
        let distinct: BTreeSet<&IpAddr> = out.values().map(|v| &v[0]).collect();
        assert_eq!(distinct.len(), SLOTS as usize);
    }
}
