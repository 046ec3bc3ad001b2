//! Profile validation (in progress).
