//! Shared building blocks of the Istio API model: the enum macro, `Duration`, port
//! protocols, selectors, `Percent`, and the serde helpers every API struct uses.
//!
//! Decoding follows proto3 JSON (what Istio's CRDs store) with two relaxations that
//! Kubernetes applies as well: a `null` value means "unset" (the API server prunes nulls of
//! non-nullable fields), and enums may be given by name or by number (int-or-string).

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Declares a proto3 enum: a Rust enum whose serde form is the proto value name
/// (e.g. `MESH_EXTERNAL`), decoded from the name or from the proto number, with
/// `Default` = the zero value and `as_str`/`as_i32`/`from_i32`/`from_name`.
///
/// Syntax: `proto_enum! { /// doc  Name { /// doc  Variant = 0 => "WIRE_NAME", ... } }`.
/// The zero value must be present (checked at compile time).
macro_rules! proto_enum {
    (
        $(#[$meta:meta])*
        $name:ident {
            $(
                $(#[$vmeta:meta])*
                $variant:ident = $num:literal => $wire:literal
            ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in proto declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The proto value name, as written in YAML/JSON.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire,)+ }
            }

            /// The proto number of this value.
            pub const fn as_i32(self) -> i32 {
                match self { $($name::$variant => $num,)+ }
            }

            /// The value with this proto number, if any.
            pub const fn from_i32(number: i32) -> Option<Self> {
                match number { $($num => Some($name::$variant),)+ _ => None }
            }

            /// The value with this exact (case-sensitive) proto name, if any.
            pub fn from_name(name: &str) -> Option<Self> {
                match name { $($wire => Some($name::$variant),)+ _ => None }
            }

            /// "NAME (n), ..." for error messages.
            fn allowed_values() -> String {
                Self::ALL
                    .iter()
                    .map(|v| format!("{} ({})", v.as_str(), v.as_i32()))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        }

        // proto3 enums always have a zero value; it is the default.
        const _: () = assert!(
            $name::from_i32(0).is_some(),
            concat!(stringify!($name), " has no zero value")
        );

        impl Default for $name {
            fn default() -> Self {
                match Self::from_i32(0) {
                    Some(v) => v,
                    None => Self::ALL[0],
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> ::serde::de::Visitor<'de> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                        write!(f, "a {} name or number ({})", stringify!($name), $name::allowed_values())
                    }
                    fn visit_str<E: ::serde::de::Error>(self, v: &str) -> Result<$name, E> {
                        $name::from_name(v).ok_or_else(|| {
                            E::custom(format!(
                                "unknown {} value \"{}\", expected one of: {}",
                                stringify!($name),
                                v,
                                $name::allowed_values()
                            ))
                        })
                    }
                    fn visit_i64<E: ::serde::de::Error>(self, v: i64) -> Result<$name, E> {
                        i32::try_from(v).ok().and_then($name::from_i32).ok_or_else(|| {
                            E::custom(format!(
                                "unknown {} number {}, expected one of: {}",
                                stringify!($name),
                                v,
                                $name::allowed_values()
                            ))
                        })
                    }
                    fn visit_u64<E: ::serde::de::Error>(self, v: u64) -> Result<$name, E> {
                        match i64::try_from(v) {
                            Ok(n) => self.visit_i64(n),
                            Err(_) => Err(E::custom(format!(
                                "unknown {} number {}, expected one of: {}",
                                stringify!($name),
                                v,
                                $name::allowed_values()
                            ))),
                        }
                    }
                }
                d.deserialize_any(V)
            }
        }
    };
}
pub(crate) use proto_enum;

// ---------------------------------------------------------------------------------------
// serde helpers (used through `#[serde(deserialize_with = ...)]` in every API module)
// ---------------------------------------------------------------------------------------

