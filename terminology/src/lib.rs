//! Japanese terminology and identifiers (in progress).
