//! Deterministic encoding of generated resources, and the version hash derived from it.
//!
//! prost encodes proto `map` fields from a `std::HashMap`, whose iteration order differs
//! between map instances (envoy-xds-notes pitfall 4): the generator's cluster metadata
//! (`filter_metadata.istio` is a `Struct` with several fields) would then encode differently
//! on every generation, and a version derived from the bytes would flap. [`canonicalize`]
//! rewrites an encoded message with every map's entries sorted (recursively, including inside
//! `google.protobuf.Any` payloads whose type is known), using the descriptors of
//! [`entryway_xds::json::descriptor_pool`]. Everything else prost already encodes
//! deterministically (fields in tag order, repeated fields in order).
//!
//! Sorting entries never changes their lengths, so every length prefix stays valid and the
//! output has exactly the input's length. Envoy receives the canonical bytes too, so a
//! resource that did not change is byte-identical across pushes and across control-plane
//! restarts (which is what lets a Delta client reconnect without a resend).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use crate::json::descriptor_pool;
use prost_reflect::{Kind, MessageDescriptor};

/// Why a message could not be canonicalised (the caller falls back to prost's bytes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    /// The message type is not in the descriptor pool.
    #[error("unknown message type {0}")]
    UnknownType(String),
    /// The bytes are not a well-formed protobuf encoding.
    #[error("malformed protobuf encoding at byte {0}")]
    Malformed(usize),
    /// Deeper nesting than any Envoy resource has.
    #[error("message nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

const MAX_DEPTH: usize = 100;
const ANY: &str = "google.protobuf.Any";

/// Re-encodes `bytes` (an encoded `full_name` message) with every map sorted.
pub fn canonicalize(full_name: &str, bytes: &[u8]) -> Result<Vec<u8>, CanonicalError> {
    let plan =
        plan_of(full_name).ok_or_else(|| CanonicalError::UnknownType(full_name.to_string()))?;
    let mut out = Vec::with_capacity(bytes.len());
    walk(&plan, bytes, 0, &mut out, 0)?;
    Ok(out)
}

