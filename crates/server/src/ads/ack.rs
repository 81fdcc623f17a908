//! ACK/NACK classification of incoming discovery requests: pure functions of the request and
//! what this stream last sent for the request's type.
//!
//! The rules are xDS's ("ACK and NACK semantics" in the xDS protocol doc) and Istio's
//! `ShouldRespond` (`pilot/pkg/xds/ads.go`, `delta.go`):
//!
//! - a request answers the response whose nonce it carries; only the **latest** nonce sent for
//!   the type counts. Envoy does send requests with older nonces (envoy-xds-notes pitfall 2);
//!   they are stale and change nothing;
//! - matching nonce without `error_detail` = ACK, with `error_detail` = NACK;
//! - SotW: the first request of a type on a stream, or any request without a nonce, asks for
//!   the current state (initial request; after a control-plane restart Envoy sends its last
//!   `version_info` with an empty nonce);
//! - Delta: the first request of a type is the initial one (it may carry
//!   `initial_resource_versions`); later requests without a nonce only change the
//!   subscription.

use envoy_types::pb::google::rpc::Status as RpcStatus;

/// What a state-of-the-world request means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SotwRequest {
    /// First request for the type on this stream, or a request without a nonce: answer it
    /// with the current state.
    Initial,
    /// The latest response was accepted.
    Ack,
    /// The latest response was rejected, with Envoy's error message.
    Nack(String),
    /// Answers an older response: ignored entirely.
    Stale,
}

/// What an incremental (Delta) request means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeltaRequest {
    /// First request for the type on this stream.
    Initial,
    /// No nonce: a subscription change only.
    Subscription,
    /// The latest response was accepted.
    Ack,
    /// The latest response was rejected, with Envoy's error message.
    Nack(String),
    /// Answers an older response: its ACK/NACK is ignored (its subscription changes still
    /// apply, since Delta subscriptions are deltas and dropping one would lose it).
    Stale,
}

/// Classifies a SotW request. `latest_nonce` is the nonce of the last response sent for the
/// request's type on this stream (`None` if nothing was sent yet).
pub fn classify_sotw(
    latest_nonce: Option<&str>,
    response_nonce: &str,
    error_detail: Option<&RpcStatus>,
) -> SotwRequest {
    let Some(latest) = latest_nonce else {
        return SotwRequest::Initial;
    };
    if response_nonce.is_empty() {
        return SotwRequest::Initial;
    }
    if response_nonce != latest {
        return SotwRequest::Stale;
    }
    match error_detail {
        Some(e) => SotwRequest::Nack(nack_message(e)),
        None => SotwRequest::Ack,
    }
}

/// Classifies a Delta request. `first` is true when no request of this type came before on
/// the stream; `latest_nonce` as for [`classify_sotw`].
pub fn classify_delta(
    first: bool,
    latest_nonce: Option<&str>,
    response_nonce: &str,
    error_detail: Option<&RpcStatus>,
) -> DeltaRequest {
    if first {
        return DeltaRequest::Initial;
    }
    if response_nonce.is_empty() {
        return DeltaRequest::Subscription;
    }
    if latest_nonce != Some(response_nonce) {
        return DeltaRequest::Stale;
    }
    match error_detail {
        Some(e) => DeltaRequest::Nack(nack_message(e)),
        None => DeltaRequest::Ack,
    }
}

fn nack_message(e: &RpcStatus) -> String {
    if e.message.is_empty() {
        format!("rejected (code {})", e.code)
    } else {
        e.message.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(msg: &str) -> RpcStatus {
        RpcStatus {
            code: 13,
            message: msg.to_string(),
            ..Default::default()
        }
    }

    /// (what, latest nonce sent, request nonce, error detail, expected).
    type SotwCase<'a> = (
        &'a str,
        Option<&'a str>,
        &'a str,
        Option<&'a RpcStatus>,
        SotwRequest,
    );
    /// (what, first request, latest nonce sent, request nonce, error detail, expected).
    type DeltaCase<'a> = (
        &'a str,
        bool,
        Option<&'a str>,
        &'a str,
        Option<&'a RpcStatus>,
        DeltaRequest,
    );

    #[test]
    fn sotw_table() {
        let bad = err("duplicate domain");
        let cases: &[SotwCase] = &[
            ("first request", None, "", None, SotwRequest::Initial),
            // A reconnecting Envoy may present a nonce this stream never sent.
            (
                "first request with a foreign nonce",
                None,
                "7",
                None,
                SotwRequest::Initial,
            ),
            (
                "empty nonce after a response",
                Some("3"),
                "",
                None,
                SotwRequest::Initial,
            ),
            ("ack of the latest", Some("3"), "3", None, SotwRequest::Ack),
            (
                "nack of the latest",
                Some("3"),
                "3",
                Some(&bad),
                SotwRequest::Nack("duplicate domain".into()),
            ),
            (
                "ack of an older response",
                Some("6"),
                "3",
                None,
                SotwRequest::Stale,
            ),
            (
                "nack of an older response",
                Some("6"),
                "3",
                Some(&bad),
                SotwRequest::Stale,
            ),
        ];
        for (what, latest, nonce, error, want) in cases {
            assert_eq!(&classify_sotw(*latest, nonce, *error), want, "{what}");
        }
    }

    #[test]
    fn delta_table() {
        let bad = err("");
        let cases: &[DeltaCase] = &[
            ("first request", true, None, "", None, DeltaRequest::Initial),
            (
                "first request with a nonce",
                true,
                None,
                "9",
                None,
                DeltaRequest::Initial,
            ),
            (
                "subscription change",
                false,
                Some("3"),
                "",
                None,
                DeltaRequest::Subscription,
            ),
            (
                "subscription change before any response",
                false,
                None,
                "",
                None,
                DeltaRequest::Subscription,
            ),
            (
                "ack of the latest",
                false,
                Some("3"),
                "3",
                None,
                DeltaRequest::Ack,
            ),
            (
                "nack of the latest, message defaulted",
                false,
                Some("3"),
                "3",
                Some(&bad),
                DeltaRequest::Nack("rejected (code 13)".into()),
            ),
            (
                "ack of an older response",
                false,
                Some("6"),
                "3",
                None,
                DeltaRequest::Stale,
            ),
            (
                "nonce never sent",
                false,
                None,
                "3",
                None,
                DeltaRequest::Stale,
            ),
        ];
        for (what, first, latest, nonce, error, want) in cases {
            assert_eq!(
                &classify_delta(*first, *latest, nonce, *error),
                want,
                "{what}"
            );
        }
    }
}
