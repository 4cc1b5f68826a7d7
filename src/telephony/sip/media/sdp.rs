//! SDP (RFC 4566) as far as a G.711 call needs it: our offer, and the parts of the answer that say
//! where to send audio, in which codec, and how keys arrive (RFC 3264 offer/answer).

use std::net::{IpAddr, SocketAddr};

use crate::audio::G711;

/// The payload type we offer for RFC 4733 telephone events; the answer may choose another.
pub const TELEPHONE_EVENT_PAYLOAD_TYPE: u8 = 101;

/// An audio codec we can send and receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    Pcmu,
    Pcma,
}

impl Codec {
    pub fn law(self) -> G711 {
        match self {
            Codec::Pcmu => G711::MuLaw,
            Codec::Pcma => G711::ALaw,
        }
    }

    /// The encoding name of `a=rtpmap`.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// The payload type RFC 3551 assigns to it.
    pub fn static_payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    fn from_static_payload_type(payload_type: u8) -> Option<Codec> {
        match payload_type {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        }
    }

    fn from_name(name: &str) -> Option<Codec> {
        [Codec::Pcmu, Codec::Pcma]
            .into_iter()
            .find(|codec| codec.name().eq_ignore_ascii_case(name))
    }
}

/// Media direction, from the point of view of the side that wrote the SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn from_attribute(attribute: &str) -> Option<Direction> {
        match attribute {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    /// Whether the side that wrote the SDP wants our audio.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }
}

/// What an answer says about the far end's audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteMedia {
    /// Where to send RTP.
    pub address: SocketAddr,
    pub codec: Codec,
    /// The payload type the answer uses for `codec` (normally its static one).
    pub payload_type: u8,
    /// The payload type of telephone events, when the far end sends keys that way.
    pub telephone_event: Option<u8>,
    pub direction: Direction,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("the SDP is not UTF-8 text")]
    NotText,
    #[error("the SDP has no m=audio line")]
    NoAudio,
    #[error("the far end rejected the audio stream (port 0)")]
    Rejected,
    #[error("the audio stream uses transport {0:?}, not RTP/AVP")]
    Transport(String),
    #[error("the SDP gives no connection address (c=) for the audio stream")]
    NoAddress,
    #[error("the connection address {0:?} is not an IP address we can send to")]
    BadAddress(String),
    #[error("malformed line {0:?}")]
    BadLine(String),
    #[error("none of the answered payload types ({0}) is PCMU or PCMA")]
    NoCommonCodec(String),
}

/// Our offer: PCMU, PCMA and telephone events, 20 ms packets, audio both ways.
///
/// `session_id` should be unique per call (e.g. random); `version` must grow whenever a later
/// offer in the same call differs, and stay the same when it repeats this one.
pub fn offer(rtp_address: SocketAddr, session_id: u64, version: u64) -> String {
    let (family, ip) = match rtp_address.ip() {
        IpAddr::V4(ip) => ("IP4", ip.to_string()),
        IpAddr::V6(ip) => ("IP6", ip.to_string()),
    };
    let port = rtp_address.port();
    let event = TELEPHONE_EVENT_PAYLOAD_TYPE;
    [
        "v=0".to_owned(),
        format!("o=outcall {session_id} {version} IN {family} {ip}"),
        "s=outcall".to_owned(),
        format!("c=IN {family} {ip}"),
        "t=0 0".to_owned(),
        format!("m=audio {port} RTP/AVP 0 8 {event}"),
        "a=rtpmap:0 PCMU/8000".to_owned(),
        "a=rtpmap:8 PCMA/8000".to_owned(),
        format!("a=rtpmap:{event} telephone-event/8000"),
        format!("a=fmtp:{event} 0-16"),
        "a=ptime:20".to_owned(),
        "a=sendrecv".to_owned(),
        String::new(),
    ]
    .join("\r\n")
}

