//! `IdleIo`: the byte stream under a server WebSocket, holding buffers only while
//! bytes are in flight, so an idle connection costs no buffer memory.
//!
//! Reads: tungstenite is configured with a tiny read size (its read buffer is
//! allocated up front, per connection, for as long as the connection lives). Asking
//! the socket for that little at a time would cost a syscall per few hundred bytes,
//! so each socket read goes into a large scratch array on the stack; what
//! tungstenite did not take yet is kept in an exact-size heap buffer that is freed as
//! soon as tungstenite has drained it. While a large message streams in (a read
//! filled the whole chunk), reads go straight into that heap buffer instead, kept
//! from chunk to chunk until a read comes up short or would wait.
//!
//! Writes: tungstenite's own write buffer keeps its capacity forever once a large
//! frame has passed through it. Data frames therefore bypass it: the connection
//! encodes them straight into this stream's write buffer (`queue_frame`), and the
//! buffer is freed once a flush has written it out. tungstenite itself writes only
//! control frames here (pongs, close), and `poll_write` always takes them whole, so
//! frames from both sources never interleave.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_util::io::poll_read_buf;

/// Bytes asked of the socket per read. On the stack, so it costs nothing per
/// connection; larger means fewer syscalls for large messages, and only the part
/// tungstenite has not taken yet is copied to the heap (once per message: the
/// chunks after the first are read into the heap directly).
const READ_CHUNK: usize = 64 * 1024;

/// A stream that buffers reads and writes only while they are pending.
#[derive(Debug)]
pub struct IdleIo<S> {
    io: S,
    /// Bytes read from the socket that tungstenite has not taken yet, from
    /// `read_pos` on, in a buffer of exactly that size, freed once drained. The
    /// exception is a capacity of a whole chunk or more: the last socket read
    /// filled its chunk (a large message is arriving), and the buffer is kept
    /// between chunks and read into directly (`streaming`) until a read comes up
    /// short or would wait.
    read_buf: Vec<u8>,
    read_pos: usize,
    /// Encoded frames not yet written to the socket, from `write_pos` on. No
    /// allocation while empty.
    write_buf: Vec<u8>,
    write_pos: usize,
}

impl<S> IdleIo<S> {
    pub fn new(io: S) -> Self {
        Self {
            io,
            read_buf: Vec::new(),
            read_pos: 0,
            write_buf: Vec::new(),
            write_pos: 0,
        }
    }

    /// A stream whose first reads return `read`: bytes that arrived with the
    /// upgrade request, before the stream was handed over.
    pub fn with_read(io: S, read: &[u8]) -> Self {
        let mut stream = Self::new(io);
        if !read.is_empty() {
            stream.read_buf = read.to_vec();
        }
        stream
    }

    /// Adds already-encoded frame bytes to the write buffer.
    pub fn queue_bytes(&mut self, bytes: &[u8]) {
        self.write_buf.extend_from_slice(bytes);
    }

    /// Encodes a frame into the write buffer; the next flush writes it.
    pub fn queue_frame(&mut self, frame: Frame) -> io::Result<()> {
        self.write_buf.reserve(frame.len());
        // Writing into a `Vec` cannot fail; the conversion keeps the signature honest.
        frame.format(&mut self.write_buf).map_err(io::Error::other)
    }

    /// Whether a large message is arriving (see `read_buf`).
    fn streaming(&self) -> bool {
        self.read_buf.capacity() >= READ_CHUNK
    }

    /// Bytes queued and not yet written to the socket.
    pub fn pending_writes(&self) -> usize {
        self.write_buf.len() - self.write_pos
    }

    /// Heap bytes this stream holds in its buffers (zero when idle).
    pub fn buffer_capacity(&self) -> usize {
        self.read_buf.capacity() + self.write_buf.capacity()
    }
}

