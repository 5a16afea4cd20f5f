//! The kernel's receive low-water mark (`SO_RCVLOWAT`) on each camera's RTSP connection,
//! so that the recorder is woken about ten times a second per camera instead of for
//! every packet.
//!
//! Why: a 4 Mbit/s camera over TCP sends about 350 RTP packets a second, and each
//! arrival woke the runtime's one thread for a small read. On a 2-core box the wake-ups
//! (epoll, context switches) and the reads cost more than sealing and writing the video.
//! With the mark at about 100 ms of the camera's stream (at most 64 KiB, 100 ms at
//! 5 Mbit/s), the kernel keeps the bytes until that much has arrived and one read takes
//! them all: at 16 cameras of 4 Mbit/s, reads went from about 850 to 290 a second and
//! the runtime's wake-ups from 410 to about 100 (`perf stat`), and the recorder's CPU
//! by about a quarter. The mark is capped because retina's read buffer grows to hold a
//! read and the frame in progress; 250 ms (128 KiB) saved only 7 % more CPU.
//!
//! What it costs: bytes wait in the kernel about 100 ms longer before the recorder sees
//! them, so live view is that much later. Footage times do not move with it: a frame's
//! wall-clock time comes from the camera's media clock
//! ([`crate::clock::MediaClock`]), not from when the frame was read (when it did, the
//! end-to-end tests saw chunks overlap and a player's clock run ahead). The mark follows
//! the measured rate of the stream, and a stream that slows down abruptly (no frame for
//! [`STALL`]) has its mark taken off, so a slow stream is never held back for long; an
//! ended connection wakes the reader whatever the mark. What `kill -9` or a power cut
//! loses grows by at most that 100 ms (the README's bound allows for it).
//!
//! retina owns the socket and does not expose it, so the socket is found among the
//! process's descriptors (`/proc/self/fd`) by its peer address. Cameras behind one
//! address (the channels of one encoder) share one mark, the smallest any of them asks
//! for, so a slow sub-stream is never held behind a fast main stream's mark.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// How much of the stream the kernel may hold: this long of it, at the measured rate.
const HOLD: Duration = Duration::from_millis(100);
/// The rate is measured over at least this long before the mark is set or changed.
const MEASURE: Duration = Duration::from_secs(2);
/// Below this mark, batching is not worth it: the mark stays off.
const MIN_MARK_BYTES: u32 = 2 * 1024;
/// Never more than this, whatever the rate (retina's read buffer, 64 KiB to start with,
/// holds a read and the frame in progress; a larger mark makes it grow).
const MAX_MARK_BYTES: u32 = 64 * 1024;
/// No frame for this long: the stream slowed down, the mark comes off at once.
pub(crate) const STALL: Duration = Duration::from_millis(500);
/// "Off": the kernel's default, wake on every byte.
const OFF: u32 = 1;

/// The mark for a stream of `bytes_per_sec`: [`HOLD`] of it, or off when that is small.
pub(crate) fn mark_for_rate(bytes_per_sec: f64) -> u32 {
    let held = bytes_per_sec * HOLD.as_secs_f64();
    if !held.is_finite() || held < f64::from(MIN_MARK_BYTES) {
        return OFF;
    }
    (held as u32).min(MAX_MARK_BYTES)
}

/// The marks the cameras ask for, by peer address; shared by every camera task.
#[derive(Default)]
pub struct LowWater {
    peers: Mutex<HashMap<SocketAddr, PeerMarks>>,
}

/// The cameras behind one address, and the mark all its sockets have.
struct PeerMarks {
    wishes: HashMap<String, u32>,
    /// What every socket to the peer was last set to; a new connection has the
    /// kernel's default, [`OFF`], which a camera's first wish (off) keeps true.
    applied: u32,
}

impl LowWater {
    /// Records `camera`'s wish for `peers` (`None`: it is gone) and sets the sockets of
    /// each peer whose smallest wish changed: the descriptors are scanned only then (at
    /// 128 cameras behind one address, a scan each time a camera asked cost a second of
    /// CPU at start).
    fn ask(&self, camera: &str, peers: &[SocketAddr], bytes: Option<u32>) {
        let mut all = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        for peer in peers {
            let marks = all.entry(*peer).or_insert_with(|| PeerMarks {
                wishes: HashMap::new(),
                applied: OFF,
            });
            match bytes {
                Some(b) => {
                    marks.wishes.insert(camera.to_string(), b);
                }
                None => {
                    marks.wishes.remove(camera);
                }
            }
            if marks.wishes.is_empty() {
                // The last connection to the peer is closing: nothing to set.
                all.remove(peer);
                continue;
            }
            let mark = marks.wishes.values().copied().min().unwrap_or(OFF);
            if mark != marks.applied {
                match set_on_peer_sockets(*peer, mark) {
                    Ok(_) => marks.applied = mark,
                    Err(e) => {
                        tracing::debug!(camera, error = %e, "cannot set the receive low-water mark")
                    }
                }
            }
        }
    }
}

