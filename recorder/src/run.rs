//! `recorder run`: recover, then record every camera until SIGINT/SIGTERM, then close
//! every open segment before exiting.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use hardware::watchdog::Notifier;
use retina::client::SessionGroup;
use tokio::sync::watch;
use tracing::{error, info};

use crate::catalog::Catalog;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::ingest::CameraTask;
use crate::metrics::Metrics;
use crate::writer::{CameraWriter, WriterConfig};
use crate::{recovery, store};

pub fn run(config: Config) -> anyhow::Result<()> {
    let keys = store::key_provider(&config);
    let kek = store::load_kek(&config, &keys)?;
    let store_path = config.storage.path.clone();
    let _lock = store::lock(&store_path)?;
    let cat = Catalog::open(&store_path)?;
    let recovered = recovery::recover_store(&store_path, &cat, &kek)
        .map_err(|e| anyhow::anyhow!("recovery failed: {e}"))?;
    if recovered != recovery::RecoveryReport::default() {
        info!(
            repaired = recovered.repaired,
            removed = recovered.removed_open,
            orphans = recovered.orphans_removed,
            "store recovered after an unclean stop"
        );
    }
    let metrics = Arc::new(Metrics::new());
    metrics.store_bytes.set(cat.total_bytes()? as i64);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    for c in &config.cameras {
        cat.upsert_camera(&c.id, c.display_name())?;
    }
    let cat = Arc::new(Mutex::new(cat));
    // The viewer-api's only way into the store (dropped, and its socket removed, when
    // recording stops). Recording never depends on it: if it cannot start, the
    // cameras are recorded anyway and the error says why footage cannot be viewed.
    let storage = Arc::new(crate::devices::StorageWatch::start(
        &config,
        Some(metrics.clone()),
    ));
    // A latch or journal that cannot be read stops the start: an alarm must not be
    // forgotten because a file was damaged.
    let tamper = crate::devices::TamperWatch::start(&config, Some(metrics.clone()))
        .map_err(|e| anyhow::anyhow!("tamper input: {e}"))?
        .map(Arc::new);
    let _service = match crate::service::Service::from_config(&config, clock.clone()).and_then(
        |s| {
            let s = s
                .with_metrics(metrics.clone())
                .with_storage(storage.clone());
            match &tamper {
                Some(t) => s.with_tamper(t.clone()),
                None => s,
            }
            .listen(&config.service_socket())
        },
    ) {
        Ok(s) => Some(s),
        Err(e) => {
            error!(error = %format!("{e:#}"), "the recorder service did not start: recording goes on, footage cannot be viewed");
            None
        }
    };
    let retention = crate::retention::RetentionService::new(crate::retention::Retention::new(
        &store_path,
        crate::retention::Policy::from_config(&config),
        clock.clone(),
        Arc::new(crate::retention::MonotonicClock::default()),
        Some(metrics.clone()),
    )?);
    let retention_thread = {
        let r = retention.clone();
        std::thread::Builder::new()
            .name("retention".into())
            .spawn(move || r.run())
            .context("cannot start the retention thread")?
    };

    let mut rt = tokio::runtime::Builder::new_current_thread();
    rt.enable_all().thread_name("recorder-rt");
    // The cameras are read in rounds (see `ingest::rounds`).
    if let Some(round) = crate::ingest::rounds::round_for(&config.cameras) {
        crate::ingest::rounds::Rounds::pace(&mut rt, round);
    }
    let rt = rt.build().context("cannot start the async runtime")?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let session_group = Arc::new(SessionGroup::default());
    // What must show life for the watchdog to be pinged: every writer thread (and
    // the runtime, which runs the pinger).
    let heartbeats = hardware::watchdog::Heartbeats::new(hardware::watchdog::mono_ms());
    let mut writers = Vec::new();
    let mut tasks = Vec::new();
    // Camera states go to the catalog from their own thread (never from the runtime's).
    let states = crate::camera_state::StateRecorder::start(&store_path)
        .context("cannot start the camera-state thread")?;
    let state = states.state_fn(metrics.clone(), clock.clone());

    // One sync of the store's file system for every camera (see `store_sync`).
    let store_sync = crate::store_sync::StoreSync::start(
        Duration::from_millis(config.storage.sync_interval_ms),
        metrics.clone(),
        Some(heartbeats.register("store-sync")),
    )
    .context("cannot start the store's sync thread")?;
    // The writer threads: one per core, at most one per camera; camera i is written by
    // thread i mod n (see `writer`).
    let writer_threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, config.cameras.len().max(1));
    let mut groups: Vec<Vec<CameraWriter>> = (0..writer_threads).map(|_| Vec::new()).collect();
    for (i, cam) in config.cameras.iter().enumerate() {
        let startup_gap = {
            let c = cat.lock().expect("catalog mutex");
            let last = c.last_recorded_unix_ms(&cam.id)?;
            let last_gap = c.last_gap_end_unix_ms(&cam.id)?;
            last.map(|l| {
                let from = l.max(last_gap.unwrap_or(i64::MIN));
                let why = if recovered.cameras_recovered.contains(&cam.id) {
                    "recorder stopped unexpectedly (crash or power loss)"
                } else {
                    "recorder not running"
                };
                (from, why.to_string())
            })
        };
        let writer = CameraWriter::new(
            WriterConfig {
                store: store_path.clone(),
                camera: cam.id.clone(),
                segment_secs: config.storage.segment_secs,
            },
            kek.clone(),
            metrics.clone(),
            startup_gap,
            store_sync
                .register(&store_path, &cam.id)
                .with_context(|| format!("cannot open the folder of camera {}", cam.id))?,
        )?
        .with_space_hooks(retention.clone());
        groups[i % writer_threads].push(writer);
    }
    let mut senders: Vec<std::vec::IntoIter<crate::writer::WriterTx>> = Vec::new();
    for (n, group) in groups.into_iter().enumerate() {
        let (tx, rx) = crate::writer::queue(group.len(), crate::writer::QUEUE_PER_CAMERA);
        senders.push(tx.into_iter());
        let beat = heartbeats.register(&format!("writer-{n}"));
        writers.push(
            std::thread::Builder::new()
                .name(format!("writer-{n}"))
                .spawn(move || crate::writer::run_shared(group, rx, Some(beat)))
                .context("cannot start a writer thread")?,
        );
    }
    for (i, cam) in config.cameras.iter().enumerate() {
        let task = CameraTask {
            camera: cam.clone(),
            tx: senders[i % writer_threads]
                .next()
                .expect("a sender for every camera of the thread"),
            metrics: metrics.clone(),
            clock: clock.clone(),
            session_group: session_group.clone(),
            state: state.clone(),
        };
        tasks.push(rt.spawn(task.run(shutdown_rx.clone())));
    }

    rt.block_on(async {
        let metrics_task = config.metrics.as_ref().map(|m| {
            let addr = m.addr;
            let metrics = metrics.clone();
            tokio::spawn(async move {
                if let Err(e) = crate::metrics::serve(addr, metrics).await {
                    error!(%addr, error = %e, "metrics endpoint failed");
                }
            })
        });
        info!(
            cameras = config.cameras.len(),
            store = %store_path.display(),
            "recording"
        );
        let runtime_beat = watch(
            heartbeats,
            &format!("recording {} cameras", config.cameras.len()),
        );
        wait_for_signal().await;
        runtime_beat.abort();
        let _ = hardware::watchdog::Systemd.notify(&hardware::watchdog::Notice::Stopping);
        info!("stopping: closing open segments");
        let _ = shutdown_tx.send(true);
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), session_group.await_teardown()).await;
        if let Some(t) = metrics_task {
            t.abort();
        }
    });
    for w in writers {
        if w.join().is_err() {
            error!("a writer thread panicked");
        }
    }
    // What a writer wrote after its last sync and did not close is synced now.
    store_sync.stop();
    // The last states (offline at shutdown) are written before the recorder stops.
    drop(states);
    retention.stop();
    if retention_thread.join().is_err() {
        error!("the retention thread panicked");
    }
    rt.shutdown_timeout(Duration::from_secs(1));
    for cam in &config.cameras {
        let l = Metrics::cam(&cam.id);
        info!(
            camera = %cam.id,
            frames_received = metrics.frames.get_or_create(&l).get(),
            frames_stored = metrics.frames_stored.get_or_create(&l).get(),
            frames_dropped = metrics.frames_dropped.get_or_create(&l).get(),
            bytes_received = metrics.bytes_received.get_or_create(&l).get(),
            bytes_written = metrics.bytes_written.get_or_create(&l).get(),
            reconnects = metrics.reconnects.get_or_create(&l).get(),
            "camera summary"
        );
    }
    info!("stopped");
    Ok(())
}

/// Tells systemd the service is ready and, under its watchdog, pings it while every
/// part of `parts` and this runtime show life (the returned task beats for the runtime
/// every second; abort it when stopping). Used by `recorder run`, `recorder serve` and
/// `viewer-api serve`.
pub fn watch(parts: hardware::watchdog::Heartbeats, status: &str) -> tokio::task::JoinHandle<()> {
    // If the runtime hangs, everything it runs does.
    let runtime = parts.register("runtime");
    if let Err(e) = hardware::watchdog::start_systemd(&parts, status, |stalled| {
        error!(?stalled, "not answering the watchdog: these parts hang")
    }) {
        error!(error = %e, "cannot start the watchdog thread");
    }
    tokio::spawn(async move {
        loop {
            runtime.beat();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
