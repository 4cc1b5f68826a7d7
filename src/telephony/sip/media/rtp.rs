//! RTP packets (RFC 3550 §5.1): parsing that never panics on hostile input, and building.

/// Length of the fixed header, before any CSRC list or extension.
pub const HEADER_LEN: usize = 12;

const VERSION: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    #[error("{0} bytes is shorter than the 12-byte RTP header")]
    TooShort(usize),
    #[error("RTP version {0}, expected 2")]
    Version(u8),
    #[error("the CSRC list of {0} entries runs past the end of the packet")]
    TruncatedCsrcs(usize),
    #[error("the header extension runs past the end of the packet")]
    TruncatedExtension,
    #[error("a padding count of {0} does not fit the packet")]
    BadPadding(u8),
    #[error("payload type {0} does not fit in 7 bits")]
    PayloadType(u8),
    #[error("a header extension of {0} bytes is not a whole number of 32-bit words up to 262140")]
    ExtensionLength(usize),
}

/// Contributing sources: up to 15, kept inline so that parsing allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Csrcs {
    count: u8,
    ids: [u32; 15],
}

impl Csrcs {
    pub const MAX: usize = 15;

    /// `None` for more than [`Csrcs::MAX`] sources.
    pub fn new(ids: &[u32]) -> Option<Csrcs> {
        if ids.len() > Self::MAX {
            return None;
        }
        let mut csrcs = Csrcs {
            count: ids.len() as u8,
            ids: [0; 15],
        };
        csrcs.ids[..ids.len()].copy_from_slice(ids);
        Some(csrcs)
    }

    pub fn as_slice(&self) -> &[u32] {
        &self.ids[..self.count as usize]
    }
}

/// A header extension (RFC 3550 §5.3.1): a profile-defined 16-bit tag and whole 32-bit words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpExtension<'a> {
    pub profile: u16,
    pub data: &'a [u8],
}

/// One RTP packet, borrowing its extension and payload from the datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub csrcs: Csrcs,
    pub extension: Option<RtpExtension<'a>>,
    pub payload: &'a [u8],
    /// Padding after the payload, counting its final length byte; 0 for none.
    pub padding: u8,
}

