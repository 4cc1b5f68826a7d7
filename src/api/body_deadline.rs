//! Request bodies are read with a deadline: a client trickling its body holds a connection, a
//! descriptor and a worker's attention, so a slow body is cut off (with 408) instead of being
//! waited for. The deadline grows with what has arrived, so a big import on a normal link is
//! never cut: a body must keep up at least [`MIN_BODY_RATE`] after a [`BODY_GRACE`].

use std::time::{Duration, Instant};

use actix_web::{
    body::MessageBody,
    dev::{Payload, ServiceRequest, ServiceResponse},
    error::PayloadError,
    middleware::Next,
    web::Bytes,
    HttpMessage,
};
use futures_util::StreamExt;

/// Time any body may take, whatever its size.
pub const BODY_GRACE: Duration = Duration::from_secs(5);
/// Bytes per second a body must keep up beyond the grace (64 KiB/s: a 128 MiB import may take
/// 34 minutes).
pub const MIN_BODY_RATE: f64 = 64.0 * 1024.0;

/// Middleware: wraps the request's payload in the deadline.
pub async fn body_deadline(
    mut request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let payload = request.take_payload();
    let started = Instant::now();
    let stream = futures_util::stream::unfold(Some((payload, 0u64)), move |state| async move {
        let (mut payload, received) = state?;
        let allowed =
            started + BODY_GRACE + Duration::from_secs_f64(received as f64 / MIN_BODY_RATE);
        match tokio::time::timeout_at(allowed.into(), payload.next()).await {
            Ok(Some(Ok(bytes))) => {
                let received = received + bytes.len() as u64;
                Some((Ok(bytes), Some((payload, received))))
            }
            Ok(Some(Err(error))) => Some((Err(error), None)),
            Ok(None) => None,
            Err(_elapsed) => Some((Err(timed_out()), None)),
        }
    });
    // Fused: multipart reads on after the end, which a bare `unfold` does not allow.
    request.set_payload(Payload::from(Box::pin(stream.fuse())
        as std::pin::Pin<
            Box<dyn futures_util::Stream<Item = Result<Bytes, PayloadError>>>,
        >));
    next.call(request).await
}

fn timed_out() -> PayloadError {
    PayloadError::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "the request body arrived too slowly",
    ))
}

/// Whether a body read failed by this deadline.
pub fn is_timeout(error: &actix_web::Error) -> bool {
    matches!(
        error.as_error::<PayloadError>(),
        Some(PayloadError::Io(error)) if error.kind() == std::io::ErrorKind::TimedOut
    )
}
