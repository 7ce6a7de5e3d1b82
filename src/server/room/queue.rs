//! A connection's outbound queue: bounded in messages and in bytes, filled by the
//! room, drained by the connection's task, and holding no memory while empty.
//!
//! tokio's `mpsc::channel` costs about 1 KiB per connection even when nothing is
//! queued: its shared state is cache-padded to 512 bytes and messages live in
//! 32-slot blocks that it keeps for reuse. With 10,000 idle connections that was a
//! fifth of the server's memory. Here the messages are a `VecDeque` behind a mutex,
//! allocated while messages wait and freed once drained; the whole queue is one
//! ~100-byte allocation when idle. Sending never waits (a full queue is how the
//! room detects a slow consumer), so nothing here needs more than `try_send`.
//!
//! The byte budget covers everything the connection will write: the messages
//! queued here plus what the connection's task already holds for its socket
//! (encoded frames, pongs, close frames), which the task reports with `set_held`.
//! It is a high-water mark on what waits behind the message at the head (the one
//! being written, or next to be): a message is refused once the budget is used
//! up, and accepted, whatever its size, while it is not. A document larger than the
//! budget can then still be sent, with the messages that follow it, and what one
//! connection holds stays below the budget plus one message.
//!
//! Direct writes: a queue can carry a `Direct` writer for its receiver's socket.
//! While the receiving task is parked with nothing queued and nothing of its own
//! to write, it lends the socket to senders (`lend_socket`); a send then writes
//! the message straight to the socket under the queue's lock, and nobody is woken;
//! messages sent together (`try_send_all`) are written together. Only what the
//! socket would not take is queued. The task takes the socket back
//! (`take_socket`) whenever it runs, so its own writes (batches, pongs, a close)
//! never interleave with a sender's, and taking a message out of the queue takes
//! the socket too, so messages keep their order.

use std::cell::Cell;
use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

/// What a queued message costs against the byte budget: the bytes it will take
/// on the wire.
pub trait Weigh {
    fn weight(&self) -> usize;
}

/// What a `Direct` writer did with messages given in order.
#[derive(Debug, PartialEq, Eq)]
pub struct Written<T> {
    /// How many the socket took whole, from the first.
    pub whole: usize,
    /// The rest of the next one, when the socket took part of it: to be written
    /// before anything else.
    pub rest: Option<T>,
}

/// Writes messages straight to the receiving task's socket, without waiting.
pub trait Direct<T>: Send + Sync {
    /// Writes `messages` in order, as far as the socket takes them; it stops at the
    /// first one it does not take whole (the socket would block, or failed: the
    /// receiving task finds out on its own write). A writer may take several in one
    /// system call.
    fn write(&self, messages: &[T]) -> Written<T>;
}

/// Messages one task releasing a batch (the journal, a cluster node's subscriber)
/// writes straight to sockets: a keystroke's deliveries in rooms of up to 65, a few
/// hundred µs on that task's thread. A busy server's batches grow, and what is past
/// this goes to the connections' own tasks on every worker (BENCHMARKS.md, rooms
/// of 20).
pub const DIRECT_WRITES_PER_BATCH: usize = 64;

thread_local! {
    /// Direct writes this thread may still make (`limit_direct_writes`).
    static DIRECT_BUDGET: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Runs `f` with at most `writes` direct writes from this thread; past them, sends
/// queue and wake their receivers, whose tasks then write on whichever worker is
/// free. For one task releasing many rooms' messages at once (the journal): its
/// writes would otherwise all run one after another on its thread.
pub fn limit_direct_writes<R>(writes: usize, f: impl FnOnce() -> R) -> R {
    /// Puts the budget back however `f` ends.
    struct Restore(usize);
    impl Drop for Restore {
        fn drop(&mut self) {
            DIRECT_BUDGET.with(|budget| budget.set(self.0));
        }
    }
    let _restore = Restore(DIRECT_BUDGET.with(|budget| budget.replace(writes)));
    f()
}

/// Takes one direct write from this thread's budget, if any is left.
fn take_direct_write() -> bool {
    DIRECT_BUDGET.with(|budget| match budget.get() {
        0 => false,
        usize::MAX => true,
        left => {
            budget.set(left - 1);
            true
        }
    })
}

/// A queue holding at most `capacity` messages and `max_bytes` bytes (together
/// with what the receiver holds, see `Receiver::set_held`).
pub fn channel<T: Weigh>(capacity: usize, max_bytes: usize) -> (Sender<T>, Receiver<T>) {
    channel_with_direct(capacity, max_bytes, None)
}

/// A queue whose senders write straight to the receiver's socket while the
/// receiver lends it (see the module's comment).
pub fn channel_with_direct<T: Weigh>(
    capacity: usize,
    max_bytes: usize,
    direct: Option<Box<dyn Direct<T>>>,
) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            messages: VecDeque::new(),
            capacity,
            max_bytes,
            bytes: 0,
            held: 0,
            held_head: 0,
            senders: 1,
            receiving: true,
            lent: false,
        }),
        receiver: AtomicWaker::new(),
        direct,
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
    /// Writes to the receiver's socket while it is lent.
    direct: Option<Box<dyn Direct<T>>>,
}

