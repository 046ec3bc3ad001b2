//! Japanese identifiers and vaccine barcodes (in progress).
