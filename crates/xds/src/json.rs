//! Canonical proto3 JSON for `envoy-types` messages, printed the way Envoy's admin
//! `/config_dump` prints them.
//!
//! `envoy-types` has no serde support, so the mapping works by reflection: the message is
//! encoded with prost, decoded as a [`DynamicMessage`] against the descriptor set that
//! `envoy-types` was generated from, and serialised with `prost-reflect`.
//!
//! The output follows protobuf's JSON mapping with the options Envoy's admin uses
//! (`MessageUtil::getJsonStringFromMessage`, `preserve_proto_field_names = true`):
//!
//! - field names are the proto names (`connect_timeout`, `lb_policy`), not lowerCamelCase;
//! - fields holding their default value are omitted;
//! - enums are printed by name (`"EDS"`), durations as `"10s"`, wrapper types as plain values,
//!   64-bit integers as strings;
//! - `google.protobuf.Any` is expanded in place with an `"@type"` key.
//!
//! Envoy prints fields in field-number order; [`to_json_value`] returns a [`serde_json::Value`]
//! whose object keys are sorted (see [`sort_keys`]), which is what golden files want.
//!
//! # The bundled descriptor set
//!
//! `envoy-types` ships its `FileDescriptorSet` (`src/generated/types.bin`, 3.3 MB) but does
//! not export it. `src/envoy_types_descriptor.bin.gz` is that file for **envoy-types 0.7.7**
//! with `source_code_info` (comments) removed and gzip applied (146 KB). The data is generated
//! from the Envoy, xDS, googleapis, CEL, OpenTelemetry and protoc-gen-validate protos, all
//! Apache-2.0, as is envoy-types itself.
//!
//! When the `envoy-types` version changes, regenerate it (the test
//! `bundled_descriptor_matches_locked_envoy_types` fails until you do):
//!
//! ```text
//! cargo run -p entryway-xds --example regen_descriptor -- \
//!   ~/.cargo/registry/src/index.crates.io-*/envoy-types-<ver>/src/generated/types.bin
//! ```
//!
//! A descriptor set older than the Rust types would lose the new fields; [`to_json_value`]
//! therefore fails with [`JsonError::UnknownFields`] instead of dropping data silently.

use std::io::Read;
use std::sync::LazyLock;

use envoy_types::pb::google::protobuf::Any;
use prost::{Message, Name};
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor, ReflectMessage,
    SerializeOptions, Value,
};
use serde_json::Value as JsonValue;

/// The gzip-compressed `FileDescriptorSet` of envoy-types 0.7.7, without source info.
const DESCRIPTOR_SET_GZ: &[u8] = include_bytes!("envoy_types_descriptor.bin.gz");

/// The `envoy-types` version the bundled descriptor set was generated from.
pub const DESCRIPTOR_SET_ENVOY_TYPES_VERSION: &str = "0.7.7";

/// Errors of the JSON mapping.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// The message type (or the `@type` of an `Any`) is not in the descriptor pool.
    #[error("message type {0:?} is not in the envoy-types descriptor pool")]
    UnknownType(String),
    /// An `Any` type URL has no `/`.
    #[error("invalid Any type URL {0:?}")]
    InvalidTypeUrl(String),
    /// Protobuf bytes did not decode as the declared type.
    #[error("decoding {type_name} from protobuf: {source}")]
    Decode {
        /// Full protobuf name of the type being decoded.
        type_name: String,
        /// The underlying error.
        source: prost::DecodeError,
    },
    /// The message carries fields the descriptor set does not know: the bundled descriptor set
    /// is older than the `envoy-types` Rust types.
    #[error(
        "{type_name} has field numbers {numbers:?} unknown to the bundled descriptor set \
         (regenerate crates/xds/src/envoy_types_descriptor.bin.gz)"
    )]
    UnknownFields {
        /// Full protobuf name of the message holding the unknown fields.
        type_name: String,
        /// The unknown field numbers.
        numbers: Vec<u32>,
    },
    /// Serialising to JSON failed (for example a duration out of range).
    #[error("serialising {type_name} to JSON: {source}")]
    Serialize {
        /// Full protobuf name of the type being serialised.
        type_name: String,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// The JSON does not describe a valid message of the requested type.
    #[error("parsing {type_name} from JSON: {source}")]
    Deserialize {
        /// Full protobuf name of the requested type.
        type_name: String,
        /// The underlying error.
        source: serde_json::Error,
    },
}