/// One camera session's mark: measures the stream and keeps the mark in step.
pub(crate) struct SessionMark {
    shared: Arc<LowWater>,
    camera: String,
    peers: Vec<SocketAddr>,
    /// The mark this session asked for last.
    asked: u32,
    window_start: Instant,
    window_bytes: u64,
}

impl SessionMark {
    /// Starts with the mark off until the rate is known. `peers`: the addresses the
    /// camera's RTSP connection may have (the URL's host, resolved).
    pub(crate) fn new(
        shared: Arc<LowWater>,
        camera: &str,
        peers: Vec<SocketAddr>,
        now: Instant,
    ) -> Self {
        let mut m = SessionMark {
            shared,
            camera: camera.to_string(),
            peers,
            asked: OFF,
            window_start: now,
            window_bytes: 0,
        };
        m.ask(Some(OFF));
        m
    }

    /// Counts bytes of the stream received.
    pub(crate) fn received(&mut self, bytes: usize) {
        self.window_bytes += bytes as u64;
    }

    /// Called about once a second: takes the mark off after a stall, and sets it from
    /// the rate once [`MEASURE`] has passed. Returns the mark asked for now.
    pub(crate) fn tick(&mut self, now: Instant, since_last_frame: Duration) -> u32 {
        if since_last_frame >= STALL {
            self.window_start = now;
            self.window_bytes = 0;
            if self.asked != OFF {
                self.ask(Some(OFF));
            }
            return self.asked;
        }
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed < MEASURE {
            return self.asked;
        }
        let wanted = mark_for_rate(self.window_bytes as f64 / elapsed.as_secs_f64());
        self.window_start = now;
        self.window_bytes = 0;
        // Small changes of rate are not worth a scan of the descriptors.
        let (lo, hi) = (self.asked.min(wanted), self.asked.max(wanted));
        if u64::from(hi) * 4 > u64::from(lo) * 5 {
            self.ask(Some(wanted));
        }
        self.asked
    }

    fn ask(&mut self, bytes: Option<u32>) {
        if let Some(b) = bytes {
            self.asked = b;
        }
        self.shared.ask(&self.camera, &self.peers, bytes);
    }
}

impl Drop for SessionMark {
    fn drop(&mut self) {
        // The other cameras behind the same address may now have a larger mark.
        self.ask(None);
    }
}

/// Sets the mark on every TCP socket of this process connected to `peer`.
fn set_on_peer_sockets(peer: SocketAddr, bytes: u32) -> std::io::Result<usize> {
    let mut set = 0;
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let Some(fd) = entry?
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<RawFd>().ok())
        else {
            continue;
        };
        if peer_of(fd) == Some(peer) && set_mark(fd, bytes).is_ok() {
            set += 1;
        }
    }
    Ok(set)
}

/// The peer address of descriptor `fd`, if it is a connected IP socket.
fn peer_of(fd: RawFd) -> Option<SocketAddr> {
    // SAFETY: getpeername only writes up to `len` bytes into `storage`, which is a
    // zeroed sockaddr_storage (valid for any bit pattern), and reports the length used.
    // An `fd` that was closed or reused since it was listed only makes it fail or
    // describe another descriptor, whose address is then compared like any other.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let r = unsafe { libc::getpeername(fd, (&raw mut storage).cast::<libc::sockaddr>(), &mut len) };
    if r != 0 {
        return None;
    }
    match i32::from(storage.ss_family) {
        libc::AF_INET if len as usize >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, fully written.
            let a = unsafe { &*(&raw const storage).cast::<libc::sockaddr_in>() };
            let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::from((ip, u16::from_be(a.sin_port))))
        }
        libc::AF_INET6 if len as usize >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the family says the storage holds a sockaddr_in6, fully written.
            let a = unsafe { &*(&raw const storage).cast::<libc::sockaddr_in6>() };
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::from((ip, u16::from_be(a.sin6_port))))
        }
        _ => None,
    }
}

