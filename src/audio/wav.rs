//! WAV files: prompts in, recordings out.
//!
//! Prompts arrive in whatever layout their author exported (44.1 kHz stereo, 24-bit, float, or
//! telephone-ready 8 kHz µ-law), and are turned into what a G.711 call carries: 8 kHz mono
//! 16-bit samples. The RIFF reader is written here rather than taken from a crate because the
//! G.711 layouts (format tags 6 and 7) are common among telephone prompts and the WAV crates
//! refuse them; it also lets each refusal say exactly what is wrong.

use super::{g711::G711, resample::resample};

/// The rate of everything a G.711 call carries.
pub const SAMPLE_RATE: u32 = 8000;

/// Prompts outside this range are surely a mistake, and extreme ratios would make the resampler's
/// output or work explode.
const SAMPLE_RATES: std::ops::RangeInclusive<u32> = 1000..=384_000;
const MAX_CHANNELS: u16 = 64;
/// The longest prompt, in seconds (10 minutes): bounds what a conversion produces (4.8 million
/// samples at 8 kHz) whatever the input's rate.
pub const MAX_PROMPT_SECONDS: u32 = 600;
/// The most sample frames read from one file: 10 minutes at 48 kHz. A file of a higher rate may
/// last less, so that the conversion's work and memory stay bounded too.
const MAX_INPUT_FRAMES: u64 = MAX_PROMPT_SECONDS as u64 * 48_000;

const FORMAT_PCM: u16 = 1;
const FORMAT_FLOAT: u16 = 3;
const FORMAT_ALAW: u16 = 6;
const FORMAT_MULAW: u16 = 7;
/// WAVE_FORMAT_EXTENSIBLE: the real format tag is in the first bytes of a sub-format GUID.
const FORMAT_EXTENSIBLE: u16 = 0xFFFE;

