//! Framing: a header block of `Name: value` lines ended by a blank line, then `Content-Length`
//! bytes of body when that header is present.

use bytes::{Buf, BytesMut};
use tokio_util::codec::Decoder;

use super::EslError;

/// A header block larger than this is refused: FreeSWITCH's outer headers are a few lines.
pub const MAX_HEADER_BLOCK: usize = 64 * 1024;
/// A body larger than this is refused (the largest real events are tens of KiB).
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// One frame as FreeSWITCH sent it: the outer headers in order (values raw), and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    headers: Vec<(String, String)>,
    body: Option<String>,
}

impl Frame {
    pub fn new(headers: Vec<(String, String)>, body: Option<String>) -> Frame {
        Frame { headers, body }
    }

    /// Case-insensitive; the first header of that name.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_named(&self.headers, name)
    }

    pub fn content_type(&self) -> Option<&str> {
        self.header("Content-Type")
    }

    pub fn body(&self) -> Option<&str> {
        self.body.as_deref()
    }

    /// Every header in wire order.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        header_pairs(&self.headers)
    }
}

/// The value of the first of `headers` called `name`, case-insensitive.
pub(super) fn header_named<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// `headers` as `(name, value)` pairs, in order.
pub(super) fn header_pairs(headers: &[(String, String)]) -> impl Iterator<Item = (&str, &str)> {
    headers
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
}

/// Splits a header block (without its blank line) into `(name, value)` pairs. Lines may end in
/// `\r\n`; a line without a colon is a protocol error.
pub(super) fn parse_header_lines(block: &str) -> Result<Vec<(String, String)>, EslError> {
    let mut headers = Vec::new();
    for line in block.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| EslError::Protocol(format!("header line without a colon: {line:?}")))?;
        let value = value.strip_prefix(' ').unwrap_or(value);
        headers.push((name.trim().to_owned(), value.to_owned()));
    }
    Ok(headers)
}

/// Where the header block at the front of `bytes` ends: `Ok((block length, length including the
/// blank line))`, searching from `from`, which must be the start of a line. A blank line is `\n` or
/// `\r\n`. `Err(start of the last, incomplete line)` when the block is not complete yet.
pub(super) fn find_block_end(bytes: &[u8], from: usize) -> Result<(usize, usize), usize> {
    let mut line_start = from;
    while let Some(offset) = bytes[line_start..].iter().position(|&byte| byte == b'\n') {
        let newline = line_start + offset;
        let line = &bytes[line_start..newline];
        if line.is_empty() || line == b"\r" {
            return Ok((line_start, newline + 1));
        }
        line_start = newline + 1;
    }
    Err(line_start)
}

/// Parses a body's length header; a missing header means no body.
pub(super) fn content_length(headers: &[(String, String)]) -> Result<Option<usize>, EslError> {
    let Some((_, value)) = headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case("Content-Length"))
    else {
        return Ok(None);
    };
    let length: usize = value
        .trim()
        .parse()
        .map_err(|_| EslError::Protocol(format!("bad Content-Length {value:?}")))?;
    if length > MAX_BODY {
        return Err(EslError::Protocol(format!(
            "body of {length} bytes is over the {MAX_BODY} limit"
        )));
    }
    Ok(Some(length))
}

/// Turns the bytes FreeSWITCH sends into [`Frame`]s, however the reads split them.
#[derive(Debug, Default)]
pub struct FrameCodec {
    /// Headers read, waiting for this many body bytes.
    awaiting_body: Option<(Vec<(String, String)>, usize)>,
    /// The start of the first line of the buffer not yet searched for the blank line, so a frame
    /// arriving a byte at a time is not rescanned from its start each time.
    scanned: usize,
}

