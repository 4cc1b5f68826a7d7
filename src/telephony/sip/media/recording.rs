//! Call recordings: a stereo 8 kHz 16-bit WAV, what we sent on the left and what we received on
//! the right, both placed on the session's clock so that they line up as the call sounded.
//!
//! Both directions write into a short ring of upcoming samples at their own positions; a task
//! moves everything older than [`HOLD`] to the file, so a late packet still lands in its place and
//! silence fills whatever nobody wrote. The file is written on a blocking thread, fed through a
//! bounded channel; its header is kept valid as it grows, so even a crash leaves a playable file.

use std::{
    fs::File,
    io::{self, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::{sync::mpsc, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::audio::wav::{wav_header, SAMPLE_RATE};

/// Samples of one channel in 20 ms.
pub(crate) const FRAME_LEN: usize = 160;
/// How long a sample stays writable after its time has passed: covers network jitter.
const HOLD: u64 = 300 * SAMPLE_RATE as u64 / 1000;
/// The ring spans this much of the timeline; writes beyond it are dropped.
const RING_LEN: usize = 2 * SAMPLE_RATE as usize;
/// The most one transfer to the writer carries, so that a stalled task cannot make a huge one.
const MAX_TRANSFER: u64 = 10 * SAMPLE_RATE as u64;
const TRANSFER_INTERVAL: Duration = Duration::from_millis(100);
/// Chunks queued for the writer; when the disk falls this far behind, the ring starts dropping.
const WRITER_QUEUE: usize = 64;
/// Rewrite the header's sizes every this many chunks (about a second).
const HEADER_REFRESH: u32 = 10;

/// The position of `instant` on a timeline starting at `epoch`, in 8 kHz samples.
pub(crate) fn sample_position(epoch: Instant, instant: Instant) -> u64 {
    (instant.saturating_duration_since(epoch).as_nanos() / (1_000_000_000 / SAMPLE_RATE as u128))
        as u64
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Channel {
    Sent = 0,
    Received = 1,
}

/// The samples not yet handed to the writer.
pub(crate) struct Mix {
    ring: Vec<[i16; 2]>,
    /// Everything before this position has gone to the writer.
    flushed: u64,
    /// The end of the latest write.
    written_end: u64,
}

impl Mix {
    fn new() -> Mix {
        Mix {
            ring: vec![[0; 2]; RING_LEN],
            flushed: 0,
            written_end: 0,
        }
    }

    /// Places `samples` from `position` on; what is already flushed or too far ahead is dropped.
    pub(crate) fn write(&mut self, channel: Channel, position: u64, samples: &[i16]) {
        let writable = self.flushed..self.flushed + RING_LEN as u64;
        for (offset, &sample) in samples.iter().enumerate() {
            let at = position + offset as u64;
            if writable.contains(&at) {
                self.ring[(at % RING_LEN as u64) as usize][channel as usize] = sample;
            }
        }
        let end = position + samples.len() as u64;
        if writable.contains(&end.saturating_sub(1)) {
            self.written_end = self.written_end.max(end);
        }
    }

    /// Takes the interleaved samples before `end` (at most [`MAX_TRANSFER`] of them).
    fn take(&mut self, end: u64) -> Vec<i16> {
        let end = end.min(self.flushed + MAX_TRANSFER);
        let mut interleaved = Vec::with_capacity(2 * end.saturating_sub(self.flushed) as usize);
        while self.flushed < end {
            let slot = &mut self.ring[(self.flushed % RING_LEN as u64) as usize];
            interleaved.extend_from_slice(slot);
            *slot = [0; 2];
            self.flushed += 1;
        }
        interleaved
    }
}

/// A recording in progress.
pub(crate) struct Recording {
    pub(crate) mix: Arc<Mutex<Mix>>,
    pub(crate) task: JoinHandle<io::Result<()>>,
    pub(crate) path: PathBuf,
}

/// Locks the mix; a panic elsewhere cannot leave it inconsistent, so poisoning is ignored.
pub(crate) fn lock(mix: &Mutex<Mix>) -> std::sync::MutexGuard<'_, Mix> {
    mix.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Recording {
    /// Creates the file and starts moving samples into it until `stop` is cancelled; the task's
    /// result is the file's, once it is complete.
    pub(crate) async fn start(
        path: &Path,
        epoch: Instant,
        stop: CancellationToken,
    ) -> io::Result<Recording> {
        let file = {
            let path = path.to_owned();
            tokio::task::spawn_blocking(move || -> io::Result<File> {
                let mut file = File::create(path)?;
                file.write_all(&wav_header(2, SAMPLE_RATE, 0))?;
                Ok(file)
            })
            .await
            .map_err(io::Error::other)??
        };
        let mix = Arc::new(Mutex::new(Mix::new()));
        let (chunks, chunk_receiver) = mpsc::channel(WRITER_QUEUE);
        let writer = tokio::task::spawn_blocking(move || write_file(file, chunk_receiver));
        let task = tokio::spawn(transfer(mix.clone(), epoch, stop, chunks, writer));
        Ok(Recording {
            mix,
            task,
            path: path.to_owned(),
        })
    }
}

async fn transfer(
    mix: Arc<Mutex<Mix>>,
    epoch: Instant,
    stop: CancellationToken,
    chunks: mpsc::Sender<Vec<i16>>,
    writer: JoinHandle<io::Result<()>>,
) -> io::Result<()> {
    let mut ticker = tokio::time::interval(TRANSFER_INTERVAL);
    let mut writer_gone = false;
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let now = sample_position(epoch, Instant::now());
        let chunk = lock(&mix).take(now.saturating_sub(HOLD));
        if !chunk.is_empty() && chunks.send(chunk).await.is_err() {
            writer_gone = true;
            break;
        }
    }
    // The end: everything up to now, and anything written ahead of it.
    if !writer_gone {
        let end = {
            let mix = lock(&mix);
            sample_position(epoch, Instant::now()).max(mix.written_end)
        };
        loop {
            let chunk = lock(&mix).take(end);
            if chunk.is_empty() || chunks.send(chunk).await.is_err() {
                break;
            }
        }
    }
    drop(chunks);
    writer.await.map_err(io::Error::other)?
}

fn write_file(mut file: File, mut chunks: mpsc::Receiver<Vec<i16>>) -> io::Result<()> {
    let mut data_len: u32 = 0;
    let mut bytes = Vec::new();
    let mut chunks_since_header = 0;
    while let Some(chunk) = chunks.blocking_recv() {
        bytes.clear();
        bytes.extend(chunk.iter().flat_map(|sample| sample.to_le_bytes()));
        // A WAV file cannot describe more than 4 GiB of data; past that (about 37 hours) the
        // rest is dropped rather than leaving a corrupt header.
        let Some(new_len) = data_len.checked_add(bytes.len() as u32) else {
            continue;
        };
        file.write_all(&bytes)?;
        data_len = new_len;
        chunks_since_header += 1;
        if chunks_since_header >= HEADER_REFRESH {
            chunks_since_header = 0;
            rewrite_header(&mut file, data_len)?;
        }
    }
    rewrite_header(&mut file, data_len)?;
    file.sync_data()
}

fn rewrite_header(file: &mut File, data_len: u32) -> io::Result<()> {
    file.seek(SeekFrom::Start(0))?;
    file.write_all(&wav_header(2, SAMPLE_RATE, data_len))?;
    file.seek(SeekFrom::End(0))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_on_the_timeline() {
        let epoch = Instant::now();
        assert_eq!(sample_position(epoch, epoch), 0);
        assert_eq!(
            sample_position(epoch, epoch + Duration::from_millis(20)),
            160
        );
        assert_eq!(sample_position(epoch, epoch + Duration::from_secs(1)), 8000);
        assert_eq!(sample_position(epoch + Duration::from_secs(1), epoch), 0);
    }

    #[test]
    fn channels_interleave_with_silence_between() {
        let mut mix = Mix::new();
        mix.write(Channel::Sent, 0, &[1, 2, 3]);
        mix.write(Channel::Received, 2, &[7, 8]);
        assert_eq!(mix.take(5), [1, 0, 2, 0, 3, 7, 0, 8, 0, 0]);
        // Too late for what has been taken, the rest still lands.
        mix.write(Channel::Received, 4, &[9, 10]);
        assert_eq!(mix.take(6), [0, 10]);
        // The ring was cleared as it was taken.
        let far = 5 + RING_LEN as u64;
        assert_eq!(mix.take(far), vec![0; 2 * (far as usize - 6)]);
        assert_eq!(mix.written_end, 6);
    }

    #[test]
    fn writes_beyond_the_ring_are_dropped() {
        let mut mix = Mix::new();
        mix.write(Channel::Sent, RING_LEN as u64 - 1, &[5, 6]);
        assert_eq!(mix.written_end, 0);
        let taken = mix.take(RING_LEN as u64 + 1);
        assert_eq!(taken[2 * (RING_LEN - 1)], 5);
        assert_eq!(taken[2 * RING_LEN], 0);
    }

    #[test]
    fn transfers_are_bounded() {
        let mut mix = Mix::new();
        assert_eq!(mix.take(u64::MAX).len(), 2 * MAX_TRANSFER as usize);
    }

    #[tokio::test]
    async fn a_recording_is_a_valid_growing_file() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("call.wav");
        let stop = CancellationToken::new();
        let epoch = Instant::now();
        let recording = Recording::start(&path, epoch, stop.clone()).await.unwrap();
        lock(&recording.mix).write(Channel::Sent, 0, &[100; FRAME_LEN]);
        lock(&recording.mix).write(Channel::Received, 80, &[-100; FRAME_LEN]);
        stop.cancel();
        recording.task.await.unwrap().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let header = wav_header(2, SAMPLE_RATE, (bytes.len() - 44) as u32);
        assert_eq!(bytes[..44], header);
        let samples: Vec<i16> = bytes[44..]
            .chunks_exact(2)
            .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
            .collect();
        assert!(samples.len() >= 2 * 240);
        assert_eq!(samples[0..2], [100, 0]);
        assert_eq!(samples[2 * 80..2 * 80 + 2], [100, -100]);
        assert_eq!(samples[2 * 239..2 * 240], [0, -100]);
    }

    #[tokio::test]
    async fn an_unwritable_path_is_an_error() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("missing").join("call.wav");
        let started = Recording::start(&path, Instant::now(), CancellationToken::new()).await;
        assert!(started.is_err());
    }
}