/// Length of the canonical header [`wav_header`] writes.
pub const HEADER_LEN: usize = 44;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromptError {
    #[error("not a WAV file: it does not begin with a RIFF header of type WAVE")]
    NotWav,
    #[error("the WAV file ends inside its {0} chunk")]
    Truncated(&'static str),
    #[error("the WAV file has no fmt chunk describing its samples")]
    NoFormat,
    #[error("the WAV file has no data chunk")]
    NoData,
    #[error("WAV format {0:#06x} is not supported (only PCM, IEEE float, A-law and µ-law are)")]
    UnsupportedFormat(u16),
    #[error("{bits}-bit {format} samples are not supported")]
    UnsupportedBits { format: &'static str, bits: u16 },
    #[error("a WAV file with {0} channels is not supported")]
    Channels(u16),
    #[error("a sample rate of {0} Hz is not supported (1000 to 384000 Hz are)")]
    SampleRate(u32),
    #[error("the WAV block size of {block_align} bytes does not fit {channels} channels of {bits}-bit samples")]
    BlockAlign {
        block_align: u16,
        channels: u16,
        bits: u16,
    },
    #[error("the WAV file contains no samples")]
    Empty,
    #[error("the prompt lasts {seconds} s, longer than the {limit} s allowed at {sample_rate} Hz")]
    TooLong {
        seconds: u64,
        limit: u64,
        sample_rate: u32,
    },
}

/// Checks the prompt's length from its header alone, before anything is decoded.
fn check_length(format: &Format, frames: usize) -> Result<(), PromptError> {
    let sample_rate = format.sample_rate as u64;
    let max_frames = (MAX_PROMPT_SECONDS as u64 * sample_rate).min(MAX_INPUT_FRAMES);
    if frames as u64 > max_frames {
        return Err(PromptError::TooLong {
            seconds: (frames as u64).div_ceil(sample_rate),
            limit: max_frames / sample_rate,
            sample_rate: format.sample_rate,
        });
    }
    Ok(())
}

/// Whether `prefix`, the beginning of a file, starts a WAV prompt we can read: the RIFF header,
/// a supported format and the start of its data. Reads nothing beyond the prefix.
pub fn check_header(prefix: &[u8]) -> Result<(), PromptError> {
    let (format, _) = read_chunks(prefix)?;
    format.encoding().map(|_| ())
}

/// Reads a WAV file as 8 kHz mono 16-bit samples: other layouts are mixed down to mono and
/// resampled with a low-pass windowed-sinc filter.
pub fn prompt_from_wav(bytes: &[u8]) -> Result<Vec<i16>, PromptError> {
    let (format, data) = read_chunks(bytes)?;
    let encoding = format.encoding()?;
    let frames = data.chunks_exact(format.block_align as usize);
    if frames.len() == 0 {
        return Err(PromptError::Empty);
    }
    check_length(&format, frames.len())?;

    if encoding == Encoding::Pcm16 && format.channels == 1 && format.sample_rate == SAMPLE_RATE {
        return Ok(frames
            .map(|frame| i16::from_le_bytes([frame[0], frame[1]]))
            .collect());
    }

    let sample_len = encoding.bytes_per_sample();
    let channels = format.channels as usize;
    let mono: Vec<f32> = frames
        .map(|frame| {
            let sum: f32 = frame[..channels * sample_len]
                .chunks_exact(sample_len)
                .map(|sample| encoding.read(sample))
                .sum();
            sum / channels as f32
        })
        .collect();
    Ok(resample(&mono, format.sample_rate, SAMPLE_RATE)
        .into_iter()
        .map(|sample| sample.round().clamp(i16::MIN as f32, i16::MAX as f32) as i16)
        .collect())
}

/// Converts a WAV file to 8 kHz mono 16-bit PCM and returns the new file's bytes, e.g. to store
/// an uploaded prompt in the form calls play.
pub fn normalize_wav(bytes: &[u8]) -> Result<Vec<u8>, PromptError> {
    Ok(encode_wav(&prompt_from_wav(bytes)?, 1, SAMPLE_RATE))
}

/// A whole 16-bit PCM WAV file of interleaved `samples`.
pub fn encode_wav(samples: &[i16], channels: u16, sample_rate: u32) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut bytes = Vec::with_capacity(HEADER_LEN + samples.len() * 2);
    bytes.extend_from_slice(&wav_header(channels, sample_rate, data_len));
    for sample in samples {
        bytes.extend_from_slice(&sample.to_le_bytes());
    }
    bytes
}

/// The 44-byte header of a 16-bit PCM WAV file whose data is `data_len` bytes long.
pub fn wav_header(channels: u16, sample_rate: u32, data_len: u32) -> [u8; HEADER_LEN] {
    let block_align = channels.saturating_mul(2);
    let mut header = [0u8; HEADER_LEN];
    header[0..4].copy_from_slice(b"RIFF");
    header[4..8].copy_from_slice(&data_len.saturating_add(36).to_le_bytes());
    header[8..12].copy_from_slice(b"WAVE");
    header[12..16].copy_from_slice(b"fmt ");
    header[16..20].copy_from_slice(&16u32.to_le_bytes());
    header[20..22].copy_from_slice(&FORMAT_PCM.to_le_bytes());
    header[22..24].copy_from_slice(&channels.to_le_bytes());
    header[24..28].copy_from_slice(&sample_rate.to_le_bytes());
    header[28..32].copy_from_slice(&sample_rate.saturating_mul(block_align as u32).to_le_bytes());
    header[32..34].copy_from_slice(&block_align.to_le_bytes());
    header[34..36].copy_from_slice(&16u16.to_le_bytes());
    header[36..40].copy_from_slice(b"data");
    header[40..44].copy_from_slice(&data_len.to_le_bytes());
    header
}

#[derive(Debug, Clone, Copy)]
struct Format {
    tag: u16,
    channels: u16,
    sample_rate: u32,
    block_align: u16,
    bits: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Pcm8,
    Pcm16,
    Pcm24,
    Pcm32,
    Float32,
    Float64,
    Companded(G711),
}

impl Encoding {
    fn bytes_per_sample(self) -> usize {
        match self {
            Encoding::Pcm8 | Encoding::Companded(_) => 1,
            Encoding::Pcm16 => 2,
            Encoding::Pcm24 => 3,
            Encoding::Pcm32 | Encoding::Float32 => 4,
            Encoding::Float64 => 8,
        }
    }

    /// One sample, scaled so that 16-bit full scale is ±32768.
    fn read(self, bytes: &[u8]) -> f32 {
        match self {
            // 8-bit WAV samples alone are unsigned, centred on 128.
            Encoding::Pcm8 => (bytes[0] as f32 - 128.0) * 256.0,
            Encoding::Pcm16 => i16::from_le_bytes([bytes[0], bytes[1]]) as f32,
            Encoding::Pcm24 => {
                i32::from_le_bytes([0, bytes[0], bytes[1], bytes[2]]) as f32 / 65536.0
            }
            Encoding::Pcm32 => {
                i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as f32 / 65536.0
            }
            Encoding::Float32 => {
                f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) * 32768.0
            }
            Encoding::Float64 => {
                let mut word = [0u8; 8];
                word.copy_from_slice(&bytes[..8]);
                (f64::from_le_bytes(word) * 32768.0) as f32
            }
            Encoding::Companded(law) => law.decode(bytes[0]) as f32,
        }
    }
}

