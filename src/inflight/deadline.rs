//! A request body that must keep arriving: after a grace period it has to have come at
//! `MIN_RATE` or faster, else it ends with `TooSlow`. The timer runs while the handler waits
//! for data, so a client that sends headers and then stalls cannot hold a request (and its
//! permits) for longer than the grace period.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// The slowest a body may arrive once its grace period is over.
pub const MIN_RATE: u64 = 4 << 10;

/// The error a body that arrived too slowly ends with.
#[derive(Debug, thiserror::Error)]
#[error("the request body arrived too slowly")]
pub struct TooSlow;

/// Whether an error (or anything in its chain of causes) is `TooSlow`.
pub fn is_too_slow(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if error.is::<TooSlow>() {
            return true;
        }
        cause = error.source();
    }
    false
}

pub struct DeadlineBody {
    inner: Body,
    started: Instant,
    grace: Duration,
    received: u64,
    timer: Pin<Box<Sleep>>,
}

impl DeadlineBody {
    pub fn new(inner: Body, grace: Duration) -> Self {
        let started = Instant::now();
        DeadlineBody { inner, started, grace, received: 0, timer: Box::pin(tokio::time::sleep_until(started + grace)) }
    }

    /// When the bytes received so far stop being enough.
    fn due(&self) -> Instant {
        self.started + self.grace + Duration::from_millis(self.received.saturating_mul(1000) / MIN_RATE)
    }
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.received += data.len() as u64;
                    let due = self.due();
                    self.timer.as_mut().reset(due);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => match self.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(TooSlow)))),
                Poll::Pending => Poll::Pending,
            },
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
