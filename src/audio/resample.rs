//! Sample-rate conversion by windowed-sinc interpolation.
//!
//! Each output sample is a weighted sum of the input around its position, with a low-pass kernel
//! whose cutoff sits below the lower of the two Nyquist frequencies: when going down to 8 kHz,
//! whatever lies above 4 kHz is removed instead of folding back as audible aliasing. The kernel is
//! tabulated once per call and read with linear interpolation, so any rate ratio costs the same.

use std::f64::consts::PI;

/// Kernel half-width, in zero crossings of the sinc: wider is sharper and slower. With the
/// Blackman window the transition band is about 5.5 / (2 × this) of the cutoff frequency wide.
const ZERO_CROSSINGS: usize = 24;
/// Table entries per zero crossing.
const TABLE_RESOLUTION: usize = 256;
/// The cutoff as a fraction of the lower Nyquist frequency, leaving room for the transition band:
/// going to 8 kHz, flat to about 3.2 kHz and silent from about 4 kHz, where aliasing would begin.
const CUTOFF: f64 = 0.9;

/// Converts `input`, sampled at `from_rate`, to `to_rate`. Both rates must be non-zero.
/// Outside the input the signal is taken as silence.
pub fn resample(input: &[f32], from_rate: u32, to_rate: u32) -> Vec<f32> {
    assert!(
        from_rate > 0 && to_rate > 0,
        "sample rates must be non-zero"
    );
    if from_rate == to_rate || input.is_empty() {
        return input.to_vec();
    }
    let kernel = kernel_table();
    let step = from_rate as f64 / to_rate as f64;
    // Cutoff in cycles per input sample.
    let cutoff = 0.5 * CUTOFF * (to_rate as f64 / from_rate as f64).min(1.0);
    // Kernel argument per input sample: one zero crossing every 1 / (2 cutoff) input samples.
    let scale = 2.0 * cutoff;
    let half_width = ZERO_CROSSINGS as f64 / scale;
    let output_len = (input.len() as u64 * to_rate as u64).div_ceil(from_rate as u64) as usize;
    let last = input.len() as i64 - 1;

    (0..output_len)
        .map(|index| {
            let center = index as f64 * step;
            let first = ((center - half_width).ceil() as i64).max(0);
            let end = ((center + half_width).floor() as i64).min(last);
            let mut sum = 0.0;
            for position in first..=end {
                let distance = (center - position as f64).abs() * scale;
                sum += input[position as usize] as f64 * kernel_at(&kernel, distance);
            }
            (sum * scale) as f32
        })
        .collect()
}

/// Blackman-windowed sinc from 0 to `ZERO_CROSSINGS`, with a trailing zero for interpolation.
fn kernel_table() -> Vec<f64> {
    let len = ZERO_CROSSINGS * TABLE_RESOLUTION;
    let mut table: Vec<f64> = (0..=len)
        .map(|index| {
            let x = index as f64 / TABLE_RESOLUTION as f64;
            let sinc = if index == 0 {
                1.0
            } else {
                (PI * x).sin() / (PI * x)
            };
            let phase = PI * x / ZERO_CROSSINGS as f64;
            let window = 0.42 + 0.5 * phase.cos() + 0.08 * (2.0 * phase).cos();
            sinc * window
        })
        .collect();
    table.push(0.0);
    table
}

fn kernel_at(table: &[f64], distance: f64) -> f64 {
    let position = distance * TABLE_RESOLUTION as f64;
    let index = position as usize;
    if index >= table.len() - 1 {
        return 0.0;
    }
    let fraction = position - index as f64;
    table[index] + (table[index + 1] - table[index]) * fraction
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(frequency: f64, rate: u32, seconds: f64, amplitude: f64) -> Vec<f32> {
        let count = (rate as f64 * seconds) as usize;
        (0..count)
            .map(|index| {
                (amplitude * (2.0 * PI * frequency * index as f64 / rate as f64).sin()) as f32
            })
            .collect()
    }

    /// Root mean square over the middle, away from the edges where the kernel meets silence.
    fn middle_rms(samples: &[f32]) -> f64 {
        let middle = &samples[samples.len() / 4..samples.len() * 3 / 4];
        (middle.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / middle.len() as f64).sqrt()
    }

    #[test]
    fn same_rate_is_a_copy() {
        assert_eq!(resample(&[1.0, 2.0], 8000, 8000), [1.0, 2.0]);
        assert!(resample(&[], 44100, 8000).is_empty());
    }

    #[test]
    fn lengths_follow_the_ratio() {
        assert_eq!(resample(&[0.0; 48000], 48000, 8000).len(), 8000);
        assert_eq!(resample(&[0.0; 44100], 44100, 8000).len(), 8000);
        assert_eq!(resample(&[0.0; 4000], 4000, 8000).len(), 8000);
        assert_eq!(resample(&[0.0; 7], 16000, 8000).len(), 4);
    }

    #[test]
    fn passband_tone_survives_downsampling() {
        for from_rate in [11025, 16000, 22050, 44100, 48000] {
            let input = tone(1000.0, from_rate, 0.25, 10000.0);
            let output = resample(&input, from_rate, 8000);
            let expected = tone(1000.0, 8000, 0.25, 10000.0);
            let middle = output.len() / 4..output.len() * 3 / 4;
            let error: Vec<f32> = middle.clone().map(|i| output[i] - expected[i]).collect();
            let error_rms = middle_rms(&error);
            assert!(error_rms < 50.0, "{from_rate} Hz: error {error_rms}");
        }
    }

    #[test]
    fn tones_above_the_new_nyquist_are_removed() {
        // Without filtering, 6 kHz at 48 kHz would alias to 2 kHz at 8 kHz at full strength.
        let input = tone(6000.0, 48000, 0.25, 10000.0);
        let output = resample(&input, 48000, 8000);
        assert!(middle_rms(&output) < 30.0, "{}", middle_rms(&output));
    }

    #[test]
    fn upsampling_interpolates() {
        let input = tone(500.0, 4000, 0.25, 10000.0);
        let output = resample(&input, 4000, 8000);
        let expected = tone(500.0, 8000, 0.25, 10000.0);
        let middle = output.len() / 4..output.len() * 3 / 4;
        let error: Vec<f32> = middle.map(|i| output[i] - expected[i]).collect();
        assert!(middle_rms(&error) < 50.0);
    }
}