/// `skip_serializing_if` for proto3 scalars without presence: omit the zero value.
pub(crate) fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// Deserializes a field whose `null` means "unset" (proto3 JSON, and Kubernetes prunes
/// nulls of non-nullable fields): `null` gives the type's default.
pub(crate) fn nd<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Like [`nd`] for maps whose values may also be `null` (e.g. `headers: {x-foo: }`,
/// which Istio reads as an empty match = presence check).
pub(crate) fn nd_map<'de, D, T>(d: D) -> Result<BTreeMap<String, T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    let m: Option<BTreeMap<String, Option<T>>> = Option::deserialize(d)?;
    Ok(m.unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect())
}

/// A 64-bit integer given as a number or a decimal string (proto3 JSON writes 64-bit
/// integers as strings; Kubernetes CRDs as numbers). `null` gives 0.
struct Int64Visitor<T>(std::marker::PhantomData<T>);

impl<'de, T> Visitor<'de> for Int64Visitor<T>
where
    T: TryFrom<i64> + TryFrom<u64> + std::str::FromStr + Default,
{
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "an integer or a decimal string ({})",
            std::any::type_name::<T>()
        )
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        T::try_from(v).map_err(|_| {
            E::custom(format!(
                "integer {v} out of range for {}",
                std::any::type_name::<T>()
            ))
        })
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        T::try_from(v).map_err(|_| {
            E::custom(format!(
                "integer {v} out of range for {}",
                std::any::type_name::<T>()
            ))
        })
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.trim().parse::<T>().map_err(|_| {
            E::custom(format!(
                "invalid integer \"{v}\" for {}",
                std::any::type_name::<T>()
            ))
        })
    }
    fn visit_unit<E: de::Error>(self) -> Result<T, E> {
        Ok(T::default())
    }
    fn visit_none<E: de::Error>(self) -> Result<T, E> {
        Ok(T::default())
    }
}

/// `deserialize_with` for `uint64` fields (number or decimal string; `null` = 0).
pub(crate) fn de_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(Int64Visitor::<u64>(std::marker::PhantomData))
}

/// `deserialize_with` for `int64` fields (number or decimal string; `null` = 0).
pub(crate) fn de_i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    d.deserialize_any(Int64Visitor::<i64>(std::marker::PhantomData))
}

// ---------------------------------------------------------------------------------------
// Duration
// ---------------------------------------------------------------------------------------

/// Largest magnitude of a `google.protobuf.Duration`: 10,000 years in seconds.
const MAX_DURATION_SECONDS: i64 = 315_576_000_000;
const NANOS_PER_SECOND: i128 = 1_000_000_000;

/// A `google.protobuf.Duration`: signed seconds plus nanoseconds of the same sign.
///
/// Serializes in the proto3 JSON form (`"1s"`, `"1.500s"`, `"-0.001s"`: seconds with 0, 3,
/// 6 or 9 fractional digits). Deserializes from that form and from Go duration strings
/// (`"100ms"`, `"5m"`, `"1h30m"`, `"2us"`), which Istio's CRDs and docs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Duration {
    seconds: i64,
    nanos: i32,
}

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError {
    input: String,
    reason: String,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid duration \"{}\": {}", self.input, self.reason)
    }
}

impl std::error::Error for DurationError {}

impl Duration {
    /// The zero duration.
    pub const ZERO: Duration = Duration {
        seconds: 0,
        nanos: 0,
    };

    /// A duration of whole seconds (clamped to the proto range).
    pub const fn from_secs(seconds: i64) -> Duration {
        let s = if seconds > MAX_DURATION_SECONDS {
            MAX_DURATION_SECONDS
        } else if seconds < -MAX_DURATION_SECONDS {
            -MAX_DURATION_SECONDS
        } else {
            seconds
        };
        Duration {
            seconds: s,
            nanos: 0,
        }
    }

    /// A duration of whole milliseconds (clamped to the proto range).
    pub const fn from_millis(millis: i64) -> Duration {
        let seconds = millis / 1000;
        if seconds > MAX_DURATION_SECONDS || seconds < -MAX_DURATION_SECONDS {
            return Duration::from_secs(seconds);
        }
        Duration {
            seconds,
            // |millis % 1000| * 1e6 < 1e9 fits in i32.
            nanos: ((millis % 1000) * 1_000_000) as i32,
        }
    }

