//! MongoDB wire protocol framing: OP_MSG (every modern driver) and the legacy
//! OP_QUERY / OP_REPLY pair that some drivers (pymongo) still use for the
//! very first handshake on a connection.
//!
//! Layout follows the "MongoDB Wire Protocol" reference: a 16-byte header
//! (messageLength, requestID, responseTo, opCode, all little-endian int32),
//! then the opcode-specific body.

use bson::Document;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// OP_REPLY (legacy reply to OP_QUERY).
pub const OP_REPLY: i32 = 1;
/// OP_QUERY (legacy; used for the first handshake by some drivers).
pub const OP_QUERY: i32 = 2004;
/// OP_MSG.
pub const OP_MSG: i32 = 2013;

/// OP_MSG flag: a CRC-32C checksum follows the sections.
const CHECKSUM_PRESENT: u32 = 1;
/// OP_MSG flag: the client accepts several replies (awaitable hello).
pub const EXHAUST_ALLOWED: u32 = 1 << 16;

/// Largest message we accept (the 48 MB documented for maxMessageSizeBytes).
pub const MAX_MESSAGE: usize = 48_000_000;

/// One decoded request.
#[derive(Debug)]
pub struct Request {
    /// Client's requestID, echoed as responseTo.
    pub request_id: i32,
    /// Which framing the client used, so the reply uses the same.
    pub legacy: bool,
    /// OP_MSG flag bits.
    pub flags: u32,
    /// The command body, with kind-1 document sequences folded in as arrays
    /// (exactly what the server does: `documents` of an insert arrive as a
    /// sequence and are treated as the body field of that name).
    pub body: Document,
}

/// Read one message. `Ok(None)` on a clean EOF before a header.
pub async fn read_request<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<Request>> {
    let mut header = [0u8; 16];
    match r.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = i32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
    let request_id = i32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    let op_code = i32::from_le_bytes(header[12..16].try_into().expect("4 bytes"));
    if !(16..=MAX_MESSAGE).contains(&len) {
        return Err(invalid(format!("message length {len} out of range")));
    }
    let mut body = vec![0u8; len - 16];
    r.read_exact(&mut body).await?;
    match op_code {
        OP_MSG => parse_op_msg(request_id, &body).map(Some),
        OP_QUERY => parse_op_query(request_id, &body).map(Some),
        other => Err(invalid(format!("unsupported opcode {other}"))),
    }
}