/// Reads the first audio stream of an answer (or of an offer from the far end, e.g. in a
/// re-INVITE: the same fields matter).
pub fn parse_answer(sdp: impl AsRef<[u8]>) -> Result<RemoteMedia, SdpError> {
    let text = std::str::from_utf8(sdp.as_ref()).map_err(|_| SdpError::NotText)?;

    let mut session_address = None;
    let mut session_direction = None;
    let mut audio: Option<AudioSection> = None;
    // Lines of any other m= section than the first audio one are skipped.
    let mut in_other_section = false;

    for line in text.lines() {
        let line = line.trim_end();
        let Some((kind, value)) = line.split_once('=') else {
            if line.is_empty() {
                continue;
            }
            return Err(SdpError::BadLine(line.to_owned()));
        };
        if kind == "m" {
            if audio.is_some() || !value.starts_with("audio ") {
                in_other_section = true;
                continue;
            }
            in_other_section = false;
            audio = Some(AudioSection::from_media_line(line, value)?);
            continue;
        }
        if in_other_section {
            continue;
        }
        match (kind, audio.as_mut()) {
            ("c", None) => session_address = Some(connection_address(value)?),
            ("c", Some(section)) => section.address = Some(connection_address(value)?),
            ("a", section) => {
                let (name, argument) = value.split_once(':').unwrap_or((value, ""));
                match (name, section) {
                    ("rtpmap", Some(section)) => section.add_rtpmap(line, argument)?,
                    (direction, None) => {
                        session_direction =
                            Direction::from_attribute(direction).or(session_direction)
                    }
                    (direction, Some(section)) => {
                        section.direction =
                            Direction::from_attribute(direction).or(section.direction)
                    }
                }
            }
            _ => {}
        }
    }

    let section = audio.ok_or(SdpError::NoAudio)?;
    if section.port == 0 {
        return Err(SdpError::Rejected);
    }
    let ip = section
        .address
        .or(session_address)
        .ok_or(SdpError::NoAddress)?;
    let (codec, payload_type) = section
        .payload_types
        .iter()
        .find_map(|&payload_type| {
            section
                .codec_of(payload_type)
                .map(|codec| (codec, payload_type))
        })
        .ok_or_else(|| {
            let answered: Vec<String> = section.payload_types.iter().map(u8::to_string).collect();
            SdpError::NoCommonCodec(answered.join(" "))
        })?;
    let telephone_event = section.payload_types.iter().copied().find(|payload_type| {
        section.rtpmaps.iter().any(|map| {
            map.payload_type == *payload_type
                && map.name.eq_ignore_ascii_case("telephone-event")
                && map.clock_rate == 8000
        })
    });
    Ok(RemoteMedia {
        address: SocketAddr::new(ip, section.port),
        codec,
        payload_type,
        telephone_event,
        direction: section.direction.or(session_direction).unwrap_or_default(),
    })
}

struct Rtpmap {
    payload_type: u8,
    name: String,
    clock_rate: u32,
}

struct AudioSection {
    port: u16,
    payload_types: Vec<u8>,
    address: Option<IpAddr>,
    rtpmaps: Vec<Rtpmap>,
    direction: Option<Direction>,
}

/// Bounds the work an absurd SDP can cause.
const MAX_PAYLOAD_TYPES: usize = 64;

impl AudioSection {
    /// `m=audio <port>[/<count>] <transport> <payload types...>`
    fn from_media_line(line: &str, value: &str) -> Result<AudioSection, SdpError> {
        let bad_line = || SdpError::BadLine(line.to_owned());
        let mut fields = value.split_ascii_whitespace().skip(1);
        let port_field = fields.next().ok_or_else(bad_line)?;
        let port_text = port_field
            .split_once('/')
            .map_or(port_field, |(port, _)| port);
        let port: u16 = port_text.parse().map_err(|_| bad_line())?;
        let transport = fields.next().ok_or_else(bad_line)?;
        if port != 0 && !matches!(transport, "RTP/AVP" | "RTP/AVPF") {
            return Err(SdpError::Transport(transport.to_owned()));
        }
        let payload_types = fields
            .take(MAX_PAYLOAD_TYPES)
            .map(|field| {
                field
                    .parse::<u8>()
                    .ok()
                    .filter(|&payload_type| payload_type < 128)
            })
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(bad_line)?;
        Ok(AudioSection {
            port,
            payload_types,
            address: None,
            rtpmaps: Vec::new(),
            direction: None,
        })
    }

