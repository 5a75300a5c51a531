//! Length-prefixed JSON frames: how the worker and its pool children talk over a socket.
//!
//! A frame is a 4-byte big-endian length, then that many bytes of JSON. The [`Decoder`]
//! takes bytes as they arrive and hands back whole values; a length above [`MAX_FRAME`] or
//! a body that is not the expected JSON is a [`FrameError`], never a panic.
//!
//! ```ignore
//! let mut decoder = Decoder::default();
//! decoder.push(&encode(&42u32)?);
//! assert_eq!(decoder.next::<u32>()?, Some(42));
//! ```

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The largest frame body accepted (64 MiB): a task's arguments or result beyond it are a
/// mistake, and a corrupt length must not make the reader allocate gigabytes.
pub(crate) const MAX_FRAME: usize = 64 << 20;

/// A frame that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    /// The length prefix is larger than [`MAX_FRAME`].
    #[error("frame of {0} bytes is larger than the limit of {MAX_FRAME} bytes")]
    TooLarge(usize),
    /// The body is not the JSON expected.
    #[error("bad frame body: {0}")]
    Body(#[from] serde_json::Error),
    /// The stream ended inside a frame.
    #[error("the stream ended inside a frame ({0} bytes pending)")]
    Truncated(usize),
    /// Reading or writing the socket failed.
    #[error("pool socket: {0}")]
    Io(#[from] std::io::Error),
}

/// `value` as one frame.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, FrameError> {
    let mut frame = vec![0; 4];
    serde_json::to_writer(&mut frame, value)?;
    let length = frame.len() - 4;
    if length > MAX_FRAME {
        return Err(FrameError::TooLarge(length));
    }
    let prefix = u32::try_from(length).map_err(|_| FrameError::TooLarge(length))?;
    frame[..4].copy_from_slice(&prefix.to_be_bytes());
    Ok(frame)
}

/// Collects bytes and cuts them into frames.
#[derive(Debug, Default)]
pub(crate) struct Decoder {
    buffer: Vec<u8>,
}

impl Decoder {
    /// Adds bytes read from the stream.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole frame's value, `None` until one has fully arrived. After an error the
    /// stream is out of step and should be dropped.
    pub(crate) fn next<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        let Some(prefix) = self.buffer.get(..4) else {
            return Ok(None);
        };
        let length = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        if length > MAX_FRAME {
            return Err(FrameError::TooLarge(length));
        }
        let Some(body) = self.buffer.get(4..4 + length) else {
            return Ok(None);
        };
        let value = serde_json::from_slice(body);
        self.buffer.drain(..4 + length);
        Ok(Some(value?))
    }

    /// Bytes received but not yet part of a whole frame.
    pub(crate) fn pending(&self) -> usize {
        self.buffer.len()
    }
}

/// Reads frames from an async stream.
#[derive(Debug)]
pub(crate) struct FrameReader<R> {
    reader: R,
    decoder: Decoder,
}

impl<R: tokio::io::AsyncRead + Unpin> FrameReader<R> {
    pub(crate) fn new(reader: R) -> Self {
        FrameReader {
            reader,
            decoder: Decoder::default(),
        }
    }

    /// The next value; `Ok(None)` at a clean end of stream (between frames).
    ///
    /// Cancel safe: bytes already read stay in the decoder.
    pub(crate) async fn read<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        use tokio::io::AsyncReadExt;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(value) = self.decoder.next()? {
                return Ok(Some(value));
            }
            let read = self.reader.read(&mut chunk).await?;
            if read == 0 {
                return match self.decoder.pending() {
                    0 => Ok(None),
                    pending => Err(FrameError::Truncated(pending)),
                };
            }
            self.decoder.push(&chunk[..read]);
        }
    }
}

