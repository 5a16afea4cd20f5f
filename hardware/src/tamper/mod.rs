//! The tamper input: a case-open switch on a GPIO line.
//!
//! The box stands where nobody may walk in, and holds the footage and the keys that
//! decrypt it. Opening its case is the first step of every physical attack on the
//! evidence (pulling the disk, reading the TPM's bus, swapping the board), so IT must
//! learn that the case was opened, and when, even if it was closed again a minute
//! later: an opening is **latched** as an alarm ("the case was opened at T") that stays
//! until an IT user acknowledges it, and every opening, closing and acknowledgement is
//! a [`TamperNotice`] for the caller to write into the access log, where it becomes
//! part of the evidence's history (footage recorded after an unexplained opening is
//! footage a defence lawyer will ask about).
//!
//! - [`TamperInput`] is the switch: its state now (open, closed, unknown) and a blocking
//!   wait for its next edge, with the time the kernel saw it.
//! - [`GpioSwitch`] is the Linux backend: a line of a GPIO character device
//!   (`/dev/gpiochipN`, uAPI v2 through the `gpiocdev` crate), requested as an input
//!   with both edges detected, the kernel's debounce, and `CLOCK_REALTIME` event
//!   timestamps (wall time, as evidence needs; right once chrony has synchronised the
//!   clock). "Active" means *open*: `active_low` says the line reads low when the case
//!   is open.
//! - [`simulated`] gives a [`SimulatedSwitch`] a test flips and the [`SimulatedInput`]
//!   that sees the flips.
//! - [`TamperMonitor`] turns states and edges into the latched alarm, with an injected
//!   wall clock; [`watch`] drives it from an input on a thread of the caller's.
//!
//! What is proven only by simulation: this machine's kernel has no GPIO support at all
//! (`CONFIG_GPIOLIB` is off, so neither `gpio-sim` nor `gpio-mockup` can be loaded), so
//! [`GpioSwitch`]'s line request, value reads and edge events have never met a kernel
//! here. Its tests prove the clear errors for a missing chip or a file that is not a
//! chip, and the translation of line values and edge events to case states (with
//! `gpiocdev`'s own types); the monitor's logic is proven against [`SimulatedInput`].
//! On a board, `gpioget`/`gpiomon` (package `gpiod`) show what the line does.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The case as the switch sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseState {
    Closed,
    Open,
    /// The input cannot be read (not yet read, or its device failed).
    Unknown,
}

/// An edge of the switch: the case opened or closed, at the time the kernel (or the
/// simulation) saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TamperEvent {
    /// [`CaseState::Open`] or [`CaseState::Closed`]: the state after the edge.
    pub state: CaseState,
    pub at_unix_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum TamperError {
    #[error(
        "GPIO chip {path} does not exist (is the board's GPIO driver loaded? `ls /dev/gpiochip*` lists the chips)"
    )]
    ChipMissing { path: PathBuf },
    #[error("{path} is not a GPIO character device ({why}); name a /dev/gpiochipN")]
    NotAChip { path: PathBuf, why: String },
    #[error(
        "GPIO chip {path} has {lines} lines (offsets 0..{lines}); line {offset} does not exist"
    )]
    NoSuchLine {
        path: PathBuf,
        offset: u32,
        lines: u32,
    },
    #[error(
        "GPIO chip {path}: permission denied (the service's user needs read-write access to it)"
    )]
    PermissionDenied { path: PathBuf },
    #[error(
        "GPIO line {offset} of {path} is busy: another program holds it (`gpioinfo` says which)"
    )]
    Busy { path: PathBuf, offset: u32 },
    #[error("GPIO line {offset} of {path}: {source}")]
    Gpio {
        path: PathBuf,
        offset: u32,
        #[source]
        source: gpiocdev::Error,
    },
    #[error("simulated tamper input failed: {0}")]
    Simulated(String),
    /// The simulated switch was dropped: no more events will come.
    #[error("the tamper input was closed")]
    Closed,
    #[error("tamper latch file {path}: {reason}")]
    LatchFile { path: PathBuf, reason: String },
}

/// A case-open switch.
pub trait TamperInput: Send {
    /// The state now.
    fn state(&self) -> Result<CaseState, TamperError>;
    /// Waits up to `timeout` for the next edge; `None` when none came.
    fn wait_event(&self, timeout: Duration) -> Result<Option<TamperEvent>, TamperError>;
    /// Which input this is, for messages.
    fn describe(&self) -> String;
}