/// [`canonicalize`] of an encoded `M`, with the type's plan found once per thread (not by
/// name on every call: generation canonicalises tens of thousands of resources of four
/// types).
pub fn canonicalize_as<M: prost::Name>(bytes: &[u8]) -> Result<Vec<u8>, CanonicalError> {
    type Known = Vec<(&'static str, &'static str, Arc<Cell>)>;
    thread_local! {
        static KNOWN: std::cell::RefCell<Known> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let plan = KNOWN.with_borrow_mut(|known| {
        if let Some((_, _, c)) = known
            .iter()
            .find(|(p, n, _)| *p == M::PACKAGE && *n == M::NAME)
        {
            return Ok(Arc::clone(c));
        }
        let full = M::full_name();
        let c = plan_of(&full).ok_or(CanonicalError::UnknownType(full))?;
        known.push((M::PACKAGE, M::NAME, Arc::clone(&c)));
        Ok(c)
    })?;
    let mut out = Vec::with_capacity(bytes.len());
    walk(&plan, bytes, 0, &mut out, 0)?;
    Ok(out)
}

/// How to walk one message type, derived once from its descriptor: which fields are nested
/// messages, maps or `Any`s, and whether anything below can hold a map at all. A message that
/// cannot is copied byte for byte: most of a resource's bytes (addresses, durations, TLS
/// settings) are in such messages, so the walk touches little more than the map-bearing
/// parts (metadata, typed options).
struct Plan {
    /// Field number → whether it is a map, and the nested type's cell (scalars, strings and
    /// bytes are absent: copied).
    fields: Fields,
    /// Whether any field can hold a map (`Any` counts: its payload is only known on the wire).
    walk: bool,
    /// The message is a `google.protobuf.Any`.
    any: bool,
}

/// A type's plan, built on first use (cells let recursive types refer to each other).
struct Cell {
    desc: MessageDescriptor,
    plan: OnceLock<Plan>,
}

impl Cell {
    fn plan(&self) -> &Plan {
        self.plan.get_or_init(|| build_plan(&self.desc))
    }
}

/// The cell of a type, shared by every plan that refers to it.
fn cell(desc: &MessageDescriptor) -> Arc<Cell> {
    static CELLS: OnceLock<RwLock<HashMap<String, Arc<Cell>>>> = OnceLock::new();
    let cells = CELLS.get_or_init(Default::default);
    if let Some(c) = cells
        .read()
        .ok()
        .and_then(|m| m.get(desc.full_name()).cloned())
    {
        return c;
    }
    let mut m = match cells.write() {
        Ok(m) => m,
        Err(p) => p.into_inner(),
    };
    Arc::clone(m.entry(desc.full_name().to_string()).or_insert_with(|| {
        Arc::new(Cell {
            desc: desc.clone(),
            plan: OnceLock::new(),
        })
    }))
}

/// The plan of an `Any` payload's type, remembered per thread by name (a resource holds a
/// handful of `Any` types, met thousands of times per generation).
fn any_plan(full_name: &str) -> Option<Arc<Cell>> {
    type Seen = Vec<(Box<str>, Option<Arc<Cell>>)>;
    thread_local! {
        static SEEN: std::cell::RefCell<Seen> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SEEN.with_borrow_mut(|seen| {
        if let Some((_, c)) = seen.iter().find(|(n, _)| &**n == full_name) {
            return c.clone();
        }
        let c = plan_of(full_name);
        if seen.len() < 256 {
            seen.push((full_name.into(), c.clone()));
        }
        c
    })
}

fn plan_of(full_name: &str) -> Option<Arc<Cell>> {
    let desc = descriptor_pool().get_message_by_name(full_name)?;
    Some(cell(&desc))
}

/// The message-typed fields of a type, looked up once per field on the wire: by index when
/// the field numbers are small (nearly every Envoy type), else by binary search.
enum Fields {
    Dense(Vec<Option<(bool, Arc<Cell>)>>),
    Sorted(Vec<(u32, (bool, Arc<Cell>))>),
}

impl Fields {
    /// Largest field number indexed directly.
    const DENSE_MAX: u32 = 256;

    fn new(mut v: Vec<(u32, (bool, Arc<Cell>))>) -> Fields {
        v.sort_by_key(|(n, _)| *n);
        match v.last() {
            Some((max, _)) if *max > Self::DENSE_MAX => Fields::Sorted(v),
            last => {
                let len = last.map_or(0, |(n, _)| *n as usize + 1);
                let mut dense = vec![None; len];
                for (n, f) in v {
                    if let Some(slot) = dense.get_mut(n as usize) {
                        *slot = Some(f);
                    }
                }
                Fields::Dense(dense)
            }
        }
    }

    fn get(&self, number: u32) -> Option<&(bool, Arc<Cell>)> {
        match self {
            Fields::Dense(v) => v.get(number as usize).and_then(Option::as_ref),
            Fields::Sorted(v) => v
                .binary_search_by_key(&number, |(n, _)| *n)
                .ok()
                .and_then(|i| v.get(i))
                .map(|(_, f)| f),
        }
    }
}

fn build_plan(desc: &MessageDescriptor) -> Plan {
    let any = desc.full_name() == ANY;
    let mut fields = Vec::new();
    for f in desc.fields() {
        if let Kind::Message(m) = f.kind() {
            fields.push((f.number(), (f.is_map(), cell(&m))));
        }
    }
    let fields = Fields::new(fields);
    Plan {
        walk: any || can_hold_map(desc, &mut Vec::new()),
        fields,
        any,
    }
}

fn can_hold_map(desc: &MessageDescriptor, visiting: &mut Vec<String>) -> bool {
    if desc.full_name() == ANY {
        return true;
    }
    if visiting.iter().any(|v| v == desc.full_name()) {
        // A recursive type: decided by its other fields.
        return false;
    }
    visiting.push(desc.full_name().to_string());
    let v = desc.fields().any(|f| {
        f.is_map()
            || match f.kind() {
                Kind::Message(m) => can_hold_map(&m, visiting),
                _ => false,
            }
    });
    visiting.pop();
    v
}

/// FNV-1a (64 bit) of `bytes`, as 16 hex digits: a version that is stable across processes
/// and releases (unlike `std`'s `DefaultHasher`).
pub fn version_of(bytes: &[u8]) -> String {
    format!("{:016x}", fnv1a(FNV_OFFSET, bytes))
}

/// FNV-1a offset basis.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Continues an FNV-1a hash over `bytes`.
pub fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

fn read_varint(buf: &[u8], pos: &mut usize, base: usize) -> Result<u64, CanonicalError> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *buf
            .get(*pos)
            .ok_or(CanonicalError::Malformed(base + *pos))?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(CanonicalError::Malformed(base + *pos))
}

/// One field as it appears on the wire.
struct Field<'a> {
    number: u32,
    /// Tag and (for length-delimited fields) length prefix.
    header: &'a [u8],
    /// Payload of a length-delimited field; the raw value otherwise.
    body: &'a [u8],
    delimited: bool,
}

