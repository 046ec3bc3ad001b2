//! Municipal record layouts (in progress).