// ---------------------------------------------------------------------------------
// Linux: a GPIO character device line.

/// Where the switch is wired. Deserialisable from the configuration
/// (`chip = "/dev/gpiochip0"`, `line_offset = 17`, `active_low = true`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpioSwitchConfig {
    /// The GPIO character device, `/dev/gpiochipN`.
    pub chip: PathBuf,
    /// The line's offset on that chip.
    pub line_offset: u32,
    /// The line reads low when the case is open (and high when closed).
    #[serde(default)]
    pub active_low: bool,
    /// The line's pull resistor, when the board does not wire one.
    #[serde(default)]
    pub bias: Option<LineBias>,
    /// Edges closer together than this are one (a switch bounces); done by the kernel.
    #[serde(default = "default_debounce_ms")]
    pub debounce_ms: u32,
}

fn default_debounce_ms() -> u32 {
    20
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineBias {
    PullUp,
    PullDown,
    Disabled,
}

impl GpioSwitchConfig {
    pub fn new(chip: impl Into<PathBuf>, line_offset: u32) -> GpioSwitchConfig {
        GpioSwitchConfig {
            chip: chip.into(),
            line_offset,
            active_low: false,
            bias: None,
            debounce_ms: default_debounce_ms(),
        }
    }
}

/// A case-open switch on a GPIO line (uAPI v2). The line stays requested (and so
/// unavailable to other programs) while this lives.
#[derive(Debug)]
pub struct GpioSwitch {
    request: gpiocdev::Request,
    config: GpioSwitchConfig,
}

const CONSUMER: &str = "ringfence-tamper";

impl GpioSwitch {
    /// Requests the line as an input with both edges detected.
    pub fn open(config: &GpioSwitchConfig) -> Result<GpioSwitch, TamperError> {
        let path = config.chip.clone();
        let offset = config.line_offset;
        match fs::metadata(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(TamperError::ChipMissing { path });
            }
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                return Err(TamperError::PermissionDenied { path });
            }
            Err(e) => {
                return Err(TamperError::NotAChip {
                    path,
                    why: e.to_string(),
                });
            }
        }
        let gpio_err = |source: gpiocdev::Error| classify(&path, offset, source);
        gpiocdev::chip::is_chip(&path).map_err(gpio_err)?;
        let chip = gpiocdev::Chip::from_path(&path).map_err(gpio_err)?;
        let lines = chip.info().map_err(gpio_err)?.num_lines;
        if offset >= lines {
            return Err(TamperError::NoSuchLine {
                path,
                offset,
                lines,
            });
        }
        drop(chip);
        let mut b = gpiocdev::Request::builder();
        b.on_chip(&path)
            .with_consumer(CONSUMER)
            .with_line(offset)
            .as_input()
            .with_edge_detection(gpiocdev::line::EdgeDetection::BothEdges)
            .with_event_clock(gpiocdev::line::EventClock::Realtime)
            .with_bias(config.bias.map(|b| match b {
                LineBias::PullUp => gpiocdev::line::Bias::PullUp,
                LineBias::PullDown => gpiocdev::line::Bias::PullDown,
                LineBias::Disabled => gpiocdev::line::Bias::Disabled,
            }));
        if config.active_low {
            b.as_active_low();
        }
        if config.debounce_ms > 0 {
            b.with_debounce_period(Duration::from_millis(config.debounce_ms.into()));
        }
        let request = b.request().map_err(gpio_err)?;
        Ok(GpioSwitch {
            request,
            config: config.clone(),
        })
    }

    fn err(&self, source: gpiocdev::Error) -> TamperError {
        classify(&self.config.chip, self.config.line_offset, source)
    }
}

/// A gpiocdev error, in the operator's words where one applies.
fn classify(path: &Path, offset: u32, source: gpiocdev::Error) -> TamperError {
    let path = path.to_path_buf();
    if let gpiocdev::Error::GpioChip(_, kind) = &source {
        return TamperError::NotAChip {
            path,
            why: kind.to_string(),
        };
    }
    let text = source.to_string();
    let os = |errno: i32| text.contains(&io::Error::from_raw_os_error(errno).to_string());
    if os(libc::EBUSY) {
        TamperError::Busy { path, offset }
    } else if os(libc::EACCES) || os(libc::EPERM) {
        TamperError::PermissionDenied { path }
    } else if os(libc::ENOENT) {
        TamperError::ChipMissing { path }
    } else {
        TamperError::Gpio {
            path,
            offset,
            source,
        }
    }
}