fn next_field<'a>(
    buf: &'a [u8],
    pos: &mut usize,
    base: usize,
) -> Result<Field<'a>, CanonicalError> {
    let start = *pos;
    let key = read_varint(buf, pos, base)?;
    let number = u32::try_from(key >> 3).map_err(|_| CanonicalError::Malformed(base + start))?;
    let malformed = || CanonicalError::Malformed(base + start);
    let take = |pos: &mut usize, n: usize| -> Result<(), CanonicalError> {
        let end = pos
            .checked_add(n)
            .filter(|e| *e <= buf.len())
            .ok_or_else(malformed)?;
        *pos = end;
        Ok(())
    };
    match key & 7 {
        0 => {
            let value_start = *pos;
            read_varint(buf, pos, base)?;
            Ok(Field {
                number,
                header: &buf[start..value_start],
                body: &buf[value_start..*pos],
                delimited: false,
            })
        }
        1 | 5 => {
            let value_start = *pos;
            take(pos, if key & 7 == 1 { 8 } else { 4 })?;
            Ok(Field {
                number,
                header: &buf[start..value_start],
                body: &buf[value_start..*pos],
                delimited: false,
            })
        }
        2 => {
            let len = usize::try_from(read_varint(buf, pos, base)?).map_err(|_| malformed())?;
            let body_start = *pos;
            take(pos, len)?;
            Ok(Field {
                number,
                header: &buf[start..body_start],
                body: &buf[body_start..*pos],
                delimited: true,
            })
        }
        // Groups (3, 4) do not occur in Envoy's API; anything else is not protobuf.
        _ => Err(malformed()),
    }
}

fn walk(
    cell: &Cell,
    buf: &[u8],
    base: usize,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), CanonicalError> {
    if depth > MAX_DEPTH {
        return Err(CanonicalError::TooDeep);
    }
    let plan = cell.plan();
    if plan.any {
        return walk_any(buf, base, out, depth);
    }
    if !plan.walk {
        out.extend_from_slice(buf);
        return Ok(());
    }
    let mut pos = 0;
    // Consecutive entries of one map field, already written (canonicalised) to `out`, waiting
    // to be put in order.
    let mut run = Run::default();
    while pos < buf.len() {
        let at = base + pos;
        let f = next_field(buf, &mut pos, base)?;
        let step = if f.delimited {
            plan.fields.get(f.number)
        } else {
            None
        };
        match step {
            Some((true, entry)) => {
                if run.number != Some(f.number) {
                    run.flush(out);
                    run.start(f.number, out.len());
                }
                out.extend_from_slice(f.header);
                let body = out.len();
                walk(entry, f.body, at + f.header.len(), out, depth + 1)?;
                run.push(body, out.len());
            }
            Some((false, m)) => {
                run.flush(out);
                out.extend_from_slice(f.header);
                walk(m, f.body, at + f.header.len(), out, depth + 1)?;
            }
            None => {
                run.flush(out);
                out.extend_from_slice(f.header);
                out.extend_from_slice(f.body);
            }
        }
    }
    run.flush(out);
    Ok(())
}

/// Consecutive entries of one map field as ranges of the output. One entry (the common case:
/// `filter_metadata` with only `istio`) is already in order and costs no allocation; several
/// are sorted and the run is rewritten in place (same total length: only the order changes).
#[derive(Default)]
struct Run {
    number: Option<u32>,
    /// Where the run's first entry (its header) starts in the output.
    from: usize,
    /// The first entry as (header start, body start, end) in the output.
    first: Option<(usize, usize, usize)>,
    /// Every entry, once there is more than one.
    entries: Vec<(usize, usize, usize)>,
    /// The end of the previous entry (the next entry's header starts there).
    last_end: usize,
}

impl Run {
    fn start(&mut self, number: u32, at: usize) {
        self.number = Some(number);
        self.from = at;
        self.last_end = at;
    }

    fn push(&mut self, body: usize, end: usize) {
        let e = (self.last_end, body, end);
        match self.first {
            None => self.first = Some(e),
            Some(first) => {
                if self.entries.is_empty() {
                    self.entries.push(first);
                }
                self.entries.push(e);
            }
        }
        self.last_end = end;
    }

