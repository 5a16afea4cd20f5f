//! Wall time behind a trait, so that token expiry, grant windows, lock-outs and export
//! expiry are tested by moving a clock instead of sleeping. The same clock as the
//! recorder's, so that one manual clock can drive both in a test.

pub use recorder::clock::{
    Clock, ManualClock, SystemClock, TICKS_90K_PER_MS, ms_from_90k, parse_rfc3339, rfc3339,
    secs_from_90k, ticks_90k_from_ms,
};
