use super::*;
use std::sync::atomic::AtomicI64;

const T0: i64 = 1_796_360_000_000;

fn manual() -> (Arc<AtomicI64>, UnixMs) {
    let t = Arc::new(AtomicI64::new(T0));
    let c = t.clone();
    (t, Arc::new(move || c.load(Ordering::SeqCst)))
}

/// Runs `watch` over what the switch has queued (the switch is dropped first, so
/// the watch ends when the queue is empty: no timing involved).
fn drain(monitor: &TamperMonitor, input: &SimulatedInput) -> Vec<TamperNotice> {
    let mut got = Vec::new();
    let stop = AtomicBool::new(false);
    let r = watch(monitor, input, Duration::from_secs(5), &stop, &mut |n| {
        got.push(n)
    });
    assert!(r.is_ok(), "{r:?}");
    got
}

#[test]
fn an_opening_latches_until_acknowledged() {
    let (t, clock) = manual();
    let monitor = TamperMonitor::new(clock);
    let (switch, input) = simulated(CaseState::Closed);
    switch.open(T0 + 1_000);
    switch.close(T0 + 61_000);
    switch.open(T0 + 120_000);
    switch.close(T0 + 121_000);
    drop(switch);
    let notices = drain(&monitor, &input);
    assert_eq!(
        notices,
        vec![
            TamperNotice::Opened {
                at_unix_ms: T0 + 1_000
            },
            TamperNotice::Closed {
                at_unix_ms: T0 + 61_000
            },
            TamperNotice::Opened {
                at_unix_ms: T0 + 120_000
            },
            TamperNotice::Closed {
                at_unix_ms: T0 + 121_000
            },
        ]
    );
    let s = monitor.status();
    assert_eq!(s.state, CaseState::Closed);
    // Closed again, but still latched: "the case was opened at T".
    let alarm = TamperAlarm {
        opened_at_unix_ms: T0 + 1_000,
        openings: 2,
        last_closed_at_unix_ms: Some(T0 + 121_000),
        found_open_at_start: false,
    };
    assert_eq!(s.alarm, Some(alarm.clone()));

    t.store(T0 + 3_600_000, Ordering::SeqCst);
    assert_eq!(monitor.acknowledge("  "), Err(AckError::NoName));
    let ack = monitor.acknowledge("it-admin").unwrap();
    assert_eq!(
        ack,
        Acknowledgement {
            by: "it-admin".into(),
            at_unix_ms: T0 + 3_600_000,
            alarm,
        }
    );
    let s = monitor.status();
    assert_eq!(s.alarm, None);
    assert_eq!(s.last_acknowledged, Some(ack));
    assert_eq!(
        monitor.acknowledge("it-admin"),
        Err(AckError::NothingLatched)
    );
}

#[test]
fn found_open_at_start_latches_at_the_monitors_time() {
    let (_t, clock) = manual();
    let monitor = TamperMonitor::new(clock);
    let (switch, input) = simulated(CaseState::Open);
    drop(switch);
    assert_eq!(
        drain(&monitor, &input),
        vec![TamperNotice::FoundOpen { at_unix_ms: T0 }]
    );
    let a = monitor.status().alarm.unwrap();
    assert!(a.found_open_at_start);
    assert_eq!(a.opened_at_unix_ms, T0);
    assert_eq!(monitor.status().state, CaseState::Open);
}

/// Feeds the queued edges to the monitor, without reading the state first.
fn pump(monitor: &TamperMonitor, input: &SimulatedInput) -> Vec<TamperNotice> {
    let mut got = Vec::new();
    while let Ok(Some(e)) = input.wait_event(Duration::ZERO) {
        got.extend(monitor.on_event(&e));
    }
    got
}

