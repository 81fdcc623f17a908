//! PeerAuthentication validation: the CRD's CEL rules and Istio's Go
//! `ValidatePeerAuthentication` (`pkg/config/validation`), with Istio's messages.

use crate::api;
use crate::diag::{FieldPath, Report};
use crate::validate::Context;
use crate::validate::common::check_selector_labels;

/// Validates a PeerAuthentication spec.
pub fn validate(spec: &api::PeerAuthentication, _ctx: &Context<'_>, report: &mut Report) {
    let root = FieldPath::root("spec");
    if let Some(sel) = &spec.selector {
        let p = root.field("selector");
        check_selector_labels(&sel.match_labels, &p.field("matchLabels"), report);
    }
    let Some(ports) = &spec.port_level_mtls else {
        return;
    };
    let p = root.field("portLevelMtls");
    if !spec.has_selector() {
        report.error(
            &p,
            "mesh/namespace peer authentication cannot have port level mTLS",
        );
    }
    if ports.is_empty() {
        report.error(
            &p,
            "port level mTLS, if defined, must have at least one element",
        );
    }
    for port in ports.keys() {
        if *port == 0 || *port > 65535 {
            report.error(p.key(&port.to_string()), "port must be in range 1..65535");
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::check::check_text;
    use crate::decode::Format;

    fn errors(yaml: &str) -> Vec<String> {
        let checked = check_text(yaml, Format::Yaml, "default", &Default::default()).expect("yaml");
        checked
            .iter()
            .flat_map(|d| {
                d.report
                    .errors
                    .iter()
                    .map(|e| format!("{}: {}", e.path, e.message))
            })
            .collect()
    }

    #[test]
    fn istios_rules_and_messages() {
        let head = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: p, namespace: shop}\nspec:\n";
        assert!(errors(&format!("{head}  mtls: {{mode: STRICT}}\n")).is_empty());
        assert!(
            errors(&format!(
                "{head}  selector: {{matchLabels: {{app: b}}}}\n  portLevelMtls:\n    8080: {{mode: DISABLE}}\n"
            ))
            .is_empty()
        );
        assert_eq!(
            errors(&format!(
                "{head}  portLevelMtls:\n    8080: {{mode: DISABLE}}\n"
            )),
            vec![
                "spec.portLevelMtls: mesh/namespace peer authentication cannot have port level mTLS"
            ]
        );
        assert_eq!(
            errors(&format!(
                "{head}  selector: {{matchLabels: {{app: b}}}}\n  portLevelMtls: {{}}\n"
            )),
            vec!["spec.portLevelMtls: port level mTLS, if defined, must have at least one element"]
        );
        assert_eq!(
            errors(&format!(
                "{head}  selector: {{matchLabels: {{app: b}}}}\n  portLevelMtls:\n    0: {{mode: STRICT}}\n"
            )),
            vec!["spec.portLevelMtls[0]: port must be in range 1..65535"]
        );
        assert_eq!(
            errors(&format!(
                "{head}  selector: {{matchLabels: {{app: '*'}}}}\n"
            )),
            vec![
                "spec.selector.matchLabels[app]: wildcard is not supported in selector: \"app=*\""
            ]
        );
        let bad_mode = errors(&format!("{head}  mtls: {{mode: BLAH}}\n"));
        assert_eq!(bad_mode.len(), 1, "{bad_mode:?}");
        assert!(bad_mode[0].contains("BLAH"), "{bad_mode:?}");
        // The networking group is not where PeerAuthentication lives.
        let wrong = errors(
            "apiVersion: security.istio.io/v1alpha1\nkind: PeerAuthentication\nmetadata: {name: p}\nspec: {}\n",
        );
        assert_eq!(wrong.len(), 1, "{wrong:?}");
        assert!(wrong[0].contains("security.istio.io/v1\""), "{wrong:?}");
    }
}
