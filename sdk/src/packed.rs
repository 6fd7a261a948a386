//! The guest side of the packed batch format (`docs/packed-batch.md`).
//!
//! Messages are read as [`MessageView`]s that borrow from the host's buffer, and outputs are
//! written straight into the result buffer, so a handler that implements
//! [`Handler::handle_view`](crate::Handler::handle_view) allocates nothing per message beyond what
//! it computes itself.

use crate::{HandlerError, HeaderValue, Message, Metadata, Output};

const NONE: u32 = u32::MAX;

/// Header value tags (`docs/packed-batch.md`, contract 0.2).
const TEXT: u8 = 0;
const BYTES: u8 = 1;
const NULL: u8 = 2;

/// A header value borrowed from the batch buffer: text, bytes or null.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderRef<'a> {
    Text(&'a str),
    Bytes(&'a [u8]),
    Null,
}

impl<'a> HeaderRef<'a> {
    /// The value as text: the text, or bytes that are UTF-8 (an AMQP byte array of text);
    /// `None` for null and for bytes that are not UTF-8.
    pub fn as_str(&self) -> Option<&'a str> {
        match self {
            HeaderRef::Text(text) => Some(text),
            HeaderRef::Bytes(bytes) => std::str::from_utf8(bytes).ok(),
            HeaderRef::Null => None,
        }
    }

    /// The value's bytes: a text's UTF-8, or the bytes; `None` for null.
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self {
            HeaderRef::Text(text) => Some(text.as_bytes()),
            HeaderRef::Bytes(bytes) => Some(bytes),
            HeaderRef::Null => None,
        }
    }

    /// An owned copy.
    pub fn to_value(&self) -> HeaderValue {
        match self {
            HeaderRef::Text(text) => HeaderValue::Text((*text).to_owned()),
            HeaderRef::Bytes(bytes) => HeaderValue::Bytes(bytes.to_vec()),
            HeaderRef::Null => HeaderValue::Null,
        }
    }
}

/// A message borrowed from the batch buffer. Strings are checked for UTF-8 only when read, so
/// a handler pays for nothing it does not look at.
#[derive(Debug, Clone, Copy)]
pub struct MessageView<'a> {
    id: &'a [u8],
    pub key: Option<&'a [u8]>,
    pub payload: &'a [u8],
    /// The message's headers as they are encoded in the batch; see [`MessageView::headers`].
    pub raw_headers: RawHeaders<'a>,
    pub metadata: MetadataView<'a>,
}

/// Read-only metadata of a [`MessageView`].
#[derive(Debug, Clone, Copy)]
pub struct MetadataView<'a> {
    source: &'a [u8],
    topic: &'a [u8],
    pub partition: Option<i32>,
    pub offset: Option<i64>,
    pub timestamp_ms: Option<i64>,
    pub received_ms: i64,
    pub attempt: u32,
}

/// Encoded headers: a count and the `(name, value)` pairs, copied verbatim when passed through.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawHeaders<'a> {
    count: u32,
    bytes: &'a [u8],
}

impl<'a> RawHeaders<'a> {
    /// No headers.
    pub const NONE: RawHeaders<'static> = RawHeaders {
        count: 0,
        bytes: &[],
    };

    /// The `(name, value)` pairs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, HeaderRef<'a>)> + 'a {
        let mut r = Reader {
            buf: self.bytes,
            pos: 0,
        };
        (0..self.count).map_while(move |_| Some((r.str().ok()?, r.header_value().ok()?)))
    }

    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// The host writes only valid UTF-8; should a string be broken anyway, it reads as empty rather
/// than trap the handler.
fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap_or_default()
}

impl<'a> MetadataView<'a> {
    /// The pipeline's source name.
    pub fn source(&self) -> &'a str {
        text(self.source)
    }

    /// Topic, queue, subject or file.
    pub fn topic(&self) -> &'a str {
        text(self.topic)
    }
}

