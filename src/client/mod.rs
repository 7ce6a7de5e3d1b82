//! Clients of a running coedit server: the typed REST client used by the admin
//! subcommands and the tests, and the WebSocket load generator behind `coedit bench`.

pub mod bench;
pub mod rest;
