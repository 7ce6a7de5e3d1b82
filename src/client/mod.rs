//! Clients of a running coedit server: the typed REST client used by the admin
//! subcommands, the bench and the tests.

pub mod rest;
