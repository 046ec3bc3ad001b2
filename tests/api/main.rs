//! Musubi's integration tests: each starts the real server on port 0 and talks HTTP to it.

mod crud;
mod bundles;
mod errors;
mod search;