    /// A duration from a total number of nanoseconds; `None` outside the proto range.
    pub fn from_nanos(nanos: i128) -> Option<Duration> {
        let seconds = i64::try_from(nanos / NANOS_PER_SECOND).ok()?;
        if seconds.unsigned_abs() > MAX_DURATION_SECONDS.unsigned_abs() {
            return None;
        }
        // |nanos % 1e9| < 1e9 always fits in i32.
        let frac = i32::try_from(nanos % NANOS_PER_SECOND).ok()?;
        Some(Duration {
            seconds,
            nanos: frac,
        })
    }

    /// The whole-seconds part (same sign as the duration).
    pub const fn seconds(&self) -> i64 {
        self.seconds
    }

    /// The sub-second part in nanoseconds (same sign as the duration).
    pub const fn subsec_nanos(&self) -> i32 {
        self.nanos
    }

    /// Total length in nanoseconds.
    pub const fn as_nanos(&self) -> i128 {
        self.seconds as i128 * NANOS_PER_SECOND + self.nanos as i128
    }

    /// Total length in whole milliseconds (truncated toward zero).
    pub const fn as_millis(&self) -> i128 {
        self.as_nanos() / 1_000_000
    }

    /// True for the zero duration.
    pub const fn is_zero(&self) -> bool {
        self.seconds == 0 && self.nanos == 0
    }

    /// True for durations below zero.
    pub const fn is_negative(&self) -> bool {
        self.seconds < 0 || self.nanos < 0
    }

    /// True when the duration is a whole number of milliseconds.
    pub const fn is_whole_millis(&self) -> bool {
        self.nanos % 1_000_000 == 0
    }

    /// The equivalent `std::time::Duration`; `None` when negative.
    pub fn to_std(&self) -> Option<std::time::Duration> {
        std::time::Duration::try_from(*self).ok()
    }

    /// Parses the proto3 JSON form (`"1.5s"`) or a Go duration (`"1h30m"`, `"100ms"`).
    pub fn parse(input: &str) -> Result<Duration, DurationError> {
        parse_duration(input).map_err(|reason| DurationError {
            input: input.to_string(),
            reason,
        })
    }
}

/// Go's `time.ParseDuration` grammar: `[-+]? (digits [. digits] unit)+` or `"0"`, units
/// `ns us µs μs ms s m h`. The proto3 form `"1.5s"` is a special case.
fn parse_duration(input: &str) -> Result<Duration, String> {
    let mut s = input.trim();
    let mut negative = false;
    if let Some(rest) = s.strip_prefix('-') {
        negative = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("empty duration".to_string());
    }
    // Bound far above the proto range, so the i128 arithmetic below cannot overflow.
    const LIMIT: i128 = 1_000_000_000_000_000_000_000_000; // 1e27 ns
    let mut total: i128 = 0;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        // integer part
        let start = i;
        let mut whole: i128 = 0;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            whole = whole * 10 + i128::from(bytes[i] - b'0');
            if whole > LIMIT {
                return Err("value out of range".to_string());
            }
            i += 1;
        }
        let had_whole = i > start;
        // fraction part (digits beyond 18 cannot change the nanosecond result meaningfully)
        let mut frac: i128 = 0;
        let mut scale: i128 = 1;
        let mut had_frac = false;
        if i < bytes.len() && bytes[i] == b'.' {
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                had_frac = true;
                if scale < 1_000_000_000_000_000_000 {
                    frac = frac * 10 + i128::from(bytes[i] - b'0');
                    scale *= 10;
                }
                i += 1;
            }
        }
        if !had_whole && !had_frac {
            return Err("expected a number".to_string());
        }
        // unit: everything up to the next digit or '.'
        let unit_start = i;
        while i < bytes.len() && bytes[i] != b'.' && !bytes[i].is_ascii_digit() {
            i += 1;
        }
        let unit = &s[unit_start..i];
        let per_unit: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => NANOS_PER_SECOND,
            "m" => 60 * NANOS_PER_SECOND,
            "h" => 3600 * NANOS_PER_SECOND,
            "" => return Err("missing unit (use one of ns, us, ms, s, m, h)".to_string()),
            other => {
                return Err(format!(
                    "unknown unit \"{other}\" (use one of ns, us, ms, s, m, h)"
                ));
            }
        };
        total += whole * per_unit + frac * per_unit / scale;
        if total > LIMIT {
            return Err("value out of range".to_string());
        }
    }
    if negative {
        total = -total;
    }
    Duration::from_nanos(total).ok_or_else(|| format!("out of range (max {MAX_DURATION_SECONDS}s)"))
}