fn invalid(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

fn parse_op_msg(request_id: i32, b: &[u8]) -> std::io::Result<Request> {
    if b.len() < 5 {
        return Err(invalid("OP_MSG too short".into()));
    }
    let flags = u32::from_le_bytes(b[0..4].try_into().expect("4 bytes"));
    let end = if flags & CHECKSUM_PRESENT != 0 {
        b.len().saturating_sub(4)
    } else {
        b.len()
    };
    let mut pos = 4;
    let mut body: Option<Document> = None;
    let mut sequences: Vec<(String, Vec<Document>)> = Vec::new();
    while pos < end {
        let kind = b[pos];
        pos += 1;
        match kind {
            0 => {
                let (doc, n) = read_doc(&b[pos..end])?;
                pos += n;
                body = Some(doc);
            }
            1 => {
                let size = read_i32(&b[pos..end])? as usize;
                if size < 4 || pos + size > end {
                    return Err(invalid("bad document sequence size".into()));
                }
                let seq = &b[pos + 4..pos + size];
                let nul = seq
                    .iter()
                    .position(|c| *c == 0)
                    .ok_or_else(|| invalid("unterminated sequence identifier".into()))?;
                let ident = String::from_utf8_lossy(&seq[..nul]).into_owned();
                let mut docs = Vec::new();
                let mut p = nul + 1;
                while p < seq.len() {
                    let (d, n) = read_doc(&seq[p..])?;
                    p += n;
                    docs.push(d);
                }
                sequences.push((ident, docs));
                pos += size;
            }
            k => return Err(invalid(format!("unknown OP_MSG section kind {k}"))),
        }
    }
    let mut body = body.ok_or_else(|| invalid("OP_MSG without a body section".into()))?;
    for (ident, docs) in sequences {
        body.insert(
            ident,
            bson::Bson::Array(docs.into_iter().map(bson::Bson::Document).collect()),
        );
    }
    Ok(Request {
        request_id,
        legacy: false,
        flags,
        body,
    })
}

fn parse_op_query(request_id: i32, b: &[u8]) -> std::io::Result<Request> {
    // flags int32, fullCollectionName cstring, numberToSkip, numberToReturn, query doc.
    let mut pos = 4;
    let nul = b[pos..]
        .iter()
        .position(|c| *c == 0)
        .ok_or_else(|| invalid("unterminated collection name".into()))?;
    let coll = String::from_utf8_lossy(&b[pos..pos + nul]).into_owned();
    pos += nul + 1 + 8;
    if pos > b.len() {
        return Err(invalid("OP_QUERY too short".into()));
    }
    let (mut query, _) = read_doc(&b[pos..])?;
    if !coll.ends_with(".$cmd") {
        return Err(invalid(format!("OP_QUERY on {coll} is not supported")));
    }
    // Drivers may wrap the command as {$query: {...}, $readPreference: ...}.
    if let Ok(inner) = query.get_document("$query") {
        query = inner.clone();
    }
    if !query.contains_key("$db") {
        let db = coll.trim_end_matches(".$cmd").to_string();
        query.insert("$db", db);
    }
    Ok(Request {
        request_id,
        legacy: true,
        flags: 0,
        body: query,
    })
}

fn read_i32(b: &[u8]) -> std::io::Result<i32> {
    if b.len() < 4 {
        return Err(invalid("truncated int32".into()));
    }
    Ok(i32::from_le_bytes(b[0..4].try_into().expect("4 bytes")))
}

fn read_doc(b: &[u8]) -> std::io::Result<(Document, usize)> {
    let len = read_i32(b)? as usize;
    if len < 5 || len > b.len() {
        return Err(invalid("bad BSON document length".into()));
    }
    let doc = Document::from_reader(&b[..len]).map_err(|e| invalid(e.to_string()))?;
    Ok((doc, len))
}

/// Write one reply in the framing the request used.
pub async fn write_reply<W: AsyncWrite + Unpin>(
    w: &mut W,
    request: &Request,
    reply_id: i32,
    body: &Document,
) -> std::io::Result<()> {
    let mut doc = Vec::new();
    body.to_writer(&mut doc)
        .map_err(|e| invalid(e.to_string()))?;
    let mut msg = Vec::with_capacity(doc.len() + 40);
    msg.extend_from_slice(&[0u8; 4]);
    msg.extend_from_slice(&reply_id.to_le_bytes());
    msg.extend_from_slice(&request.request_id.to_le_bytes());
    if request.legacy {
        msg.extend_from_slice(&OP_REPLY.to_le_bytes());
        msg.extend_from_slice(&0i32.to_le_bytes()); // responseFlags
        msg.extend_from_slice(&0i64.to_le_bytes()); // cursorID
        msg.extend_from_slice(&0i32.to_le_bytes()); // startingFrom
        msg.extend_from_slice(&1i32.to_le_bytes()); // numberReturned
    } else {
        msg.extend_from_slice(&OP_MSG.to_le_bytes());
        msg.extend_from_slice(&0u32.to_le_bytes()); // flagBits
        msg.push(0);
    }
    msg.extend_from_slice(&doc);
    let len = msg.len() as i32;
    msg[0..4].copy_from_slice(&len.to_le_bytes());
    w.write_all(&msg).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn frame(op: i32, id: i32, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((16 + body.len()) as i32).to_le_bytes());
        m.extend_from_slice(&id.to_le_bytes());
        m.extend_from_slice(&0i32.to_le_bytes());
        m.extend_from_slice(&op.to_le_bytes());
        m.extend_from_slice(body);
        m
    }

    #[tokio::test]
    async fn op_query_handshake_gets_an_op_reply() {
        let mut body = Vec::new();
        body.extend_from_slice(&0i32.to_le_bytes());
        body.extend_from_slice(b"admin.$cmd\0");
        body.extend_from_slice(&0i32.to_le_bytes());
        body.extend_from_slice(&(-1i32).to_le_bytes());
        doc! { "isMaster": 1, "helloOk": true }
            .to_writer(&mut body)
            .unwrap();
        let msg = frame(OP_QUERY, 7, &body);
        let req = read_request(&mut msg.as_slice()).await.unwrap().unwrap();
        assert!(req.legacy);
        assert_eq!(req.body.get_str("$db").unwrap(), "admin");
        let mut out = Vec::new();
        write_reply(&mut out, &req, 9, &doc! { "ok": 1.0 })
            .await
            .unwrap();
        assert_eq!(i32::from_le_bytes(out[8..12].try_into().unwrap()), 7);
        assert_eq!(
            i32::from_le_bytes(out[12..16].try_into().unwrap()),
            OP_REPLY
        );
        assert_eq!(i32::from_le_bytes(out[32..36].try_into().unwrap()), 1);
        let reply = Document::from_reader(&out[36..]).unwrap();
        assert_eq!(reply.get_f64("ok").unwrap(), 1.0);
    }

    #[tokio::test]
    async fn op_msg_document_sequences_become_body_arrays() {
        let mut body = Vec::new();
        body.extend_from_slice(&0u32.to_le_bytes());
        body.push(0);
        doc! { "insert": "c", "$db": "d" }
            .to_writer(&mut body)
            .unwrap();
        let mut seq = Vec::new();
        seq.extend_from_slice(b"documents\0");
        doc! { "_id": 1 }.to_writer(&mut seq).unwrap();
        doc! { "_id": 2 }.to_writer(&mut seq).unwrap();
        body.push(1);
        body.extend_from_slice(&((seq.len() + 4) as i32).to_le_bytes());
        body.extend_from_slice(&seq);
        let msg = frame(OP_MSG, 1, &body);
        let req = read_request(&mut msg.as_slice()).await.unwrap().unwrap();
        assert_eq!(req.body.get_array("documents").unwrap().len(), 2);
    }
}