struct State<T> {
    messages: VecDeque<T>,
    capacity: usize,
    max_bytes: usize,
    /// Weight of the queued messages.
    bytes: usize,
    /// Bytes the receiving task holds for its socket, as it last reported them…
    held: usize,
    /// …of which this many are the largest message among them, the one message
    /// the budget lets through whole.
    held_head: usize,
    senders: usize,
    /// False once the receiver is dropped; sends then fail.
    receiving: bool,
    /// The receiving task has lent its socket: it holds nothing for it and is not
    /// running, so a sender finding the queue empty may write to it directly.
    lent: bool,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing panics while the lock is held; a poisoned queue is still whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T: Weigh> State<T> {
    /// Whether the bytes waiting besides one whole message reach the budget, with
    /// `held` bytes (`head` of them its largest message) held by the task, or, when
    /// it holds none, the message at the head of the queue let through.
    fn over_budget(&self, held: usize, head: usize) -> bool {
        let head = if held > 0 {
            head.min(held)
        } else {
            self.messages.front().map_or(0, Weigh::weight)
        };
        (self.bytes + held).saturating_sub(head) >= self.max_bytes
    }

    /// Queues `message` unless the queue is full in messages or bytes.
    fn enqueue(&mut self, message: T) -> Result<(), TrySendError<T>> {
        if self.messages.len() >= self.capacity || self.over_budget(self.held, self.held_head) {
            return Err(TrySendError::Full(message));
        }
        self.bytes += message.weight();
        self.messages.push_back(message);
        Ok(())
    }
}

/// Why `try_send` gave the message back.
#[derive(Debug, PartialEq, Eq)]
pub enum TrySendError<T> {
    /// `capacity` messages, or the byte budget, are already used.
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

impl<T: Weigh> Sender<T> {
    /// Queues `message` unless the queue is full (in messages or bytes) or the
    /// receiver is gone.
    pub fn try_send(&self, message: T) -> Result<(), TrySendError<T>> {
        let mut state = self.shared.lock();
        if !state.receiving {
            return Err(TrySendError::Closed(message));
        }
        let (written, wake) = self.write_direct(&mut state, std::slice::from_ref(&message));
        let queued = if written == 1 {
            Ok(())
        } else {
            state.enqueue(message)
        };
        drop(state);
        // Woken when this call queued anything: a rest, or the message itself.
        if wake || (queued.is_ok() && written == 0) {
            self.shared.receiver.wake();
        }
        queued
    }

    /// `try_send` for each of `messages` in order, stopping at the first refused,
    /// except that a lent socket is given them all in one write. Returns how many
    /// were accepted and why the next was not, if it was not.
    pub fn try_send_all(&self, mut messages: Vec<T>) -> (usize, Option<TrySendError<T>>) {
        let mut state = self.shared.lock();
        if !state.receiving {
            let refused = messages.into_iter().next().map(TrySendError::Closed);
            return (0, refused);
        }
        let (written, mut wake) = self.write_direct(&mut state, &messages);
        let (mut accepted, mut refused) = (written, None);
        for message in messages.drain(written..) {
            if let Err(error) = state.enqueue(message) {
                refused = Some(error);
                break;
            }
            accepted += 1;
            wake = true;
        }
        drop(state);
        if wake {
            self.shared.receiver.wake();
        }
        (accepted, refused)
    }

