//! Writing a frame straight to a connection's TCP socket from the thread that sends
//! it, while the connection's task is parked (`queue::Direct`).
//!
//! Without it, every delivery queues the message, wakes the recipient's task (often
//! on the other worker thread), and that task polls, encodes and writes: the
//! wake-up and the poll cost about as much as the write itself (BENCHMARKS.md,
//! "Toward the relay's CPU per delivery"). A socket with room in its send buffer —
//! nearly always, for a client that keeps up — takes the frame at once, so the
//! sender writes it: one `sendmsg` of the frame's header and the shared payload,
//! and no task is woken. Whatever the socket would not take goes through the queue.
//!
//! The socket is the connection's own, owned by its task; this module only holds
//! its descriptor. It is used under the queue's lock while the task lends it, and
//! the task takes it back before the socket can be closed (the queue's receiver is
//! dropped before the socket, and a dropped receiver lends nothing), so a write
//! here never reaches a closed or reused descriptor.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, RawFd};

use bytes::Bytes;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_util::either::Either;

use super::idle_io::IdleIo;
use super::room::queue::{Direct, Written};
use super::room::{Outbound, FRAME_HEADER_BYTES};

/// A connection's byte stream once upgraded: the plain TCP socket `coedit serve`'s
/// accept loop hands hyper, or whatever else hyper was given. One type, so a
/// connection's task is compiled (and sized) once.
pub type Stream = Either<TcpStream, TokioIo<Upgraded>>;

/// The stream under a connection's WebSocket, and a writer for its socket when it
/// is plain TCP.
pub fn open(upgraded: Upgraded) -> (IdleIo<Stream>, Option<SocketWriter>) {
    match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => {
            let tcp = parts.io.into_inner();
            let writer = SocketWriter::new(tcp.as_raw_fd());
            // What arrived with the request is copied: `read_buf` is a slice of
            // hyper's whole read buffer, which would otherwise stay allocated.
            (
                IdleIo::with_read(Either::Left(tcp), &parts.read_buf),
                Some(writer),
            )
        }
        Err(upgraded) => (IdleIo::new(Either::Right(TokioIo::new(upgraded))), None),
    }
}

/// Writes server frames to one socket, by descriptor.
#[derive(Debug)]
pub struct SocketWriter {
    fd: RawFd,
}

impl SocketWriter {
    /// A writer for the socket `fd`. The caller keeps the socket open for as long as
    /// it lends it to the queue this writer belongs to (see the module's comment).
    pub fn new(fd: RawFd) -> Self {
        Self { fd }
    }