#[test]
fn acknowledged_while_open_then_a_new_opening_latches_again() {
    let (t, clock) = manual();
    let monitor = TamperMonitor::new(clock);
    let (switch, input) = simulated(CaseState::Closed);
    assert_eq!(monitor.start(input.state().unwrap()), None);
    switch.open(T0 + 10);
    assert_eq!(pump(&monitor, &input).len(), 1);
    // A technician is inside; IT acknowledges while the case is open.
    t.store(T0 + 20, Ordering::SeqCst);
    monitor.acknowledge("it-admin").unwrap();
    assert_eq!(monitor.status().state, CaseState::Open);
    assert_eq!(monitor.status().alarm, None);
    switch.close(T0 + 30);
    switch.open(T0 + 40);
    assert_eq!(pump(&monitor, &input).len(), 2);
    let a = monitor.status().alarm.unwrap();
    assert_eq!((a.opened_at_unix_ms, a.openings), (T0 + 40, 1));
    assert_eq!(a.last_closed_at_unix_ms, None);
}

#[test]
fn a_failed_input_is_unknown_and_said_once() {
    let (t, clock) = manual();
    let monitor = TamperMonitor::new(clock);
    let (switch, input) = simulated(CaseState::Closed);
    switch.open(T0 + 5);
    switch.fail("chip removed");
    let mut got = Vec::new();
    let stop = AtomicBool::new(false);
    t.store(T0 + 9, Ordering::SeqCst);
    let r = watch(&monitor, &input, Duration::from_secs(5), &stop, &mut |n| {
        got.push(n)
    });
    assert!(matches!(r, Err(TamperError::Simulated(_))));
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[1],
        TamperNotice::InputFailed {
            at_unix_ms: T0 + 9,
            reason: "simulated case switch: simulated tamper input failed: chip removed".into()
        }
    );
    let s = monitor.status();
    assert_eq!(s.state, CaseState::Unknown);
    assert!(s.input_error.unwrap().contains("chip removed"));
    // The latch outlives the failure; a retry's failure is not a new notice.
    assert!(s.alarm.is_some());
    assert_eq!(monitor.on_input_error("chip removed"), None);
    // Back: the state is read again.
    assert_eq!(monitor.start(CaseState::Closed), None);
    assert_eq!(monitor.status().input_error, None);
}

#[test]
fn watch_stops_when_asked() {
    let (_t, clock) = manual();
    let monitor = TamperMonitor::new(clock);
    let (_switch, input) = simulated(CaseState::Closed);
    let stop = AtomicBool::new(true);
    // Stop already set: state read, no wait at all.
    watch(
        &monitor,
        &input,
        Duration::from_secs(60),
        &stop,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(monitor.status().state, CaseState::Closed);
}

#[test]
fn the_latch_outlives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tamper.json");
    let (t, clock) = manual();
    let m = TamperMonitor::with_latch_file(clock.clone(), &path).unwrap();
    m.on_event(&TamperEvent {
        state: CaseState::Open,
        at_unix_ms: T0 + 1,
    });
    m.on_event(&TamperEvent {
        state: CaseState::Closed,
        at_unix_ms: T0 + 2,
    });
    drop(m);
    // Restarted (the watchdog, a power cut): still latched.
    let m = TamperMonitor::with_latch_file(clock.clone(), &path).unwrap();
    let a = m.status().alarm.unwrap();
    assert_eq!(a.opened_at_unix_ms, T0 + 1);
    assert_eq!(m.status().state, CaseState::Unknown);
    t.store(T0 + 100, Ordering::SeqCst);
    m.acknowledge("it-admin").unwrap();
    drop(m);
    let m = TamperMonitor::with_latch_file(clock.clone(), &path).unwrap();
    assert_eq!(m.status().alarm, None);
    assert_eq!(m.status().last_acknowledged.unwrap().by, "it-admin");

    fs::write(&path, "garbage").unwrap();
    let e = TamperMonitor::with_latch_file(clock.clone(), &path)
        .err()
        .unwrap();
    assert!(e.to_string().contains("not a tamper latch file"), "{e}");

    // An acknowledgement that cannot be saved is refused; the alarm stays.
    let gone = dir.path().join("gone/tamper.json");
    let m = TamperMonitor::with_latch_file(clock, &gone).unwrap();
    m.start(CaseState::Open);
    assert!(m.status().input_error.unwrap().contains("latch not saved"));
    assert!(matches!(
        m.acknowledge("it-admin"),
        Err(AckError::NotSaved(_))
    ));
    assert!(m.status().alarm.is_some());
}

