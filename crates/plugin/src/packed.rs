//! The host side of the packed batch format (`docs/packed-batch.md`): encode messages, decode
//! results. Decoding trusts nothing: every length is checked against the buffer.

use bytes::Bytes;

use crate::bindings::Contract;
use crate::settings::Limits;
use sluice_core::message::{ByteString, HeaderValue, Headers, Message, Output, ValueRef};
use sluice_core::transform::{ErrorClass, Failure, Outcome};

const NONE: u32 = u32::MAX;

/// A packed batch, placed mid-page in its buffer (see [`encode_batch`]).
#[derive(Debug)]
pub struct EncodedBatch {
    buf: Vec<u8>,
    start: usize,
}

impl EncodedBatch {
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

/// Encode `msgs` as a packed batch for a handler of `contract` (the versions differ in how
/// header values are laid out).
///
/// The batch starts half a page into its buffer. Wasmtime copies it into the guest with `memcpy`,
/// and the guest allocator's blocks sit just past a page boundary, as a fresh host buffer does:
/// source and destination then share their offsets within a page ("4K aliasing"), and glibc's
/// `rep movsb` copy crawled (the `uppercase` benchmark went from 358 to 255 ns per message when
/// the batch moved). Half a page apart, no load lands near a recent store.
pub fn encode_batch(msgs: &[Message], contract: Contract) -> EncodedBatch {
    let size: usize = msgs
        .iter()
        .map(|m| {
            96 + m.id.len()
                + m.payload.len()
                + m.key.as_ref().map_or(0, |k| k.len())
                + headers_len(&m.headers)
        })
        .sum();
    let mut buf = Vec::with_capacity(PAGE + 4 + size);
    let start = (PAGE / 2 + PAGE - buf.as_ptr() as usize % PAGE) % PAGE;
    buf.resize(start, 0);
    encode_into(msgs, contract, &mut buf);
    EncodedBatch { buf, start }
}

const PAGE: usize = 4096;

fn encode_into(msgs: &[Message], contract: Contract, buf: &mut Vec<u8>) {
    put_u32(buf, msgs.len() as u32);
    for m in msgs {
        put_bytes(buf, m.id.as_bytes());
        put_opt_bytes(buf, m.key.as_deref());
        put_bytes(buf, &m.payload);
        put_headers(buf, &m.headers, contract);
        put_bytes(buf, m.meta.source.as_bytes());
        put_bytes(buf, m.meta.topic.as_bytes());
        match m.meta.partition {
            Some(p) => {
                buf.push(1);
                buf.extend_from_slice(&p.to_le_bytes());
            }
            None => buf.extend_from_slice(&[0; 5]),
        }
        for v in [m.meta.offset, m.meta.timestamp_ms] {
            buf.push(u8::from(v.is_some()));
            buf.extend_from_slice(&v.unwrap_or(0).to_le_bytes());
        }
        buf.extend_from_slice(&m.meta.received_ms.to_le_bytes());
        put_u32(buf, m.meta.attempt);
    }
}

fn headers_len(h: &Headers) -> usize {
    h.iter().map(|(n, v)| 9 + n.len() + v.len()).sum()
}

fn put_u32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(buf: &mut Vec<u8>, b: &[u8]) {
    put_u32(buf, b.len() as u32);
    buf.extend_from_slice(b);
}

fn put_opt_bytes(buf: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        Some(b) => put_bytes(buf, b),
        None => put_u32(buf, NONE),
    }
}

/// 0.1: a value is a `str` (its text). 0.2: a `u8` tag, then `str` for text (0), `bytes` for
/// bytes (1), nothing for null (2).
fn put_headers(buf: &mut Vec<u8>, h: &Headers, contract: Contract) {
    put_u32(buf, h.len() as u32);
    for (n, v) in h {
        put_bytes(buf, n.as_bytes());
        match contract {
            Contract::V0_1 => put_bytes(buf, v.as_bytes()),
            Contract::V0_2 => match v.value() {
                ValueRef::Text(text) => {
                    buf.push(TEXT);
                    put_bytes(buf, text.as_bytes());
                }
                ValueRef::Bytes(bytes) => {
                    buf.push(BYTES);
                    put_bytes(buf, bytes);
                }
                ValueRef::Null => buf.push(NULL),
            },
        }
    }
}

/// Header value tags of the 0.2 layout.
const TEXT: u8 = 0;
const BYTES: u8 = 1;
const NULL: u8 = 2;