    /// Writes what the socket takes of `parts` without waiting: the bytes written,
    /// or `None` when it took nothing (it would block, or failed).
    fn send(&self, parts: &[IoSlice<'_>]) -> Option<usize> {
        // SAFETY: `msghdr` is plain data; all-zero is a valid empty header, and only
        // the iovec fields are set, pointing at `parts`, which outlives the call
        // (`IoSlice` is guaranteed ABI-compatible with `iovec` on Unix). `fd` is
        // open while the queue lends the socket (module comment).
        let written = unsafe {
            let mut header: libc::msghdr = std::mem::zeroed();
            header.msg_iov = parts.as_ptr() as *mut libc::iovec;
            header.msg_iovlen = parts.len() as _;
            // Never wait, and no SIGPIPE for a peer that has gone: the task sees
            // the error on its own next read or write.
            libc::sendmsg(self.fd, &header, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
        };
        usize::try_from(written).ok().filter(|&written| written > 0)
    }
}

impl Direct<Outbound> for SocketWriter {
    fn write(&self, message: &Outbound) -> Written<Outbound> {
        let (opcode, payload) = match message {
            Outbound::Text(text) => (Data::Text, Bytes::from(text.clone())),
            Outbound::Binary(bytes) => (Data::Binary, bytes.clone()),
            Outbound::Wire(_) => return Written::Nothing,
        };
        let mut header = [0; FRAME_HEADER_BYTES];
        let header = encode_header(opcode, payload.len(), &mut header);
        let total = header.len() + payload.len();
        let Some(written) = self.send(&[IoSlice::new(header), IoSlice::new(&payload)]) else {
            return Written::Nothing;
        };
        if written >= total {
            return Written::Whole;
        }
        Written::Part(Outbound::Wire(rest(header, payload, written)))
    }
}

/// Encodes a server frame's header (final, unmasked, `opcode`, for a payload of
/// `len` bytes) into `into`; returns the part of it used.
fn encode_header(opcode: Data, len: usize, into: &mut [u8; FRAME_HEADER_BYTES]) -> &[u8] {
    let header = FrameHeader {
        opcode: OpCode::Data(opcode),
        ..FrameHeader::default()
    };
    let mut unwritten = &mut into[..];
    // An unmasked header takes at most `FRAME_HEADER_BYTES`: this cannot fail.
    let _ = header.format(len as u64, &mut unwritten);
    let used = FRAME_HEADER_BYTES - unwritten.len();
    &into[..used]
}

/// What is left of `header` then `payload` once `written` bytes of them are out.
fn rest(header: &[u8], payload: Bytes, written: usize) -> Bytes {
    match written.checked_sub(header.len()) {
        Some(into_payload) => payload.slice(into_payload..),
        None => {
            let mut rest = Vec::with_capacity(header.len() - written + payload.len());
            rest.extend_from_slice(&header[written..]);
            rest.extend_from_slice(&payload);
            Bytes::from(rest)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::fd::AsRawFd;

    use tokio_tungstenite::tungstenite::protocol::frame::Frame;

    use super::*;

    fn wire(message: Outbound) -> Vec<u8> {
        let frame = match message {
            Outbound::Text(text) => Frame::message(text, OpCode::Data(Data::Text), true),
            Outbound::Binary(bytes) => Frame::message(bytes, OpCode::Data(Data::Binary), true),
            Outbound::Wire(bytes) => return bytes.to_vec(),
        };
        let mut encoded = Vec::new();
        frame.format(&mut encoded).unwrap();
        encoded
    }

    #[test]
    fn headers_are_the_ones_tungstenite_writes() {
        for len in [0, 1, 125, 126, 65_535, 65_536, 1 << 20] {
            let payload = Bytes::from(vec![7u8; len]);
            let expected = wire(Outbound::Binary(payload.clone()));
            let mut header = [0; FRAME_HEADER_BYTES];
            let header = encode_header(Data::Binary, len, &mut header);
            assert_eq!(&expected[..header.len()], header, "{len} bytes");
            assert_eq!(expected.len(), header.len() + len);
        }
    }

    #[test]
    fn the_rest_of_a_partial_write_completes_the_frame() {
        let payload = Bytes::from_static(b"hello world");
        let mut header = [0; FRAME_HEADER_BYTES];
        let header = encode_header(Data::Text, payload.len(), &mut header);
        let whole = [header, &payload[..]].concat();
        for written in 1..whole.len() {
            let rest = rest(header, payload.clone(), written);
            assert_eq!(&rest[..], &whole[written..], "after {written} bytes");
        }
    }

    #[test]
    fn a_socket_with_room_takes_the_frame_whole_and_a_full_one_the_rest_later() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let sender = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        sender.set_nonblocking(true).unwrap();
        let (mut receiver, _) = listener.accept().unwrap();
        let writer = SocketWriter::new(sender.as_raw_fd());

        let small = Outbound::Text("{\"type\":\"update\"}".into());
        assert_eq!(writer.write(&small), Written::Whole);
        let mut expected = wire(small);
        let mut got = vec![0; expected.len()];
        receiver.read_exact(&mut got).unwrap();
        assert_eq!(got, expected);

        // Nobody reads: frames go out until the socket is full, one of them in part,
        // then nothing more is taken.
        let big = Outbound::Binary(Bytes::from(vec![1u8; 256 * 1024]));
        expected.clear();
        let rest = loop {
            match writer.write(&big) {
                Written::Whole => expected.extend(wire(big.clone())),
                Written::Part(rest) => break rest,
                Written::Nothing => panic!("a frame was refused whole before the socket filled"),
            }
        };
        let Outbound::Wire(rest_bytes) = &rest else {
            panic!("the rest of a frame is raw bytes");
        };
        let whole = wire(big.clone());
        expected.extend_from_slice(&whole[..whole.len() - rest_bytes.len()]);
        assert_eq!(writer.write(&big), Written::Nothing);

        // The reader sees whole frames once the rest follows.
        let rest = rest_bytes.to_vec();
        expected.extend_from_slice(&rest);
        sender.set_nonblocking(false).unwrap();
        let writing = std::thread::spawn(move || {
            use std::io::Write;
            (&sender).write_all(&rest).unwrap();
            sender
        });
        let mut got = vec![0; expected.len()];
        receiver.read_exact(&mut got).unwrap();
        assert!(got == expected, "the bytes read are the frames written");
        drop(writing.join().unwrap());
    }
}
