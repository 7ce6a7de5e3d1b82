//! Writing a frame straight to a connection's TCP socket from the thread that sends
//! it, while the connection's task is parked (`queue::Direct`).
//!
//! Without it, every delivery queues the message, wakes the recipient's task (often
//! on the other worker thread), and that task polls, encodes and writes: the
//! wake-up and the poll cost about as much as the write itself (BENCHMARKS.md,
//! "Toward the relay's CPU per delivery"). A socket with room in its send buffer —
//! nearly always, for a client that keeps up — takes the frame at once, so the
//! sender writes it: one `sendmsg` of the frame's header and the shared payload,
//! and no task is woken. Messages released together for one client (the original
//! page's update and cursor, a busy room's keystrokes committed at once) go in one
//! `sendmsg` too. Whatever the socket would not take goes through the queue.
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

/// Frames written in one `sendmsg` at most (two iovecs each, far below the
/// kernel's 1024).
const FRAMES_PER_SEND: usize = 32;

impl Direct<Outbound> for SocketWriter {
    fn write(&self, messages: &[Outbound]) -> Written<Outbound> {
        if let [message] = messages {
            return self.write_one(message);
        }
        let mut whole = 0;
        for chunk in messages.chunks(FRAMES_PER_SEND) {
            let written = self.write_frames(chunk);
            whole += written.whole;
            if written.rest.is_some() || written.whole < chunk.len() {
                return Written {
                    whole,
                    rest: written.rest,
                };
            }
        }
        Written { whole, rest: None }
    }
}

impl SocketWriter {
    /// One frame: its header and payload in one `sendmsg`. Nearly every delivery is
    /// one frame, so it skips `write_frames`' arrays and its allocation.
    fn write_one(&self, message: &Outbound) -> Written<Outbound> {
        let nothing = Written {
            whole: 0,
            rest: None,
        };
        let Some((opcode, payload)) = frame(message) else {
            return nothing;
        };
        let mut header = [0; FRAME_HEADER_BYTES];
        let header = encode_header(opcode, payload.len(), &mut header);
        let Some(written) = self.send(&[IoSlice::new(header), IoSlice::new(&payload)]) else {
            return nothing;
        };
        if written >= header.len() + payload.len() {
            return Written {
                whole: 1,
                rest: None,
            };
        }
        Written {
            whole: 0,
            rest: Some(Outbound::Wire(rest(header, payload, written))),
        }
    }

    /// Up to `FRAMES_PER_SEND` frames (as far as the first that is not a whole
    /// frame) in one `sendmsg`: several messages released together for one client
    /// cost the kernel one send instead of one each.
    fn write_frames(&self, messages: &[Outbound]) -> Written<Outbound> {
        let mut headers = [[0; FRAME_HEADER_BYTES]; FRAMES_PER_SEND];
        let mut header_lens = [0; FRAMES_PER_SEND];
        let mut payloads = Vec::with_capacity(messages.len().min(FRAMES_PER_SEND));
        let slots = headers.iter_mut().zip(&mut header_lens);
        for (message, (header, header_len)) in messages.iter().zip(slots) {
            let Some((opcode, payload)) = frame(message) else {
                break;
            };
            *header_len = encode_header(opcode, payload.len(), header).len();
            payloads.push(payload);
        }
        let mut parts = [IoSlice::new(&[]); 2 * FRAMES_PER_SEND];
        for (index, payload) in payloads.iter().enumerate() {
            parts[2 * index] = IoSlice::new(&headers[index][..header_lens[index]]);
            parts[2 * index + 1] = IoSlice::new(payload);
        }
        let mut whole = 0;
        if payloads.is_empty() {
            return Written { whole, rest: None };
        }
        let Some(mut written) = self.send(&parts[..2 * payloads.len()]) else {
            return Written { whole, rest: None };
        };
        for (index, payload) in payloads.into_iter().enumerate() {
            let header = &headers[index][..header_lens[index]];
            let len = header.len() + payload.len();
            if written < len {
                // Stopped between two frames, or inside this one.
                let rest = (written > 0).then(|| Outbound::Wire(rest(header, payload, written)));
                return Written { whole, rest };
            }
            written -= len;
            whole += 1;
        }
        Written { whole, rest: None }
    }
}

