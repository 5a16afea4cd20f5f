//! Ringfence viewer-api: the only door to recorded footage.
//!
//! HTTPS (rustls) JSON API with users and sessions, one policy function that decides
//! every request ([`policy::authorize`]), and a hash-chained access log ([`audit`])
//! written before any footage leaves. Footage is read from the recorder's store
//! through `recorder::footage` and served as MP4 built on the fly from the original
//! frames ([`mp4`], [`playback`]), without re-encoding; live view is the segment being
//! written, tailed, as fragmented MP4 ([`live`]).

pub mod admin;
pub mod anchor;
pub mod api;
pub mod audit;
#[cfg(feature = "testing")]
pub mod benchfill;
pub mod clock;
pub mod config;
pub mod conns;
pub mod export;
pub mod forward;
pub mod live;
pub mod metrics;
pub mod mp4;
pub mod openapi;
pub mod playback;
pub mod policy;
pub mod preview;
pub mod recorder_side;
pub mod remote;
pub mod server;
pub mod streams;
pub mod tamper;
#[cfg(any(test, feature = "testing"))]
pub mod testdata;
pub mod throttle;
pub mod users;
pub mod viewing;
pub mod web;
