//! Poll strategies for apalis backends. Hand-written because apalis 1.0's built-in
//! `IntervalStrategy`/`StreamStrategy` do not re-register their waker after firing, so idle
//! workers stall until the next heartbeat (measured: ~20 s idle pickup). These keep a
//! waker registered at all times.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use apalis::prelude::{PollSnapshot, PollStrategy};
use futures::StreamExt;

/// Fires every `every`, re-arming its timer before it returns.
pub struct Tick {
    every: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Tick {
    pub fn new(every: Duration) -> Self {
        Tick {
            every,
            sleep: Box::pin(tokio::time::sleep(every)),
        }
    }
}

impl PollStrategy for Tick {
    fn poll_drive(&mut self, cx: &mut Context<'_>, _: &PollSnapshot) -> Poll<Option<()>> {
        if self.sleep.as_mut().poll(cx).is_ready() {
            let next = tokio::time::Instant::now() + self.every;
            self.sleep.as_mut().reset(next);
            let _ = self.sleep.as_mut().poll(cx);
            return Poll::Ready(Some(()));
        }
        Poll::Pending
    }
}

/// Fires when a wake-up stream (LISTEN/NOTIFY, SQLite update hook) yields; drains it so
/// a burst of inserts costs one fetch.
pub struct Wake<S>(pub S);

impl<S: futures::Stream + Unpin> PollStrategy for Wake<S> {
    fn poll_drive(&mut self, cx: &mut Context<'_>, _: &PollSnapshot) -> Poll<Option<()>> {
        let mut fired = false;
        while let Poll::Ready(Some(_)) = self.0.poll_next_unpin(cx) {
            fired = true;
        }
        if fired {
            Poll::Ready(Some(()))
        } else {
            Poll::Pending
        }
    }
}

/// Polls both, always (apalis' `Strategy` stops at the first that is ready).
pub struct Both<A, B>(pub A, pub B);

impl<A: PollStrategy, B: PollStrategy> PollStrategy for Both<A, B> {
    fn poll_drive(&mut self, cx: &mut Context<'_>, s: &PollSnapshot) -> Poll<Option<()>> {
        let a = self.0.poll_drive(cx, s).is_ready();
        let b = self.1.poll_drive(cx, s).is_ready();
        if a || b {
            Poll::Ready(Some(()))
        } else {
            Poll::Pending
        }
    }
}