impl Format {
    fn encoding(&self) -> Result<Encoding, PromptError> {
        if self.channels == 0 || self.channels > MAX_CHANNELS {
            return Err(PromptError::Channels(self.channels));
        }
        if !SAMPLE_RATES.contains(&self.sample_rate) {
            return Err(PromptError::SampleRate(self.sample_rate));
        }
        let unsupported_bits = |format| PromptError::UnsupportedBits {
            format,
            bits: self.bits,
        };
        let encoding = match (self.tag, self.bits) {
            (FORMAT_PCM, 8) => Encoding::Pcm8,
            (FORMAT_PCM, 16) => Encoding::Pcm16,
            (FORMAT_PCM, 24) => Encoding::Pcm24,
            (FORMAT_PCM, 32) => Encoding::Pcm32,
            (FORMAT_PCM, _) => return Err(unsupported_bits("PCM")),
            (FORMAT_FLOAT, 32) => Encoding::Float32,
            (FORMAT_FLOAT, 64) => Encoding::Float64,
            (FORMAT_FLOAT, _) => return Err(unsupported_bits("float")),
            (FORMAT_ALAW, 8) => Encoding::Companded(G711::ALaw),
            (FORMAT_ALAW, _) => return Err(unsupported_bits("A-law")),
            (FORMAT_MULAW, 8) => Encoding::Companded(G711::MuLaw),
            (FORMAT_MULAW, _) => return Err(unsupported_bits("µ-law")),
            (tag, _) => return Err(PromptError::UnsupportedFormat(tag)),
        };
        if self.block_align as usize != self.channels as usize * encoding.bytes_per_sample() {
            return Err(PromptError::BlockAlign {
                block_align: self.block_align,
                channels: self.channels,
                bits: self.bits,
            });
        }
        Ok(encoding)
    }
}

/// The format and the sample bytes. A data chunk longer than the file (as streaming writers
/// leave it) is read to the end of the file.
fn read_chunks(bytes: &[u8]) -> Result<(Format, &[u8]), PromptError> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(PromptError::NotWav);
    }
    let mut format = None;
    let mut data = None;
    let mut position = 12;
    while position + 8 <= bytes.len() {
        let id = &bytes[position..position + 4];
        let size = u32::from_le_bytes(bytes[position + 4..position + 8].try_into().unwrap());
        let body_start = position + 8;
        let body_end = body_start.saturating_add(size as usize).min(bytes.len());
        let body = &bytes[body_start..body_end];
        match id {
            b"fmt " => format = Some(parse_format(body)?),
            b"data" => {
                data = Some(body);
            }
            _ => {}
        }
        // Chunks are padded to an even length.
        position = body_start
            .saturating_add(size as usize)
            .saturating_add(size as usize & 1);
    }
    match (format, data) {
        (Some(format), Some(data)) => Ok((format, data)),
        (None, _) => Err(PromptError::NoFormat),
        (Some(_), None) => Err(PromptError::NoData),
    }
}

