//! The recorder's local service: the one door from the viewer-api into the store.
//!
//! The viewer-api faces staff and the network; the recorder holds the store, the
//! catalog, the KEK and the device signing key. They run as different Unix users, and
//! the viewer-api gets only what this service answers, over a Unix socket whose peer
//! is identified by the kernel (`SO_PEERCRED`), never by anything it sends:
//!
//! * footage: camera states, segment lists, gaps, segment indexes (times and sizes,
//!   needed to decide and log what a request will serve), and decrypted frames. Frames
//!   come only for a named access-log entry ([`LogRef`]) and every segment read is
//!   written to the recorder's own journal of what it served (`served.sqlite`, in the
//!   store), so footage that left without an entry in the access log shows up when
//!   the two are compared (`viewer-api audit verify`);
//! * holds: list, place, release, each journaled with its log entry; deleting
//!   footage is not offered at all;
//! * the store's health, its file system, the deletion journal;
//! * signatures: an export manifest is signed only if every segment it names is in the
//!   catalog with the size and SHA-256 it states, and was served for that same log
//!   entry; access-log checkpoints are signed only if the log did not go back (its
//!   sequence never decreases, a sequence never changes its hash), and are kept in
//!   `checkpoints.jsonl` in the store, where the viewer-api cannot write.
//!
//! The wire format is deliberately plain: each message is a JSON header and a binary
//! payload (frame bytes, a manifest), each preceded by its length as a big-endian u32.
//! A connection carries one request and its answer at a time; a connection that opened
//! a segment keeps reading it (the client gives such a connection to one stream only).
//! Requests are served by a thread per connection, at most [`MAX_CONNECTIONS`] at a
//! time: the recorder's ingest never waits for the viewer-api.

mod client;
mod journal;
mod server;
mod wire;

pub use client::{Client, RemoteSegment};
pub use journal::{Checkpoints, Served, ServedJournal};
pub use server::{Service, ServiceHandle};
pub use wire::{
    ChunkWire, ErrorKind, FrameWire, GopWire, IndexWire, ParamsWire, Request, SegmentWire,
    ServiceError,
};

pub use crate::checkpoint::LogRef;

/// Connections served at once; more are answered "busy" and closed.
pub const MAX_CONNECTIONS: usize = 256;