    /// Writes what it can of `messages` to a lent socket, if the queue is empty and
    /// this thread may still write directly. Returns how many of them are dealt
    /// with (written whole, or written in part with the rest queued first, whatever
    /// the budget says: it is part of a frame already on the wire) and whether the
    /// receiver must be woken for a queued rest.
    fn write_direct(&self, state: &mut State<T>, messages: &[T]) -> (usize, bool) {
        if !state.lent || !state.messages.is_empty() || messages.is_empty() {
            return (0, false);
        }
        let Some(direct) = self.shared.direct.as_ref().filter(|_| take_direct_write()) else {
            return (0, false);
        };
        let written = direct.write(messages);
        match written.rest {
            None => (written.whole, false),
            Some(rest) => {
                state.lent = false;
                state.bytes += rest.weight();
                state.messages.push_back(rest);
                (written.whole + 1, true)
            }
        }
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

impl<T: Weigh> Receiver<T> {
    /// The next message, if one is queued.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let mut state = self.shared.lock();
        match state.messages.pop_front() {
            Some(message) => {
                // The task now holds a message for the socket: a sender writing
                // past it would reorder the two.
                state.lent = false;
                state.bytes -= message.weight();
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

    /// Reports the bytes the receiving task holds for its socket, `head` of them
    /// the largest message it holds, so that sends count them against the budget.
    pub fn set_held(&self, bytes: usize, head: usize) {
        let mut state = self.shared.lock();
        state.held = bytes;
        state.held_head = head;
    }

    /// Whether the budget is used up, counting `held` bytes for the socket of
    /// which `head` are the message at the head.
    pub fn over_budget(&self, held: usize, head: usize) -> bool {
        self.shared.lock().over_budget(held, head)
    }

    /// Weight of the messages waiting in the queue.
    pub fn queued_bytes(&self) -> usize {
        self.shared.lock().bytes
    }

    /// Takes the socket back from senders: once this returns, no sender is writing
    /// to it, and none will until `lend_socket`.
    pub fn take_socket(&self) {
        self.shared.lock().lent = false;
    }

    /// Lets senders write straight to the socket while the queue is empty. Only
    /// for a task that holds nothing for its socket and is about to wait.
    pub fn lend_socket(&self) {
        if self.shared.direct.is_some() {
            self.shared.lock().lent = true;
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let dropped = {
            let mut state = self.shared.lock();
            state.receiving = false;
            state.lent = false;
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

    /// Test messages weigh their value, so budgets are easy to reason about.
    impl Weigh for usize {
        fn weight(&self) -> usize {
            *self
        }
    }

    impl Weigh for i32 {
        fn weight(&self) -> usize {
            1
        }
    }

    impl Weigh for &str {
        fn weight(&self) -> usize {
            self.len()
        }
    }

    const UNLIMITED: usize = usize::MAX;

    #[test]
    fn messages_arrive_in_order_up_to_capacity() {
        let (sender, mut receiver) = channel(3, UNLIMITED);
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
    fn the_byte_budget_counts_what_waits_behind_the_head() {
        let (sender, mut receiver) = channel::<usize>(100, 1000);
        // The head (600) does not count; 400 + 600 behind it reach the budget.
        sender.try_send(600).unwrap();
        sender.try_send(400).unwrap();
        sender.try_send(600).unwrap();
        assert_eq!(sender.try_send(1), Err(TrySendError::Full(1)));
        assert!(receiver.over_budget(0, 0));
        assert_eq!(receiver.queued_bytes(), 1600);
        // The task takes the head and holds it: still the same.
        assert_eq!(receiver.try_recv(), Ok(600));
        receiver.set_held(600, 600);
        assert_eq!(sender.try_send(1), Err(TrySendError::Full(1)));
        // The head is written; 400 and 600 wait, one below the budget.
        receiver.set_held(0, 0);
        sender.try_send(1).unwrap();
        assert_eq!(receiver.queued_bytes(), 1001);
        // Held bytes beyond the head count (pongs written after it).
        assert_eq!(receiver.try_recv(), Ok(400));
        assert!(!receiver.over_budget(400, 400));
        assert!(receiver.over_budget(800, 400));
    }

    #[test]
    fn a_message_larger_than_the_budget_passes_with_what_follows_it() {
        let (sender, mut receiver) = channel::<usize>(100, 1000);
        // A big document's sync, then the messages that follow a greeting.
        sender.try_send(5000).unwrap();
        sender.try_send(10).unwrap();
        sender.try_send(10).unwrap();
        assert_eq!(receiver.try_recv(), Ok(5000));
        receiver.set_held(5000, 5000);
        sender.try_send(980).unwrap();
        assert_eq!(sender.try_send(1), Err(TrySendError::Full(1)));
    }

    #[test]
    fn a_drained_queue_holds_no_memory() {
        let (sender, mut receiver) = channel(1024, UNLIMITED);
        for i in 0..100 {
            sender.try_send(i).unwrap();
        }
        assert!(sender.shared.lock().messages.capacity() >= 100);
        while receiver.try_recv().is_ok() {}
        assert_eq!(sender.shared.lock().messages.capacity(), 0);
    }

    #[test]
    fn the_receiver_sees_the_end_once_every_sender_is_gone() {
        let (sender, mut receiver) = channel(8, UNLIMITED);
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
        let (sender, receiver) = channel(8, UNLIMITED);
        sender.try_send(1).unwrap();
        drop(receiver);
        assert_eq!(sender.try_send(2), Err(TrySendError::Closed(2)));
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_by_a_send_and_by_the_last_sender_leaving() {
        let (sender, mut receiver) = channel(8, UNLIMITED);
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

    /// A socket as a list of what it took, with room for `room` more messages; the
    /// message after the last that fits goes in part (its first half).
    struct FakeSocket {
        written: Arc<Mutex<Vec<usize>>>,
        room: Arc<Mutex<usize>>,
        /// How many times it was written to.
        writes: Arc<Mutex<usize>>,
    }

    impl Direct<usize> for FakeSocket {
        fn write(&self, messages: &[usize]) -> Written<usize> {
            *self.writes.lock().unwrap() += 1;
            let mut room = self.room.lock().unwrap();
            let mut written = self.written.lock().unwrap();
            let mut whole = 0;
            for message in messages {
                match *room {
                    0 => break,
                    1 => {
                        *room = 0;
                        written.push(message / 2);
                        return Written {
                            whole,
                            rest: Some(message - message / 2),
                        };
                    }
                    _ => {
                        *room -= 1;
                        written.push(*message);
                        whole += 1;
                    }
                }
            }
            Written { whole, rest: None }
        }
    }

    type Taken = Arc<Mutex<Vec<usize>>>;

    fn with_socket(room: usize) -> (Sender<usize>, Receiver<usize>, Taken) {
        let (sender, receiver, written, _) = with_counted_socket(room);
        (sender, receiver, written)
    }

    fn with_counted_socket(
        room: usize,
    ) -> (Sender<usize>, Receiver<usize>, Taken, Arc<Mutex<usize>>) {
        let written = Arc::new(Mutex::new(Vec::new()));
        let writes = Arc::new(Mutex::new(0));
        let socket = FakeSocket {
            written: written.clone(),
            room: Arc::new(Mutex::new(room)),
            writes: writes.clone(),
        };
        let (sender, receiver) = channel_with_direct(100, UNLIMITED, Some(Box::new(socket)));
        (sender, receiver, written, writes)
    }

    #[test]
    fn a_lent_socket_takes_messages_directly_and_nothing_is_queued() {
        let (sender, mut receiver, written) = with_socket(10);
        // Not lent yet: queued.
        sender.try_send(10).unwrap();
        assert_eq!(receiver.try_recv(), Ok(10));
        receiver.lend_socket();
        sender.try_send(20).unwrap();
        sender.try_send(30).unwrap();
        assert_eq!(*written.lock().unwrap(), vec![20, 30]);
        assert_eq!(receiver.try_recv(), Err(TryRecvError::Empty));
        assert_eq!(receiver.queued_bytes(), 0);
        // Taken back: queued again.
        receiver.take_socket();
        sender.try_send(40).unwrap();
        assert_eq!(*written.lock().unwrap(), vec![20, 30]);
        assert_eq!(receiver.try_recv(), Ok(40));
    }

    #[test]
    fn messages_sent_together_go_to_a_lent_socket_in_one_write() {
        let (sender, mut receiver, written, writes) = with_counted_socket(10);
        receiver.lend_socket();
        assert_eq!(sender.try_send_all(vec![1, 2, 3]), (3, None));
        assert_eq!(*written.lock().unwrap(), vec![1, 2, 3]);
        assert_eq!(*writes.lock().unwrap(), 1);
        assert_eq!(receiver.try_recv(), Err(TryRecvError::Empty));
        // Not lent: queued, in order.
        receiver.take_socket();
        assert_eq!(sender.try_send_all(vec![4, 5]), (2, None));
        assert_eq!(receiver.try_recv(), Ok(4));
        assert_eq!(receiver.try_recv(), Ok(5));
        assert_eq!(*writes.lock().unwrap(), 1);
    }

    #[test]
    fn what_a_full_socket_leaves_of_messages_sent_together_is_queued_in_order() {
        // Room for two: 10 whole, half of 20, then 30 and 40 queue behind its rest.
        let (sender, mut receiver, written, writes) = with_counted_socket(2);
        receiver.lend_socket();
        assert_eq!(sender.try_send_all(vec![10, 20, 30, 40]), (4, None));
        assert_eq!(*written.lock().unwrap(), vec![10, 10]);
        assert_eq!(*writes.lock().unwrap(), 1);
        assert_eq!(receiver.try_recv(), Ok(10));
        assert_eq!(receiver.try_recv(), Ok(30));
        assert_eq!(receiver.try_recv(), Ok(40));
        assert_eq!(receiver.try_recv(), Err(TryRecvError::Empty));
    }

    #[test]
    fn messages_sent_together_stop_at_the_first_refused() {
        let (sender, mut receiver) = channel(2, UNLIMITED);
        match sender.try_send_all(vec![1, 2, 3, 4]) {
            (2, Some(TrySendError::Full(3))) => {}
            other => panic!("expected two accepted and 3 refused, got {other:?}"),
        }
        assert_eq!(receiver.try_recv(), Ok(1));
        assert_eq!(receiver.try_recv(), Ok(2));
        assert_eq!(receiver.try_recv(), Err(TryRecvError::Empty));
        drop(receiver);
        assert_eq!(
            sender.try_send_all(vec![5, 6]),
            (0, Some(TrySendError::Closed(5)))
        );
        assert_eq!(sender.try_send_all(Vec::new()), (0, None));
    }

    #[test]
    fn past_its_budget_a_thread_queues_messages_sent_together() {
        let (sender, mut receiver, written, _) = with_counted_socket(10);
        receiver.lend_socket();
        limit_direct_writes(1, || {
            assert_eq!(sender.try_send_all(vec![1, 2]), (2, None));
            receiver.lend_socket();
            assert_eq!(sender.try_send_all(vec![3, 4]), (2, None));
        });
        assert_eq!(*written.lock().unwrap(), vec![1, 2]);
        assert_eq!(receiver.try_recv(), Ok(3));
        assert_eq!(receiver.try_recv(), Ok(4));
    }

    #[test]
    fn what_a_full_socket_leaves_is_queued_in_order() {
        let (sender, mut receiver, written) = with_socket(2);
        receiver.lend_socket();
        sender.try_send(10).unwrap();
        // The socket takes half of 20; its rest comes first, then the rest.
        sender.try_send(20).unwrap();
        sender.try_send(30).unwrap();
        assert_eq!(*written.lock().unwrap(), vec![10, 10]);
        assert_eq!(receiver.try_recv(), Ok(10));
        assert_eq!(receiver.try_recv(), Ok(30));
        // Lent again with a socket that takes nothing: queued whole.
        receiver.lend_socket();
        sender.try_send(40).unwrap();
        assert_eq!(receiver.try_recv(), Ok(40));
        assert_eq!(*written.lock().unwrap(), vec![10, 10]);
    }

    #[test]
    fn a_queue_with_messages_waiting_is_not_written_past() {
        let (sender, mut receiver, written) = with_socket(10);
        sender.try_send(1).unwrap();
        // Lent while a message still waits (the task is about to take it): the
        // next message queues behind it instead of overtaking it.
        receiver.lend_socket();
        sender.try_send(2).unwrap();
        assert!(written.lock().unwrap().is_empty());
        // Taking a message takes the socket back.
        assert_eq!(receiver.try_recv(), Ok(1));
        assert_eq!(receiver.try_recv(), Ok(2));
        sender.try_send(3).unwrap();
        assert!(written.lock().unwrap().is_empty());
        assert_eq!(receiver.try_recv(), Ok(3));
    }

    #[test]
    fn past_its_budget_a_thread_queues_instead_of_writing() {
        let (sender, mut receiver, written) = with_socket(10);
        receiver.lend_socket();
        limit_direct_writes(2, || {
            for message in 1..=4 {
                sender.try_send(message).unwrap();
            }
        });
        assert_eq!(*written.lock().unwrap(), vec![1, 2]);
        assert_eq!(receiver.try_recv(), Ok(3));
        assert_eq!(receiver.try_recv(), Ok(4));
        // Outside the limit, writes are direct again.
        receiver.lend_socket();
        sender.try_send(5).unwrap();
        assert_eq!(*written.lock().unwrap(), vec![1, 2, 5]);
    }

    #[test]
    fn a_dropped_receiver_lends_nothing() {
        let (sender, receiver, written) = with_socket(10);
        receiver.lend_socket();
        drop(receiver);
        assert_eq!(sender.try_send(1), Err(TrySendError::Closed(1)));
        assert!(written.lock().unwrap().is_empty());
    }

    #[test]
    fn many_threads_sending_lose_nothing() {
        let (sender, mut receiver) = channel(usize::MAX, UNLIMITED);
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