    /// `a=rtpmap:<payload type> <name>/<clock rate>[/<channels>]`
    fn add_rtpmap(&mut self, line: &str, argument: &str) -> Result<(), SdpError> {
        let bad_line = || SdpError::BadLine(line.to_owned());
        let (payload_type, encoding) = argument.split_once(' ').ok_or_else(bad_line)?;
        let mut encoding = encoding.trim().split('/');
        let name = encoding.next().unwrap_or_default();
        let clock_rate = encoding.next().and_then(|rate| rate.parse().ok());
        let (Ok(payload_type), Some(clock_rate)) = (payload_type.parse(), clock_rate) else {
            return Err(bad_line());
        };
        if self.rtpmaps.len() < MAX_PAYLOAD_TYPES {
            self.rtpmaps.push(Rtpmap {
                payload_type,
                name: name.to_owned(),
                clock_rate,
            });
        }
        Ok(())
    }

    /// An rtpmap, when there is one, is authoritative; without one, the static assignments hold.
    fn codec_of(&self, payload_type: u8) -> Option<Codec> {
        match self
            .rtpmaps
            .iter()
            .find(|map| map.payload_type == payload_type)
        {
            Some(map) if map.clock_rate == 8000 => Codec::from_name(&map.name),
            Some(_) => None,
            None => Codec::from_static_payload_type(payload_type),
        }
    }
}

