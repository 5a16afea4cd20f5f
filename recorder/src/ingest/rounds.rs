//! The recorder's runtime reads the cameras in rounds, at most one every [`ROUND`],
//! rather than being woken by each camera's packets.
//!
//! Why: a 4 Mbit/s camera over TCP sends about 350 RTP packets a second. Woken for each,
//! the runtime's one thread spent more on epoll and context switches than on sealing
//! and writing the video. A receive low-water mark per socket (`SO_RCVLOWAT`, ~100 ms of
//! each stream) cut that to about ten wake-ups per camera a second, but they still grew
//! with the cameras (about 100 a second at 16), and setting it meant finding retina's
//! sockets among the process's descriptors. With rounds the thread wakes about ten
//! times a second whatever the number of cameras, and each wake-up reads what every
//! camera sent since the last. In A/B runs (16 cameras at 720p, 40 s, three pairs) the
//! recorder's CPU fell from 98–115 ticks to 89–91 against the per-socket marks.
//!
//! How: just before the thread parks (nothing left to run), it sleeps until a round
//! has passed since it last woke, then asks the kernel for every event that came in
//! meanwhile at once. A busy thread never sleeps: work that is ready runs first, and a
//! round that took longer than [`ROUND`] is followed by the next at once.
//!
//! What it costs: a byte waits in the kernel at most a round before it is read, as it
//! did under the marks. Live view is that much later, and `kill -9` or a power cut
//! loses at most that much more (the README's bound counts it). Footage times do not
//! move: a frame's wall-clock time comes from the camera's media clock
//! ([`crate::clock::MediaClock`]). An RTSP request's answer, a timer and SIGTERM wait up
//! to a round too (connecting takes about 300 ms more).
//!
//! Over UDP each packet is a datagram in its socket's buffer (about 200 KiB by default:
//! near 100 ms of a 10 Mbit/s stream once the kernel's overhead per packet is counted),
//! so a round could overflow it and lose video. With any camera on UDP the runtime is
//! not paced ([`round_for`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{CameraConfig, Transport};

/// The longest a camera's bytes wait in the kernel before a round reads them.
pub const ROUND: Duration = Duration::from_millis(100);

/// The round for these cameras: [`ROUND`], or none when any of them is on UDP.
pub fn round_for(cameras: &[CameraConfig]) -> Option<Duration> {
    cameras
        .iter()
        .all(|c| matches!(c.transport, Transport::Tcp))
        .then_some(ROUND)
}

/// The pacing of one runtime's thread.
pub struct Rounds {
    round: Duration,
    last_wake: Mutex<Instant>,
}

impl Rounds {
    /// Paces the runtime `builder` builds (a current-thread runtime: the one thread is
    /// the one that sleeps) to at most one wake-up every `round`.
    pub fn pace(builder: &mut tokio::runtime::Builder, round: Duration) {
        let rounds = Arc::new(Rounds {
            round,
            last_wake: Mutex::new(Instant::now()),
        });
        let woke = rounds.clone();
        builder
            .on_thread_park(move || {
                let pause = rounds.pause(Instant::now());
                if !pause.is_zero() {
                    std::thread::sleep(pause);
                }
            })
            .on_thread_unpark(move || woke.woke(Instant::now()));
    }

    /// How long the thread, about to park at `now`, sleeps first.
    fn pause(&self, now: Instant) -> Duration {
        let last = *self.last_wake.lock().unwrap_or_else(|p| p.into_inner());
        (last + self.round).saturating_duration_since(now)
    }

    fn woke(&self, now: Instant) {
        *self.last_wake.lock().unwrap_or_else(|p| p.into_inner()) = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_thread_sleeps_out_the_rest_of_the_round_and_never_more() {
        let t0 = Instant::now();
        let r = Rounds {
            round: ms(100),
            last_wake: Mutex::new(t0),
        };
        // Idle 30 ms after waking: it sleeps 70 more before looking for events.
        assert_eq!(r.pause(t0 + ms(30)), ms(70));
        // A round's work that took the whole round, or longer: no sleep.
        assert_eq!(r.pause(t0 + ms(100)), Duration::ZERO);
        assert_eq!(r.pause(t0 + ms(250)), Duration::ZERO);
        // The round counts from the last wake-up, not from the last sleep.
        r.woke(t0 + ms(250));
        assert_eq!(r.pause(t0 + ms(260)), ms(90));
    }

    #[test]
    fn only_cameras_all_on_tcp_are_read_in_rounds() {
        let cam = |id: &str, transport: &str| -> CameraConfig {
            toml::from_str(&format!(
                "id = \"{id}\"\nurl = \"rtsp://127.0.0.1:8554/{id}\"\ntransport = \"{transport}\""
            ))
            .expect("camera config")
        };
        assert_eq!(round_for(&[cam("a", "tcp"), cam("b", "tcp")]), Some(ROUND));
        assert_eq!(round_for(&[cam("a", "tcp"), cam("b", "udp")]), None);
    }

    /// A paced runtime still answers: a connection's bytes, a timer and a wake from
    /// another thread all reach their tasks (a round at most late).
    #[test]
    fn a_paced_runtime_still_delivers_io_timers_and_wakes() {
        let mut b = tokio::runtime::Builder::new_current_thread();
        b.enable_all();
        Rounds::pace(&mut b, ms(20));
        let rt = b.build().expect("runtime");
        rt.block_on(async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let sender = std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                for i in 0..5u8 {
                    std::io::Write::write_all(&mut s, &[i; 1000]).unwrap();
                    std::thread::sleep(Duration::from_millis(5));
                }
            });
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            conn.read_to_end(&mut got).await.unwrap();
            assert_eq!(got.len(), 5000);
            assert_eq!(&got[4000..], &[4u8; 1000][..]);
            sender.join().unwrap();
            tokio::time::sleep(ms(30)).await;
            let (tx, rx) = tokio::sync::oneshot::channel();
            std::thread::spawn(move || tx.send(7).unwrap());
            assert_eq!(rx.await.unwrap(), 7);
            let _ = conn.shutdown().await;
        });
    }
}
