//! The wire: frames and messages of every Switchboard protocol, as serde types and pure codecs.
//!
//! Nothing here does I/O; everything is a function of its input, so it is easy to test and fuzz.

pub mod counter;
pub mod device;
pub mod display;
pub mod kiosk;
pub mod time;