impl std::str::FromStr for Duration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Duration::parse(s)
    }
}

impl fmt::Display for Duration {
    /// The proto3 JSON form: `"1s"`, `"1.500s"`, `"0.000001s"`, `"-2s"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.as_nanos();
        let sign = if total < 0 { "-" } else { "" };
        let abs = total.unsigned_abs();
        let secs = abs / 1_000_000_000;
        let nanos = abs % 1_000_000_000;
        if nanos == 0 {
            write!(f, "{sign}{secs}s")
        } else if nanos.is_multiple_of(1_000_000) {
            write!(f, "{sign}{secs}.{:03}s", nanos / 1_000_000)
        } else if nanos.is_multiple_of(1_000) {
            write!(f, "{sign}{secs}.{:06}s", nanos / 1_000)
        } else {
            write!(f, "{sign}{secs}.{nanos:09}s")
        }
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"1s\", \"0.5s\", \"100ms\" or \"1h30m\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                Duration::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

impl TryFrom<Duration> for std::time::Duration {
    type Error = String;
    fn try_from(d: Duration) -> Result<Self, Self::Error> {
        if d.is_negative() {
            return Err(format!("negative duration {d}"));
        }
        // Non-negative: both parts are >= 0.
        Ok(std::time::Duration::new(
            d.seconds.unsigned_abs(),
            d.nanos.unsigned_abs(),
        ))
    }
}

impl From<std::time::Duration> for Duration {
    /// Saturates at the proto maximum (10,000 years).
    fn from(d: std::time::Duration) -> Self {
        let secs = i64::try_from(d.as_secs()).unwrap_or(MAX_DURATION_SECONDS);
        if secs >= MAX_DURATION_SECONDS {
            return Duration::from_secs(MAX_DURATION_SECONDS);
        }
        // subsec_nanos < 1e9 fits in i32.
        Duration {
            seconds: secs,
            nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Protocol
// ---------------------------------------------------------------------------------------

/// An Istio port protocol, parsed from a port's `protocol` string (`pkg/config/protocol`).
///
/// The API types keep the raw string; parsing is case-insensitive. `Unsupported` is what an
/// empty string (protocol sniffing, "auto") and any unknown string parse to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// `TCP`.
    Tcp,
    /// `UDP` (no listener or cluster is generated for it).
    Udp,
    /// `GRPC`.
    Grpc,
    /// `GRPC-Web`.
    GrpcWeb,
    /// `HTTP`.
    Http,
    /// `HTTP_PROXY`.
    HttpProxy,
    /// `HTTP2`.
    Http2,
    /// `HTTPS` (TLS, not terminated by the sidecar).
    Https,
    /// `TLS`.
    Tls,
    /// `Mongo`.
    Mongo,
    /// `Redis`.
    Redis,
    /// `MySQL`.
    MySql,
    /// Empty (auto-detected) or unknown protocol (`UnsupportedProtocol` in Istio).
    Unsupported,
}

impl Protocol {
    /// Parses a port protocol case-insensitively; empty or unknown gives `Unsupported`.
    pub fn parse(s: &str) -> Protocol {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "grpc" => Protocol::Grpc,
            "grpc-web" => Protocol::GrpcWeb,
            "http" => Protocol::Http,
            "http_proxy" => Protocol::HttpProxy,
            "http2" => Protocol::Http2,
            "https" => Protocol::Https,
            "tls" => Protocol::Tls,
            "mongo" => Protocol::Mongo,
            "redis" => Protocol::Redis,
            "mysql" => Protocol::MySql,
            _ => Protocol::Unsupported,
        }
    }

    /// Istio's canonical name (`"GRPC-Web"`, `"MySQL"`, `"UnsupportedProtocol"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Grpc => "GRPC",
            Protocol::GrpcWeb => "GRPC-Web",
            Protocol::Http => "HTTP",
            Protocol::HttpProxy => "HTTP_PROXY",
            Protocol::Http2 => "HTTP2",
            Protocol::Https => "HTTPS",
            Protocol::Tls => "TLS",
            Protocol::Mongo => "Mongo",
            Protocol::Redis => "Redis",
            Protocol::MySql => "MySQL",
            Protocol::Unsupported => "UnsupportedProtocol",
        }
    }