/// Decode a packed result buffer of a handler of `contract` for a batch of `expected` messages.
/// Payloads and keys are slices of `buf`, not copies.
///
/// An output count or an output's headers over `limits` are refused as soon as they are read,
/// before anything is allocated for them: a guest could otherwise make the host build millions
/// of tiny headers (5 bytes of buffer each) only to refuse them afterwards. The caller then runs
/// the batch's messages one per call, where the culprit alone fails with `output-limit`.
pub fn decode_results(
    buf: Bytes,
    expected: usize,
    contract: Contract,
    limits: &Limits,
) -> Result<Vec<Outcome>, String> {
    let mut r = Reader {
        buf,
        pos: 0,
        contract,
    };
    let count = r.u32()? as usize;
    if count != expected {
        return Err(format!("{count} results for {expected} messages"));
    }
    let mut outcomes = Vec::with_capacity(count);
    for _ in 0..count {
        let outcome = match r.u8()? {
            0 => {
                let n = r.u32()? as usize;
                if let Some(reason) = limits.outputs_over(n) {
                    return Err(reason);
                }
                let mut outputs = Vec::with_capacity(n);
                for i in 0..n {
                    let payload = r.bytes()?;
                    let key = r.opt_bytes()?;
                    let headers = r.headers(i, limits)?;
                    let route = r.opt_bytes()?.map(utf8).transpose()?.map(String::from);
                    outputs.push(Output {
                        payload,
                        key,
                        headers,
                        route,
                        timestamp_ms: None,
                    });
                }
                Outcome::Outputs(outputs)
            }
            tag @ 1..=3 => {
                let class = [
                    ErrorClass::Transient,
                    ErrorClass::Fatal,
                    ErrorClass::Invalid,
                ][tag as usize - 1];
                Outcome::Failed(Failure::new(class, String::from(utf8(r.bytes()?)?)))
            }
            tag => return Err(format!("unknown result tag {tag}")),
        };
        outcomes.push(outcome);
    }
    if r.pos != r.buf.len() {
        return Err(format!("{} bytes left over", r.buf.len() - r.pos));
    }
    Ok(outcomes)
}

fn utf8(b: Bytes) -> Result<ByteString, String> {
    ByteString::try_from(b).map_err(|_| "a string is not UTF-8".to_owned())
}

struct Reader {
    buf: Bytes,
    pos: usize,
    contract: Contract,
}

