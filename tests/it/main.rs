//! End-to-end tests: a real server on 127.0.0.1:0 driven over real HTTP and
//! WebSocket connections. One test binary, one module per story.

mod attacks;
mod bench;
mod cli;
mod cluster;
mod common;
mod connection;
mod dashboard;
mod documents;
mod dump;
mod durability;
mod fuzz;
mod hardening;
mod lifecycle;
mod mongo_env;
mod original_client;
mod parity;
mod protocol;
mod rest;
mod soak;
mod store;
mod webhooks;
mod write_ahead;
mod yjs;
