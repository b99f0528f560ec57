//! The fault battery: runs are killed, disks fill up, writers race and outputs vanish, and
//! every result stays whole (README "Reliability"). Tiny models (the demo's bundled ones),
//! twelve 64x64 scenes; every kill or change happens on an event the test observes in the
//! output folder (a lock taken, a file renamed, a line appended), never after a sleep.
#![cfg(unix)]

#[path = "../common/mod.rs"]
mod common;

mod disk;
mod kill;
mod races;
mod support;