fn set_mark(fd: RawFd, bytes: u32) -> std::io::Result<()> {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt reads one c_int from `v`, which lives across the call.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&raw const v).cast::<libc::c_void>(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    fn mark_of(s: &TcpStream) -> u32 {
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `v`.
        let r = unsafe {
            libc::getsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVLOWAT,
                (&raw mut v).cast::<libc::c_void>(),
                &mut len,
            )
        };
        assert_eq!(r, 0);
        v as u32
    }

    #[test]
    fn the_mark_is_a_tenth_of_a_second_of_the_stream() {
        assert_eq!(mark_for_rate(250_000.0), 25_000); // 2 Mbit/s
        assert_eq!(mark_for_rate(500_000.0), 50_000); // 4 Mbit/s
        assert_eq!(
            mark_for_rate(1_250_000.0),
            MAX_MARK_BYTES,
            "10 Mbit/s: capped"
        );
        assert_eq!(mark_for_rate(10_000_000.0), MAX_MARK_BYTES);
        assert_eq!(
            mark_for_rate(16_000.0),
            OFF,
            "128 kbit/s: not worth batching"
        );
        assert_eq!(mark_for_rate(0.0), OFF);
        assert_eq!(mark_for_rate(f64::NAN), OFF);
    }

    /// A real connection on 127.0.0.1: the mark reaches the camera's socket (found by
    /// its peer address), follows the rate, comes off after a stall, and a sub-stream
    /// behind the same address keeps the smaller mark.
    #[test]
    fn the_mark_follows_the_stream_on_a_real_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = listener.local_addr().unwrap();
        let main_stream = TcpStream::connect(peer).unwrap();
        let sub_stream = TcpStream::connect(peer).unwrap();
        let (mut camera_side, _) = listener.accept().unwrap();
        let _other = listener.accept().unwrap();
        assert_eq!(mark_of(&main_stream), OFF);

        let shared = Arc::new(LowWater::default());
        let t0 = Instant::now();
        let mut main = SessionMark::new(shared.clone(), "main", vec![peer], t0);
        main.received(500_000); // 2 Mbit/s
        assert_eq!(
            main.tick(t0 + Duration::from_secs(1), Duration::ZERO),
            OFF,
            "still measuring"
        );
        assert_eq!(main.tick(t0 + MEASURE, Duration::from_millis(40)), 25_000);
        assert_eq!(mark_of(&main_stream), 25_000);

        // The kernel holds what is below the mark, and hands it over once it is reached.
        camera_side.write_all(&[7u8; 1000]).unwrap();
        main_stream.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 64 * 1024];
        std::thread::sleep(Duration::from_millis(50));
        let mut poll = libc::pollfd {
            fd: main_stream.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd, valid for the call.
        assert_eq!(
            unsafe { libc::poll(&mut poll, 1, 0) },
            0,
            "1000 bytes do not wake the reader"
        );
        camera_side.write_all(&[7u8; 25_000]).unwrap();
        // SAFETY: as above.
        assert_eq!(
            unsafe { libc::poll(&mut poll, 1, 2000) },
            1,
            "the mark reached wakes it"
        );
        let mut got = 0;
        while got < 26_000 {
            match (&main_stream).read(&mut buf) {
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => panic!("{e}"),
            }
        }

        // A slow sub-stream behind the same address: both sockets take its smaller mark.
        let mut sub = SessionMark::new(shared.clone(), "sub", vec![peer], t0);
        assert_eq!(mark_of(&main_stream), OFF);
        assert_eq!(mark_of(&sub_stream), OFF);
        sub.received(60_000); // 240 kbit/s
        sub.tick(t0 + MEASURE, Duration::ZERO);
        assert_eq!(mark_of(&main_stream), 3_000);
        drop(sub);
        assert_eq!(
            mark_of(&main_stream),
            25_000,
            "the sub-stream gone, the main mark again"
        );

        // No frame for a while: the mark comes off at once, and stays off while measuring.
        let t1 = t0 + MEASURE * 2;
        assert_eq!(main.tick(t1, STALL), OFF);
        assert_eq!(mark_of(&main_stream), OFF);
        main.received(1_000_000);
        assert_eq!(main.tick(t1 + Duration::from_secs(1), Duration::ZERO), OFF);

        drop(main);
        assert_eq!(mark_of(&main_stream), OFF);
        assert!(shared.peers.lock().unwrap().is_empty());
        drop(sub_stream);
    }
}