impl<'a> MessageView<'a> {
    /// Unique within the source.
    pub fn id(&self) -> &'a str {
        text(self.id)
    }

    /// The `(name, value)` header pairs, in order.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, HeaderRef<'a>)> + 'a {
        self.raw_headers.iter()
    }

    /// The value of the first header called `name` (case-sensitive), if any.
    pub fn header_value(&self, name: &str) -> Option<HeaderRef<'a>> {
        self.headers().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The first header called `name` as text ([`HeaderRef::as_str`]: bytes that are UTF-8 read
    /// as text; see [`MessageView::header_value`] for every value as it is).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.header_value(name).and_then(|v| v.as_str())
    }

    /// An owned copy, for handlers that implement only [`Handler::handle`](crate::Handler::handle).
    pub fn to_owned(&self) -> Message {
        let m = &self.metadata;
        Message {
            id: self.id().to_owned(),
            key: self.key.map(<[u8]>::to_vec),
            payload: self.payload.to_vec(),
            headers: self
                .headers()
                .map(|(n, v)| (n.to_owned(), v.to_value()))
                .collect(),
            metadata: Metadata {
                source: m.source().to_owned(),
                topic: m.topic().to_owned(),
                partition: m.partition,
                offset: m.offset,
                timestamp_ms: m.timestamp_ms,
                received_ms: m.received_ms,
                attempt: m.attempt,
            },
        }
    }
}

/// An output written without owning its parts.
#[derive(Debug, Clone, Copy)]
pub struct OutputRef<'a> {
    pub payload: &'a [u8],
    pub key: Option<&'a [u8]>,
    /// Headers copied verbatim (usually the input's, `msg.raw_headers`), then `extra_headers`
    /// (text values; write bytes or null through an owned [`Output`]).
    pub headers: RawHeaders<'a>,
    pub extra_headers: &'a [(&'a str, &'a str)],
    pub route: Option<&'a str>,
}

impl<'a> OutputRef<'a> {
    /// This payload, no key, no headers, default route.
    pub fn new(payload: &'a [u8]) -> Self {
        OutputRef {
            payload,
            key: None,
            headers: RawHeaders::NONE,
            extra_headers: &[],
            route: None,
        }
    }
}

/// Where a handler writes the outputs for one message.
#[derive(Debug)]
pub struct Outputs<'b> {
    buf: &'b mut Vec<u8>,
    count: u32,
}

impl Outputs<'_> {
    /// Emit one output.
    pub fn push(&mut self, o: OutputRef<'_>) {
        put_bytes(self.buf, o.payload);
        put_opt_bytes(self.buf, o.key);
        put_u32(self.buf, o.headers.count + o.extra_headers.len() as u32);
        self.buf.extend_from_slice(o.headers.bytes);
        for (n, v) in o.extra_headers {
            put_bytes(self.buf, n.as_bytes());
            self.buf.push(TEXT);
            put_bytes(self.buf, v.as_bytes());
        }
        put_opt_bytes(self.buf, o.route.map(str::as_bytes));
        self.count += 1;
    }

    /// Emit an owned [`Output`].
    pub fn push_owned(&mut self, o: &Output) {
        put_bytes(self.buf, &o.payload);
        put_opt_bytes(self.buf, o.key.as_deref());
        put_u32(self.buf, o.headers.len() as u32);
        for (n, v) in &o.headers {
            put_bytes(self.buf, n.as_bytes());
            match v {
                HeaderValue::Text(text) => {
                    self.buf.push(TEXT);
                    put_bytes(self.buf, text.as_bytes());
                }
                HeaderValue::Bytes(bytes) => {
                    self.buf.push(BYTES);
                    put_bytes(self.buf, bytes);
                }
                HeaderValue::Null => self.buf.push(NULL),
            }
        }
        put_opt_bytes(self.buf, o.route.as_deref().map(str::as_bytes));
        self.count += 1;
    }
}

/// Builds the result buffer, one result per message.
#[derive(Debug)]
pub struct ResultWriter {
    buf: Vec<u8>,
}

