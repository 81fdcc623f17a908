//! A minimal protobuf writer for the few messages [`generate_encoded`](super::generate_encoded)
//! writes without building prost structs first (load assignments and their endpoints, the
//! most numerous messages of a large mesh). Fields are written in tag order and map entries
//! sorted by key; the `encoded` tests decode every such message and compare it with the prost
//! message `generate` builds.

/// Wire type of varints.
pub(crate) const VARINT: u32 = 0;
/// Wire type of length-delimited fields.
pub(crate) const LEN: u32 = 2;

/// Appends `v` as a varint.
pub(crate) fn varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Appends a field key.
pub(crate) fn key(buf: &mut Vec<u8>, tag: u32, wire_type: u32) {
    varint(buf, u64::from(tag << 3 | wire_type));
}

/// A `uint32`/enum field, skipped when zero (proto3 default).
pub(crate) fn uint32(buf: &mut Vec<u8>, tag: u32, v: u32) {
    if v != 0 {
        key(buf, tag, VARINT);
        varint(buf, u64::from(v));
    }
}

/// A `uint32` inside a oneof: written even when zero.
pub(crate) fn uint32_always(buf: &mut Vec<u8>, tag: u32, v: u32) {
    key(buf, tag, VARINT);
    varint(buf, u64::from(v));
}

/// A `string` field, skipped when empty (proto3 default).
pub(crate) fn string(buf: &mut Vec<u8>, tag: u32, s: &str) {
    if !s.is_empty() {
        string_always(buf, tag, s);
    }
}

/// A `string` field written even when empty (oneof members, map keys).
pub(crate) fn string_always(buf: &mut Vec<u8>, tag: u32, s: &str) {
    key(buf, tag, LEN);
    varint(buf, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

/// A `string` field made of parts joined by `sep` (no intermediate allocation).
pub(crate) fn joined(buf: &mut Vec<u8>, tag: u32, parts: &[&str], sep: u8) {
    let len = parts.iter().map(|p| p.len()).sum::<usize>() + parts.len().saturating_sub(1);
    key(buf, tag, LEN);
    varint(buf, len as u64);
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            buf.push(sep);
        }
        buf.extend_from_slice(p.as_bytes());
    }
}

/// A message field (always written, even when empty): `body` appends the message's fields,
/// then the length prefix is inserted before them.
pub(crate) fn message(buf: &mut Vec<u8>, tag: u32, body: impl FnOnce(&mut Vec<u8>)) {
    key(buf, tag, LEN);
    // One byte is reserved for the length (most messages here are shorter than 128 bytes);
    // longer ones shift their body to make room for the rest.
    let at = buf.len();
    buf.push(0);
    body(buf);
    let len = buf.len() - at - 1;
    if len < 0x80 {
        if let Some(b) = buf.get_mut(at) {
            *b = len as u8;
        }
    } else {
        let mut prefix = Vec::with_capacity(10);
        varint(&mut prefix, len as u64);
        buf.splice(at..at + 1, prefix);
    }
}

/// A `google.protobuf.UInt32Value` field.
pub(crate) fn uint32_value(buf: &mut Vec<u8>, tag: u32, v: u32) {
    message(buf, tag, |b| uint32(b, 1, v));
}

/// A `google.protobuf.Value` holding a string (`string_value`, field 3).
pub(crate) fn string_value(buf: &mut Vec<u8>, s: &str) {
    string_always(buf, 3, s);
}

