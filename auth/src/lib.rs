//! Access control (in progress).
