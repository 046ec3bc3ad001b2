//! Musubi's integration tests: each starts the real server on port 0 and talks HTTP to it.

mod access;
mod billing;
mod bundles;
mod channels;
mod consent;
mod crud;
mod errors;
mod examples;
mod exits;
mod japan;
mod municipal;
mod phr;
mod portal;
mod routing;
mod search;
mod tls;
