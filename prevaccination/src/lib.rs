//! The digital 予診票 (in progress).
