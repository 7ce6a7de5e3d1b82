//! End-to-end tests: a real server on 127.0.0.1:0 driven over real HTTP and
//! WebSocket connections. One test binary, one module per story.

mod bench;
mod common;
mod protocol;
