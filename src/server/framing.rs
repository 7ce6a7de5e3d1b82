//! Follows the WebSocket framing of the bytes a server connection reads, so that
//! `IdleIo` can take a large data frame aside: read it from the socket straight
//! into one buffer of its exact size and unmask it there. Handed to tungstenite, a
//! 2 MB frame crossed its tiny read buffer a few hundred bytes at a time, each step
//! zero-filled and copied, and then a text frame was checked as UTF-8 once more
//! before the connection read it (BENCHMARKS.md, "Large frames read aside").
//! tungstenite reads an empty frame of the same kind in its place, and the
//! connection takes the payload from `IdleIo`.
//!
//! Only whole (FIN), masked text or binary frames without reserved bits, outside a
//! fragmented message, before any close frame and within the size limit, are taken
//! aside; everything else passes to tungstenite, which keeps every check and
//! refusal it makes. A text frame taken aside is not checked as UTF-8 here: the
//! connection checks it (or reads it as hex, which is stricter).

use std::io::Cursor;

use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

/// Frames from this many payload bytes on are read aside. Smaller ones cost
/// tungstenite a few steps at most.
pub const ASIDE_FROM: u64 = 16 * 1024;

/// The longest frame header: 2 bytes, a 64-bit length, a mask.
const MAX_HEADER: usize = 14;

/// Bytes in `placeholder`.
pub const PLACEHOLDER_LEN: usize = 6;

/// The empty frame handed to tungstenite in place of one read aside: FIN and the
/// frame's opcode, then a zero length with an all-zero mask (a server refuses
/// unmasked frames).
pub fn placeholder(kind: Data) -> [u8; PLACEHOLDER_LEN] {
    [0x80 | u8::from(OpCode::Data(kind)), 0x80, 0, 0, 0, 0]
}

/// A frame to read aside, as its header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsideFrame {
    /// Text or binary.
    pub kind: Data,
    pub mask: [u8; 4],
    /// Payload bytes.
    pub len: usize,
    /// Header bytes, before the payload.
    pub header_len: usize,
}

/// What to do with the bytes a reader holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Hand this many to tungstenite.
    Pass(usize),
    /// They begin with a frame to read aside (its header is whole in them).
    Aside(AsideFrame),
}

/// Where the bytes handed to tungstenite stand in the stream's framing.
#[derive(Debug, Default)]
pub struct Framing {
    /// Payload bytes of the frame under way not yet handed on.
    payload_left: u64,
    /// A header that arrived in pieces, so far.
    partial: [u8; MAX_HEADER],
    partial_len: u8,
    /// A data message goes on in later frames (one without FIN went by).
    fragmented: bool,
    /// Nothing more is read aside: a close frame went by, or the bytes are not
    /// framing tungstenite accepts (it closes the connection).
    done: bool,
}

impl Framing {
    /// How much of `bytes` (what the reader holds, from where the last step
    /// stopped) to hand to tungstenite, at most `room`: everything up to the start
    /// of a frame to read aside, or that frame itself when it starts at once.
    /// `limit` is the largest frame to read aside (none when `None`).
    pub fn step(&mut self, bytes: &[u8], room: usize, limit: Option<usize>) -> Step {
        let end = room.min(bytes.len());
        let mut at = 0;
        while at < end && !self.done {
            if self.payload_left > 0 {
                let passed = self.payload_left.min((end - at) as u64);
                self.payload_left -= passed;
                at += passed as usize;
                continue;
            }
            if self.partial_len == 0 {
                if let Some(frame) = limit.and_then(|limit| self.aside_at(&bytes[at..], limit)) {
                    return if at == 0 {
                        Step::Aside(frame)
                    } else {
                        Step::Pass(at)
                    };
                }
            }
            // A header, perhaps the rest of one that arrived in pieces.
            let had = usize::from(self.partial_len);
            let copied = (MAX_HEADER - had).min(end - at);
            self.partial[had..had + copied].copy_from_slice(&bytes[at..at + copied]);
            let mut cursor = Cursor::new(&self.partial[..had + copied]);
            match FrameHeader::parse(&mut cursor) {
                Ok(Some((header, len))) => {
                    at += cursor.position() as usize - had;
                    self.partial_len = 0;
                    self.begin(&header, len);
                }
                Ok(None) => {
                    // `copied` is short of a whole header only at `end`.
                    self.partial_len = (had + copied) as u8;
                    at += copied;
                }
                Err(_) => self.done = true,
            }
        }
        Step::Pass(end)
    }

    fn begin(&mut self, header: &FrameHeader, len: u64) {
        self.payload_left = len;
        match header.opcode {
            OpCode::Control(Control::Close) => self.done = true,
            OpCode::Control(Control::Ping | Control::Pong) => {}
            OpCode::Data(Data::Continue) => {
                if header.is_final {
                    self.fragmented = false;
                }
            }
            OpCode::Data(Data::Text | Data::Binary) => self.fragmented = !header.is_final,
            // tungstenite refuses these and closes.
            OpCode::Data(Data::Reserved(_)) | OpCode::Control(Control::Reserved(_)) => {
                self.done = true
            }
        }
    }

    /// The frame starting at `bytes`, if it is one to read aside.
    fn aside_at(&self, bytes: &[u8], limit: usize) -> Option<AsideFrame> {
        // Lengths under 126 fit the second byte: far too small, and most frames.
        if self.fragmented || bytes.get(1).is_none_or(|&second| second & 0x7F < 126) {
            return None;
        }
        let mut cursor = Cursor::new(bytes);
        let (header, len) = FrameHeader::parse(&mut cursor).ok()??;
        let kind = match header.opcode {
            OpCode::Data(kind @ (Data::Text | Data::Binary)) => kind,
            _ => return None,
        };
        let whole = header.is_final && !(header.rsv1 || header.rsv2 || header.rsv3);
        if !whole || len < ASIDE_FROM || len > limit as u64 {
            return None;
        }
        Some(AsideFrame {
            kind,
            mask: header.mask?,
            len: usize::try_from(len).ok()?,
            header_len: cursor.position() as usize,
        })
    }
}

