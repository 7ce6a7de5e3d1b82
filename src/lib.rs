//! coedit: a real-time collaboration server for Yjs documents, and the command-line
//! clients that operate it.
//!
//! # Layout
//! - [`api`]: every type that crosses the wire (REST bodies, WebSocket messages),
//!   shared by server, clients and tests.
//! - [`server`]: `coedit serve` — router, REST handlers (`rest`), WebSocket admission
//!   (`ws`) and connections (`connection`), rooms with their `yrs` documents (`room`,
//!   `document`), documents as data (`content`: export, import, restore), the room
//!   registry, auth and limits, metrics and their history, the journal (group
//!   commit), the stores (SQLite, MongoDB, memory) with their history and a
//!   whole-store dump format (`store::dump`), webhooks (`webhooks`), and the
//!   dashboard page (`dashboard`).
//! - [`client`]: typed clients of a running server.
//! - [`cli`]: the `coedit` command line, one module per subcommand.

pub mod api;
pub mod cli;
pub mod client;
pub mod server;
