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
//! Large frames: once `read_aside` is set, a large whole data frame is not handed
//! to tungstenite at all (`framing`): its payload is read from the socket into a
//! buffer of its exact size and unmasked there, tungstenite reads an empty frame
//! of the same kind in its place, and the connection takes the payload
//! (`take_aside`) when that empty frame comes out.
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

use bytes::BufMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::frame::coding::Data;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_util::io::poll_read_buf;

use super::framing::{self, AsideFrame, Framing, Step};

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
    /// Set by `read_aside`. Boxed, as it is rarely used and the connection's
    /// task holds this stream in several of its states.
    aside: Option<Box<Asides>>,
}

/// What reading large frames aside needs.
#[derive(Debug)]
struct Asides {
    /// Where the bytes handed to tungstenite stand in the WebSocket framing.
    framing: Framing,
    /// The largest frame read aside.
    limit: usize,
    /// The frame being read aside, or read and waiting to be taken (boxed too:
    /// every connection holds an `Asides`, few ever a frame).
    frame: Option<Box<Aside>>,
}

/// A frame read aside (see the module's comment).
#[derive(Debug)]
struct Aside {
    frame: AsideFrame,
    /// Its payload so far; its capacity is the frame's length.
    payload: Vec<u8>,
    /// Whether `payload` is whole and unmasked.
    unmasked: bool,
    /// Bytes of the empty frame standing in for it that tungstenite has taken.
    placeholder_given: usize,
}

impl Aside {
    fn whole(&self) -> bool {
        self.payload.len() == self.frame.len
    }
}

/// What `take_aside` returns: the payload of a frame read aside, unmasked.
#[derive(Debug, PartialEq, Eq)]
pub enum AsidePayload {
    /// Not yet checked as UTF-8.
    Text(Vec<u8>),
    Binary(Vec<u8>),
}

impl<S> IdleIo<S> {
    pub fn new(io: S) -> Self {
        Self {
            io,
            read_buf: Vec::new(),
            read_pos: 0,
            write_buf: Vec::new(),
            write_pos: 0,
            aside: None,
        }
    }

    /// Reads large data frames up to `limit` bytes aside. Called before the first
    /// read (the framing is followed from the stream's first byte); the connection
    /// must then call `take_aside` on every empty text or binary message
    /// tungstenite gives it.
    pub fn read_aside(&mut self, limit: usize) {
        self.aside = Some(Box::new(Asides {
            framing: Framing::default(),
            limit,
            frame: None,
        }));
    }