/// Unmasks a payload in place (RFC 6455, 5.3), eight bytes at a time.
pub fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let [a, b, c, d] = mask;
    let word = u64::from_ne_bytes([a, b, c, d, a, b, c, d]);
    let mut words = payload.chunks_exact_mut(8);
    for chunk in &mut words {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    // The rest starts at a multiple of 8, so the mask starts over there too.
    for (index, byte) in words.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[index % 4];
    }
}

#[cfg(test)]
mod tests {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;

    use super::*;

    fn wire(kind: OpCode, len: usize, fin: bool, mask: Option<[u8; 4]>) -> Vec<u8> {
        let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let mut frame = match kind {
            OpCode::Control(Control::Ping) => Frame::ping(payload),
            OpCode::Control(_) => Frame::close(None),
            OpCode::Data(_) => Frame::message(payload, kind, fin),
        };
        frame.header_mut().mask = mask;
        let mut bytes = Vec::new();
        frame.format(&mut bytes).unwrap();
        bytes
    }

    const MASK: Option<[u8; 4]> = Some([9, 8, 7, 6]);
    const TEXT: OpCode = OpCode::Data(Data::Text);
    const LIMIT: Option<usize> = Some(1 << 20);

    #[test]
    fn small_frames_pass_whole_and_a_large_one_is_found_where_it_starts() {
        let mut stream = wire(TEXT, 10, true, MASK);
        stream.extend(wire(OpCode::Control(Control::Ping), 3, true, MASK));
        let small = stream.len();
        stream.extend(wire(TEXT, 20_000, true, MASK));
        let mut framing = Framing::default();
        assert_eq!(framing.step(&stream, 4096, LIMIT), Step::Pass(small));
        let Step::Aside(frame) = framing.step(&stream[small..], 4096, LIMIT) else {
            panic!("the large frame is read aside");
        };
        assert_eq!(
            frame,
            AsideFrame {
                kind: Data::Text,
                mask: [9, 8, 7, 6],
                len: 20_000,
                header_len: 8,
            }
        );
        // Taking it aside leaves the framing at the next frame.
        let after = wire(TEXT, 5, true, MASK);
        assert_eq!(framing.step(&after, 4096, LIMIT), Step::Pass(after.len()));
    }

    #[test]
    fn headers_and_payloads_split_anywhere_are_followed() {
        let mut stream = Vec::new();
        for len in [3, 200, 70_000, 1, 126, 65_536] {
            stream.extend(wire(OpCode::Data(Data::Binary), len, true, MASK));
        }
        stream.extend(wire(TEXT, 30_000, true, MASK));
        let last = stream.len() - (30_000 + 8);
        for room in [1, 2, 3, 7, 13, 256] {
            // Without a limit nothing is read aside; the large frames pass.
            let mut framing = Framing::default();
            let mut at = 0;
            while at < last {
                match framing.step(&stream[at..last], room, None) {
                    Step::Pass(n) => at += n,
                    Step::Aside(_) => panic!("nothing is read aside without a limit"),
                }
            }
            assert_eq!(framing.payload_left, 0, "at a frame's start, room {room}");
            assert_eq!(framing.partial_len, 0);
            assert!(matches!(
                framing.step(&stream[last..], room, LIMIT),
                Step::Aside(AsideFrame { len: 30_000, .. })
            ));
        }
    }

    #[test]
    fn frames_tungstenite_must_judge_are_never_read_aside() {
        let unmasked = wire(TEXT, 20_000, true, None);
        let mut rsv = wire(TEXT, 20_000, true, MASK);
        rsv[0] |= 0x40;
        let over = wire(TEXT, 20_000, true, MASK);
        for (bytes, limit) in [
            (unmasked, LIMIT),
            (rsv, LIMIT),
            (over, Some(19_999)),
            (wire(TEXT, 20_000, false, MASK), LIMIT),
        ] {
            assert_eq!(Framing::default().step(&bytes, 256, limit), Step::Pass(256));
        }
        // Within a fragmented message, and after a close, nothing is.
        let mut framing = Framing::default();
        let first = wire(TEXT, 10, false, MASK);
        assert_eq!(framing.step(&first, 256, LIMIT), Step::Pass(first.len()));
        let rest = wire(OpCode::Data(Data::Continue), 20_000, true, MASK);
        assert_eq!(framing.step(&rest, 256, LIMIT), Step::Pass(256));
        let mut framing = Framing::default();
        let close = wire(OpCode::Control(Control::Close), 0, true, MASK);
        assert_eq!(framing.step(&close, 256, LIMIT), Step::Pass(close.len()));
        let large = wire(TEXT, 20_000, true, MASK);
        assert_eq!(framing.step(&large, 256, LIMIT), Step::Pass(256));
    }

    #[test]
    fn unmasking_matches_tungstenite_at_every_length() {
        for len in 0..40 {
            let mask = [0x12, 0x34, 0x56, 0x78];
            let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let mut frame = Frame::message(payload.clone(), TEXT, true);
            frame.header_mut().mask = Some(mask);
            let mut masked = Vec::new();
            frame.format(&mut masked).unwrap();
            let mut body = masked[masked.len() - len..].to_vec();
            unmask(&mut body, mask);
            assert_eq!(body, payload, "length {len}");
        }
    }
}