impl ResultWriter {
    /// A writer for `count` results, sized for about `capacity` bytes.
    pub fn new(count: usize, capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity);
        put_u32(&mut buf, count as u32);
        ResultWriter { buf }
    }

    /// Write one message's result: `f` emits its outputs, or fails (then whatever it emitted is
    /// discarded and the error is written instead).
    pub fn result(&mut self, f: impl FnOnce(&mut Outputs<'_>) -> Result<(), HandlerError>) {
        let start = self.buf.len();
        self.buf.push(0);
        put_u32(&mut self.buf, 0);
        let mut outputs = Outputs {
            buf: &mut self.buf,
            count: 0,
        };
        match f(&mut outputs) {
            Ok(()) => {
                let count = outputs.count.to_le_bytes();
                self.buf[start + 1..start + 5].copy_from_slice(&count);
            }
            Err(e) => {
                self.buf.truncate(start);
                self.error(&e);
            }
        }
    }

    /// Write one message's error.
    pub fn error(&mut self, e: &HandlerError) {
        let (tag, reason) = match e {
            HandlerError::Transient(r) => (1, r),
            HandlerError::Fatal(r) => (2, r),
            HandlerError::Invalid(r) => (3, r),
        };
        self.buf.push(tag);
        put_bytes(&mut self.buf, reason.as_bytes());
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// The messages of a packed batch, as views.
pub fn read_batch(
    buf: &[u8],
) -> Result<(usize, impl Iterator<Item = Result<MessageView<'_>, String>>), String> {
    let mut r = Reader { buf, pos: 0 };
    let count = r.u32()? as usize;
    let mut failed = false;
    let iter = (0..count).map_while(move |_| {
        if failed {
            return None;
        }
        let view = r.message();
        failed = view.is_err();
        Some(view)
    });
    Ok((count, iter))
}

/// Decode a packed batch into owned messages.
pub fn decode_batch(buf: &[u8]) -> Result<Vec<Message>, String> {
    let (_, views) = read_batch(buf)?;
    views.map(|v| v.map(|v| v.to_owned())).collect()
}

/// Encode owned results, one per message, in order.
pub fn encode_results(results: &[Result<Vec<Output>, HandlerError>]) -> Vec<u8> {
    let mut w = ResultWriter::new(results.len(), 64 * results.len());
    for r in results {
        match r {
            Ok(outputs) => w.result(|out| {
                outputs.iter().for_each(|o| out.push_owned(o));
                Ok(())
            }),
            Err(e) => w.error(e),
        }
    }
    w.finish()
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

    fn i64(&mut self) -> Result<i64, String> {
        let b = self.take(8)?;
        Ok(i64::from_le_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ]))
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

    fn str(&mut self) -> Result<&'a str, String> {
        std::str::from_utf8(self.bytes()?).map_err(|_| "a string is not UTF-8".to_owned())
    }

    fn header_value(&mut self) -> Result<HeaderRef<'a>, String> {
        match self.take(1)?[0] {
            TEXT => self.str().map(HeaderRef::Text),
            BYTES => self.bytes().map(HeaderRef::Bytes),
            NULL => Ok(HeaderRef::Null),
            tag => Err(format!("unknown header value tag {tag}")),
        }
    }

    fn flagged<const N: usize>(&mut self) -> Result<Option<[u8; N]>, String> {
        let flag = self.take(1)?[0];
        let mut value = [0u8; N];
        value.copy_from_slice(self.take(N)?);
        Ok((flag != 0).then_some(value))
    }

    fn headers(&mut self) -> Result<RawHeaders<'a>, String> {
        let count = self.u32()?;
        let start = self.pos;
        // Lengths and tags only: strings are checked for UTF-8 when a handler reads them.
        for _ in 0..count {
            self.bytes()?;
            match self.take(1)?[0] {
                TEXT | BYTES => {
                    self.bytes()?;
                }
                NULL => {}
                tag => return Err(format!("unknown header value tag {tag}")),
            }
        }
        Ok(RawHeaders {
            count,
            bytes: &self.buf[start..self.pos],
        })
    }

    fn message(&mut self) -> Result<MessageView<'a>, String> {
        let id = self.bytes()?;
        let key = self.opt_bytes()?;
        let payload = self.bytes()?;
        let raw_headers = self.headers()?;
        let source = self.bytes()?;
        let topic = self.bytes()?;
        let partition = self.flagged::<4>()?.map(i32::from_le_bytes);
        let offset = self.flagged::<8>()?.map(i64::from_le_bytes);
        let timestamp_ms = self.flagged::<8>()?.map(i64::from_le_bytes);
        let received_ms = self.i64()?;
        let attempt = self.u32()?;
        Ok(MessageView {
            id,
            key,
            payload,
            raw_headers,
            metadata: MetadataView {
                source,
                topic,
                partition,
                offset,
                timestamp_ms,
                received_ms,
                attempt,
            },
        })
    }
}