/// Writes `value` as one frame.
pub(crate) async fn write<W, T>(writer: &mut W, value: &T) -> Result<(), FrameError>
where
    W: tokio::io::AsyncWrite + Unpin,
    T: Serialize,
{
    use tokio::io::AsyncWriteExt;
    writer.write_all(&encode(value)?).await?;
    writer.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::panic::{catch_unwind, AssertUnwindSafe};

    use serde_json::json;

    use super::*;
    use crate::protocol::fuzz_tests::seeded;
    use crate::worker::pool::protocol::{FromChild, Job, ToChild, WireEnding};

    fn samples() -> Vec<Vec<u8>> {
        let job = ToChild::Run(Job {
            job: 7,
            task: "site.add".to_owned(),
            id: "6f2c".to_owned(),
            args: vec![json!(1), json!("two")],
            kwargs: serde_json::Map::from_iter([("x".to_owned(), json!({"y": [1.5]}))]),
            retries: 2,
            hostname: "celery@host".to_owned(),
            eta: None,
            periodic_task_name: Some("nightly".to_owned()),
            soft_time_limit: Some(1.5),
        });
        let done = FromChild::Done {
            job: 7,
            ending: WireEnding::Failed {
                exc_type: "ValueError".to_owned(),
                message: "bad".to_owned(),
                traceback: Some("at line 1".to_owned()),
            },
            peak_rss_kib: Some(12345),
        };
        let ready = FromChild::Ready { pid: 4242 };
        vec![
            encode(&job).unwrap(),
            encode(&done).unwrap(),
            encode(&ready).unwrap(),
        ]
    }

    /// Feeds `bytes` to a decoder in random pieces, reading every frame as `T`.
    fn feed<T: DeserializeOwned>(rng: &mut fastrand::Rng, bytes: &[u8]) -> Result<usize, String> {
        let mut decoder = Decoder::default();
        let mut frames = 0;
        let mut rest = bytes;
        while !rest.is_empty() {
            let cut = rng.usize(1..=rest.len());
            decoder.push(&rest[..cut]);
            rest = &rest[cut..];
            loop {
                match decoder.next::<T>() {
                    Ok(Some(_)) => frames += 1,
                    Ok(None) => break,
                    Err(error) => {
                        let message = error.to_string();
                        assert!(!message.is_empty(), "an error without a message");
                        return Err(message);
                    }
                }
            }
        }
        Ok(frames)
    }

    #[test]
    fn whole_frames_come_back_in_any_chunking() {
        let mut rng = seeded();
        let stream: Vec<u8> = samples().concat();
        for _ in 0..200 {
            let mut decoder = Decoder::default();
            let mut values = Vec::new();
            let mut rest = &stream[..];
            while !rest.is_empty() {
                let cut = rng.usize(1..=rest.len());
                decoder.push(&rest[..cut]);
                rest = &rest[cut..];
                while let Some(value) = decoder.next::<serde_json::Value>().unwrap() {
                    values.push(value);
                }
            }
            assert_eq!(values.len(), 3);
            assert_eq!(decoder.pending(), 0);
        }
    }

    #[test]
    fn mutated_frames_never_panic_and_errors_say_why() {
        let mut rng = seeded();
        let samples = samples();
        let mut rejected = 0;
        for round in 0..20_000 {
            let mut bytes = samples[rng.usize(..samples.len())].clone();
            for _ in 0..rng.usize(1..4) {
                match rng.u8(..5) {
                    0 if !bytes.is_empty() => {
                        let at = rng.usize(..bytes.len());
                        bytes[at] = rng.u8(..);
                    }
                    1 if !bytes.is_empty() => bytes.truncate(rng.usize(..bytes.len())),
                    2 => {
                        let at = rng.usize(..=bytes.len());
                        bytes.insert(at, rng.u8(..));
                    }
                    3 => {
                        // A random length prefix, large ones included.
                        let length = if rng.bool() {
                            rng.u32(..)
                        } else {
                            rng.u32(..64)
                        };
                        bytes.splice(..4.min(bytes.len()), length.to_be_bytes());
                    }
                    _ => bytes = (0..rng.usize(..64)).map(|_| rng.u8(..)).collect(),
                }
            }
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                let mut rng = fastrand::Rng::with_seed(round);
                (
                    feed::<ToChild>(&mut rng, &bytes),
                    feed::<FromChild>(&mut rng, &bytes),
                )
            }));
            let (to_child, from_child) = outcome.expect("the decoder panicked");
            rejected += usize::from(to_child.is_err()) + usize::from(from_child.is_err());
        }
        assert!(rejected > 0, "mutations were never rejected");
    }

    #[test]
    fn a_huge_length_is_refused_before_it_is_allocated() {
        let mut decoder = Decoder::default();
        decoder.push(&u32::MAX.to_be_bytes());
        let error = decoder.next::<serde_json::Value>().unwrap_err();
        assert!(
            error.to_string().contains("larger than the limit"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_stream_cut_inside_a_frame_is_an_error() {
        let frame = encode(&json!({"a": 1})).unwrap();
        let mut reader = FrameReader::new(&frame[..frame.len() - 1]);
        let error = reader.read::<serde_json::Value>().await.unwrap_err();
        assert!(
            error.to_string().contains("ended inside a frame"),
            "{error}"
        );
        let mut reader = FrameReader::new(&frame[..]);
        assert_eq!(
            reader.read::<serde_json::Value>().await.unwrap(),
            Some(json!({"a": 1}))
        );
        assert!(reader.read::<serde_json::Value>().await.unwrap().is_none());
    }
}
