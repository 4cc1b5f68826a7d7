//! Events: `text/event-plain` (URL-encoded header values, an optional inner body) and
//! `text/event-json` (the body is in `_body`).

use percent_encoding::percent_decode_str;

use super::codec::{
    content_length, find_block_end, header_named, header_pairs, parse_header_lines,
};
use super::{EslError, Frame};

/// One event: its headers (plain: in wire order, values URL-decoded; JSON: as parsed) and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    headers: Vec<(String, String)>,
    body: Option<String>,
}

impl Event {
    pub fn from_frame(frame: &Frame) -> Result<Event, EslError> {
        let content_type = frame.content_type().unwrap_or_default();
        let text = frame.body().unwrap_or_default();
        match content_type {
            "text/event-plain" => Event::from_plain(text),
            "text/event-json" => Event::from_json(text),
            other => Err(EslError::Protocol(format!(
                "not an event: content type {other:?}"
            ))),
        }
    }

    fn from_plain(text: &str) -> Result<Event, EslError> {
        let (block, rest) = match find_block_end(text.as_bytes(), 0) {
            Ok((block_length, consumed)) => (&text[..block_length], &text[consumed..]),
            Err(_) => (text, ""),
        };
        let headers: Vec<(String, String)> = parse_header_lines(block)?
            .into_iter()
            .map(|(name, value)| {
                let value = percent_decode_str(&value).decode_utf8_lossy().into_owned();
                (name, value)
            })
            .collect();
        let body = match content_length(&headers)? {
            None => None,
            Some(length) => {
                let body = rest.get(..length).ok_or_else(|| {
                    EslError::Protocol(format!(
                        "event body shorter ({}) than its Content-Length {length}",
                        rest.len()
                    ))
                })?;
                Some(body.to_owned())
            }
        };
        Ok(Event { headers, body })
    }

    fn from_json(text: &str) -> Result<Event, EslError> {
        let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)
            .map_err(|error| EslError::Protocol(format!("event JSON: {error}")))?;
        let mut headers = Vec::with_capacity(object.len());
        let mut body = None;
        for (name, value) in object {
            let value = match value {
                serde_json::Value::String(text) => text,
                other => other.to_string(),
            };
            if name == "_body" {
                body = Some(value);
            } else {
                headers.push((name, value));
            }
        }
        Ok(Event { headers, body })
    }

    /// `Event-Name` (for `CUSTOM` events, `Event-Subclass` says which); empty when absent.
    pub fn name(&self) -> &str {
        self.get("Event-Name").unwrap_or_default()
    }

    /// Case-insensitive; the first header of that name.
    pub fn get(&self, name: &str) -> Option<&str> {
        header_named(&self.headers, name)
    }

    /// The event's own body, e.g. BACKGROUND_JOB's `+OK <uuid>\n` or `-ERR USER_BUSY\n`.
    pub fn body(&self) -> Option<&str> {
        self.body.as_deref()
    }

    /// Every header in order, values decoded.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        header_pairs(&self.headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(content_type: &str, body: &str) -> Frame {
        Frame::new(
            vec![
                ("Content-Length".to_owned(), body.len().to_string()),
                ("Content-Type".to_owned(), content_type.to_owned()),
            ],
            Some(body.to_owned()),
        )
    }

    #[test]
    fn plain_values_are_url_decoded_and_the_inner_body_is_cut_at_its_length() {
        let text = "Event-Name: BACKGROUND_JOB\nJob-Command-Arg: %7Ba%3D1%2Cb%3D%27x%20y%27%7D%20%26park()\nBad: 100%\nContent-Length: 15\n\n-ERR USER_BUSY\n";
        let event = Event::from_frame(&frame("text/event-plain", text)).expect("event");
        assert_eq!(event.name(), "BACKGROUND_JOB");
        assert_eq!(event.get("job-command-arg"), Some("{a=1,b='x y'} &park()"));
        assert_eq!(event.get("Bad"), Some("100%"));
        assert_eq!(event.body(), Some("-ERR USER_BUSY\n"));

        let no_blank_line =
            Event::from_frame(&frame("text/event-plain", "Event-Name: HEARTBEAT\n"))
                .expect("event");
        assert_eq!(
            (no_blank_line.name(), no_blank_line.body()),
            ("HEARTBEAT", None)
        );
        let short = frame(
            "text/event-plain",
            "Event-Name: X\nContent-Length: 10\n\nabc",
        );
        assert!(matches!(
            Event::from_frame(&short),
            Err(EslError::Protocol(_))
        ));
    }

    #[test]
    fn json_values_become_text_and_underscore_body_is_the_body() {
        let text =
            r#"{"Event-Name":"BACKGROUND_JOB","Event-Sequence":7,"Flag":true,"_body":"+OK 1\n"}"#;
        let event = Event::from_frame(&frame("text/event-json", text)).expect("event");
        assert_eq!(event.get("Event-Sequence"), Some("7"));
        assert_eq!(event.get("Flag"), Some("true"));
        assert_eq!(event.body(), Some("+OK 1\n"));
        assert!(matches!(
            Event::from_frame(&frame("text/event-json", "{")),
            Err(EslError::Protocol(_))
        ));
        assert!(matches!(
            Event::from_frame(&frame("api/response", "x")),
            Err(EslError::Protocol(_))
        ));
    }
}
