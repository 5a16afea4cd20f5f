//! Ringfence viewer-api: the only door to recorded footage.
//!
//! HTTPS (rustls) JSON API with users and sessions, one policy function that decides
//! every request, and a hash-chained access log written before any footage leaves.
//! Footage is read from the recorder's store and served as MP4 built on the fly from
//! the original frames, without re-encoding.

pub mod audit;
pub mod clock;
pub mod config;
pub mod mp4;
pub mod playback;
pub mod policy;
pub mod store;
#[doc(hidden)]
pub mod testdata;
pub mod throttle;
pub mod users;
