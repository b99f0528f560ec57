//! Pieces of the `steex` command line that are not library API.

pub mod device;
pub mod sean;
