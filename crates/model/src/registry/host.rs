//! Host names as Istio compares them (`pkg/config/host`): exact names, `*.suffix`
//! wildcards and the catch-all `*`.

/// True when every name `n` matches is also matched by `o` (`n` ⊆ `o`).
pub fn subset_of(n: &str, o: &str) -> bool {
    if o == "*" {
        return true;
    }
    if n == o {
        return true;
    }
    match o.strip_prefix('*') {
        Some(suffix) => {
            let n_rest = n.strip_prefix('*').unwrap_or(n);
            n_rest.len() > suffix.len() && n_rest.ends_with(suffix)
                || (n.starts_with('*') && n_rest == suffix)
        }
        None => false,
    }
}

/// True when the two names overlap (either is a subset of the other).
pub fn matches(a: &str, b: &str) -> bool {
    subset_of(a, b) || subset_of(b, a)
}

/// True for `*` and `*.suffix` names.
pub fn is_wildcard(h: &str) -> bool {
    h.starts_with('*')
}

/// Istio's `ResolveShortnameToFQDN` for VirtualService and DestinationRule hosts: a name
/// without dots (other than `*`) is a Kubernetes short name in `namespace`.
pub fn resolve_short_name(host: &str, namespace: &str, domain_suffix: &str) -> String {
    if host == "*" || host.contains('.') || namespace.is_empty() {
        return host.to_string();
    }
    format!("{host}.{namespace}.svc.{domain_suffix}")
}

/// Orders matching patterns from most to least specific: an exact name beats any wildcard,
/// a longer wildcard beats a shorter one.
pub fn specificity(pattern: &str) -> (bool, usize) {
    (!is_wildcard(pattern), pattern.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_and_match() {
        assert!(subset_of("a.foo.com", "*.foo.com"));
        assert!(subset_of("*.bar.foo.com", "*.foo.com"));
        assert!(subset_of("*.foo.com", "*.foo.com"));
        assert!(!subset_of("foo.com", "*.foo.com"));
        assert!(!subset_of("*.foo.com", "a.foo.com"));
        assert!(matches("*.foo.com", "a.foo.com"));
        assert!(subset_of("anything", "*"));
        assert!(!subset_of("a.foo.com", "b.foo.com"));
        assert!(!subset_of("xfoo.com", "*.foo.com"));
    }

    #[test]
    fn short_names() {
        assert_eq!(
            resolve_short_name("reviews", "ns", "cluster.local"),
            "reviews.ns.svc.cluster.local"
        );
        assert_eq!(
            resolve_short_name("api.example.com", "ns", "cluster.local"),
            "api.example.com"
        );
        assert_eq!(resolve_short_name("*", "ns", "cluster.local"), "*");
    }

    #[test]
    fn specificity_orders_exact_first() {
        let mut v = vec!["*", "*.foo.com", "a.foo.com", "*.a.foo.com"];
        v.sort_by_key(|p| std::cmp::Reverse(specificity(p)));
        assert_eq!(v, vec!["a.foo.com", "*.a.foo.com", "*.foo.com", "*"]);
    }
}