impl<'a> RtpPacket<'a> {
    /// A plain packet: no marker, CSRCs, extension or padding.
    pub fn new(
        payload_type: u8,
        sequence: u16,
        timestamp: u32,
        ssrc: u32,
        payload: &'a [u8],
    ) -> RtpPacket<'a> {
        RtpPacket {
            marker: false,
            payload_type,
            sequence,
            timestamp,
            ssrc,
            csrcs: Csrcs::default(),
            extension: None,
            payload,
            padding: 0,
        }
    }

    pub fn parse(bytes: &'a [u8]) -> Result<RtpPacket<'a>, RtpError> {
        if bytes.len() < HEADER_LEN {
            return Err(RtpError::TooShort(bytes.len()));
        }
        let version = bytes[0] >> 6;
        if version != VERSION {
            return Err(RtpError::Version(version));
        }
        let has_padding = bytes[0] & 0x20 != 0;
        let has_extension = bytes[0] & 0x10 != 0;
        let csrc_count = (bytes[0] & 0x0F) as usize;
        let mut position = HEADER_LEN;

        let csrc_end = position + 4 * csrc_count;
        let csrc_bytes = bytes
            .get(position..csrc_end)
            .ok_or(RtpError::TruncatedCsrcs(csrc_count))?;
        let mut csrcs = Csrcs {
            count: csrc_count as u8,
            ids: [0; 15],
        };
        for (id, word) in csrcs.ids.iter_mut().zip(csrc_bytes.chunks_exact(4)) {
            *id = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        position = csrc_end;

        let extension = if has_extension {
            let head = bytes
                .get(position..position + 4)
                .ok_or(RtpError::TruncatedExtension)?;
            let profile = u16::from_be_bytes([head[0], head[1]]);
            let words = u16::from_be_bytes([head[2], head[3]]) as usize;
            let data = bytes
                .get(position + 4..position + 4 + 4 * words)
                .ok_or(RtpError::TruncatedExtension)?;
            position += 4 + 4 * words;
            Some(RtpExtension { profile, data })
        } else {
            None
        };

        let mut end = bytes.len();
        let mut padding = 0;
        if has_padding {
            padding = bytes[end - 1];
            if padding == 0 || padding as usize > end - position {
                return Err(RtpError::BadPadding(padding));
            }
            end -= padding as usize;
        }

        Ok(RtpPacket {
            marker: bytes[1] & 0x80 != 0,
            payload_type: bytes[1] & 0x7F,
            sequence: u16::from_be_bytes([bytes[2], bytes[3]]),
            timestamp: u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
            ssrc: u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
            csrcs,
            extension,
            payload: &bytes[position..end],
            padding,
        })
    }

    pub fn encoded_len(&self) -> usize {
        HEADER_LEN
            + 4 * self.csrcs.as_slice().len()
            + self
                .extension
                .map_or(0, |extension| 4 + extension.data.len())
            + self.payload.len()
            + self.padding as usize
    }

    /// Appends the packet's bytes to `out` (cleared first by callers reusing a buffer).
    pub fn write_to(&self, out: &mut Vec<u8>) -> Result<(), RtpError> {
        if self.payload_type > 0x7F {
            return Err(RtpError::PayloadType(self.payload_type));
        }
        if let Some(extension) = self.extension {
            let length = extension.data.len();
            if length % 4 != 0 || length / 4 > u16::MAX as usize {
                return Err(RtpError::ExtensionLength(length));
            }
        }
        out.reserve(self.encoded_len());
        let csrcs = self.csrcs.as_slice();
        out.push(
            (VERSION << 6)
                | if self.padding > 0 { 0x20 } else { 0 }
                | if self.extension.is_some() { 0x10 } else { 0 }
                | csrcs.len() as u8,
        );
        out.push(if self.marker { 0x80 } else { 0 } | self.payload_type);
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        for id in csrcs {
            out.extend_from_slice(&id.to_be_bytes());
        }
        if let Some(extension) = self.extension {
            out.extend_from_slice(&extension.profile.to_be_bytes());
            out.extend_from_slice(&((extension.data.len() / 4) as u16).to_be_bytes());
            out.extend_from_slice(extension.data);
        }
        out.extend_from_slice(self.payload);
        if self.padding > 0 {
            out.extend(std::iter::repeat_n(0, self.padding as usize - 1));
            out.push(self.padding);
        }
        Ok(())
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>, RtpError> {
        let mut out = Vec::new();
        self.write_to(&mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_packet_layout() {
        let mut packet = RtpPacket::new(8, 0x1234, 0xDEADBEEF, 0x01020304, &[9, 9, 9]);
        packet.marker = true;
        let bytes = packet.to_bytes().unwrap();
        assert_eq!(
            bytes,
            [0x80, 0x88, 0x12, 0x34, 0xDE, 0xAD, 0xBE, 0xEF, 1, 2, 3, 4, 9, 9, 9]
        );
        assert_eq!(RtpPacket::parse(&bytes).unwrap(), packet);
    }

    #[test]
    fn every_optional_part_round_trips() {
        let extension_data = [1, 2, 3, 4, 5, 6, 7, 8];
        let packet = RtpPacket {
            marker: false,
            payload_type: 101,
            sequence: 65535,
            timestamp: 7,
            ssrc: 0xFFFF_FFFF,
            csrcs: Csrcs::new(&[11, 22, 33]).unwrap(),
            extension: Some(RtpExtension {
                profile: 0xBEDE,
                data: &extension_data,
            }),
            payload: &[0xAA; 20],
            padding: 3,
        };
        let bytes = packet.to_bytes().unwrap();
        assert_eq!(bytes.len(), packet.encoded_len());
        assert_eq!(bytes[0], 0x80 | 0x20 | 0x10 | 3);
        assert_eq!(&bytes[bytes.len() - 3..], [0, 0, 3]);
        let parsed = RtpPacket::parse(&bytes).unwrap();
        assert_eq!(parsed, packet);
        assert_eq!(parsed.csrcs.as_slice(), [11, 22, 33]);
    }

    #[test]
    fn building_rejects_what_cannot_be_encoded() {
        let packet = RtpPacket::new(128, 0, 0, 0, &[]);
        assert_eq!(packet.to_bytes(), Err(RtpError::PayloadType(128)));
        let mut packet = RtpPacket::new(0, 0, 0, 0, &[]);
        packet.extension = Some(RtpExtension {
            profile: 1,
            data: &[1, 2, 3],
        });
        assert_eq!(packet.to_bytes(), Err(RtpError::ExtensionLength(3)));
        assert!(Csrcs::new(&[0; 16]).is_none());
    }

    #[test]
    fn malformed_packets_are_rejected() {
        assert_eq!(RtpPacket::parse(&[]), Err(RtpError::TooShort(0)));
        assert_eq!(RtpPacket::parse(&[0x80; 11]), Err(RtpError::TooShort(11)));
        let mut header = [0u8; 12];
        header[0] = 0x40;
        assert_eq!(RtpPacket::parse(&header), Err(RtpError::Version(1)));
        header[0] = 0x82;
        assert_eq!(RtpPacket::parse(&header), Err(RtpError::TruncatedCsrcs(2)));
        header[0] = 0x90;
        assert_eq!(RtpPacket::parse(&header), Err(RtpError::TruncatedExtension));
        let mut with_extension = header.to_vec();
        with_extension.extend_from_slice(&[0, 0, 0, 2, 1, 2, 3, 4]);
        assert_eq!(
            RtpPacket::parse(&with_extension),
            Err(RtpError::TruncatedExtension)
        );
        let mut padded = [0u8; 14];
        padded[0] = 0xA0;
        padded[13] = 0;
        assert_eq!(RtpPacket::parse(&padded), Err(RtpError::BadPadding(0)));
        padded[13] = 3;
        assert_eq!(RtpPacket::parse(&padded), Err(RtpError::BadPadding(3)));
        padded[13] = 2;
        assert_eq!(RtpPacket::parse(&padded).unwrap().payload, &[] as &[u8]);
    }

    #[test]
    fn garbage_and_truncations_never_panic() {
        let mut packet = RtpPacket::new(0, 1, 2, 3, &[7; 40]);
        let csrcs = [5, 6];
        packet.csrcs = Csrcs::new(&csrcs).unwrap();
        packet.extension = Some(RtpExtension {
            profile: 1,
            data: &[0; 8],
        });
        packet.padding = 4;
        let valid = packet.to_bytes().unwrap();
        for length in 0..valid.len() {
            let _ = RtpPacket::parse(&valid[..length]);
        }
        // A simple deterministic generator keeps the test reproducible without extra crates.
        let mut state = 0x2545F4914F6CDD1Du64;
        let mut buffer = Vec::new();
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let length = (state % 80) as usize;
            buffer.clear();
            for index in 0..length {
                buffer.push((state.rotate_left(index as u32 * 8) >> 3) as u8);
            }
            if length > 0 && state & 1 == 0 {
                buffer[0] = (buffer[0] & 0x3F) | 0x80;
            }
            if let Ok(parsed) = RtpPacket::parse(&buffer) {
                assert_eq!(parsed.encoded_len(), buffer.len());
            }
        }
    }
}