impl FrameCodec {
    pub fn new() -> FrameCodec {
        FrameCodec::default()
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = EslError;

    fn decode(&mut self, buffer: &mut BytesMut) -> Result<Option<Frame>, EslError> {
        while self.awaiting_body.is_none() {
            let (block_length, consumed) = match find_block_end(buffer, self.scanned) {
                Ok(found) => found,
                Err(last_line_start) => {
                    self.scanned = last_line_start;
                    if buffer.len() > MAX_HEADER_BLOCK {
                        return Err(EslError::Protocol(format!(
                            "header block over {MAX_HEADER_BLOCK} bytes"
                        )));
                    }
                    return Ok(None);
                }
            };
            self.scanned = 0;
            if block_length == 0 {
                // A stray blank line between frames carries nothing.
                buffer.advance(consumed);
                continue;
            }
            if block_length > MAX_HEADER_BLOCK {
                return Err(EslError::Protocol(format!(
                    "header block over {MAX_HEADER_BLOCK} bytes"
                )));
            }
            let block = std::str::from_utf8(&buffer[..block_length])
                .map_err(|_| EslError::Protocol("header block is not UTF-8".to_owned()))?;
            let headers = parse_header_lines(block)?;
            let length = content_length(&headers)?;
            buffer.advance(consumed);
            match length {
                None => {
                    return Ok(Some(Frame {
                        headers,
                        body: None,
                    }))
                }
                Some(length) => {
                    buffer.reserve(length);
                    self.awaiting_body = Some((headers, length));
                }
            }
        }
        let length = self.awaiting_body.as_ref().map_or(0, |(_, length)| *length);
        if buffer.len() < length {
            return Ok(None);
        }
        let body = buffer.split_to(length);
        let (headers, _) = self.awaiting_body.take().expect("checked above");
        Ok(Some(Frame {
            headers,
            body: Some(String::from_utf8_lossy(&body).into_owned()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blank_line_is_found_from_any_line_start_with_or_without_carriage_returns() {
        let text = b"A: 1\r\nB: 2\n\r\nbody";
        assert_eq!(find_block_end(text, 0), Ok((11, 13)));
        assert_eq!(find_block_end(text, 6), Ok((11, 13)));
        assert_eq!(find_block_end(text, 11), Ok((11, 13)));
        // Incomplete: the search resumes at the last line's start, a lone `\r` included.
        assert_eq!(find_block_end(&text[..12], 0), Err(11));
        assert_eq!(find_block_end(&text[..8], 0), Err(6));
    }

    #[test]
    fn header_values_keep_everything_after_the_first_colon_and_space() {
        let headers = parse_header_lines("Reply-Text: +OK Job-UUID: 1\r\nEmpty:\nSpaced:  two")
            .expect("parses");
        assert_eq!(
            headers,
            [
                ("Reply-Text".to_owned(), "+OK Job-UUID: 1".to_owned()),
                ("Empty".to_owned(), String::new()),
                ("Spaced".to_owned(), " two".to_owned()),
            ]
        );
    }

    #[test]
    fn a_body_waits_for_all_its_bytes_and_the_limits_hold() {
        let mut codec = FrameCodec::new();
        let mut buffer =
            BytesMut::from(&b"Content-Length: 5\nContent-Type: api/response\n\nfal"[..]);
        assert_eq!(codec.decode(&mut buffer).expect("ok"), None);
        buffer.extend_from_slice(b"seContent-Type: command/reply\nReply-Text: +OK\n\n");
        let frame = codec.decode(&mut buffer).expect("ok").expect("frame");
        assert_eq!(
            (frame.content_type(), frame.body()),
            (Some("api/response"), Some("false"))
        );
        let frame = codec.decode(&mut buffer).expect("ok").expect("frame");
        assert_eq!(frame.header("reply-text"), Some("+OK"));
        assert!(buffer.is_empty());

        let at_limit = [("Content-Length".to_owned(), MAX_BODY.to_string())];
        assert_eq!(
            content_length(&at_limit).expect("at the limit"),
            Some(MAX_BODY)
        );
        let over = [("Content-Length".to_owned(), (MAX_BODY + 1).to_string())];
        assert!(matches!(content_length(&over), Err(EslError::Protocol(_))));
    }
}
