//! G.711 companding: 16-bit linear samples to and from the 8-bit µ-law (PCMU) and A-law (PCMA)
//! codes that RTP payload types 0 and 8 carry.
//!
//! The encoders follow the ITU-T G.191 reference implementation. The standard defines its tables
//! on 14-bit (µ-law) and 13-bit (A-law) linear values, so the low bits of a 16-bit sample are
//! dropped first, and a negative sample is taken as its one's complement; this is what makes every
//! code match the ITU tables rather than the slightly different rounding of some popular ports.

/// The two G.711 laws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum G711 {
    /// North America and Japan; RTP payload type 0, `PCMU`.
    MuLaw,
    /// Everywhere else; RTP payload type 8, `PCMA`.
    ALaw,
}

impl G711 {
    pub fn encode(self, sample: i16) -> u8 {
        match self {
            G711::MuLaw => mulaw_encode(sample),
            G711::ALaw => alaw_encode(sample),
        }
    }

    pub fn decode(self, code: u8) -> i16 {
        match self {
            G711::MuLaw => mulaw_decode(code),
            G711::ALaw => alaw_decode(code),
        }
    }

    /// Appends the codes of `samples` to `out`.
    pub fn encode_into(self, samples: &[i16], out: &mut Vec<u8>) {
        out.extend(samples.iter().map(|&sample| self.encode(sample)));
    }

    /// Appends the samples of `codes` to `out`.
    pub fn decode_into(self, codes: &[u8], out: &mut Vec<i16>) {
        out.extend(codes.iter().map(|&code| self.decode(code)));
    }
}

/// The µ-law code of a 16-bit linear sample: a lookup, by the sample's top 14 bits.
pub fn mulaw_encode(sample: i16) -> u8 {
    // The code depends only on the top 14 bits (a negative sample's one's complement shifts the
    // same way), so the table has 16,384 entries, indexed by those bits as unsigned.
    LINEAR_TO_MULAW[((sample >> 2) as u16 & 0x3FFF) as usize]
}

/// The A-law code of a 16-bit linear sample: a lookup, by the sample's top 12 bits.
pub fn alaw_encode(sample: i16) -> u8 {
    LINEAR_TO_ALAW[((sample >> 4) as u16 & 0x0FFF) as usize]
}

static LINEAR_TO_MULAW: [u8; 1 << 14] = build_encode_table(G711::MuLaw);
static LINEAR_TO_ALAW: [u8; 1 << 12] = build_encode_table(G711::ALaw);

/// The code of every value of the top bits a law looks at: index `i` holds the code of the
/// sample `i << shift`, read as a signed value of the table's width.
const fn build_encode_table<const N: usize>(law: G711) -> [u8; N] {
    let mut table = [0; N];
    let shift = match law {
        G711::MuLaw => 2,
        G711::ALaw => 4,
    };
    let mut index = 0;
    while index < N {
        // The index is the sample's top bits: shifted back, they are a sample with those bits.
        let sample = (index << shift) as u16 as i16;
        table[index] = match law {
            G711::MuLaw => mulaw_compress(sample),
            G711::ALaw => alaw_compress(sample),
        };
        index += 1;
    }
    table
}

const fn mulaw_compress(sample: i16) -> u8 {
    let (magnitude, sign_bit) = if sample < 0 {
        ((!sample as i32) >> 2, 0x00)
    } else {
        ((sample as i32) >> 2, 0x80)
    };
    // The bias of 33 makes the segments start at powers of two; beyond 0x1FFF the code saturates.
    let mut biased = magnitude + 33;
    if biased > 0x1FFF {
        biased = 0x1FFF;
    }
    // Segment 1..=8 is one more than the bit length of what lies above the lowest segment's range.
    let segment = 33 - ((biased >> 6) as u32).leading_zeros();
    let step_index = (biased >> segment) & 0x0F;
    // Codes are transmitted inverted (few one bits on the line for quiet signals).
    ((((8 - segment as i32) << 4) | (0x0F - step_index)) | sign_bit) as u8
}

const fn alaw_compress(sample: i16) -> u8 {
    let (mut magnitude, sign_bit) = if sample < 0 {
        ((!sample as i32) >> 4, 0x00)
    } else {
        ((sample as i32) >> 4, 0x80)
    };
    if magnitude > 15 {
        let mut segment = 1;
        while magnitude > 31 {
            magnitude >>= 1;
            segment += 1;
        }
        magnitude = (magnitude - 16) + (segment << 4);
    }
    // Even bits are inverted on the line, per the standard.
    ((magnitude | sign_bit) ^ 0x55) as u8
}

/// The linear value of a µ-law code.
pub fn mulaw_decode(code: u8) -> i16 {
    MULAW_TO_LINEAR[code as usize]
}

/// The linear value of an A-law code.
pub fn alaw_decode(code: u8) -> i16 {
    ALAW_TO_LINEAR[code as usize]
}

static MULAW_TO_LINEAR: [i16; 256] = build_table(G711::MuLaw);
static ALAW_TO_LINEAR: [i16; 256] = build_table(G711::ALaw);

const fn build_table(law: G711) -> [i16; 256] {
    let mut table = [0; 256];
    let mut code = 0;
    while code < 256 {
        table[code] = match law {
            G711::MuLaw => mulaw_expand(code as u8),
            G711::ALaw => alaw_expand(code as u8),
        };
        code += 1;
    }
    table
}