/// The case's state for a line value ("active" is open; active-low is the kernel's).
pub fn state_of(value: gpiocdev::line::Value) -> CaseState {
    match value {
        gpiocdev::line::Value::Active => CaseState::Open,
        gpiocdev::line::Value::Inactive => CaseState::Closed,
    }
}

/// An edge event (realtime clock) as a tamper event: rising is the case opening.
pub fn event_of(e: &gpiocdev::line::EdgeEvent) -> TamperEvent {
    TamperEvent {
        state: match e.kind {
            gpiocdev::line::EdgeKind::Rising => CaseState::Open,
            gpiocdev::line::EdgeKind::Falling => CaseState::Closed,
        },
        at_unix_ms: (e.timestamp_ns / 1_000_000) as i64,
    }
}

impl TamperInput for GpioSwitch {
    fn state(&self) -> Result<CaseState, TamperError> {
        self.request
            .value(self.config.line_offset)
            .map(state_of)
            .map_err(|e| self.err(e))
    }

    fn wait_event(&self, timeout: Duration) -> Result<Option<TamperEvent>, TamperError> {
        if !self
            .request
            .wait_edge_event(timeout)
            .map_err(|e| self.err(e))?
        {
            return Ok(None);
        }
        let e = self.request.read_edge_event().map_err(|e| self.err(e))?;
        Ok(Some(event_of(&e)))
    }

    fn describe(&self) -> String {
        format!(
            "GPIO {} line {}{}",
            self.config.chip.display(),
            self.config.line_offset,
            if self.config.active_low {
                " (active low)"
            } else {
                ""
            }
        )
    }
}

// ---------------------------------------------------------------------------------
// Simulation.

enum SimMsg {
    Edge(TamperEvent),
    Fail(String),
}

/// The test's side of a simulated switch.
#[derive(Clone)]
pub struct SimulatedSwitch {
    tx: Sender<SimMsg>,
    state: Arc<Mutex<CaseState>>,
}

/// The monitor's side of a simulated switch.
pub struct SimulatedInput {
    rx: Receiver<SimMsg>,
    state: Arc<Mutex<CaseState>>,
}

/// A simulated switch in state `initial`.
pub fn simulated(initial: CaseState) -> (SimulatedSwitch, SimulatedInput) {
    let (tx, rx) = std::sync::mpsc::channel();
    let state = Arc::new(Mutex::new(initial));
    (
        SimulatedSwitch {
            tx,
            state: state.clone(),
        },
        SimulatedInput { rx, state },
    )
}

impl SimulatedSwitch {
    fn edge(&self, state: CaseState, at_unix_ms: i64) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = state;
        let _ = self
            .tx
            .send(SimMsg::Edge(TamperEvent { state, at_unix_ms }));
    }

    /// The case opens at `at_unix_ms`.
    pub fn open(&self, at_unix_ms: i64) {
        self.edge(CaseState::Open, at_unix_ms);
    }

    /// The case closes at `at_unix_ms`.
    pub fn close(&self, at_unix_ms: i64) {
        self.edge(CaseState::Closed, at_unix_ms);
    }

    /// The next wait fails (a device that went away).
    pub fn fail(&self, reason: &str) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = CaseState::Unknown;
        let _ = self.tx.send(SimMsg::Fail(reason.to_string()));
    }
}

impl TamperInput for SimulatedInput {
    fn state(&self) -> Result<CaseState, TamperError> {
        Ok(*self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn wait_event(&self, timeout: Duration) -> Result<Option<TamperEvent>, TamperError> {
        match self.rx.recv_timeout(timeout) {
            Ok(SimMsg::Edge(e)) => Ok(Some(e)),
            Ok(SimMsg::Fail(reason)) => Err(TamperError::Simulated(reason)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(TamperError::Closed),
        }
    }

    fn describe(&self) -> String {
        "simulated case switch".into()
    }
}

// ---------------------------------------------------------------------------------
// The monitor.

/// A wall clock in milliseconds since the Unix epoch (injected so tests set the time).
pub type UnixMs = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system's wall clock.
pub fn system_clock() -> UnixMs {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    })
}

/// A latched alarm: the case was opened (at least once) since the last acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TamperAlarm {
    /// The first opening since the last acknowledgement.
    pub opened_at_unix_ms: i64,
    /// Openings since then (1 for the first).
    pub openings: u32,
    /// The last closing since then, if it was closed again.
    pub last_closed_at_unix_ms: Option<i64>,
    /// The case was already open when the monitor started (opened while nothing
    /// watched: `opened_at_unix_ms` is when it was found, not when it was opened).
    pub found_open_at_start: bool,
}

