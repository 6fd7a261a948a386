//! The host side of the packed batch format (`docs/packed-batch.md`): encode messages, decode
//! results. Decoding trusts nothing: every length is checked against the buffer.

use bytes::Bytes;

use sluice_core::message::{ByteString, Headers, Message, Output};
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

/// Encode `msgs` as a packed batch.
///
/// The batch starts half a page into its buffer. Wasmtime copies it into the guest with `memcpy`,
/// and the guest allocator's blocks sit just past a page boundary, as a fresh host buffer does:
/// source and destination then share their offsets within a page ("4K aliasing"), and glibc's
/// `rep movsb` copy crawled (the `uppercase` benchmark went from 358 to 255 ns per message when
/// the batch moved). Half a page apart, no load lands near a recent store.
pub fn encode_batch(msgs: &[Message]) -> EncodedBatch {
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
    encode_into(msgs, &mut buf);
    EncodedBatch { buf, start }
}

const PAGE: usize = 4096;

fn encode_into(msgs: &[Message], buf: &mut Vec<u8>) {
    put_u32(buf, msgs.len() as u32);
    for m in msgs {
        put_bytes(buf, m.id.as_bytes());
        put_opt_bytes(buf, m.key.as_deref());
        put_bytes(buf, &m.payload);
        put_headers(buf, &m.headers);
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
    h.iter().map(|(n, v)| 8 + n.len() + v.len()).sum()
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

fn put_headers(buf: &mut Vec<u8>, h: &Headers) {
    put_u32(buf, h.len() as u32);
    for (n, v) in h {
        put_bytes(buf, n.as_bytes());
        put_bytes(buf, v.as_bytes());
    }
}

/// Decode a packed result buffer for a batch of `expected` messages. Payloads and keys are
/// slices of `buf`, not copies.
pub fn decode_results(buf: Bytes, expected: usize) -> Result<Vec<Outcome>, String> {
    let mut r = Reader { buf, pos: 0 };
    let count = r.u32()? as usize;
    if count != expected {
        return Err(format!("{count} results for {expected} messages"));
    }
    let mut outcomes = Vec::with_capacity(count);
    for _ in 0..count {
        let outcome = match r.u8()? {
            0 => {
                let n = r.u32()? as usize;
                let mut outputs = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    let payload = r.bytes()?;
                    let key = r.opt_bytes()?;
                    let headers = r.headers()?;
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

    fn headers(&mut self) -> Result<Headers, String> {
        let n = self.u32()? as usize;
        let mut h = Vec::with_capacity(n.min(256));
        for _ in 0..n {
            h.push((utf8(self.bytes()?)?, utf8(self.bytes()?)?.into()));
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
        let out = decode_results(buf, 3).unwrap();
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
    fn malformed_buffers_are_errors_not_panics() {
        assert!(decode_results(Bytes::new(), 1).is_err());
        assert!(
            decode_results(result_buf(&[&2u32.to_le_bytes()]), 1)
                .unwrap_err()
                .contains("2 results for 1")
        );
        assert!(
            decode_results(result_buf(&[&1u32.to_le_bytes(), &[9]]), 1)
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
                1
            )
            .is_err()
        );
        let bad_utf8 = result_buf(&[&1u32.to_le_bytes(), &[2], &1u32.to_le_bytes(), &[0xff]]);
        assert_eq!(
            decode_results(bad_utf8, 1).unwrap_err(),
            "a string is not UTF-8"
        );
        let trailing = result_buf(&[&1u32.to_le_bytes(), &[0], &0u32.to_le_bytes(), &[7]]);
        assert!(
            decode_results(trailing, 1)
                .unwrap_err()
                .contains("left over")
        );
    }
}