    fn flush(&mut self, out: &mut Vec<u8>) {
        if self.number.take().is_none() {
            return;
        }
        if self.entries.len() > 1 {
            let region = out.split_off(self.from);
            let local = |i: usize| i - self.from;
            // Entries start with their key (field 1), so byte order of the bodies sorts by key.
            self.entries.sort_unstable_by(|a, b| {
                region[local(a.1)..local(a.2)].cmp(&region[local(b.1)..local(b.2)])
            });
            for &(h, _, e) in &self.entries {
                out.extend_from_slice(&region[local(h)..local(e)]);
            }
        }
        self.first = None;
        self.entries.clear();
    }
}

/// `Any { type_url = 1, value = 2 }`: the payload is canonicalised as its own type when the
/// pool knows it, and copied otherwise.
fn walk_any(
    buf: &[u8],
    base: usize,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), CanonicalError> {
    let mut type_name = None;
    let mut pos = 0;
    while pos < buf.len() {
        let f = next_field(buf, &mut pos, base)?;
        if f.number == 1 && f.delimited {
            type_name = std::str::from_utf8(f.body)
                .ok()
                .map(|url| url.rsplit('/').next().unwrap_or(url));
        }
    }
    let inner = type_name.and_then(any_plan);
    let mut pos = 0;
    while pos < buf.len() {
        let at = base + pos;
        let f = next_field(buf, &mut pos, base)?;
        out.extend_from_slice(f.header);
        match &inner {
            Some(m) if f.number == 2 && f.delimited => {
                walk(m, f.body, at + f.header.len(), out, depth + 1)?;
            }
            _ => out.extend_from_slice(f.body),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::envoy::config::core::v3::Metadata;
    use envoy_types::pb::google::protobuf::{Any, Struct, Value, value::Kind as VKind};
    use prost::{Message, Name};

    use super::*;

    fn meta(n: usize) -> Metadata {
        let fields: HashMap<String, Value> = (0..n)
            .map(|i| {
                (
                    format!("k{i}"),
                    Value {
                        kind: Some(VKind::StringValue(format!("v{i}"))),
                    },
                )
            })
            .collect();
        let mut filter_metadata = HashMap::new();
        filter_metadata.insert(
            "istio".to_string(),
            Struct {
                fields: fields.clone(),
            },
        );
        filter_metadata.insert("other".to_string(), Struct { fields });
        Metadata {
            filter_metadata,
            ..Default::default()
        }
    }

    fn cluster() -> Cluster {
        Cluster {
            name: "outbound|80||a.example.com".into(),
            metadata: Some(meta(8)),
            ..Default::default()
        }
    }

    #[test]
    fn equal_messages_encode_identically_and_round_trip() {
        let mut seen = std::collections::BTreeSet::new();
        let mut raw = std::collections::BTreeSet::new();
        for _ in 0..20 {
            // A fresh clone has fresh HashMaps, hence (usually) a different iteration order.
            let c = cluster();
            let bytes = c.encode_to_vec();
            raw.insert(bytes.clone());
            let canon = canonicalize(&Cluster::full_name(), &bytes).expect("canonical");
            assert_eq!(canon.len(), bytes.len());
            assert_eq!(Cluster::decode(canon.as_slice()).expect("decodes"), c);
            seen.insert(canon);
        }
        assert_eq!(
            seen.len(),
            1,
            "canonical bytes must not depend on map order"
        );
        assert!(
            raw.len() > 1,
            "the test needs prost's order to vary to mean anything"
        );
    }

    #[test]
    fn maps_inside_any_are_sorted_too() {
        let encode_any = || Any {
            type_url: format!("type.googleapis.com/{}", Cluster::full_name()),
            value: cluster().encode_to_vec(),
        };
        let outer = |any: Any| Metadata {
            typed_filter_metadata: HashMap::from([("x".to_string(), any)]),
            ..Default::default()
        };
        let first = canonicalize(&Metadata::full_name(), &outer(encode_any()).encode_to_vec())
            .expect("canonical");
        for _ in 0..10 {
            let again = canonicalize(&Metadata::full_name(), &outer(encode_any()).encode_to_vec())
                .expect("canonical");
            assert_eq!(again, first);
        }
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let name = Cluster::full_name();
        for bad in [
            &[0x0a, 0x05, 0x61][..],
            &[0x80][..],
            &[0x0b][..],
            &[
                0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ][..],
        ] {
            assert!(canonicalize(&name, bad).is_err(), "{bad:?}");
        }
        assert!(canonicalize("no.such.Type", &[]).is_err());
        assert_eq!(canonicalize(&name, &[]), Ok(Vec::new()));
    }

    #[test]
    fn versions_are_stable_hex() {
        assert_eq!(version_of(b""), "cbf29ce484222325");
        assert_eq!(version_of(b"a"), "af63dc4c8601ec8c");
    }
}