#[test]
fn status_serialises_for_the_health_endpoint() {
    let (_t, clock) = manual();
    let m = TamperMonitor::new(clock);
    m.on_event(&TamperEvent {
        state: CaseState::Open,
        at_unix_ms: T0,
    });
    let j = serde_json::to_value(m.status()).unwrap();
    assert_eq!(j["state"], "open");
    assert_eq!(j["alarm"]["opened_at_unix_ms"], T0);
    let n = serde_json::to_value(TamperNotice::Opened { at_unix_ms: T0 }).unwrap();
    assert_eq!(n, serde_json::json!({"event": "opened", "at_unix_ms": T0}));
}

// The Linux backend, as far as a machine without GPIO can take it.

#[test]
fn a_missing_chip_is_a_clear_error() {
    let e =
        GpioSwitch::open(&GpioSwitchConfig::new("/dev/gpiochip-ringfence-none", 3)).unwrap_err();
    assert!(matches!(e, TamperError::ChipMissing { .. }), "{e:?}");
    assert!(e.to_string().contains("ls /dev/gpiochip*"), "{e}");
}

#[test]
fn a_file_that_is_not_a_chip_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gpiochip0");
    fs::write(&file, "").unwrap();
    let e = GpioSwitch::open(&GpioSwitchConfig::new(&file, 0)).unwrap_err();
    assert!(matches!(e, TamperError::NotAChip { .. }), "{e:?}");
    assert!(e.to_string().contains("is not a character device"), "{e}");
    // A character device, but not a GPIO chip.
    let e = GpioSwitch::open(&GpioSwitchConfig::new("/dev/null", 0)).unwrap_err();
    assert!(matches!(e, TamperError::NotAChip { .. }), "{e:?}");
    assert!(e.to_string().contains("not a GPIO character device"), "{e}");
}

#[test]
fn config_from_toml_like_json() {
    let c: GpioSwitchConfig = serde_json::from_value(serde_json::json!({
        "chip": "/dev/gpiochip0", "line_offset": 17, "active_low": true, "bias": "pull_up"
    }))
    .unwrap();
    assert_eq!(
        c,
        GpioSwitchConfig {
            active_low: true,
            bias: Some(LineBias::PullUp),
            ..GpioSwitchConfig::new("/dev/gpiochip0", 17)
        }
    );
    assert_eq!(c.debounce_ms, 20);
    let e = serde_json::from_value::<GpioSwitchConfig>(serde_json::json!({
        "chip": "/dev/gpiochip0", "line": 17
    }))
    .unwrap_err();
    assert!(e.to_string().contains("unknown field `line`"), "{e}");
}

#[test]
fn line_values_and_edges_are_case_states() {
    use gpiocdev::line::{EdgeEvent, EdgeKind, Value};
    assert_eq!(state_of(Value::Active), CaseState::Open);
    assert_eq!(state_of(Value::Inactive), CaseState::Closed);
    let e = |kind| EdgeEvent {
        timestamp_ns: 1_796_360_000_123_456_789,
        kind,
        offset: 17,
        seqno: 1,
        line_seqno: 1,
    };
    assert_eq!(
        event_of(&e(EdgeKind::Rising)),
        TamperEvent {
            state: CaseState::Open,
            at_unix_ms: 1_796_360_000_123
        }
    );
    assert_eq!(event_of(&e(EdgeKind::Falling)).state, CaseState::Closed);
}