impl Reader {
    /// The next `n` bytes, borrowed: for integers, which need no `Bytes` handle (each handle is
    /// an atomic reference count, measurable per field).
    fn raw(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or("truncated buffer")?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    /// The next `n` bytes as a slice of the buffer (no copy).
    fn take(&mut self, n: usize) -> Result<Bytes, String> {
        let start = self.pos;
        self.raw(n)?;
        Ok(self.buf.slice(start..self.pos))
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.raw(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.raw(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn bytes(&mut self) -> Result<Bytes, String> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn opt_bytes(&mut self) -> Result<Option<Bytes>, String> {
        match self.u32()? {
            NONE => Ok(None),
            n => self.take(n as usize).map(Some),
        }
    }

    /// Output `i`'s headers, refused over `limits` before they are built.
    fn headers(&mut self, i: usize, limits: &Limits) -> Result<Headers, String> {
        let n = self.u32()? as usize;
        if let Some(reason) = limits.headers_over(i, n, 0) {
            return Err(reason);
        }
        let mut h = Vec::with_capacity(n);
        let mut size = 0u64;
        for _ in 0..n {
            let name = utf8(self.bytes()?)?;
            let value = match self.contract {
                Contract::V0_1 => utf8(self.bytes()?)?.into(),
                Contract::V0_2 => match self.u8()? {
                    TEXT => utf8(self.bytes()?)?.into(),
                    BYTES => HeaderValue::binary(self.bytes()?),
                    NULL => HeaderValue::null(),
                    tag => return Err(format!("unknown header value tag {tag}")),
                },
            };
            size += (name.len() + value.bytes().map_or(0, <[u8]>::len)) as u64;
            if let Some(reason) = limits.headers_over(i, n, size) {
                return Err(reason);
            }
            h.push((name, value));
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result_buf(parts: &[&[u8]]) -> Bytes {
        Bytes::from(parts.concat())
    }

    #[test]
    fn decodes_outputs_and_errors() {
        let buf = result_buf(&[
            &3u32.to_le_bytes(),
            // ok with one output: payload "hi", no key, one header, route "r"
            &[0],
            &1u32.to_le_bytes(),
            &2u32.to_le_bytes(),
            b"hi",
            &NONE.to_le_bytes(),
            &1u32.to_le_bytes(),
            &1u32.to_le_bytes(),
            b"h",
            &1u32.to_le_bytes(),
            b"v",
            &1u32.to_le_bytes(),
            b"r",
            // transient "later"
            &[1],
            &5u32.to_le_bytes(),
            b"later",
            // ok, filtered
            &[0],
            &0u32.to_le_bytes(),
        ]);
        let out = decode_results(buf, 3, Contract::V0_1, &Limits::default()).unwrap();
        let Outcome::Outputs(o) = &out[0] else {
            panic!()
        };
        assert_eq!(&o[0].payload[..], b"hi");
        assert_eq!(o[0].key, None);
        assert_eq!(o[0].headers, vec![("h".into(), "v".into())]);
        assert_eq!(o[0].route.as_deref(), Some("r"));
        assert_eq!(
            out[1],
            Outcome::Failed(Failure::new(ErrorClass::Transient, "later"))
        );
        assert_eq!(out[2], Outcome::Outputs(vec![]));
    }

    #[test]
    fn contract_0_2_header_values_are_text_bytes_or_null() {
        let header = |tag: u8, value: &[u8]| -> Vec<u8> {
            let mut h = [&1u32.to_le_bytes()[..], b"h", &[tag]].concat();
            if tag != NULL {
                h.extend_from_slice(&(value.len() as u32).to_le_bytes());
                h.extend_from_slice(value);
            }
            h
        };
        let result = |tag: u8, value: &[u8]| {
            let output = [
                &[0][..],
                &1u32.to_le_bytes(),
                &0u32.to_le_bytes(),
                &NONE.to_le_bytes(),
                &1u32.to_le_bytes(),
                &header(tag, value),
                &NONE.to_le_bytes(),
            ]
            .concat();
            decode_results(
                result_buf(&[&1u32.to_le_bytes(), &output]),
                1,
                Contract::V0_2,
                &Limits::default(),
            )
        };
        let value = |tag: u8, value: &[u8]| {
            let Outcome::Outputs(o) = result(tag, value).unwrap().remove(0) else {
                panic!()
            };
            o[0].headers[0].1.clone()
        };
        assert_eq!(value(TEXT, b"t").value(), ValueRef::Text("t"));
        assert_eq!(
            value(BYTES, b"\xff\x00").value(),
            ValueRef::Bytes(b"\xff\x00")
        );
        assert_eq!(value(NULL, b"").value(), ValueRef::Null);
        assert_eq!(result(TEXT, b"\xff").unwrap_err(), "a string is not UTF-8");
        assert!(result(7, b"").unwrap_err().contains("header value tag 7"));
        // Over the limits: refused as read, before the headers are built.
        let limits = Limits {
            max_headers: 0,
            ..Limits::default()
        };
        let output = [
            &[0][..],
            &1u32.to_le_bytes(),
            &0u32.to_le_bytes(),
            &NONE.to_le_bytes(),
            &u32::MAX.to_le_bytes(),
        ]
        .concat();
        let refused = decode_results(
            result_buf(&[&1u32.to_le_bytes(), &output]),
            1,
            Contract::V0_2,
            &limits,
        );
        assert_eq!(
            refused.unwrap_err(),
            "output 0 has 4294967295 headers, the limit is 0"
        );
        let many = [&[0][..], &u32::MAX.to_le_bytes()].concat();
        let refused = decode_results(
            result_buf(&[&1u32.to_le_bytes(), &many]),
            1,
            Contract::V0_2,
            &Limits::default(),
        );
        assert!(refused.unwrap_err().contains("4294967295 outputs"));
    }

    #[test]
    fn malformed_buffers_are_errors_not_panics() {
        assert!(decode_results(Bytes::new(), 1, Contract::V0_1, &Limits::default()).is_err());
        assert!(
            decode_results(
                result_buf(&[&2u32.to_le_bytes()]),
                1,
                Contract::V0_1,
                &Limits::default()
            )
            .unwrap_err()
            .contains("2 results for 1")
        );
        assert!(
            decode_results(
                result_buf(&[&1u32.to_le_bytes(), &[9]]),
                1,
                Contract::V0_1,
                &Limits::default()
            )
            .unwrap_err()
            .contains("tag 9")
        );
        assert!(
            decode_results(
                result_buf(&[
                    &1u32.to_le_bytes(),
                    &[0],
                    &1u32.to_le_bytes(),
                    &u32::MAX.to_le_bytes()
                ]),
                1,
                Contract::V0_1,
                &Limits::default()
            )
            .is_err()
        );
        let bad_utf8 = result_buf(&[&1u32.to_le_bytes(), &[2], &1u32.to_le_bytes(), &[0xff]]);
        assert_eq!(
            decode_results(bad_utf8, 1, Contract::V0_1, &Limits::default()).unwrap_err(),
            "a string is not UTF-8"
        );
        let trailing = result_buf(&[&1u32.to_le_bytes(), &[0], &0u32.to_le_bytes(), &[7]]);
        assert!(
            decode_results(trailing, 1, Contract::V0_1, &Limits::default())
                .unwrap_err()
                .contains("left over")
        );
    }
}