/// A message's frame opcode and payload; `None` for the raw rest of a frame, which
/// only its connection's task writes.
fn frame(message: &Outbound) -> Option<(Data, Bytes)> {
    match message {
        Outbound::Text(text) => Some((Data::Text, Bytes::from(text.clone()))),
        Outbound::Binary(bytes) => Some((Data::Binary, bytes.clone())),
        Outbound::Wire(_) => None,
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

    /// A non-blocking socket written by a `SocketWriter`, and its peer.
    fn socket_pair() -> (std::net::TcpStream, std::net::TcpStream, SocketWriter) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let sender = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        sender.set_nonblocking(true).unwrap();
        let (receiver, _) = listener.accept().unwrap();
        let writer = SocketWriter::new(sender.as_raw_fd());
        (sender, receiver, writer)
    }

    /// Writes `rest` after what `sender` already took, then reads `expected` bytes
    /// from `receiver` and checks they are those.
    fn finish_and_read(
        sender: std::net::TcpStream,
        mut receiver: std::net::TcpStream,
        rest: Vec<u8>,
        expected: Vec<u8>,
    ) {
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

    fn whole(count: usize) -> Written<Outbound> {
        Written {
            whole: count,
            rest: None,
        }
    }

    #[test]
    fn a_socket_with_room_takes_the_frame_whole_and_a_full_one_the_rest_later() {
        let (sender, mut receiver, writer) = socket_pair();
        let small = Outbound::Text("{\"type\":\"update\"}".into());
        assert_eq!(writer.write(std::slice::from_ref(&small)), whole(1));
        let mut expected = wire(small);
        let mut got = vec![0; expected.len()];
        receiver.read_exact(&mut got).unwrap();
        assert_eq!(got, expected);

        // Nobody reads: frames go out until the socket is full, one of them in part,
        // then nothing more is taken.
        let big = Outbound::Binary(Bytes::from(vec![1u8; 256 * 1024]));
        expected.clear();
        let rest = loop {
            match writer.write(std::slice::from_ref(&big)) {
                Written {
                    whole: 1,
                    rest: None,
                } => expected.extend(wire(big.clone())),
                Written {
                    whole: 0,
                    rest: Some(rest),
                } => break rest,
                other => panic!("a frame was refused whole before the socket filled: {other:?}"),
            }
        };
        let Outbound::Wire(rest_bytes) = &rest else {
            panic!("the rest of a frame is raw bytes");
        };
        let full = wire(big.clone());
        expected.extend_from_slice(&full[..full.len() - rest_bytes.len()]);
        assert_eq!(writer.write(std::slice::from_ref(&big)), whole(0));

        // The reader sees whole frames once the rest follows.
        let rest = rest_bytes.to_vec();
        expected.extend_from_slice(&rest);
        finish_and_read(sender, receiver, rest, expected);
    }

    #[test]
    fn frames_written_together_arrive_whole_and_in_order_up_to_a_raw_rest() {
        let (sender, receiver, writer) = socket_pair();
        let messages = [
            Outbound::Text("{\"type\":\"update\"}".into()),
            Outbound::Binary(Bytes::from(vec![2u8; 300])),
            Outbound::Text("{\"type\":\"cursor\"}".into()),
            Outbound::Wire(Bytes::from_static(b"raw")),
            Outbound::Text("after the rest".into()),
        ];
        assert_eq!(writer.write(&messages), whole(3));
        let expected: Vec<u8> = messages[..3].iter().cloned().flat_map(wire).collect();
        finish_and_read(sender, receiver, Vec::new(), expected);
    }

    #[test]
    fn a_full_socket_takes_frames_written_together_up_to_one_in_part() {
        let (sender, receiver, writer) = socket_pair();
        // More frames than one `sendmsg` carries, each 16 KiB: the socket fills
        // partway through some call, inside a frame or between two.
        let frames: Vec<Outbound> = (0..FRAMES_PER_SEND + 8)
            .map(|index| Outbound::Binary(Bytes::from(vec![index as u8; 16 * 1024])))
            .collect();
        let mut expected = Vec::new();
        let rest = loop {
            let written = writer.write(&frames);
            for frame in &frames[..written.whole] {
                expected.extend(wire(frame.clone()));
            }
            if written.whole < frames.len() {
                break written
                    .rest
                    .map(|rest| (rest, frames[written.whole].clone()));
            }
        };
        let rest = match rest {
            Some((Outbound::Wire(rest), frame)) => {
                let full = wire(frame);
                expected.extend_from_slice(&full[..full.len() - rest.len()]);
                assert!(!rest.is_empty() && rest.len() < full.len());
                rest.to_vec()
            }
            Some((other, _)) => panic!("the rest of a frame is raw bytes, not {other:?}"),
            None => Vec::new(),
        };
        expected.extend_from_slice(&rest);
        finish_and_read(sender, receiver, rest, expected);
    }
}