/// A copy of the encoded message `msg`, exactly sized, in which the first top-level
/// length-delimited field of each tag in `repl` has the given content instead (a field
/// absent from `msg` is appended; tag 0 entries are ignored).
pub(crate) fn replace_fields(msg: &[u8], repl: &[(u32, &[u8])]) -> Vec<u8> {
    let active = || repl.iter().filter(|(t, _)| *t != 0);
    let found: Vec<Option<std::ops::Range<usize>>> =
        active().map(|(t, _)| find_field(msg, *t)).collect();
    let field_len = |t: u32, body: &[u8]| {
        let mut k = Vec::with_capacity(10);
        key(&mut k, t, LEN);
        varint(&mut k, body.len() as u64);
        k.len() + body.len()
    };
    let total = msg.len()
        + active()
            .zip(&found)
            .map(|((t, b), r)| field_len(*t, b) - r.as_ref().map_or(0, |r| r.len()))
            .sum::<usize>();
    let mut out = Vec::with_capacity(total);
    // Replacements in the order they occur in `msg`; absent ones at the end.
    let mut order: Vec<(usize, std::ops::Range<usize>, u32, &[u8])> = active()
        .zip(found)
        .map(|((t, b), r)| {
            let r = r.unwrap_or(msg.len()..msg.len());
            (r.start, r, *t, *b)
        })
        .collect();
    order.sort_by_key(|(s, _, _, _)| *s);
    let mut pos = 0;
    for (_, r, t, body) in order {
        out.extend_from_slice(msg.get(pos..r.start).unwrap_or_default());
        key(&mut out, t, LEN);
        varint(&mut out, body.len() as u64);
        out.extend_from_slice(body);
        pos = r.end;
    }
    out.extend_from_slice(msg.get(pos..).unwrap_or_default());
    out
}

fn read_varint(msg: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *msg.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The next top-level field of `msg` at `*pos`: (tag, wire type, byte range with the key).
fn next_field(msg: &[u8], pos: &mut usize) -> Option<(u32, u32, std::ops::Range<usize>)> {
    let start = *pos;
    let k = read_varint(msg, pos)?;
    let (t, wt) = (u32::try_from(k >> 3).ok()?, (k & 7) as u32);
    match wt {
        VARINT => {
            read_varint(msg, pos)?;
        }
        1 => *pos = pos.checked_add(8)?,
        5 => *pos = pos.checked_add(4)?,
        LEN => {
            let len = usize::try_from(read_varint(msg, pos)?).ok()?;
            *pos = pos.checked_add(len)?;
        }
        _ => return None,
    }
    (*pos <= msg.len()).then_some((t, wt, start..*pos))
}

/// The byte range (key included) of the first top-level length-delimited field `tag`.
fn find_field(msg: &[u8], tag: u32) -> Option<std::ops::Range<usize>> {
    let mut pos = 0;
    while pos < msg.len() {
        let (t, wt, range) = next_field(msg, &mut pos)?;
        if t == tag && wt == LEN {
            return Some(range);
        }
    }
    None
}

/// Splits the encoded message `msg` (fields in tag order, as prost writes them) into the
/// bytes of its fields with tags below `lo`, between `lo` and `hi` (both excluded), and
/// above `hi`; `None` when `msg` has a field `lo` or `hi` or does not parse.
pub(crate) fn split_around(msg: &[u8], lo: u32, hi: u32) -> Option<[Vec<u8>; 3]> {
    let mut parts: [Vec<u8>; 3] = Default::default();
    let mut pos = 0;
    while pos < msg.len() {
        let (t, _, range) = next_field(msg, &mut pos)?;
        let part = match t {
            t if t < lo => 0,
            t if t > lo && t < hi => 1,
            t if t > hi => 2,
            _ => return None,
        };
        parts.get_mut(part)?.extend_from_slice(msg.get(range)?);
    }
    Some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::google::protobuf::UInt32Value;
    use prost::Message;

    #[test]
    fn varints_and_nested_lengths_match_prost() {
        for v in [0u32, 1, 127, 128, 300, 16_383, 16_384, u32::MAX] {
            let mut buf = Vec::new();
            uint32_value(&mut buf, 1, v);
            // A message whose field 1 is a UInt32Value.
            let want = {
                let mut b = Vec::new();
                prost::encoding::message::encode(1, &UInt32Value { value: v }, &mut b);
                b
            };
            assert_eq!(buf, want, "{v}");
        }
        // A body longer than 127 bytes needs a two-byte length.
        let s = "x".repeat(200);
        let mut buf = Vec::new();
        message(&mut buf, 2, |b| string(b, 1, &s));
        let decoded = envoy_types::pb::envoy::config::core::v3::Locality::decode(
            // Locality.region is field 1: wrap our field-2 message as its content.
            &buf[buf.len() - 203..],
        )
        .expect("decodes");
        assert_eq!(decoded.region, s);
        assert_eq!(buf.len(), 1 + 2 + 1 + 2 + 200);
    }
}