    /// HTTP class: HTTP, HTTP2, HTTP_PROXY, GRPC, GRPC-Web (served by an HTTP listener).
    pub const fn is_http(self) -> bool {
        matches!(
            self,
            Protocol::Http
                | Protocol::Http2
                | Protocol::HttpProxy
                | Protocol::Grpc
                | Protocol::GrpcWeb
        )
    }

    /// HTTP/2 class: HTTP2, GRPC, GRPC-Web.
    pub const fn is_http2(self) -> bool {
        matches!(self, Protocol::Http2 | Protocol::Grpc | Protocol::GrpcWeb)
    }

    /// TCP class: TCP, HTTPS, TLS, Mongo, Redis, MySQL (served by a TCP listener).
    pub const fn is_tcp(self) -> bool {
        matches!(
            self,
            Protocol::Tcp
                | Protocol::Https
                | Protocol::Tls
                | Protocol::Mongo
                | Protocol::Redis
                | Protocol::MySql
        )
    }

    /// TLS class: HTTPS, TLS.
    pub const fn is_tls(self) -> bool {
        matches!(self, Protocol::Https | Protocol::Tls)
    }

    /// UDP.
    pub const fn is_udp(self) -> bool {
        matches!(self, Protocol::Udp)
    }

    /// Empty or unknown protocol (sniffed when the string was empty).
    pub const fn is_unsupported(self) -> bool {
        matches!(self, Protocol::Unsupported)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------------------
// Small shared messages
// ---------------------------------------------------------------------------------------

/// `Percent` specifies a percentage in the range of [0.0, 100.0].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Percent {
    /// The percentage (0.0 to 100.0).
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub value: f64,
}

/// `istio.networking.v1alpha3.WorkloadSelector`: selects workloads by labels (used by
/// Sidecar, Gateway and `ServiceEntry.workloadSelector`; field `labels`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadSelector {
    /// Labels that a workload must carry (all of them) to be selected.
    #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
    pub labels: BTreeMap<String, String>,
}

/// Types of `istio.type.v1beta1` (package `type/v1beta1/selector.proto`).
pub mod type_v1beta1 {
    use std::collections::BTreeMap;

    use super::{is_default, nd};

    /// `istio.type.v1beta1.WorkloadSelector`: selects workloads by labels (used by
    /// `DestinationRule.workloadSelector`; field `matchLabels`, not `labels`).
    #[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct WorkloadSelector {
        /// Labels that a workload must carry (all of them) to be selected.
        #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
        pub match_labels: BTreeMap<String, String>,
    }
}