/// `IN IP4 <address>[/<ttl>[/<count>]]`
fn connection_address(value: &str) -> Result<IpAddr, SdpError> {
    let mut fields = value.split_ascii_whitespace();
    let (Some("IN"), Some("IP4" | "IP6"), Some(address)) =
        (fields.next(), fields.next(), fields.next())
    else {
        return Err(SdpError::BadLine(format!("c={value}")));
    };
    let address = address.split('/').next().unwrap_or_default();
    let ip: IpAddr = address
        .parse()
        .map_err(|_| SdpError::BadAddress(address.to_owned()))?;
    // 0.0.0.0 is the old way of putting a call on hold; sending there would reach ourselves.
    if ip.is_unspecified() || ip.is_multicast() {
        return Err(SdpError::BadAddress(address.to_owned()));
    }
    Ok(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_offer() {
        let sdp = offer("192.0.2.10:40000".parse().unwrap(), 42, 1);
        assert_eq!(
            sdp,
            "v=0\r\n\
             o=outcall 42 1 IN IP4 192.0.2.10\r\n\
             s=outcall\r\n\
             c=IN IP4 192.0.2.10\r\n\
             t=0 0\r\n\
             m=audio 40000 RTP/AVP 0 8 101\r\n\
             a=rtpmap:0 PCMU/8000\r\n\
             a=rtpmap:8 PCMA/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\n\
             a=fmtp:101 0-16\r\n\
             a=ptime:20\r\n\
             a=sendrecv\r\n"
        );
        let parsed = parse_answer(&sdp).unwrap();
        assert_eq!(parsed.address, "192.0.2.10:40000".parse().unwrap());
        assert_eq!(parsed.codec, Codec::Pcmu);
        assert_eq!(parsed.telephone_event, Some(101));
    }

    #[test]
    fn ipv6_offer() {
        let sdp = offer("[2001:db8::1]:4000".parse().unwrap(), 1, 1);
        assert!(sdp.contains("c=IN IP6 2001:db8::1\r\n"));
    }

    #[test]
    fn typical_answer() {
        let answer = "v=0\r\no=- 1 2 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n\
                      m=audio 30000 RTP/AVP 8 96\r\na=rtpmap:8 PCMA/8000\r\n\
                      a=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-15\r\na=ptime:20\r\n";
        let remote = parse_answer(answer).unwrap();
        assert_eq!(
            remote,
            RemoteMedia {
                address: "10.0.0.5:30000".parse().unwrap(),
                codec: Codec::Pcma,
                payload_type: 8,
                telephone_event: Some(96),
                direction: Direction::SendRecv,
            }
        );
    }

    #[test]
    fn media_level_address_and_direction_win() {
        let answer = "v=0\no=- 1 2 IN IP4 10.0.0.5\ns=-\nc=IN IP4 10.0.0.5\nt=0 0\na=sendonly\n\
                      m=audio 30000/1 RTP/AVP 0\nc=IN IP4 10.0.0.6/127\na=recvonly\n";
        let remote = parse_answer(answer.as_bytes()).unwrap();
        assert_eq!(remote.address, "10.0.0.6:30000".parse().unwrap());
        assert_eq!(remote.direction, Direction::RecvOnly);
        assert_eq!(remote.telephone_event, None);
        assert!(remote.direction.receives());

        let session_direction = answer.replace("a=recvonly\n", "");
        assert_eq!(
            parse_answer(session_direction).unwrap().direction,
            Direction::SendOnly
        );
    }

    #[test]
    fn first_supported_codec_in_answer_order() {
        let answer = "v=0\nc=IN IP4 10.0.0.5\nm=audio 3000 RTP/AVP 18 8 0\na=rtpmap:18 G729/8000\n";
        let remote = parse_answer(answer).unwrap();
        assert_eq!((remote.codec, remote.payload_type), (Codec::Pcma, 8));
    }

    #[test]
    fn codec_by_rtpmap_name() {
        let answer = "v=0\nc=IN IP4 10.0.0.5\nm=audio 3000 RTP/AVP 97 101\n\
                      a=rtpmap:97 pcmu/8000\na=rtpmap:101 telephone-event/8000\n";
        let remote = parse_answer(answer).unwrap();
        assert_eq!((remote.codec, remote.payload_type), (Codec::Pcmu, 97));
        // An rtpmap overrides a static assignment.
        let remapped =
            "v=0\nc=IN IP4 10.0.0.5\nm=audio 3000 RTP/AVP 0 8\na=rtpmap:0 opus/48000/2\n";
        assert_eq!(parse_answer(remapped).unwrap().codec, Codec::Pcma);
    }

    #[test]
    fn other_streams_are_skipped() {
        let answer = "v=0\nc=IN IP4 10.0.0.5\nm=video 0 RTP/AVP 31\nc=IN IP4 10.9.9.9\n\
                      a=rtpmap:8 H261/90000\nm=audio 3000 RTP/AVP 8\nm=audio 4000 RTP/AVP 0\n";
        let remote = parse_answer(answer).unwrap();
        assert_eq!(remote.address, "10.0.0.5:3000".parse().unwrap());
        assert_eq!(remote.codec, Codec::Pcma);
    }

    #[test]
    fn errors() {
        let base = "v=0\nc=IN IP4 10.0.0.5\n";
        let error = |body: &str| parse_answer(format!("{base}{body}")).unwrap_err();
        assert_eq!(error("m=audio 0 RTP/AVP 0\n"), SdpError::Rejected);
        assert_eq!(
            error("m=audio 3000 RTP/AVP 18 9\n"),
            SdpError::NoCommonCodec("18 9".into())
        );
        assert_eq!(error("m=video 3000 RTP/AVP 31\n"), SdpError::NoAudio);
        assert_eq!(
            error("m=audio 3000 RTP/SAVP 0\n"),
            SdpError::Transport("RTP/SAVP".into())
        );
        assert!(matches!(
            error("m=audio x RTP/AVP 0\n"),
            SdpError::BadLine(_)
        ));
        assert!(matches!(
            error("m=audio 3000 RTP/AVP 300\n"),
            SdpError::BadLine(_)
        ));
        assert!(matches!(
            error("m=audio 3000 RTP/AVP 0\na=rtpmap:0\n"),
            SdpError::BadLine(_)
        ));
        assert!(matches!(error("garbage\n"), SdpError::BadLine(_)));
        assert_eq!(
            parse_answer("v=0\nm=audio 3000 RTP/AVP 0\n"),
            Err(SdpError::NoAddress)
        );
        assert_eq!(
            parse_answer("v=0\nc=IN IP4 0.0.0.0\nm=audio 3000 RTP/AVP 0\n"),
            Err(SdpError::BadAddress("0.0.0.0".into()))
        );
        assert_eq!(
            parse_answer("v=0\nc=IN IP4 pbx.example\nm=audio 3000 RTP/AVP 0\n"),
            Err(SdpError::BadAddress("pbx.example".into()))
        );
        assert_eq!(parse_answer([0xFF, 0xFE]), Err(SdpError::NotText));
        assert_eq!(parse_answer(""), Err(SdpError::NoAudio));
    }
}
