//! The capture rules applied to real network namespaces with the system's iptables (nft
//! backend): what `iptables-save` shows while applied, that applying twice leaves one copy,
//! and that removing restores exactly the rules that were there before — in a fresh
//! namespace and in one with rules of its own.
//!
//! Needs root and `ip`, `iptables`, `ip6tables` (apt-get install -y iproute2 iptables).

use entryway_agent::capture::{self, Capture, CaptureConfig, Include};
use entryway_testkit::netns::Netns;

fn full_config() -> CaptureConfig {
    CaptureConfig {
        dns_capture: true,
        ipv6: true,
        exclude_cidrs: vec![
            "192.0.2.0/24".parse().expect("cidr"),
            "2001:db8:1::/48".parse().expect("cidr"),
        ],
        exclude_ports: vec![22],
        include: Include::All,
        ..CaptureConfig::default()
    }
}

fn in_netns(ns: &Netns, f: impl FnOnce() + Send) {
    std::thread::scope(|s| {
        s.spawn(|| {
            ns.enter_current_thread().expect("enter namespace");
            f();
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
    });
}

fn nat_rules(dump: &str) -> Vec<&str> {
    dump.lines().filter(|l| l.starts_with("-A ")).collect()
}

fn check_apply_remove(ns: &Netns) {
    let before = ns.rules_dump().expect("iptables-save before");
    in_netns(ns, || {
        let capture = Capture::apply(&full_config()).expect("apply");
        let during = ns.rules_dump().expect("iptables-save while applied");
        assert_ne!(during, before);
        for want in [
            ":ISTIO_OUTPUT - [0:0]",
            ":ISTIO_REDIRECT - [0:0]",
            ":ISTIO_OUTPUT_DNS - [0:0]",
            "-A OUTPUT -p tcp -j ISTIO_OUTPUT",
            "-A OUTPUT -j ISTIO_OUTPUT_DNS",
            "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001",
            "-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN",
            "-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN",
            "-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN",
            "-A ISTIO_OUTPUT -d ::1/128 -j RETURN",
            "-A ISTIO_OUTPUT -d 192.0.2.0/24 -j RETURN",
            "-A ISTIO_OUTPUT -d 2001:db8:1::/48 -j RETURN",
            "-A ISTIO_OUTPUT -p tcp -m tcp --dport 22 -j RETURN",
            "-A ISTIO_OUTPUT_DNS -p udp -m udp --dport 53 -j REDIRECT --to-ports 15053",
            "-A ISTIO_OUTPUT_DNS -p tcp -m tcp --dport 53 -j REDIRECT --to-ports 15053",
            "-A ISTIO_OUTPUT -j ISTIO_REDIRECT",
        ] {
            assert!(during.contains(want), "missing {want:?} in\n{during}");
        }
        // The rule sets both families got: every built rule appears, each exactly once.
        let added = nat_rules(&during).len() - nat_rules(&before).len();
        let built: usize = capture::build(&full_config())
            .expect("build")
            .iter()
            .map(|s| s.rules.len())
            .sum();
        assert_eq!(added, built, "{during}");

        // Applying again replaces, not duplicates.
        capture::apply(&full_config()).expect("apply again");
        assert_eq!(ns.rules_dump().expect("iptables-save"), during);

        capture.remove().expect("remove");
        let after = ns.rules_dump().expect("iptables-save after");
        assert_eq!(after, before, "rules after removal differ from before");

        // Removing when nothing is applied is fine and changes nothing.
        capture::remove().expect("remove again");
        assert_eq!(ns.rules_dump().expect("iptables-save"), before);
    });
}

#[test]
fn removal_restores_a_fresh_namespace_exactly() {
    let ns = Netns::create().expect("create network namespace");
    let before = ns.rules_dump().expect("iptables-save");
    assert!(
        !before.contains("*nat"),
        "fresh namespace has no nat table:\n{before}"
    );
    check_apply_remove(&ns);
}

#[test]
fn removal_keeps_rules_of_others() {
    let ns = Netns::create().expect("create network namespace");
    // Rules someone else set: in nat OUTPUT (before and after where ours go), a chain of
    // their own, and the filter table.
    for args in [
        &[
            "-t",
            "nat",
            "-A",
            "OUTPUT",
            "-d",
            "198.51.100.7/32",
            "-j",
            "RETURN",
        ][..],
        &["-t", "nat", "-N", "OTHER_CHAIN"],
        &[
            "-t",
            "nat",
            "-A",
            "OTHER_CHAIN",
            "-p",
            "udp",
            "-j",
            "RETURN",
        ],
        &["-t", "nat", "-A", "OUTPUT", "-j", "OTHER_CHAIN"],
        &["-A", "OUTPUT", "-p", "tcp", "--dport", "9", "-j", "DROP"],
    ] {
        ns.iptables(args).expect("set a rule of another tool");
    }
    ns.exec(
        "ip6tables",
        &[
            "-t",
            "nat",
            "-A",
            "OUTPUT",
            "-d",
            "2001:db8::7",
            "-j",
            "RETURN",
        ],
    )
    .expect("ip6tables rule");
    check_apply_remove(&ns);
    let after = ns.rules_dump().expect("iptables-save");
    assert!(after.contains("-A OUTPUT -j OTHER_CHAIN"), "{after}");
    assert!(
        after.contains("-A OUTPUT -d 2001:db8::7/128 -j RETURN"),
        "{after}"
    );
}

#[test]
fn dropping_the_guard_removes_the_rules() {
    let ns = Netns::create().expect("create network namespace");
    let before = ns.rules_dump().expect("iptables-save");
    in_netns(&ns, || {
        let capture = Capture::apply(&CaptureConfig::default()).expect("apply");
        let during = ns.rules_dump().expect("iptables-save");
        assert!(
            during.contains("-A OUTPUT -p tcp -j ISTIO_OUTPUT"),
            "{during}"
        );
        drop(capture);
        assert_eq!(ns.rules_dump().expect("iptables-save"), before);
    });
}