fn parse_format(body: &[u8]) -> Result<Format, PromptError> {
    if body.len() < 16 {
        return Err(PromptError::Truncated("fmt"));
    }
    let u16_at = |offset: usize| u16::from_le_bytes([body[offset], body[offset + 1]]);
    let mut tag = u16_at(0);
    if tag == FORMAT_EXTENSIBLE {
        if body.len() < 40 {
            return Err(PromptError::Truncated("fmt"));
        }
        tag = u16_at(24);
    }
    Ok(Format {
        tag,
        channels: u16_at(2),
        sample_rate: u32::from_le_bytes(body[4..8].try_into().unwrap()),
        block_align: u16_at(12),
        bits: u16_at(14),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A WAV file with a hand-made fmt chunk, for layouts [`encode_wav`] cannot write.
    fn wav_file(tag: u16, channels: u16, sample_rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
        let bytes_per_sample = bits.div_ceil(8);
        let block_align = channels * bytes_per_sample;
        let mut format = Vec::new();
        format.extend_from_slice(&tag.to_le_bytes());
        format.extend_from_slice(&channels.to_le_bytes());
        format.extend_from_slice(&sample_rate.to_le_bytes());
        format.extend_from_slice(&(sample_rate * block_align as u32).to_le_bytes());
        format.extend_from_slice(&block_align.to_le_bytes());
        format.extend_from_slice(&bits.to_le_bytes());
        chunks(&[(b"fmt ", &format), (b"data", data)])
    }

    fn chunks(chunks: &[(&[u8; 4], &[u8])]) -> Vec<u8> {
        let mut body = b"WAVE".to_vec();
        for (id, content) in chunks {
            body.extend_from_slice(*id);
            body.extend_from_slice(&(content.len() as u32).to_le_bytes());
            body.extend_from_slice(content);
            if content.len() % 2 == 1 {
                body.push(0);
            }
        }
        let mut file = b"RIFF".to_vec();
        file.extend_from_slice(&(body.len() as u32).to_le_bytes());
        file.extend_from_slice(&body);
        file
    }

    fn sine(frequency: f64, rate: u32, count: usize, amplitude: f64) -> Vec<f64> {
        (0..count)
            .map(|i| {
                amplitude * (2.0 * std::f64::consts::PI * frequency * i as f64 / rate as f64).sin()
            })
            .collect()
    }

    /// Largest difference to a 8 kHz sine of the same frequency, away from the edges.
    fn worst_error(samples: &[i16], frequency: f64, amplitude: f64) -> f64 {
        let expected = sine(frequency, SAMPLE_RATE, samples.len(), amplitude);
        (samples.len() / 4..samples.len() * 3 / 4)
            .map(|i| (samples[i] as f64 - expected[i]).abs())
            .fold(0.0, f64::max)
    }

    #[test]
    fn telephone_layout_is_taken_as_is() {
        let samples: Vec<i16> = vec![0, 1, -1, i16::MAX, i16::MIN, 1234];
        let file = encode_wav(&samples, 1, 8000);
        assert_eq!(file.len(), HEADER_LEN + 12);
        assert_eq!(prompt_from_wav(&file).unwrap(), samples);
        assert_eq!(normalize_wav(&file).unwrap(), file);
    }

    #[test]
    fn stereo_is_mixed_down() {
        let interleaved = [1000i16, 3000, -200, -400];
        let file = encode_wav(&interleaved, 2, 8000);
        assert_eq!(prompt_from_wav(&file).unwrap(), [2000, -300]);
    }

    #[test]
    fn other_sample_rates_are_resampled() {
        let rate = 44100;
        let samples: Vec<i16> = sine(440.0, rate, rate as usize / 4, 12000.0)
            .into_iter()
            .map(|s| s as i16)
            .collect();
        let prompt = prompt_from_wav(&encode_wav(&samples, 1, rate)).unwrap();
        assert_eq!(prompt.len(), 2000);
        assert!(worst_error(&prompt, 440.0, 12000.0) < 60.0);
    }

    #[test]
    fn every_sample_encoding_is_read() {
        let rate = 16000;
        let wave = sine(500.0, rate, 4000, 0.5);
        let pcm8: Vec<u8> = wave
            .iter()
            .map(|s| (128.0 + s * 127.0).round() as u8)
            .collect();
        let pcm24: Vec<u8> = wave
            .iter()
            .flat_map(|s| {
                let value = (s * 8_388_607.0) as i32;
                value.to_le_bytes()[..3].to_vec()
            })
            .collect();
        let pcm32: Vec<u8> = wave
            .iter()
            .flat_map(|s| ((s * 2_147_483_647.0) as i32).to_le_bytes())
            .collect();
        let float32: Vec<u8> = wave
            .iter()
            .flat_map(|s| (*s as f32).to_le_bytes())
            .collect();
        let float64: Vec<u8> = wave.iter().flat_map(|s| s.to_le_bytes()).collect();
        let mulaw: Vec<u8> = wave
            .iter()
            .map(|s| G711::MuLaw.encode((s * 32767.0) as i16))
            .collect();
        let alaw: Vec<u8> = wave
            .iter()
            .map(|s| G711::ALaw.encode((s * 32767.0) as i16))
            .collect();
        let files = [
            ("8-bit", wav_file(FORMAT_PCM, 1, rate, 8, &pcm8), 300.0),
            ("24-bit", wav_file(FORMAT_PCM, 1, rate, 24, &pcm24), 40.0),
            ("32-bit", wav_file(FORMAT_PCM, 1, rate, 32, &pcm32), 40.0),
            ("float", wav_file(FORMAT_FLOAT, 1, rate, 32, &float32), 40.0),
            (
                "double",
                wav_file(FORMAT_FLOAT, 1, rate, 64, &float64),
                40.0,
            ),
            ("µ-law", wav_file(FORMAT_MULAW, 1, rate, 8, &mulaw), 600.0),
            ("A-law", wav_file(FORMAT_ALAW, 1, rate, 8, &alaw), 600.0),
        ];
        for (name, file, tolerance) in files {
            let prompt = prompt_from_wav(&file).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(prompt.len(), 2000, "{name}");
            let error = worst_error(&prompt, 500.0, 16384.0);
            assert!(error < tolerance, "{name}: error {error}");
        }
    }

    #[test]
    fn extensible_format_and_odd_chunks() {
        let mut format = Vec::new();
        format.extend_from_slice(&FORMAT_EXTENSIBLE.to_le_bytes());
        format.extend_from_slice(&1u16.to_le_bytes());
        format.extend_from_slice(&8000u32.to_le_bytes());
        format.extend_from_slice(&16000u32.to_le_bytes());
        format.extend_from_slice(&2u16.to_le_bytes());
        format.extend_from_slice(&16u16.to_le_bytes());
        format.extend_from_slice(&22u16.to_le_bytes());
        format.extend_from_slice(&16u16.to_le_bytes());
        format.extend_from_slice(&4u32.to_le_bytes());
        // KSDATAFORMAT_SUBTYPE_PCM
        format.extend_from_slice(&[
            1, 0, 0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xAA, 0, 0x38, 0x9B, 0x71,
        ]);
        let data: Vec<u8> = [5i16, -5, 7].iter().flat_map(|s| s.to_le_bytes()).collect();
        let file = chunks(&[(b"LIST", b"odd"), (b"fmt ", &format), (b"data", &data)]);
        assert_eq!(prompt_from_wav(&file).unwrap(), [5, -5, 7]);
    }

    #[test]
    fn an_overlong_data_chunk_is_read_to_the_end() {
        let mut file = encode_wav(&[1, 2, 3], 1, 8000);
        file[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        file.push(0xAB); // half a sample: dropped
        assert_eq!(prompt_from_wav(&file).unwrap(), [1, 2, 3]);
    }

    #[test]
    fn prompts_over_ten_minutes_are_refused_from_the_header() {
        // 1 kHz 8-bit: 601 s is 601 kB, which upsampled would be 9.6 MB of 8 kHz samples.
        let long = wav_file(FORMAT_PCM, 1, 1000, 8, &vec![128; 601_000]);
        assert_eq!(
            prompt_from_wav(&long).unwrap_err(),
            PromptError::TooLong {
                seconds: 601,
                limit: 600,
                sample_rate: 1000
            }
        );
        let short = wav_file(FORMAT_PCM, 1, 1000, 8, &vec![128; 10_000]);
        assert_eq!(prompt_from_wav(&short).unwrap().len(), 80_000);
        let one_khz = Format {
            tag: FORMAT_PCM,
            channels: 1,
            sample_rate: 1000,
            block_align: 1,
            bits: 8,
        };
        assert!(check_length(&one_khz, 600_000).is_ok());
        // High rates get less time, so that the conversion's work stays bounded.
        let format = Format {
            tag: FORMAT_PCM,
            channels: 1,
            sample_rate: 384_000,
            block_align: 1,
            bits: 8,
        };
        assert!(check_length(&format, 75 * 384_000).is_ok());
        assert_eq!(
            check_length(&format, 76 * 384_000),
            Err(PromptError::TooLong {
                seconds: 76,
                limit: 75,
                sample_rate: 384_000
            })
        );
        // The header check reads no samples.
        assert!(check_header(&long[..64]).is_ok());
        assert_eq!(check_header(b"RIFF"), Err(PromptError::NotWav));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let error = |file: &[u8]| prompt_from_wav(file).unwrap_err();
        assert_eq!(error(b""), PromptError::NotWav);
        assert_eq!(error(b"ID3\x03 this is an mp3"), PromptError::NotWav);
        assert_eq!(error(b"RIFF\0\0\0\0AVI LIST"), PromptError::NotWav);
        assert_eq!(
            error(&chunks(&[(b"fmt ", &[1, 0, 1])])),
            PromptError::Truncated("fmt")
        );
        assert_eq!(error(&chunks(&[(b"data", &[0, 0])])), PromptError::NoFormat);
        let no_data = &wav_file(FORMAT_PCM, 1, 8000, 16, &[])[..36];
        assert_eq!(error(no_data), PromptError::NoData);
        assert_eq!(
            error(&wav_file(2, 1, 8000, 4, &[0; 64])),
            PromptError::UnsupportedFormat(2)
        );
        assert_eq!(
            error(&wav_file(FORMAT_PCM, 1, 8000, 12, &[0; 64])),
            PromptError::UnsupportedBits {
                format: "PCM",
                bits: 12
            }
        );
        assert_eq!(
            error(&wav_file(FORMAT_FLOAT, 1, 8000, 16, &[0; 64])),
            PromptError::UnsupportedBits {
                format: "float",
                bits: 16
            }
        );
        assert_eq!(
            error(&wav_file(FORMAT_PCM, 0, 8000, 16, &[0; 64])),
            PromptError::Channels(0)
        );
        assert_eq!(
            error(&wav_file(FORMAT_PCM, 1, 0, 16, &[0; 64])),
            PromptError::SampleRate(0)
        );
        let mut bad_block = wav_file(FORMAT_PCM, 2, 8000, 16, &[0; 64]);
        bad_block[32..34].copy_from_slice(&3u16.to_le_bytes());
        assert_eq!(
            error(&bad_block),
            PromptError::BlockAlign {
                block_align: 3,
                channels: 2,
                bits: 16
            }
        );
        assert_eq!(error(&encode_wav(&[], 1, 8000)), PromptError::Empty);
        assert_eq!(
            error(&wav_file(FORMAT_PCM, 2, 8000, 16, &[0; 3])),
            PromptError::Empty
        );
        assert!(PromptError::UnsupportedFormat(0x55)
            .to_string()
            .contains("0x0055"));
    }

    #[test]
    fn truncations_and_garbage_never_panic() {
        let file = encode_wav(&[1, 2, 3, 4], 2, 16000);
        for length in 0..file.len() {
            let _ = prompt_from_wav(&file[..length]);
        }
        let mut corrupted = file.clone();
        for index in 0..corrupted.len() {
            for value in [0x00, 0x7F, 0xFF] {
                let original = corrupted[index];
                corrupted[index] = value;
                let _ = prompt_from_wav(&corrupted);
                corrupted[index] = original;
            }
        }
    }
}