/// Decodes a proto3 JSON `bytes` value: standard or URL-safe base64, padding optional.
pub fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' | b'-' => Some(62),
            b'/' | b'_' => Some(63),
            _ => None,
        }
    }
    let trimmed = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(trimmed.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for (i, c) in trimmed.bytes().enumerate() {
        let v = value(c)
            .ok_or_else(|| format!("invalid base64 character {:?} at offset {i}", c as char))?;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            // Keep the low 8 bits of the completed group.
            out.push(((acc >> bits) & 0xff) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if trimmed.len() % 4 == 1 {
        return Err("invalid base64 length".to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    proto_enum! {
        /// Test enum.
        Color {
            /// Zero.
            Red = 0 => "RED",
            /// One.
            Green = 1 => "GREEN",
            /// Five.
            Blue = 5 => "BLUE",
        }
    }

    #[derive(Debug, PartialEq, Default, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Holder {
        #[serde(default, deserialize_with = "nd", skip_serializing_if = "is_default")]
        color: Color,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout: Option<Duration>,
        #[serde(
            default,
            deserialize_with = "de_u64",
            skip_serializing_if = "is_default"
        )]
        big: u64,
    }

    fn holder(yaml: &str) -> Result<Holder, String> {
        serde_yaml::from_str::<Holder>(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn enum_by_name_and_number() {
        assert_eq!(holder("color: GREEN").expect("name").color, Color::Green);
        assert_eq!(holder("color: 5").expect("number").color, Color::Blue);
        assert_eq!(holder("{}").expect("absent").color, Color::Red);
        assert_eq!(holder("color: null").expect("null").color, Color::Red);
        assert_eq!(Color::default(), Color::Red);
        assert_eq!(Color::from_i32(1), Some(Color::Green));
        assert_eq!(Color::from_i32(2), None);
        assert_eq!(Color::Blue.as_str(), "BLUE");
        assert_eq!(Color::Blue.as_i32(), 5);
        let json: serde_json::Value = serde_json::from_str("{\"color\": 1}").expect("json");
        assert_eq!(
            serde_json::from_value::<Holder>(json)
                .expect("json number")
                .color,
            Color::Green
        );
    }

    #[test]
    fn unknown_enum_rejected_with_allowed_values() {
        let e = holder("color: PURPLE").expect_err("unknown name");
        assert!(e.contains("unknown Color value \"PURPLE\""), "{e}");
        assert!(e.contains("RED (0), GREEN (1), BLUE (5)"), "{e}");
        let e = holder("color: 3").expect_err("unknown number");
        assert!(e.contains("unknown Color number 3"), "{e}");
        let e = holder("color: green").expect_err("names are case-sensitive");
        assert!(e.contains("green"), "{e}");
        let e = holder("color: -1").expect_err("negative");
        assert!(e.contains("-1"), "{e}");
    }

    #[test]
    fn enum_serializes_as_name() {
        let h = Holder {
            color: Color::Blue,
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&h).expect("ser"),
            "{\"color\":\"BLUE\"}"
        );
        assert_eq!(
            serde_json::to_string(&Holder::default()).expect("ser"),
            "{}"
        );
    }

    #[test]
    fn int64_as_number_or_string() {
        assert_eq!(holder("big: 65537").expect("number").big, 65537);
        assert_eq!(holder("big: \"65537\"").expect("string").big, 65537);
        assert_eq!(holder("big: null").expect("null").big, 0);
        assert!(holder("big: -1").is_err());
        assert!(holder("big: abc").is_err());
    }

    #[test]
    fn duration_parse_table() {
        let ms = |n: i64| Duration::from_millis(n);
        let cases: &[(&str, Duration)] = &[
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("1s", Duration::from_secs(1)),
            ("1.5s", ms(1500)),
            ("0.001s", ms(1)),
            ("-2s", Duration::from_secs(-2)),
            ("-1.5s", ms(-1500)),
            ("+3s", Duration::from_secs(3)),
            ("10s", Duration::from_secs(10)),
            ("100ms", ms(100)),
            ("5m", Duration::from_secs(300)),
            ("1h", Duration::from_secs(3600)),
            ("1m30s", Duration::from_secs(90)),
            ("1h30m", Duration::from_secs(5400)),
            ("1.5h", Duration::from_secs(5400)),
            ("2h45m10.5s", ms((2 * 3600 + 45 * 60 + 10) * 1000 + 500)),
            (".5s", ms(500)),
            ("1.s", Duration::from_secs(1)),
            ("3us", Duration::from_nanos(3000).expect("ns")),
            ("3µs", Duration::from_nanos(3000).expect("ns")),
            ("7ns", Duration::from_nanos(7).expect("ns")),
            ("0.000000001s", Duration::from_nanos(1).expect("ns")),
            ("315576000000s", Duration::from_secs(315_576_000_000)),
        ];
        for (input, want) in cases {
            assert_eq!(Duration::parse(input).as_ref(), Ok(want), "parse {input:?}");
        }
    }

    #[test]
    fn duration_parse_errors() {
        let cases: &[(&str, &str)] = &[
            ("5x", "invalid duration \"5x\": unknown unit \"x\""),
            ("5", "invalid duration \"5\": missing unit"),
            ("", "invalid duration \"\": empty duration"),
            ("-", "invalid duration \"-\": empty duration"),
            ("s", "invalid duration \"s\": expected a number"),
            (".s", "invalid duration \".s\": expected a number"),
            ("1s 2s", "unknown unit \"s \""),
            ("315576000001s", "out of range"),
            ("99999999999999999999999999999h", "out of range"),
        ];
        for (input, want) in cases {
            let e = Duration::parse(input).expect_err(input).to_string();
            assert!(e.contains(want), "parse {input:?}: {e}");
        }
        let e = holder("timeout: 5x").expect_err("bad duration in yaml");
        assert!(e.contains("invalid duration \"5x\""), "{e}");
        let e = serde_json::from_str::<Holder>("{\"timeout\": 5}").expect_err("number");
        assert!(e.to_string().contains("duration string"), "{e}");
    }

    #[test]
    fn duration_format_table() {
        let cases: &[(Duration, &str)] = &[
            (Duration::ZERO, "0s"),
            (Duration::from_secs(1), "1s"),
            (Duration::from_millis(1500), "1.500s"),
            (Duration::from_millis(1), "0.001s"),
            (Duration::from_millis(-1), "-0.001s"),
            (Duration::from_millis(-1500), "-1.500s"),
            (Duration::from_secs(-2), "-2s"),
            (Duration::from_nanos(1_000).expect("ns"), "0.000001s"),
            (
                Duration::from_nanos(1_000_000_001).expect("ns"),
                "1.000000001s",
            ),
            (Duration::from_secs(3600), "3600s"),
        ];
        for (d, want) in cases {
            assert_eq!(d.to_string(), *want);
            assert_eq!(
                serde_json::to_value(d).expect("ser"),
                serde_json::Value::String(want.to_string())
            );
            assert_eq!(Duration::parse(want).as_ref(), Ok(d), "reparse {want}");
        }
    }

    #[test]
    fn duration_accessors() {
        let d = Duration::parse("1.5s").expect("parse");
        assert_eq!(d.as_nanos(), 1_500_000_000);
        assert_eq!(d.as_millis(), 1500);
        assert_eq!(d.seconds(), 1);
        assert_eq!(d.subsec_nanos(), 500_000_000);
        assert!(d.is_whole_millis());
        assert!(!Duration::parse("1.0005s").expect("parse").is_whole_millis());
        assert!(Duration::ZERO.is_zero());
        assert!(Duration::from_millis(-1).is_negative());
        assert_eq!(d.to_std(), Some(std::time::Duration::from_millis(1500)));
        assert_eq!(Duration::from_secs(-1).to_std(), None);
        assert_eq!(
            Duration::from(std::time::Duration::from_micros(2)),
            Duration::parse("2us").expect("parse")
        );
        assert!(Duration::from_millis(999) < Duration::from_secs(1));
        assert!(Duration::from_millis(-1500) < Duration::from_secs(-1));
        assert_eq!(Duration::from_nanos(i128::MAX), None);
        assert_eq!(Duration::from_nanos(i128::MIN), None);
        assert_eq!(
            Duration::from_nanos(-9_223_372_036_854_775_808_000_000_000),
            None
        );
        assert_eq!(
            Duration::from_millis(i64::MIN),
            Duration::from_secs(-315_576_000_000)
        );
        assert_eq!(Duration::from_millis(i64::MAX).seconds(), 315_576_000_000);
    }

    #[test]
    fn protocol_parse_table() {
        let cases: &[(&str, Protocol)] = &[
            ("tcp", Protocol::Tcp),
            ("TCP", Protocol::Tcp),
            ("udp", Protocol::Udp),
            ("grpc", Protocol::Grpc),
            ("GRPC-Web", Protocol::GrpcWeb),
            ("grpc-web", Protocol::GrpcWeb),
            ("grpc_web", Protocol::Unsupported),
            ("http", Protocol::Http),
            ("Http", Protocol::Http),
            ("HTTP_PROXY", Protocol::HttpProxy),
            ("http2", Protocol::Http2),
            ("HTTPS", Protocol::Https),
            ("tls", Protocol::Tls),
            ("MONGO", Protocol::Mongo),
            ("redis", Protocol::Redis),
            ("MYSQL", Protocol::MySql),
            ("MySQL", Protocol::MySql),
            ("", Protocol::Unsupported),
            ("h2c", Protocol::Unsupported),
            ("http3", Protocol::Unsupported),
        ];
        for (input, want) in cases {
            assert_eq!(Protocol::parse(input), *want, "parse {input:?}");
        }
    }

    #[test]
    fn protocol_classes() {
        use Protocol::*;
        let all = [
            Tcp,
            Udp,
            Grpc,
            GrpcWeb,
            Http,
            HttpProxy,
            Http2,
            Https,
            Tls,
            Mongo,
            Redis,
            MySql,
            Unsupported,
        ];
        let http: Vec<_> = all.iter().copied().filter(|p| p.is_http()).collect();
        assert_eq!(http, [Grpc, GrpcWeb, Http, HttpProxy, Http2]);
        let http2: Vec<_> = all.iter().copied().filter(|p| p.is_http2()).collect();
        assert_eq!(http2, [Grpc, GrpcWeb, Http2]);
        let tcp: Vec<_> = all.iter().copied().filter(|p| p.is_tcp()).collect();
        assert_eq!(tcp, [Tcp, Https, Tls, Mongo, Redis, MySql]);
        let tls: Vec<_> = all.iter().copied().filter(|p| p.is_tls()).collect();
        assert_eq!(tls, [Https, Tls]);
        assert!(Udp.is_udp() && !Udp.is_tcp() && !Udp.is_http());
        assert!(Unsupported.is_unsupported() && !Unsupported.is_tcp() && !Unsupported.is_http());
        assert_eq!(MySql.to_string(), "MySQL");
        assert_eq!(GrpcWeb.as_str(), "GRPC-Web");
    }

    #[test]
    fn selectors_and_percent() {
        let s: WorkloadSelector = serde_yaml::from_str("labels: {app: a}").expect("selector");
        assert_eq!(s.labels.get("app").map(String::as_str), Some("a"));
        assert!(serde_yaml::from_str::<WorkloadSelector>("matchLabels: {app: a}").is_err());
        let s: type_v1beta1::WorkloadSelector =
            serde_yaml::from_str("matchLabels: {app: a}").expect("selector");
        assert_eq!(s.match_labels.len(), 1);
        assert!(
            serde_yaml::from_str::<type_v1beta1::WorkloadSelector>("labels: {app: a}").is_err()
        );
        let p: Percent = serde_yaml::from_str("value: 0.1").expect("percent");
        assert_eq!(p.value, 0.1);
        let p: Percent = serde_yaml::from_str("value: 50").expect("integer percent");
        assert_eq!(p.value, 50.0);
    }

    #[test]
    fn base64() {
        assert_eq!(decode_base64("aGVsbG8=").expect("std"), b"hello");
        assert_eq!(decode_base64("aGVsbG8").expect("no padding"), b"hello");
        assert_eq!(decode_base64("_-8").expect("url-safe"), [0xff, 0xef]);
        assert_eq!(decode_base64("").expect("empty"), b"");
        assert!(decode_base64("a").is_err());
        assert!(decode_base64("a$==").is_err());
    }
}
