//! Istio's certificate API (`security/v1alpha1/ca.proto` in istio/api, package
//! `istio.v1.auth`), written by hand with Istio's field numbers so that Istio's agent can ask
//! Entryway's CA and Entryway's agent could ask istiod.
//!
//! `IstioCertificateRequest.metadata` (field 4, a `google.protobuf.Struct` Istio uses for
//! impersonation by trusted node agents) is not declared: Entryway's CA signs only for the
//! caller's own identity, and prost skips the field when a peer sends it.

/// Full gRPC service name.
pub const SERVICE: &str = "istio.v1.auth.IstioCertificateService";
/// Path of the one method.
pub const CREATE_CERTIFICATE_PATH: &str =
    "/istio.v1.auth.IstioCertificateService/CreateCertificate";

/// A certificate signing request.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct IstioCertificateRequest {
    /// PEM-encoded PKCS#10 CSR.
    #[prost(string, tag = "1")]
    pub csr: String,
    /// Requested lifetime in seconds (the CA may shorten it; 0 = the CA's default).
    #[prost(int64, tag = "3")]
    pub validity_duration: i64,
}

/// The signed certificate.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct IstioCertificateResponse {
    /// PEM certificates: the workload certificate first, then intermediates, the root last
    /// (Istio's order).
    #[prost(string, repeated, tag = "1")]
    pub cert_chain: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn field_numbers_are_istios() {
        let req = IstioCertificateRequest {
            csr: "C".into(),
            validity_duration: 5,
        };
        // field 1 LEN "C", field 3 varint 5
        assert_eq!(req.encode_to_vec(), vec![0x0a, 1, b'C', 0x18, 5]);
        let resp = IstioCertificateResponse {
            cert_chain: vec!["a".into(), "b".into()],
        };
        assert_eq!(resp.encode_to_vec(), vec![0x0a, 1, b'a', 0x0a, 1, b'b']);
        // Istio's metadata field (4, a Struct) is skipped, not an error.
        let with_metadata = [0x0a, 1, b'C', 0x22, 0];
        assert_eq!(
            IstioCertificateRequest::decode(&with_metadata[..]).map(|r| r.csr),
            Ok("C".to_string())
        );
    }
}