/// Every protobuf type in `envoy-types` (plus the well-known types), decoded from the bundled
/// descriptor set on first use.
pub static DESCRIPTOR_POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    // The bytes are a compile-time constant checked by the `pool_builds` test; failing here is
    // a build defect, not an input error.
    let mut raw = Vec::with_capacity(700 * 1024);
    flate2::read::GzDecoder::new(DESCRIPTOR_SET_GZ)
        .read_to_end(&mut raw)
        .expect("bundled envoy-types descriptor set is valid gzip");
    DescriptorPool::decode(raw.as_slice())
        .expect("bundled envoy-types descriptor set is a valid FileDescriptorSet")
});

/// [`DESCRIPTOR_POOL`], as a plain reference.
pub fn descriptor_pool() -> &'static DescriptorPool {
    &DESCRIPTOR_POOL
}

/// Serialisation options matching Envoy's admin output.
const SERIALIZE: SerializeOptions = SerializeOptions::new()
    .use_proto_field_name(true)
    .skip_default_fields(true)
    .stringify_64_bit_integers(true)
    .use_enum_numbers(false);

/// Looks up a message type by full protobuf name (`envoy.config.cluster.v3.Cluster`).
pub fn message_descriptor(full_name: &str) -> Result<MessageDescriptor, JsonError> {
    descriptor_pool()
        .get_message_by_name(full_name)
        .ok_or_else(|| JsonError::UnknownType(full_name.to_owned()))
}

/// The message name of a type URL (`type.googleapis.com/envoy.config.cluster.v3.Cluster` →
/// `envoy.config.cluster.v3.Cluster`).
pub fn type_url_message_name(type_url: &str) -> Result<&str, JsonError> {
    match type_url.rsplit_once('/') {
        Some((_, name)) if !name.is_empty() => Ok(name),
        _ => Err(JsonError::InvalidTypeUrl(type_url.to_owned())),
    }
}

/// Decodes protobuf bytes of the named type and renders them as canonical JSON.
pub fn bytes_to_json(full_name: &str, bytes: &[u8]) -> Result<JsonValue, JsonError> {
    let desc = message_descriptor(full_name)?;
    let dynamic = DynamicMessage::decode(desc, bytes).map_err(|source| JsonError::Decode {
        type_name: full_name.to_owned(),
        source,
    })?;
    dynamic_to_json(&dynamic)
}

/// Renders an `envoy-types` message as canonical proto3 JSON with proto field names, as
/// Envoy's `/config_dump` prints it. Object keys are sorted.
pub fn to_json_value<M: Message + Name>(msg: &M) -> Result<JsonValue, JsonError> {
    bytes_to_json(&M::full_name(), &msg.encode_to_vec())
}

/// Renders an `Any` as JSON: the packed message's fields plus `"@type"` (for well-known types,
/// `"@type"` plus `"value"`, per the proto3 JSON mapping).
pub fn any_to_json(any: &Any) -> Result<JsonValue, JsonError> {
    // Serialising the Any itself (rather than its payload) makes prost-reflect produce the
    // canonical `@type` form, including the special case for well-known types.
    bytes_to_json(&Any::full_name(), &any.encode_to_vec())
}

/// Parses canonical proto3 JSON (proto or lowerCamelCase field names, `@type` for `Any`) into
/// an `envoy-types` message. Unknown fields are an error.
pub fn from_json_value<M: Message + Name + Default>(value: &JsonValue) -> Result<M, JsonError> {
    let type_name = M::full_name();
    let desc = message_descriptor(&type_name)?;
    let dynamic = DynamicMessage::deserialize_with_options(desc, value, &DeserializeOptions::new())
        .map_err(|source| JsonError::Deserialize {
            type_name: type_name.clone(),
            source,
        })?;
    M::decode(dynamic.encode_to_vec().as_slice())
        .map_err(|source| JsonError::Decode { type_name, source })
}

/// Parses the JSON form of an `Any` (`{"@type": ..., fields...}`) back into an `Any`.
pub fn any_from_json(value: &JsonValue) -> Result<Any, JsonError> {
    from_json_value::<Any>(value)
}

/// Pretty-printed JSON with recursively sorted keys: a stable text form for golden files.
pub fn to_json_string_pretty<M: Message + Name>(msg: &M) -> Result<String, JsonError> {
    let value = to_json_value(msg)?;
    serde_json::to_string_pretty(&value).map_err(|source| JsonError::Serialize {
        type_name: M::full_name(),
        source,
    })
}