    /// The payload of the frame whose empty stand-in tungstenite just gave out,
    /// if the empty message was one.
    pub fn take_aside(&mut self) -> Option<AsidePayload> {
        let slot = &mut self.aside.as_mut()?.frame;
        let aside = slot.as_ref()?;
        if !aside.unmasked || aside.placeholder_given < framing::PLACEHOLDER_LEN {
            return None;
        }
        let aside = slot.take()?;
        Some(match aside.frame.kind {
            Data::Text => AsidePayload::Text(aside.payload),
            _ => AsidePayload::Binary(aside.payload),
        })
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

    fn aside_frame(&self) -> Option<&Aside> {
        self.aside.as_ref()?.frame.as_deref()
    }

    /// Bytes queued and not yet written to the socket.
    pub fn pending_writes(&self) -> usize {
        self.write_buf.len() - self.write_pos
    }

    /// Heap bytes this stream holds in its buffers (zero when idle).
    pub fn buffer_capacity(&self) -> usize {
        let aside = self
            .aside_frame()
            .map_or(0, |aside| aside.payload.capacity());
        self.read_buf.capacity() + self.write_buf.capacity() + aside
    }

    /// Hands tungstenite what it may have of `held` (bytes read from the socket,
    /// not yet handed on), or starts reading the frame they begin with aside.
    /// Returns how many of them were used.
    fn give(&mut self, held: &[u8], buf: &mut ReadBuf<'_>) -> usize {
        let room = buf.remaining();
        let passed = match self.aside.as_deref_mut() {
            None => held.len().min(room),
            Some(asides) => match asides.framing.step(held, room, Some(asides.limit)) {
                Step::Pass(passed) => passed,
                Step::Aside(frame) => {
                    let body = &held[frame.header_len..];
                    let taken = body.len().min(frame.len);
                    let mut payload = Vec::with_capacity(frame.len);
                    payload.extend_from_slice(&body[..taken]);
                    asides.frame = Some(Box::new(Aside {
                        frame,
                        payload,
                        unmasked: false,
                        placeholder_given: 0,
                    }));
                    return frame.header_len + taken;
                }
            },
        };
        buf.put_slice(&held[..passed]);
        passed
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
        if let Some(read) = this.poll_aside(cx, buf) {
            return read;
        }
        // The size of a socket read made here, if one was.
        let mut fresh = None;
        if this.read_pos == this.read_buf.len() {
            if !this.streaming() {
                return this.poll_read_chunk(cx, buf);
            }
            // The last read filled its chunk, so more is on its way: read straight
            // into the heap buffer rather than copy each chunk there.
            this.read_buf.clear();
            this.read_pos = 0;
            this.read_buf.reserve(READ_CHUNK);
            match poll_read_buf(Pin::new(&mut this.io), cx, &mut this.read_buf) {
                Poll::Ready(Ok(read)) if read > 0 => fresh = Some(read),
                other => {
                    // Caught up with the sender (or failed): nothing held while waiting.
                    this.read_buf = Vec::new();
                    return other.map_ok(|_| ());
                }
            }
        }
        let held = std::mem::take(&mut this.read_buf);
        let used = this.give(&held[this.read_pos..], buf);
        this.read_buf = held;
        this.read_pos += used;
        if this.read_pos == this.read_buf.len() {
            // Kept for the next chunk of a large message (the read that filled it
            // was a whole chunk), freed otherwise.
            if fresh.is_none() && this.streaming() && this.aside_frame().is_none() {
                this.read_buf.clear();
            } else {
                this.read_buf = Vec::new();
            }
            this.read_pos = 0;
        } else if fresh.is_some_and(|read| read < READ_CHUNK) {
            // The message's last chunk: back to holding exactly what is left.
            this.read_buf.drain(..this.read_pos);
            this.read_buf.shrink_to_fit();
            this.read_pos = 0;
        }
        this.poll_aside(cx, buf).unwrap_or(Poll::Ready(Ok(())))
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
        if read.is_empty() {
            return Poll::Ready(Ok(()));
        }
        let used = self.give(read, buf);
        if used < read.len() {
            // Exact size, and only until tungstenite has taken it; a whole chunk's
            // room when the read filled it, since more is arriving.
            let capacity = if read.len() == READ_CHUNK {
                READ_CHUNK
            } else {
                read.len() - used
            };
            self.read_buf = Vec::with_capacity(capacity);
            self.read_buf.extend_from_slice(&read[used..]);
            self.read_pos = 0;
        }
        self.poll_aside(cx, buf).unwrap_or(Poll::Ready(Ok(())))
    }

    /// Goes on with a frame being read aside: reads the rest of its payload from
    /// the socket, then hands tungstenite its empty stand-in. `None` when there is
    /// none (one never taken is dropped here, so it holds nothing for long).
    fn poll_aside(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Option<Poll<io::Result<()>>> {
        let slot = &mut self.aside.as_deref_mut()?.frame;
        let aside = slot.as_mut()?;
        let placeholder = framing::placeholder(aside.frame.kind);
        if aside.placeholder_given == framing::PLACEHOLDER_LEN {
            *slot = None;
            return None;
        }
        if !aside.unmasked {
            // `give` took all the held bytes the frame covers, so the rest is
            // still in the socket; read exactly that much, no further.
            while !aside.whole() {
                let missing = aside.frame.len - aside.payload.len();
                let mut payload = (&mut aside.payload).limit(missing);
                match poll_read_buf(Pin::new(&mut self.io), cx, &mut payload) {
                    Poll::Ready(Ok(0)) => {
                        // The peer went away mid-frame: tungstenite reads the end.
                        *slot = None;
                        return Some(Poll::Ready(Ok(())));
                    }
                    Poll::Ready(Ok(_)) => {}
                    Poll::Ready(Err(error)) => {
                        *slot = None;
                        return Some(Poll::Ready(Err(error)));
                    }
                    Poll::Pending => return Some(Poll::Pending),
                }
            }
            framing::unmask(&mut aside.payload, aside.frame.mask);
            aside.unmasked = true;
        }
        let given = (framing::PLACEHOLDER_LEN - aside.placeholder_given).min(buf.remaining());
        buf.put_slice(&placeholder[aside.placeholder_given..aside.placeholder_given + given]);
        aside.placeholder_given += given;
        Some(Poll::Ready(Ok(())))
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

    /// A server stream refusing messages over `limit`, reading frames of up to
    /// that size aside if `aside`.
    async fn limited_pair(
        limit: usize,
        aside: bool,
    ) -> (
        WebSocketStream<IdleIo<DuplexStream>>,
        WebSocketStream<DuplexStream>,
    ) {
        // Room for everything a test sends before the server reads.
        let (server, client) = duplex(4 << 20);
        let config = WebSocketConfig::default()
            .read_buffer_size(SMALL_READS)
            .write_buffer_size(0)
            .max_message_size(Some(limit))
            .max_frame_size(Some(limit));
        let mut io = IdleIo::new(server);
        if aside {
            io.read_aside(limit);
        }
        let server = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
        let client = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        (server, client)
    }

    async fn aside_pair(
        limit: usize,
    ) -> (
        WebSocketStream<IdleIo<DuplexStream>>,
        WebSocketStream<DuplexStream>,
    ) {
        limited_pair(limit, true).await
    }

    /// Writes the next `piece` bytes of `wire`, from `at`, as raw bytes.
    async fn write_piece(
        client: &mut WebSocketStream<DuplexStream>,
        wire: &[u8],
        at: &mut usize,
        piece: usize,
    ) {
        use tokio::io::AsyncWriteExt;
        let bytes = &wire[*at..*at + piece];
        client.get_mut().write_all(bytes).await.unwrap();
        *at += piece;
    }

    /// A message of `len` bytes is refused as too large.
    async fn assert_refused(
        server: &mut WebSocketStream<IdleIo<DuplexStream>>,
        client: &mut WebSocketStream<DuplexStream>,
        len: usize,
    ) {
        client.send(Message::binary(payload(len, 5))).await.unwrap();
        let error = server.next().await.unwrap().unwrap_err();
        assert!(matches!(
            error,
            tokio_tungstenite::tungstenite::Error::Capacity(_)
        ));
    }

    /// The next message, with a frame read aside in place of its empty stand-in;
    /// and whether it was read aside.
    async fn next_whole(server: &mut WebSocketStream<IdleIo<DuplexStream>>) -> (Message, bool) {
        let message = server.next().await.unwrap().unwrap();
        let empty = matches!(&message, Message::Text(t) if t.is_empty())
            || matches!(&message, Message::Binary(b) if b.is_empty());
        match server.get_mut().take_aside() {
            Some(AsidePayload::Text(text)) => {
                assert!(empty, "a payload comes out only for its stand-in");
                (Message::text(String::from_utf8(text).unwrap()), true)
            }
            Some(AsidePayload::Binary(bytes)) => {
                assert!(empty, "a payload comes out only for its stand-in");
                (Message::binary(bytes), true)
            }
            None => (message, false),
        }
    }

    #[tokio::test]
    async fn large_frames_are_read_aside_whole_and_in_order() {
        let (mut server, mut client) = aside_pair(1 << 20).await;
        let large_text: String = (0..200_000)
            .map(|i| (b'a' + (i % 26) as u8) as char)
            .collect();
        let sent = [
            Message::text("small"),
            Message::text(large_text.clone()),
            Message::binary(payload(100_000, 7)),
            Message::text(""),
            Message::binary(Vec::new()),
            Message::binary(payload(16 * 1024, 8)),
            Message::text(large_text),
            Message::Ping(Bytes::from_static(b"p")),
            Message::binary(payload(300, 9)),
        ];
        for message in &sent {
            client.feed(message.clone()).await.unwrap();
        }
        client.flush().await.unwrap();
        for (index, message) in sent.iter().enumerate() {
            let (received, aside) = next_whole(&mut server).await;
            assert!(
                &received == message,
                "message {index} whole: got {} bytes, aside {aside}, {:?}",
                received.len(),
                received.is_binary()
            );
            assert_eq!(
                aside,
                message.len() >= 16 * 1024,
                "message {index} read aside"
            );
        }
        assert_eq!(server.get_ref().buffer_capacity(), 0);
        // tungstenite answered the ping after the frames read aside.
        poll_fn(|cx| Pin::new(server.get_mut()).poll_flush(cx))
            .await
            .unwrap();
        assert_eq!(
            client.next().await.unwrap().unwrap(),
            Message::Pong(Bytes::from_static(b"p"))
        );
    }

    #[tokio::test]
    async fn a_frame_read_aside_may_arrive_in_pieces_and_holds_only_itself() {
        use tokio::io::AsyncWriteExt;
        let sent = payload(150_000, 3);
        let mut wire = Vec::new();
        for (data, seed) in [(&sent, 0u8), (&payload(10, 4), 1)] {
            let mut frame = Frame::message(data.clone(), OpCode::Data(Data::Binary), true);
            frame.header_mut().mask = Some([seed, 2, 3, 4]);
            frame.format(&mut wire).unwrap();
        }
        // Split after its 14-byte header, the frame is read aside; split within
        // the header, it passes to tungstenite (rare, and just as correct).
        for (first, aside) in [(20, true), (1, false)] {
            let (mut server, mut client) = aside_pair(1 << 20).await;
            let mut at = 0;
            for piece in [first, 5, 40_000, 3, 70_000, 30_000] {
                write_piece(&mut client, &wire, &mut at, piece).await;
                let stalled = tokio::time::timeout(Duration::from_millis(50), server.next()).await;
                assert!(stalled.is_err(), "nothing whole after {at} bytes");
                assert!(server.get_ref().buffer_capacity() <= sent.len());
            }
            client.get_mut().write_all(&wire[at..]).await.unwrap();
            let (received, was_aside) = next_whole(&mut server).await;
            assert!(received == Message::binary(sent.clone()), "the frame whole");
            assert_eq!(was_aside, aside, "split after {first} bytes");
            let (next, _) = next_whole(&mut server).await;
            assert_eq!(next, Message::binary(payload(10, 4)));
            assert_eq!(server.get_ref().buffer_capacity(), 0);
        }
    }

    #[tokio::test]
    async fn fragmented_and_oversized_frames_are_left_to_tungstenite() {
        let (mut server, mut client) = aside_pair(100_000).await;
        // A message in three fragments, each large.
        let parts = [payload(20_000, 1), payload(30_000, 2), payload(20_000, 3)];
        for (index, part) in parts.iter().enumerate() {
            let opcode = if index == 0 {
                OpCode::Data(Data::Binary)
            } else {
                OpCode::Data(Data::Continue)
            };
            let frame = Frame::message(part.clone(), opcode, index == parts.len() - 1);
            client.send(Message::Frame(frame)).await.unwrap();
        }
        let whole: Vec<u8> = parts.concat();
        let (received, aside) = next_whole(&mut server).await;
        assert!(received == Message::binary(whole) && !aside);
        // Over the limit: tungstenite refuses it, as without reading aside.
        assert_refused(&mut server, &mut client, 100_001).await;
    }

    #[tokio::test]
    async fn a_peer_gone_mid_frame_ends_the_stream_and_frees_the_frame() {
        use tokio::io::AsyncWriteExt;
        let (mut server, mut client) = aside_pair(1 << 20).await;
        let mut frame = Frame::message(payload(100_000, 1), OpCode::Data(Data::Text), true);
        frame.header_mut().mask = Some([1, 2, 3, 4]);
        let mut wire = Vec::new();
        frame.format(&mut wire).unwrap();
        client.get_mut().write_all(&wire[..60_000]).await.unwrap();
        let stalled = tokio::time::timeout(Duration::from_millis(100), server.next()).await;
        assert!(stalled.is_err());
        drop(client);
        match server.next().await {
            None | Some(Err(_)) => {}
            Some(Ok(message)) => panic!("no message from half a frame, got {message:?}"),
        }
        assert_eq!(server.get_ref().buffer_capacity(), 0);
    }

    /// Random messages (small and large, text and binary, fragmented, pings),
    /// written in random pieces, come out as they were sent, whichever way each
    /// was read.
    #[tokio::test]
    async fn random_frames_in_random_pieces_arrive_as_sent() {
        let mut read_aside = 0;
        for seed in 0..24 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut wire = Vec::new();
            let mut expected = Vec::new();
            let masked = |frame: Frame, wire: &mut Vec<u8>, rng: &mut fastrand::Rng| {
                let mut frame = frame;
                frame.header_mut().mask = Some(rng.u32(..).to_ne_bytes());
                frame.format(wire).unwrap();
            };
            for _ in 0..rng.usize(5..25) {
                let len = if rng.bool() {
                    rng.usize(0..300)
                } else {
                    rng.usize(10_000..90_000)
                };
                let data = payload(len, rng.u8(..));
                match rng.u8(0..4) {
                    0 => {
                        let text: String = data.iter().map(|b| (b'a' + b % 26) as char).collect();
                        let frame = Frame::message(text.clone(), OpCode::Data(Data::Text), true);
                        masked(frame, &mut wire, &mut rng);
                        expected.push(Message::text(text));
                    }
                    1 => {
                        let frame = Frame::message(data.clone(), OpCode::Data(Data::Binary), true);
                        masked(frame, &mut wire, &mut rng);
                        expected.push(Message::binary(data));
                    }
                    2 => {
                        let cut = rng.usize(0..=data.len());
                        let first =
                            Frame::message(data[..cut].to_vec(), OpCode::Data(Data::Binary), false);
                        masked(first, &mut wire, &mut rng);
                        let rest = Frame::message(
                            data[cut..].to_vec(),
                            OpCode::Data(Data::Continue),
                            true,
                        );
                        masked(rest, &mut wire, &mut rng);
                        expected.push(Message::binary(data));
                    }
                    _ => {
                        let ping = data[..len.min(100)].to_vec();
                        masked(Frame::ping(ping.clone()), &mut wire, &mut rng);
                        expected.push(Message::Ping(ping.into()));
                    }
                }
            }
            let (mut server, mut client) = aside_pair(1 << 20).await;
            let pieces: Vec<usize> = (0..wire.len())
                .scan(0, |at, _| {
                    (*at < wire.len()).then(|| {
                        let piece = rng.usize(1..40_000).min(wire.len() - *at);
                        *at += piece;
                        piece
                    })
                })
                .collect();
            let writer = tokio::spawn(async move {
                let mut at = 0;
                for piece in pieces {
                    write_piece(&mut client, &wire, &mut at, piece).await;
                    tokio::task::yield_now().await;
                }
                client
            });
            for (index, message) in expected.iter().enumerate() {
                let (received, aside) = next_whole(&mut server).await;
                assert!(&received == message, "seed {seed}, message {index}");
                read_aside += usize::from(aside);
            }
            let _client = writer.await.unwrap();
            // The pongs tungstenite queued go out; then nothing is held.
            poll_fn(|cx| Pin::new(server.get_mut()).poll_flush(cx))
                .await
                .unwrap();
            assert_eq!(server.get_ref().buffer_capacity(), 0, "seed {seed}");
        }
        assert!(read_aside > 20, "only {read_aside} frames were read aside");
    }

    #[tokio::test]
    async fn a_message_over_the_limit_is_refused() {
        let (mut server, mut client) = limited_pair(10_000, false).await;
        assert_refused(&mut server, &mut client, 10_001).await;
    }
}