impl<S: AsyncWrite + Unpin> IdleIo<S> {
    /// Writes the write buffer out, then frees it.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.write_pos < self.write_buf.len() {
            let written =
                ready!(Pin::new(&mut self.io).poll_write(cx, &self.write_buf[self.write_pos..]))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.write_pos += written;
        }
        // Freed rather than cleared: one allocation per batch is cheap next to the
        // write's syscall, and an idle connection then holds nothing.
        self.write_buf = Vec::new();
        self.write_pos = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read_pos < this.read_buf.len() {
            let pending = &this.read_buf[this.read_pos..];
            let taken = pending.len().min(buf.remaining());
            buf.put_slice(&pending[..taken]);
            this.read_pos += taken;
            if this.read_pos == this.read_buf.len() {
                // Kept for the next chunk of a large message, freed otherwise.
                if this.streaming() {
                    this.read_buf.clear();
                } else {
                    this.read_buf = Vec::new();
                }
                this.read_pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        if this.streaming() {
            // The last read filled its chunk, so more is on its way: read straight
            // into the heap buffer rather than copy each chunk there.
            this.read_buf.reserve(READ_CHUNK);
            let read = match poll_read_buf(Pin::new(&mut this.io), cx, &mut this.read_buf) {
                Poll::Ready(Ok(read)) => read,
                other => {
                    // Caught up with the sender (or failed): nothing held while waiting.
                    this.read_buf = Vec::new();
                    return other.map_ok(|_| ());
                }
            };
            let taken = read.min(buf.remaining());
            buf.put_slice(&this.read_buf[..taken]);
            this.read_pos = taken;
            if taken == read {
                this.read_buf = Vec::new();
                this.read_pos = 0;
            } else if read < READ_CHUNK {
                // The message's last chunk: back to holding exactly what is left.
                this.read_buf.drain(..taken);
                this.read_buf.shrink_to_fit();
                this.read_pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        this.poll_read_chunk(cx, buf)
    }
}

impl<S: AsyncRead + Unpin> IdleIo<S> {
    /// One socket read into a chunk on the stack. A function of its own, so only a
    /// read from the socket pays for the chunk's stack frame (its pages are probed
    /// on entry), not every small read served from the buffer.
    #[inline(never)]
    fn poll_read_chunk(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut chunk = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
        let mut chunk = ReadBuf::uninit(&mut chunk);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut chunk))?;
        let read = chunk.filled();
        let taken = read.len().min(buf.remaining());
        buf.put_slice(&read[..taken]);
        if taken < read.len() {
            // Exact size, and only until tungstenite has taken it; a whole chunk's
            // room when the read filled it, since more is arriving.
            let capacity = if read.len() == READ_CHUNK {
                READ_CHUNK
            } else {
                read.len() - taken
            };
            self.read_buf = Vec::with_capacity(capacity);
            self.read_buf.extend_from_slice(&read[taken..]);
            self.read_pos = 0;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleIo<S> {
    /// Takes all of `data` into the write buffer. Only tungstenite writes here (its
    /// control frames, a few bytes each); accepting them whole keeps each frame in
    /// one piece between the data frames queued by `queue_frame`.
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().write_buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_out(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_out(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::time::Duration;

    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{duplex, DuplexStream};
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
    use tokio_tungstenite::tungstenite::{Bytes, Message};
    use tokio_tungstenite::WebSocketStream;

    use super::*;

    /// Far below the messages sent, as the server configures it.
    const SMALL_READS: usize = 64;

    async fn pair() -> (
        WebSocketStream<IdleIo<DuplexStream>>,
        WebSocketStream<DuplexStream>,
    ) {
        let (server, client) = duplex(256 * 1024);
        let config = WebSocketConfig::default()
            .read_buffer_size(SMALL_READS)
            .write_buffer_size(0);
        let server =
            WebSocketStream::from_raw_socket(IdleIo::new(server), Role::Server, Some(config)).await;
        let client = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        (server, client)
    }

    fn payload(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    #[tokio::test]
    async fn large_frames_arrive_whole_and_the_buffer_is_freed() {
        let (mut server, mut client) = pair().await;
        for (len, seed) in [(5_000, 1), (100_000, 2), (3, 3), (READ_CHUNK * 3 + 7, 4)] {
            let sent = payload(len, seed);
            client.send(Message::binary(sent.clone())).await.unwrap();
            let received = server.next().await.unwrap().unwrap();
            assert_eq!(received.into_data(), sent, "message of {len} bytes");
            assert_eq!(server.get_ref().buffer_capacity(), 0, "after {len} bytes");
        }
    }

    #[tokio::test]
    async fn several_messages_in_one_read_all_arrive() {
        let (mut server, mut client) = pair().await;
        let texts: Vec<String> = (0..50)
            .map(|i| format!("message {i} {}", "x".repeat(i * 40)))
            .collect();
        for text in &texts {
            client.feed(Message::text(text.clone())).await.unwrap();
        }
        client.flush().await.unwrap();
        for text in &texts {
            let received = server.next().await.unwrap().unwrap();
            assert_eq!(received.into_text().unwrap().as_str(), text);
        }
        assert_eq!(server.get_ref().buffer_capacity(), 0);
    }

    #[tokio::test]
    async fn a_large_message_that_stalls_holds_no_read_buffer_while_it_waits() {
        use tokio::io::AsyncWriteExt;
        let (mut server, mut client) = pair().await;
        let sent = payload(READ_CHUNK * 4 + 100, 5);
        let mut frame = Frame::message(sent.clone(), OpCode::Data(Data::Binary), true);
        frame.header_mut().mask = Some([1, 2, 3, 4]);
        let mut wire = Vec::new();
        frame.format(&mut wire).unwrap();
        // Whole chunks, the second read straight into the kept buffer; the third
        // read would wait, and the buffer is let go.
        let half = 2 * READ_CHUNK;
        client.get_mut().write_all(&wire[..half]).await.unwrap();
        let stalled = tokio::time::timeout(Duration::from_millis(200), server.next()).await;
        assert!(stalled.is_err());
        assert_eq!(server.get_ref().buffer_capacity(), 0);
        client.get_mut().write_all(&wire[half..]).await.unwrap();
        assert_eq!(server.next().await.unwrap().unwrap().into_data(), sent);
        assert_eq!(server.get_ref().buffer_capacity(), 0);
    }

    #[tokio::test]
    async fn reads_after_idle_work() {
        let (mut server, mut client) = pair().await;
        client.send(Message::text("before")).await.unwrap();
        assert_eq!(
            server.next().await.unwrap().unwrap(),
            Message::text("before")
        );
        // Nothing to read: the server's read is pending, and holds no buffer.
        let idle = tokio::time::timeout(Duration::from_millis(200), server.next()).await;
        assert!(idle.is_err());
        assert_eq!(server.get_ref().buffer_capacity(), 0);
        let after = payload(20_000, 9);
        client.send(Message::binary(after.clone())).await.unwrap();
        assert_eq!(server.next().await.unwrap().unwrap().into_data(), after);
    }

    #[tokio::test]
    async fn queued_frames_and_control_replies_are_written_in_order_then_freed() {
        let (mut server, mut client) = pair().await;
        let big = payload(70_000, 5);
        let io = server.get_mut();
        io.queue_frame(Frame::message(
            Bytes::from(big.clone()),
            OpCode::Data(Data::Binary),
            true,
        ))
        .unwrap();
        io.queue_frame(Frame::message(
            Bytes::from_static(b"second"),
            OpCode::Data(Data::Text),
            true,
        ))
        .unwrap();
        assert!(io.pending_writes() > 70_000);
        // The duplex holds 256 KiB, so one flush writes everything.
        poll_fn(|cx| Pin::new(&mut *io).poll_flush(cx))
            .await
            .unwrap();
        assert_eq!(io.pending_writes(), 0);
        assert_eq!(io.buffer_capacity(), 0);
        assert_eq!(client.next().await.unwrap().unwrap().into_data(), big);
        assert_eq!(
            client.next().await.unwrap().unwrap(),
            Message::text("second")
        );

        // tungstenite answers a ping through `poll_write`; the reply reaches the peer.
        client
            .send(Message::Ping(Bytes::from_static(b"hi")))
            .await
            .unwrap();
        client.send(Message::text("after ping")).await.unwrap();
        assert_eq!(
            server.next().await.unwrap().unwrap(),
            Message::Ping(Bytes::from_static(b"hi"))
        );
        assert_eq!(
            server.next().await.unwrap().unwrap(),
            Message::text("after ping")
        );
        let pong = client.next().await.unwrap().unwrap();
        assert_eq!(pong, Message::Pong(Bytes::from_static(b"hi")));
        assert_eq!(server.get_ref().buffer_capacity(), 0);
    }

    #[tokio::test]
    async fn a_message_over_the_limit_is_refused() {
        let (server, mut client) = duplex(256 * 1024);
        let config = WebSocketConfig::default()
            .read_buffer_size(SMALL_READS)
            .write_buffer_size(0)
            .max_message_size(Some(10_000))
            .max_frame_size(Some(10_000));
        let mut server =
            WebSocketStream::from_raw_socket(IdleIo::new(server), Role::Server, Some(config)).await;
        let mut client = WebSocketStream::from_raw_socket(&mut client, Role::Client, None).await;
        client
            .send(Message::binary(payload(10_001, 0)))
            .await
            .unwrap();
        let error = server.next().await.unwrap().unwrap_err();
        assert!(matches!(
            error,
            tokio_tungstenite::tungstenite::Error::Capacity(_)
        ));
    }
}
