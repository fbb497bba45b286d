//! A request to stop a run (a SIGTERM or SIGINT, as the CLI receives them),
//! shared between whoever hears the signal and the run that must stop.

use std::sync::Arc;

use tokio::sync::watch;

/// Set once, by the first signal; a run watches it and stops (see
/// `materialize`: work in progress is dropped, a commit stops between files).
#[derive(Clone, Debug)]
pub struct Stop(Arc<watch::Sender<Option<&'static str>>>);

impl Default for Stop {
    fn default() -> Self {
        Stop(Arc::new(watch::channel(None).0))
    }
}

impl Stop {
    /// A stop that nothing has requested yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the run to stop, because of `why` (a signal's name, e.g. `SIGTERM`).
    /// Only the first request counts.
    pub fn request(&self, why: &'static str) {
        self.0.send_if_modified(|v| {
            if v.is_none() {
                *v = Some(why);
                true
            } else {
                false
            }
        });
    }

    /// Why the run was asked to stop, if it was.
    pub fn requested(&self) -> Option<&'static str> {
        *self.0.borrow()
    }

    /// Waits until a stop is requested; returns its reason.
    pub async fn wait(&self) -> &'static str {
        let mut rx = self.0.subscribe();
        loop {
            if let Some(why) = *rx.borrow_and_update() {
                return why;
            }
            if rx.changed().await.is_err() {
                // The sender lives in `self`: it cannot be dropped while we wait.
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_request_is_the_reason() {
        let stop = Stop::new();
        assert_eq!(stop.requested(), None);
        let waiter = tokio::spawn({
            let stop = stop.clone();
            async move { stop.wait().await }
        });
        stop.request("SIGTERM");
        stop.request("SIGINT");
        assert_eq!(waiter.await.unwrap(), "SIGTERM");
        assert_eq!(stop.requested(), Some("SIGTERM"));
        // A waiter that comes late still sees it.
        assert_eq!(stop.wait().await, "SIGTERM");
    }
}
