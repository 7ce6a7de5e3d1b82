//! A connection's outbound queue: bounded, filled by the room, drained by the
//! connection's task, and holding no memory while empty.
//!
//! tokio's `mpsc::channel` costs about 1 KiB per connection even when nothing is
//! queued: its shared state is cache-padded to 512 bytes and messages live in
//! 32-slot blocks that it keeps for reuse. With 10,000 idle connections that was a
//! fifth of the server's memory. Here the messages are a `VecDeque` behind a mutex,
//! allocated while messages wait and freed once drained; the whole queue is one
//! ~100-byte allocation when idle. Sending never waits (a full queue is how the
//! room detects a slow consumer), so nothing here needs more than `try_send`.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

/// A queue holding at most `capacity` messages.
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            messages: VecDeque::new(),
            capacity,
            senders: 1,
            receiving: true,
        }),
        receiver: AtomicWaker::new(),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// The receiving task, woken by a send or by the last sender leaving.
    receiver: AtomicWaker,
}

struct State<T> {
    messages: VecDeque<T>,
    capacity: usize,
    senders: usize,
    /// False once the receiver is dropped; sends then fail.
    receiving: bool,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing panics while the lock is held; a poisoned queue is still whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Why `try_send` gave the message back.
#[derive(Debug, PartialEq, Eq)]
pub enum TrySendError<T> {
    /// `capacity` messages are already waiting.
    Full(T),
    /// The receiver is gone.
    Closed(T),
}

/// Why `try_recv` returned no message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryRecvError {
    /// Nothing is queued now.
    Empty,
    /// Nothing is queued and every sender is gone.
    Disconnected,
}

pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Sender<T> {
    /// Queues `message` unless the queue is full or the receiver is gone.
    pub fn try_send(&self, message: T) -> Result<(), TrySendError<T>> {
        {
            let mut state = self.shared.lock();
            if !state.receiving {
                return Err(TrySendError::Closed(message));
            }
            if state.messages.len() >= state.capacity {
                return Err(TrySendError::Full(message));
            }
            state.messages.push_back(message);
        }
        self.shared.receiver.wake();
        Ok(())
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let last = {
            let mut state = self.shared.lock();
            state.senders -= 1;
            state.senders == 0
        };
        if last {
            self.shared.receiver.wake();
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Receiver<T> {
    /// The next message, if one is queued.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let mut state = self.shared.lock();
        match state.messages.pop_front() {
            Some(message) => {
                if state.messages.is_empty() {
                    // Freed rather than kept: an idle connection holds nothing, and
                    // the next burst's allocation is cheap next to its write.
                    state.messages = VecDeque::new();
                }
                Ok(message)
            }
            None if state.senders == 0 => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    /// The next message; `None` once the queue is empty and every sender is gone.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        match self.try_recv() {
            Ok(message) => return Poll::Ready(Some(message)),
            Err(TryRecvError::Disconnected) => return Poll::Ready(None),
            Err(TryRecvError::Empty) => {}
        }
        self.shared.receiver.register(cx.waker());
        // Checked again: a message sent between the first look and the
        // registration woke nobody.
        match self.try_recv() {
            Ok(message) => Poll::Ready(Some(message)),
            Err(TryRecvError::Disconnected) => Poll::Ready(None),
            Err(TryRecvError::Empty) => Poll::Pending,
        }
    }

    /// Waits for the next message; `None` once every sender is gone.
    pub async fn recv(&mut self) -> Option<T> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let dropped = {
            let mut state = self.shared.lock();
            state.receiving = false;
            std::mem::take(&mut state.messages)
        };
        // Messages are dropped outside the lock.
        drop(dropped);
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn messages_arrive_in_order_up_to_capacity() {
        let (sender, mut receiver) = channel(3);
        for i in 0..3 {
            sender.try_send(i).unwrap();
        }
        assert_eq!(sender.try_send(3), Err(TrySendError::Full(3)));
        assert_eq!(receiver.try_recv(), Ok(0));
        sender.try_send(4).unwrap();
        assert_eq!(receiver.try_recv(), Ok(1));
        assert_eq!(receiver.try_recv(), Ok(2));
        assert_eq!(receiver.try_recv(), Ok(4));
        assert_eq!(receiver.try_recv(), Err(TryRecvError::Empty));
    }

    #[test]
    fn a_drained_queue_holds_no_memory() {
        let (sender, mut receiver) = channel(1024);
        for i in 0..100 {
            sender.try_send(i).unwrap();
        }
        assert!(sender.shared.lock().messages.capacity() >= 100);
        while receiver.try_recv().is_ok() {}
        assert_eq!(sender.shared.lock().messages.capacity(), 0);
    }

    #[test]
    fn the_receiver_sees_the_end_once_every_sender_is_gone() {
        let (sender, mut receiver) = channel(8);
        let second = sender.clone();
        sender.try_send(1).unwrap();
        drop(sender);
        assert_eq!(receiver.try_recv(), Ok(1));
        assert_eq!(receiver.try_recv(), Err(TryRecvError::Empty));
        second.try_send(2).unwrap();
        drop(second);
        // Queued messages are still delivered before the end.
        assert_eq!(receiver.try_recv(), Ok(2));
        assert_eq!(receiver.try_recv(), Err(TryRecvError::Disconnected));
    }

    #[test]
    fn sending_to_a_dropped_receiver_fails() {
        let (sender, receiver) = channel(8);
        sender.try_send(1).unwrap();
        drop(receiver);
        assert_eq!(sender.try_send(2), Err(TrySendError::Closed(2)));
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_by_a_send_and_by_the_last_sender_leaving() {
        let (sender, mut receiver) = channel(8);
        let task = tokio::spawn(async move {
            let first = receiver.recv().await;
            let end = receiver.recv().await;
            (first, end)
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        sender.try_send("hello").unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(sender);
        let (first, end) = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first, Some("hello"));
        assert_eq!(end, None);
    }

    #[test]
    fn many_threads_sending_lose_nothing() {
        let (sender, mut receiver) = channel(usize::MAX);
        let threads: Vec<_> = (0..4)
            .map(|thread| {
                let sender = sender.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000 {
                        sender.try_send(thread * 10_000 + i).unwrap();
                    }
                })
            })
            .collect();
        drop(sender);
        let mut received = Vec::new();
        let mut ended = false;
        while !ended {
            match receiver.try_recv() {
                Ok(message) => received.push(message),
                Err(TryRecvError::Empty) => std::thread::yield_now(),
                Err(TryRecvError::Disconnected) => ended = true,
            }
        }
        for thread in threads {
            thread.join().unwrap();
        }
        received.sort_unstable();
        assert_eq!(received, (0..40_000).collect::<Vec<_>>());
    }
}