/// An IT user's acknowledgement of an alarm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acknowledgement {
    pub by: String,
    pub at_unix_ms: i64,
    /// The alarm acknowledged.
    pub alarm: TamperAlarm,
}

/// What the caller writes to the access log (and its own log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TamperNotice {
    /// The case opened (the first opening latches the alarm; later ones count).
    Opened {
        at_unix_ms: i64,
    },
    /// The case was found open when the monitor started.
    FoundOpen {
        at_unix_ms: i64,
    },
    Closed {
        at_unix_ms: i64,
    },
    /// The input could not be read; the case's state is unknown until it can be.
    InputFailed {
        at_unix_ms: i64,
        reason: String,
    },
    Acknowledged(Acknowledgement),
}

/// The tamper input's state for the health endpoint and metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TamperStatus {
    pub state: CaseState,
    /// Latched until acknowledged.
    pub alarm: Option<TamperAlarm>,
    pub last_acknowledged: Option<Acknowledgement>,
    /// Why the state is unknown, when the input failed.
    pub input_error: Option<String>,
}

/// What survives a restart of the process (the latch file).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Latched {
    alarm: Option<TamperAlarm>,
    last_acknowledged: Option<Acknowledgement>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AckError {
    #[error("no tamper alarm to acknowledge")]
    NothingLatched,
    #[error("an acknowledgement names who gives it")]
    NoName,
    #[error("the acknowledgement could not be saved: {0}")]
    NotSaved(String),
}

/// Turns the switch's states and edges into a latched alarm. Shared between the thread
/// that [`watch`]es the input and whoever shows or acknowledges the alarm.
pub struct TamperMonitor {
    clock: UnixMs,
    latch_file: Option<PathBuf>,
    inner: Mutex<Inner>,
}

struct Inner {
    state: CaseState,
    input_error: Option<String>,
    latched: Latched,
}

impl TamperMonitor {
    /// A monitor whose latch lives in memory only (lost when the process ends).
    pub fn new(clock: UnixMs) -> TamperMonitor {
        TamperMonitor {
            clock,
            latch_file: None,
            inner: Mutex::new(Inner {
                state: CaseState::Unknown,
                input_error: None,
                latched: Latched::default(),
            }),
        }
    }

