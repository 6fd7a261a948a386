//! The guest side of the packed batch format (`docs/packed-batch.md`): decode the host's batch,
//! encode the results. The host decodes defensively; this side trusts the host's encoding but
//! still never panics on a short buffer.

use crate::{HandlerError, Message, Metadata, Output};

const NONE: u32 = u32::MAX;

/// Decode a packed batch into messages.
pub fn decode_batch(buf: &[u8]) -> Result<Vec<Message>, String> {
    let mut r = Reader { buf, pos: 0 };
    let count = r.u32()? as usize;
    let mut msgs = Vec::with_capacity(count.min(1 << 16));
    for _ in 0..count {
        let id = r.string()?;
        let key = r.opt_bytes()?.map(<[u8]>::to_vec);
        let payload = r.bytes()?.to_vec();
        let headers = r.headers()?;
        let source = r.string()?;
        let topic = r.string()?;
        let partition = r
            .flagged(4)?
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        let offset = r.flagged(8)?.map(i64_le);
        let timestamp_ms = r.flagged(8)?.map(i64_le);
        let received_ms = i64_le(r.take(8)?);
        let attempt = r.u32()?;
        msgs.push(Message {
            id,
            key,
            payload,
            headers,
            metadata: Metadata {
                source,
                topic,
                partition,
                offset,
                timestamp_ms,
                received_ms,
                attempt,
            },
        });
    }
    Ok(msgs)
}

/// Encode results, one per message, in order.
pub fn encode_results(results: &[Result<Vec<Output>, HandlerError>]) -> Vec<u8> {
    let size: usize = results
        .iter()
        .map(|r| match r {
            Ok(outs) => {
                5 + outs
                    .iter()
                    .map(|o| 24 + o.payload.len() + o.key.as_ref().map_or(0, Vec::len))
                    .sum::<usize>()
            }
            Err(_) => 64,
        })
        .sum();
    let mut buf = Vec::with_capacity(4 + size);
    put_u32(&mut buf, results.len() as u32);
    for result in results {
        match result {
            Ok(outputs) => {
                buf.push(0);
                put_u32(&mut buf, outputs.len() as u32);
                for o in outputs {
                    put_bytes(&mut buf, &o.payload);
                    put_opt_bytes(&mut buf, o.key.as_deref());
                    put_u32(&mut buf, o.headers.len() as u32);
                    for (n, v) in &o.headers {
                        put_bytes(&mut buf, n.as_bytes());
                        put_bytes(&mut buf, v.as_bytes());
                    }
                    put_opt_bytes(&mut buf, o.route.as_deref().map(str::as_bytes));
                }
            }
            Err(e) => {
                let (tag, reason) = match e {
                    HandlerError::Transient(r) => (1, r),
                    HandlerError::Fatal(r) => (2, r),
                    HandlerError::Invalid(r) => (3, r),
                };
                buf.push(tag);
                put_bytes(&mut buf, reason.as_bytes());
            }
        }
    }
    buf
}

fn i64_le(b: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    i64::from_le_bytes(a)
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

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or("truncated batch")?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn opt_bytes(&mut self) -> Result<Option<&'a [u8]>, String> {
        match self.u32()? {
            NONE => Ok(None),
            n => self.take(n as usize).map(Some),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| "a string is not UTF-8".to_owned())
    }

    fn flagged(&mut self, width: usize) -> Result<Option<&'a [u8]>, String> {
        let flag = self.take(1)?[0];
        let value = self.take(width)?;
        Ok((flag != 0).then_some(value))
    }

    fn headers(&mut self) -> Result<Vec<(String, String)>, String> {
        let n = self.u32()? as usize;
        let mut h = Vec::with_capacity(n.min(256));
        for _ in 0..n {
            h.push((self.string()?, self.string()?));
        }
        Ok(h)
    }
}