/// Rebuilds `value` with the keys of every object in sorted order.
///
/// serde_json's `Map` is already sorted unless some crate in the build enables serde_json's
/// `preserve_order` feature (features unify across the workspace), so this makes sorted
/// output independent of that.
pub fn sort_keys(value: JsonValue) -> JsonValue {
    match value {
        JsonValue::Object(map) => {
            let mut entries: Vec<(String, JsonValue)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            JsonValue::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, sort_keys(v)))
                    .collect(),
            )
        }
        JsonValue::Array(items) => JsonValue::Array(items.into_iter().map(sort_keys).collect()),
        other => other,
    }
}

fn dynamic_to_json(dynamic: &DynamicMessage) -> Result<JsonValue, JsonError> {
    check_no_unknown_fields(dynamic)?;
    let type_name = dynamic.descriptor().full_name().to_owned();
    let value = dynamic
        .serialize_with_options(serde_json::value::Serializer, &SERIALIZE)
        .map_err(|source| JsonError::Serialize { type_name, source })?;
    Ok(sort_keys(value))
}

/// Fails if any message in the tree (including payloads of `Any`) has fields the descriptor
/// set does not define. prost-reflect would keep them as unknown fields and leave them out of
/// the JSON, which would make golden files and dumps lie.
fn check_no_unknown_fields(msg: &DynamicMessage) -> Result<(), JsonError> {
    let numbers: Vec<u32> = msg.unknown_fields().map(|f| f.number()).collect();
    if !numbers.is_empty() {
        return Err(JsonError::UnknownFields {
            type_name: msg.descriptor().full_name().to_owned(),
            numbers,
        });
    }
    if msg.descriptor().full_name() == "google.protobuf.Any" {
        let type_url = msg
            .get_field_by_name("type_url")
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        if type_url.is_empty() {
            return Ok(());
        }
        let name = type_url_message_name(&type_url)?;
        let payload = msg
            .get_field_by_name("value")
            .and_then(|v| v.as_bytes().cloned())
            .unwrap_or_default();
        let desc = message_descriptor(name)?;
        let inner = DynamicMessage::decode(desc, payload).map_err(|source| JsonError::Decode {
            type_name: name.to_owned(),
            source,
        })?;
        return check_no_unknown_fields(&inner);
    }
    for (_, value) in msg.fields() {
        check_value(value)?;
    }
    Ok(())
}