    /// A monitor whose latch is kept in `path` (JSON, replaced atomically at each
    /// change), so that an alarm outlives a restart of the process: a latched alarm
    /// is one nobody has acknowledged, whatever restarted meanwhile.
    pub fn with_latch_file(
        clock: UnixMs,
        path: impl Into<PathBuf>,
    ) -> Result<TamperMonitor, TamperError> {
        let path = path.into();
        let latched = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| TamperError::LatchFile {
                path: path.clone(),
                reason: format!("not a tamper latch file: {e}"),
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Latched::default(),
            Err(e) => {
                return Err(TamperError::LatchFile {
                    path,
                    reason: e.to_string(),
                });
            }
        };
        let m = TamperMonitor::new(clock);
        m.lock().latched = latched;
        Ok(TamperMonitor {
            latch_file: Some(path),
            ..m
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn save(&self, latched: &Latched) -> Result<(), String> {
        let Some(path) = &self.latch_file else {
            return Ok(());
        };
        let write = || -> io::Result<()> {
            let tmp = path.with_extension("tmp");
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&serde_json::to_vec_pretty(latched).map_err(io::Error::other)?)?;
            f.sync_all()?;
            fs::rename(&tmp, path)?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The state read when the input was (re)opened. Open latches the alarm
    /// ([`TamperAlarm::found_open_at_start`]) unless one is latched already; so a case
    /// acknowledged while open and still open at the next start is an alarm again
    /// (nothing proves it stayed open meanwhile): acknowledge once it is closed.
    pub fn start(&self, state: CaseState) -> Option<TamperNotice> {
        let now = (self.clock)();
        let mut g = self.lock();
        g.state = state;
        g.input_error = None;
        if state != CaseState::Open {
            return None;
        }
        if g.latched.alarm.is_none() {
            g.latched.alarm = Some(TamperAlarm {
                opened_at_unix_ms: now,
                openings: 1,
                last_closed_at_unix_ms: None,
                found_open_at_start: true,
            });
            self.save_or_note(&mut g);
        }
        Some(TamperNotice::FoundOpen { at_unix_ms: now })
    }

    /// An edge of the switch.
    pub fn on_event(&self, e: &TamperEvent) -> Option<TamperNotice> {
        let mut g = self.lock();
        g.state = e.state;
        g.input_error = None;
        let notice = match e.state {
            CaseState::Open => {
                match &mut g.latched.alarm {
                    Some(a) => a.openings = a.openings.saturating_add(1),
                    None => {
                        g.latched.alarm = Some(TamperAlarm {
                            opened_at_unix_ms: e.at_unix_ms,
                            openings: 1,
                            last_closed_at_unix_ms: None,
                            found_open_at_start: false,
                        })
                    }
                }
                TamperNotice::Opened {
                    at_unix_ms: e.at_unix_ms,
                }
            }
            CaseState::Closed => {
                if let Some(a) = &mut g.latched.alarm {
                    a.last_closed_at_unix_ms = Some(e.at_unix_ms);
                }
                TamperNotice::Closed {
                    at_unix_ms: e.at_unix_ms,
                }
            }
            CaseState::Unknown => return None,
        };
        self.save_or_note(&mut g);
        Some(notice)
    }

    /// The input failed: the state is unknown (the latch, if any, stays). Returns a
    /// notice for the first failure only, not for each retry of a dead input.
    pub fn on_input_error(&self, reason: &str) -> Option<TamperNotice> {
        let now = (self.clock)();
        let mut g = self.lock();
        g.state = CaseState::Unknown;
        if g.input_error.is_some() {
            return None;
        }
        g.input_error = Some(reason.to_string());
        Some(TamperNotice::InputFailed {
            at_unix_ms: now,
            reason: reason.to_string(),
        })
    }

    /// An IT user acknowledges the latched alarm (the caller has checked the role). The
    /// case may still be open: the next opening latches a new alarm.
    pub fn acknowledge(&self, by: &str) -> Result<Acknowledgement, AckError> {
        if by.trim().is_empty() {
            return Err(AckError::NoName);
        }
        let now = (self.clock)();
        let mut g = self.lock();
        let alarm = g.latched.alarm.clone().ok_or(AckError::NothingLatched)?;
        let ack = Acknowledgement {
            by: by.to_string(),
            at_unix_ms: now,
            alarm,
        };
        let next = Latched {
            alarm: None,
            last_acknowledged: Some(ack.clone()),
        };
        // An acknowledgement that a restart would forget is refused, not pretended.
        self.save(&next).map_err(AckError::NotSaved)?;
        g.latched = next;
        Ok(ack)
    }

    /// Saves the latch; a failure to save is shown as the input's error (the alarm
    /// still holds in memory).
    fn save_or_note(&self, g: &mut Inner) {
        if let Err(e) = self.save(&g.latched) {
            g.input_error = Some(format!("latch not saved: {e}"));
        }
    }

    pub fn status(&self) -> TamperStatus {
        let g = self.lock();
        TamperStatus {
            state: g.state,
            alarm: g.latched.alarm.clone(),
            last_acknowledged: g.latched.last_acknowledged.clone(),
            input_error: g.input_error.clone(),
        }
    }
}

/// Watches `input` until `stop` is set (checked every `poll`) or the input fails:
/// reads its state, then feeds each edge to `monitor`, handing every notice to
/// `on_notice`. On a failure the monitor hears of it (the state becomes unknown) and
/// the error is returned, for the caller to reopen the input later; a closed
/// simulated input ends the watch with `Ok`.
pub fn watch(
    monitor: &TamperMonitor,
    input: &dyn TamperInput,
    poll: Duration,
    stop: &AtomicBool,
    on_notice: &mut dyn FnMut(TamperNotice),
) -> Result<(), TamperError> {
    let failed = |e: TamperError, on_notice: &mut dyn FnMut(TamperNotice)| {
        if matches!(e, TamperError::Closed) {
            return Ok(());
        }
        if let Some(n) = monitor.on_input_error(&format!("{}: {e}", input.describe())) {
            on_notice(n);
        }
        Err(e)
    };
    match input.state() {
        Ok(s) => {
            if let Some(n) = monitor.start(s) {
                on_notice(n);
            }
        }
        Err(e) => return failed(e, on_notice),
    }
    while !stop.load(Ordering::Relaxed) {
        match input.wait_event(poll) {
            Ok(Some(e)) => {
                if let Some(n) = monitor.on_event(&e) {
                    on_notice(n);
                }
            }
            Ok(None) => {}
            Err(e) => return failed(e, on_notice),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