const fn mulaw_expand(code: u8) -> i16 {
    let inverted = !code;
    let segment = ((inverted >> 4) & 0x07) as i32;
    let step_index = (inverted & 0x0F) as i32;
    let step = 8 << segment;
    // The middle of the step, minus the encoder's bias, scaled back from 14 to 16 bits.
    let magnitude = (0x80 << segment) + step * step_index + step / 2 - 4 * 33;
    if code < 0x80 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

const fn alaw_expand(code: u8) -> i16 {
    let value = (code ^ 0x55) & 0x7F;
    let segment = (value >> 4) as i32;
    let mut magnitude = (value & 0x0F) as i32;
    if segment > 0 {
        magnitude += 16;
    }
    magnitude = (magnitude << 4) + 8;
    if segment > 1 {
        magnitude <<= segment - 1;
    }
    if code > 0x7F {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ITU-T G.191 `ulaw_compress`, transcribed literally, to check the compact version against.
    fn reference_ulaw_compress(x: i16) -> u8 {
        let x = x as i32;
        let mut absno = if x < 0 { (!x) >> 2 } else { x >> 2 };
        absno += 33;
        if absno > 0x1FFF {
            absno = 0x1FFF;
        }
        let mut i = absno >> 6;
        let mut segno = 1;
        while i != 0 {
            segno += 1;
            i >>= 1;
        }
        let high_nibble = 0x0008 - segno;
        let mut low_nibble = (absno >> segno) & 0x000F;
        low_nibble = 0x000F - low_nibble;
        let mut out = (high_nibble << 4) | low_nibble;
        if x >= 0 {
            out |= 0x0080;
        }
        out as u8
    }

    /// ITU-T G.191 `alaw_compress`, transcribed literally.
    fn reference_alaw_compress(x: i16) -> u8 {
        let x = x as i32;
        let mut ix = if x < 0 { (!x) >> 4 } else { x >> 4 };
        if ix > 15 {
            let mut iexp = 1;
            while ix > 16 + 15 {
                ix >>= 1;
                iexp += 1;
            }
            ix -= 16;
            ix += iexp << 4;
        }
        if x >= 0 {
            ix |= 0x0080;
        }
        (ix ^ 0x0055) as u8
    }

    #[test]
    fn encoders_match_the_reference_for_every_sample() {
        for sample in i16::MIN..=i16::MAX {
            assert_eq!(
                mulaw_encode(sample),
                reference_ulaw_compress(sample),
                "µ-law {sample}"
            );
            assert_eq!(
                alaw_encode(sample),
                reference_alaw_compress(sample),
                "A-law {sample}"
            );
        }
    }

    #[test]
    fn known_codes_and_values() {
        assert_eq!(mulaw_encode(0), 0xFF);
        assert_eq!(mulaw_encode(-1), 0x7F);
        assert_eq!(mulaw_encode(1000), 0xCE);
        assert_eq!(mulaw_encode(i16::MAX), 0x80);
        assert_eq!(mulaw_encode(i16::MIN), 0x00);
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(alaw_encode(-1), 0x55);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);

        assert_eq!(mulaw_decode(0xFF), 0);
        assert_eq!(mulaw_decode(0x7F), 0);
        assert_eq!(mulaw_decode(0x80), 32124);
        assert_eq!(mulaw_decode(0x00), -32124);
        assert_eq!(mulaw_decode(0xCE), 988);
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(alaw_decode(0x2A), -32256);
    }

    #[test]
    fn decoding_then_encoding_gives_the_code_back() {
        for code in 0..=255u8 {
            assert_eq!(alaw_encode(alaw_decode(code)), code, "A-law {code:#04x}");
            // 0x7F is µ-law's negative zero: it decodes to 0, whose code is the positive zero.
            let expected = if code == 0x7F { 0xFF } else { code };
            assert_eq!(
                mulaw_encode(mulaw_decode(code)),
                expected,
                "µ-law {code:#04x}"
            );
        }
    }

    #[test]
    fn round_trip_is_monotonic_and_close() {
        for law in [G711::MuLaw, G711::ALaw] {
            let mut previous = i16::MIN;
            for sample in i16::MIN..=i16::MAX {
                let back = law.decode(law.encode(sample));
                assert!(back >= previous, "{law:?} not monotonic at {sample}");
                previous = back;
                // Quantisation error stays within a few percent of the sample, plus the small
                // step near zero and the clipping at full scale.
                let error = (back as i32 - sample as i32).abs();
                let bound = (sample as i32).abs() / 16
                    + 16
                    + if sample.unsigned_abs() > 32000 {
                        700
                    } else {
                        0
                    };
                assert!(error <= bound, "{law:?} {sample} -> {back}");
            }
        }
    }

    #[test]
    fn bulk_helpers_append() {
        let mut codes = vec![1];
        G711::ALaw.encode_into(&[0, 0], &mut codes);
        assert_eq!(codes, [1, 0xD5, 0xD5]);
        let mut samples = vec![5];
        G711::MuLaw.decode_into(&[0xFF, 0x80], &mut samples);
        assert_eq!(samples, [5, 0, 32124]);
    }
}