fn check_value(value: &Value) -> Result<(), JsonError> {
    match value {
        Value::Message(m) => check_no_unknown_fields(m),
        Value::List(items) => items.iter().try_for_each(check_value),
        Value::Map(map) => map.values().try_for_each(check_value),
        _ => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::cluster::v3::{
        CircuitBreakers, Cluster, circuit_breakers::Thresholds, cluster::ClusterDiscoveryType,
        cluster::DiscoveryType, cluster::LbPolicy,
    };
    use envoy_types::pb::envoy::config::core::v3::{Http2ProtocolOptions, RoutingPriority};
    use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
        HttpProtocolOptions, http_protocol_options::ExplicitHttpConfig,
        http_protocol_options::UpstreamProtocolOptions,
        http_protocol_options::explicit_http_config::ProtocolConfig,
    };
    use envoy_types::pb::google::protobuf::{Duration, UInt32Value};
    use envoy_types::util::pack_any;
    use serde_json::json;

    fn sample_cluster() -> Cluster {
        let http_options = HttpProtocolOptions {
            upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
                ExplicitHttpConfig {
                    protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(
                        Http2ProtocolOptions::default(),
                    )),
                },
            )),
            ..Default::default()
        };
        Cluster {
            name: "outbound|8080||httpbin.local".into(),
            connect_timeout: Some(Duration {
                seconds: 10,
                nanos: 0,
            }),
            cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
            lb_policy: LbPolicy::LeastRequest as i32,
            circuit_breakers: Some(CircuitBreakers {
                thresholds: vec![Thresholds {
                    priority: RoutingPriority::Default as i32,
                    max_connections: Some(UInt32Value { value: u32::MAX }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            typed_extension_protocol_options: [(
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_owned(),
                pack_any(http_options),
            )]
            .into_iter()
            .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn pool_builds_and_has_core_types() {
        for name in [
            "envoy.config.cluster.v3.Cluster",
            "envoy.config.listener.v3.Listener",
            "envoy.config.route.v3.RouteConfiguration",
            "envoy.config.endpoint.v3.ClusterLoadAssignment",
            "envoy.config.bootstrap.v3.Bootstrap",
            "envoy.admin.v3.ConfigDump",
            "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
            "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "google.protobuf.Duration",
        ] {
            assert!(message_descriptor(name).is_ok(), "{name} missing");
        }
    }

    #[test]
    fn cluster_renders_like_config_dump() {
        let got = to_json_value(&sample_cluster()).unwrap();
        let want = json!({
            "name": "outbound|8080||httpbin.local",
            "type": "EDS",
            "connect_timeout": "10s",
            "lb_policy": "LEAST_REQUEST",
            "circuit_breakers": {
                "thresholds": [ { "max_connections": 4294967295u32 } ]
            },
            "typed_extension_protocol_options": {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": { "http2_protocol_options": {} }
                }
            }
        });
        assert_eq!(got, want, "{}", serde_json::to_string_pretty(&got).unwrap());
    }

    #[test]
    fn round_trips_through_json() {
        let cluster = sample_cluster();
        let value = to_json_value(&cluster).unwrap();
        let back: Cluster = from_json_value(&value).unwrap();
        assert_eq!(back, cluster);
    }

    #[test]
    fn from_json_accepts_camel_case_and_rejects_unknown_fields() {
        let c: Cluster =
            from_json_value(&json!({"name": "a", "connectTimeout": "1.5s", "type": "STATIC"}))
                .unwrap();
        assert_eq!(c.name, "a");
        assert_eq!(
            c.connect_timeout,
            Some(Duration {
                seconds: 1,
                nanos: 500_000_000
            })
        );
        let err = from_json_value::<Cluster>(&json!({"name": "a", "bogus": 1})).unwrap_err();
        assert!(matches!(err, JsonError::Deserialize { .. }), "{err}");
    }

    #[test]
    fn any_expands_with_type_and_round_trips() {
        let any = pack_any(sample_cluster());
        let value = any_to_json(&any).unwrap();
        assert_eq!(
            value["@type"],
            "type.googleapis.com/envoy.config.cluster.v3.Cluster"
        );
        assert_eq!(value["lb_policy"], "LEAST_REQUEST");
        let back = any_from_json(&value).unwrap();
        assert_eq!(back.type_url, any.type_url);
        let cluster = Cluster::decode(back.value.as_slice()).unwrap();
        assert_eq!(cluster, sample_cluster());
    }

    #[test]
    fn any_of_well_known_type_uses_value_key() {
        let any = pack_any(Duration {
            seconds: 3,
            nanos: 0,
        });
        assert_eq!(
            any_to_json(&any).unwrap(),
            json!({"@type": "type.googleapis.com/google.protobuf.Duration", "value": "3s"})
        );
    }

    #[test]
    fn unknown_any_type_is_an_error() {
        let any = Any {
            type_url: "type.googleapis.com/not.a.Type".into(),
            value: vec![],
        };
        assert!(matches!(any_to_json(&any), Err(JsonError::UnknownType(_))));
    }

    #[test]
    fn unknown_fields_are_reported_not_dropped() {
        // Field 9999 does not exist in Cluster: simulates Rust types newer than the descriptors.
        let mut bytes = Cluster {
            name: "x".into(),
            ..Default::default()
        }
        .encode_to_vec();
        prost::encoding::encode_key(9999, prost::encoding::WireType::Varint, &mut bytes);
        prost::encoding::encode_varint(1, &mut bytes);
        let err = bytes_to_json("envoy.config.cluster.v3.Cluster", &bytes).unwrap_err();
        assert!(
            matches!(&err, JsonError::UnknownFields { numbers, .. } if numbers == &[9999]),
            "{err}"
        );
    }

    #[test]
    fn sort_keys_sorts_nested_objects() {
        let v = sort_keys(json!({"b": {"z": 1, "a": [ {"y": 1, "x": 2} ]}, "a": 0}));
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"a":0,"b":{"a":[{"x":2,"y":1}],"z":1}}"#
        );
    }

    /// Tripwire: the bundled descriptor set must come from the locked envoy-types version.
    #[test]
    fn bundled_descriptor_matches_locked_envoy_types() {
        let lock =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock"))
                .expect("workspace Cargo.lock");
        let locked = lock
            .split("[[package]]")
            .find(|p| p.contains("name = \"envoy-types\""))
            .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")))
            .map(|v| v.trim_end_matches('"').to_owned())
            .expect("envoy-types in Cargo.lock");
        assert_eq!(
            locked, DESCRIPTOR_SET_ENVOY_TYPES_VERSION,
            "envoy-types is {locked} but the bundled descriptor set is from \
             {DESCRIPTOR_SET_ENVOY_TYPES_VERSION}: regenerate it (see the json module docs)"
        );
    }
}
