//! Stopping on request (SIGINT, SIGTERM): the shell records the signal here; the driver checks it
//! between steps and while it waits, so a run stops at a safe point, never between a write and
//! the tag that records it.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use tokio::sync::Notify;

/// The signals greenlight stops on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Ctrl-C.
    Interrupt,
    /// What a cancelled pipeline (or `kill`) sends.
    Terminate,
}

impl Signal {
    /// 128 + the signal number, as shells report a process a signal ended.
    pub fn exit_code(self) -> u8 {
        match self {
            Signal::Interrupt => 130,
            Signal::Terminate => 143,
        }
    }

    fn encode(self) -> u8 {
        match self {
            Signal::Interrupt => 1,
            Signal::Terminate => 2,
        }
    }

    fn decode(value: u8) -> Option<Signal> {
        match value {
            1 => Some(Signal::Interrupt),
            2 => Some(Signal::Terminate),
            _ => None,
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        })
    }
}

#[derive(Debug, Default)]
struct Inner {
    signal: AtomicU8,
    notify: Notify,
}

/// A request to stop, shared between the signal handler and the running command.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    inner: Arc<Inner>,
}

impl Stop {
    pub fn new() -> Stop {
        Stop::default()
    }

    /// Records `signal` (the first one wins) and wakes a waiting driver.
    pub fn request(&self, signal: Signal) {
        let _ = self.inner.signal.compare_exchange(
            0,
            signal.encode(),
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        self.inner.notify.notify_waiters();
    }

    pub fn requested(&self) -> Option<Signal> {
        Signal::decode(self.inner.signal.load(Ordering::SeqCst))
    }

    /// Resolves once a stop is requested.
    pub async fn wait(&self) {
        loop {
            let notified = self.inner.notify.notified();
            if self.requested().is_some() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_signal_wins() {
        let stop = Stop::new();
        assert_eq!(stop.requested(), None);
        stop.request(Signal::Terminate);
        stop.request(Signal::Interrupt);
        assert_eq!(stop.requested(), Some(Signal::Terminate));
        assert_eq!(Signal::Terminate.exit_code(), 143);
        assert_eq!(Signal::Interrupt.exit_code(), 130);
    }
}
