//! The review console in a real browser: headless Chromium (through chromedriver) on
//! the real site: the test camera (H.264 mount → camera `gate`, H.265 mount → camera
//! `hall`) → `recorder run` → `viewer-api serve`, everything on 127.0.0.1.
//!
//! One site and one browser serve the scenarios, in the order a day would bring them:
//! an officer follows a deep link while signed out, signs in with the keyboard only,
//! gives a case and watches `gate` (H.264) from the requested moment, then `hall`
//! (H.265, through the server's H.264 preview) recorded and live (the H.264 live
//! preview), then exports a range through the form and downloads a bundle that
//! `verify-export` accepts; a contractor with a grant (made
//! by `it` through the API) sees only the granted camera and is refused outside the
//! grant's playback window; the auditor finds the officer's views and the export in the
//! access log and in subject-access reports; the sign-in page speaks French.
//!
//! A PNG of each page goes to `target/ui-screenshots/` (and one of the page at any
//! failure, named `fail-…`).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use fantoccini::elements::Element;
use ringfence_tests::browser::{Browser, ENTER, Kind};
use ringfence_tests::procs::{Api, Site, add_user, now_ms, run_bin};
use serde_json::{Value, json};
use viewer_api::clock::rfc3339;

const FPS: u32 = 25;
const PW: &str = "console-ui-pw-1";
/// The site's time zone: far from UTC (the browser's) and from the default, without
/// daylight saving, so that the expected local times are simple to compute.
const ZONE: &str = "Asia/Tokyo";
const ZONE_OFFSET_MS: i64 = 9 * 3600 * 1000;
const CASE: &str = "CASE-UI-17";

/// `hh:mm:ss` of `ms` in the site's zone.
fn site_hms(ms: i64) -> String {
    let s = (ms + ZONE_OFFSET_MS).div_euclid(1000).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// `YYYY-MM-DDThh:mm:ss` of `ms` in the site's zone (a `datetime-local` value).
fn site_local(ms: i64) -> String {
    let utc = rfc3339(ms + ZONE_OFFSET_MS);
    utc[..19].to_string()
}

struct Ctx {
    site: Site,
    api: Api,
    b: Browser,
    /// When the recorder started (unix ms).
    t0: i64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_console_in_chromium() -> Result<()> {
    let started = Instant::now();
    let site = Site::new(FPS, &format!("time_zone = \"{ZONE}\"\nexport_ttl = \"1d\""));
    site.init();
    let t0 = now_ms();
    let _recorder = site.spawn("recorder", "run");
    for (name, role, cams) in [
        ("pia", "police", Some("gate,hall")),
        ("ivan", "it", None),
        ("aude", "auditor", None),
        ("cora", "contractor", None),
    ] {
        add_user(&site.config, name, role, cams, PW);
    }
    let _server = site.spawn("viewer-api", "serve");
    let api = Api::new(site.port);
    api.wait_up(Duration::from_secs(20)).await;
    let b = Browser::start(&api.base).await?;
    let ctx = Ctx { site, api, b, t0 };

    let result = scenarios(&ctx).await;
    if result.is_err() {
        for log in ["viewer-api.log", "recorder.log"] {
            let text = std::fs::read_to_string(ctx.site.dir.path().join(log)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            eprintln!("--- {log} (last lines) ---");
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
    let Ctx { b, .. } = ctx;
    b.close().await;
    result?;
    eprintln!("console_ui: {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

async fn scenarios(c: &Ctx) -> Result<()> {
    let step = |name: &str| eprintln!("[{:>5.1} s] {name}", (now_ms() - c.t0) as f64 / 1000.0);
    step("french sign-in");
    french_sign_in(c).await.context("French sign-in")?;
    step("deep link, keyboard sign-in, H.264 playback");
    let views = police_deep_link_h264(c)
        .await
        .context("police: deep link to gate (H.264)")?;
    step("H.265 preview");
    police_h265_preview(c)
        .await
        .context("police: hall (H.265 preview)")?;
    step("export");
    let export = police_export(c)
        .await
        .context("police: export through the form")?;
    sign_out(&c.b).await?;
    step("contractor");
    contractor(c).await.context("contractor")?;
    sign_out(&c.b).await?;
    step("auditor");
    auditor(c, views, export).await.context("auditor")?;
    step("done");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// helpers

/// Signs in with the mouse: the fields and the "Sign in" button.
async fn sign_in(b: &Browser, user: &str, password: &str) -> Result<()> {
    b.fill("Username", user).await?;
    b.fill("Password", password).await?;
    b.click_button("Sign in").await?;
    b.button("Sign out")
        .await
        .with_context(|| format!("{user} is not signed in after \"Sign in\""))?;
    Ok(())
}

async fn sign_out(b: &Browser) -> Result<()> {
    b.click_button("Sign out").await?;
    b.button("Sign in")
        .await
        .context("no sign-in after \"Sign out\"")?;
    Ok(())
}

/// The page's path and query.
async fn location(b: &Browser) -> Result<String> {
    Ok(b.js("return location.pathname + location.search", vec![])
        .await?
        .as_str()
        .unwrap_or_default()
        .to_string())
}

/// State of the page's (first) `<video>` and its footage clock.
const VIDEO_STATE: &str = r#"
const v = document.querySelector('main video');
const c = document.querySelector('[data-testid=wallclock]');
if (!v) return null;
return {
  ct: v.currentTime, paused: v.paused, ready: v.readyState, seeking: v.seeking,
  src: v.currentSrc || '', error: v.error ? v.error.code : null,
  wall: c && c.dataset.unixMs ? Number(c.dataset.unixMs) : null,
  text: c ? c.textContent : null,
};"#;

/// Waits for the first frame of the video (decoded, not seeking, clock set); returns
/// the state then.
async fn first_frame(b: &Browser) -> Result<Value> {
    b.wait_js(
        "the video's first frame and its footage time",
        &format!(
            "const s = (() => {{ {VIDEO_STATE} }})(); \
             return s && s.ready >= 2 && !s.seeking && s.wall !== null ? s : null;"
        ),
        vec![],
    )
    .await
}

/// Waits until the video plays on past `ct0` by at least `secs`; returns the state then.
async fn plays_past(b: &Browser, ct0: f64, secs: f64) -> Result<Value> {
    b.wait_js(
        &format!("the video to play on {secs} s past currentTime {ct0:.3}"),
        &format!(
            "const s = (() => {{ {VIDEO_STATE} }})(); \
             return s && !s.paused && s.ct >= arguments[0] + arguments[1] && s.wall !== null ? s : null;"
        ),
        vec![json!(ct0), json!(secs)],
    )
    .await
}

/// Checks that the footage clock says the requested moment and then follows the video.
async fn check_playback(b: &Browser, cam: &str, at: i64) -> Result<()> {
    let first = first_frame(b).await?;
    let wall = first["wall"].as_i64().context("data-unix-ms")?;
    let ct0 = first["ct"].as_f64().unwrap_or(0.0);
    ensure!(
        (wall - at).abs() <= 1000,
        "{cam}: the first frame shown is labelled {} (data-unix-ms {wall}), {} ms from the \
         requested {} ({first})",
        rfc3339(wall),
        wall - at,
        rfc3339(at)
    );
    let text = first["text"].as_str().unwrap_or_default();
    ensure!(
        text.contains(&site_hms(wall)) || text.contains(&site_hms(wall - 1)),
        "{cam}: the footage clock reads {text:?}, not {} (data-unix-ms {wall} in {ZONE})",
        site_hms(wall)
    );
    let later = plays_past(b, ct0, 1.0).await?;
    let dct = later["ct"].as_f64().unwrap_or(0.0) - ct0;
    let dwall = later["wall"].as_i64().unwrap_or(0) - wall;
    ensure!(
        (dwall as f64 - dct * 1000.0).abs() <= 300.0,
        "{cam}: while the video played {dct:.3} s the footage clock moved {dwall} ms ({first} → {later})"
    );
    Ok(())
}

/// Sets a time field (a `datetime-local` in the site's zone, or text taking RFC 3339).
async fn set_time(b: &Browser, el: &Element, ms: i64) -> Result<()> {
    let local = site_local(ms);
    let utc = rfc3339(ms);
    b.js(
        "const [el, local, utc] = arguments;
         el.focus();
         el.value = el.type === 'datetime-local' ? local : utc;
         el.dispatchEvent(new Event('input', {bubbles: true}));
         el.dispatchEvent(new Event('change', {bubbles: true}));
         return el.value;",
        vec![Browser::arg(el), json!(local), json!(utc)],
    )
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// scenarios

/// The language switch: French strings on the sign-in page, then back to English.
async fn french_sign_in(c: &Ctx) -> Result<()> {
    let b = &c.b;
    b.goto("/").await?;
    b.button("Sign in").await?;
    let lang = b.field("Language").await?;
    let options = b
        .js(
            "return [...arguments[0].options].map((o) => [o.value, o.textContent.trim()]);",
            vec![Browser::arg(&lang)],
        )
        .await?;
    ensure!(
        options == json!([["en", "English"], ["fr", "Français"]]),
        "language options: {options}"
    );
    lang.select_by_value("fr").await?;
    b.button("Se connecter")
        .await
        .context("French sign-in button")?;
    b.field("Nom d'utilisateur").await?;
    b.field("Mot de passe").await?;
    let html_lang = b.js("return document.documentElement.lang", vec![]).await?;
    ensure!(html_lang == "fr", "<html lang> is {html_lang}");
    b.screenshot("sign-in-fr").await?;
    b.field("Language").await?.select_by_value("en").await?;
    b.button("Sign in").await?;
    Ok(())
}

/// A signed-out officer follows a deep link to `gate` at a moment a few seconds ago,
/// signs in with the keyboard only, lands on the deep link, gives a case and watches.
/// Returns the moments viewed (gate, hall are filled in later).
async fn police_deep_link_h264(c: &Ctx) -> Result<i64> {
    let b = &c.b;
    // Let a few seconds be recorded (segments of 2 s are closed behind).
    while now_ms() < c.t0 + 10_000 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let at = now_ms() - 6_000;
    let link = format!("/cameras/gate?at={}", rfc3339(at));
    b.goto(&link).await?;
    b.button("Sign in")
        .await
        .context("a signed-out deep link shows sign-in")?;
    b.screenshot("sign-in").await?;

    // Keyboard only: Tab to each field, type, Enter.
    b.tab_to("Username").await?;
    b.press("pia").await?;
    let tabs = b.tab_to("Password").await?;
    ensure!(tabs >= 1, "the password field had the focus before any Tab");
    b.press(PW).await?;
    b.press(&ENTER.to_string()).await?;

    // Signed in, back on the deep link, asked why.
    let case = b
        .field("Case reference")
        .await
        .context("the viewing prompt after sign-in")?;
    let here = location(b).await?;
    ensure!(
        here.starts_with("/cameras/gate"),
        "after sign-in the page is {here}, not the deep link {link}"
    );
    case.send_keys(CASE).await?;
    b.click_button("View").await?;
    check_playback(b, "gate", at).await?;
    b.screenshot("playback-h264").await?;
    let badge_visible = b
        .js(
            "const e = document.querySelector('[data-testid=preview-badge]'); \
             return !!e && e.getClientRects().length > 0 && !e.hidden;",
            vec![],
        )
        .await?;
    ensure!(badge_visible == false, "gate (H.264) is shown as a preview");

    // The cameras page lists both of the officer's cameras.
    b.goto("/").await?;
    b.link("Gate").await?;
    b.link("Hall").await?;
    b.screenshot("cameras").await?;
    Ok(at)
}

/// `hall` is H.265, which Debian's Chromium cannot decode: the console plays the server's
/// H.264 preview, says so, and the footage clock still tells the footage's time.
async fn police_h265_preview(c: &Ctx) -> Result<()> {
    let b = &c.b;
    let at = now_ms() - 6_000;
    b.goto(&format!("/cameras/hall?at={}", rfc3339(at))).await?;
    b.fill("Case reference", CASE).await?;
    b.click_button("View").await?;
    b.wait_css("[data-testid=preview-badge]")
        .await
        .context("the preview badge of an H.265 camera")?;
    check_playback(b, "hall", at).await?;
    b.screenshot("playback-h265-preview").await?;

    // Live: the server's H.264 live preview, labelled, with its latency, and playing.
    b.click_button("Live").await?;
    let live = b
        .wait_js_for(
            "hall's live preview playing, with its latency",
            Duration::from_secs(30),
            "const p = document.querySelector('figure.player[data-camera=hall]'); \
             const badge = p.querySelector('[data-testid=preview-badge]'); \
             const v = p.querySelector('video'); \
             const clock = p.querySelector('[data-testid=wallclock]').textContent; \
             const m = /([0-9.]+) s behind/.exec(clock); \
             if (badge.hidden || !m || v.currentTime < 1 || v.paused) return null; \
             return {latency: parseFloat(m[1]), ct: v.currentTime, msg: p.querySelector('.player-msg').textContent};",
            vec![],
        )
        .await?;
    eprintln!("hall live (H.264 preview of H.265): {live}");
    let latency = live["latency"].as_f64().unwrap_or(f64::MAX);
    ensure!(
        latency < 5.0,
        "the live preview is {latency} s behind: {live}"
    );
    ensure!(
        live["msg"].as_str().unwrap_or_default().is_empty(),
        "the live preview shows a message: {live}"
    );
    b.screenshot("live-h265-preview").await?;
    b.click_button("Live").await?;
    Ok(())
}

/// The export form, prefilled from its address; progress; "Download"; verify-export.
/// Returns the export's range.
async fn police_export(c: &Ctx) -> Result<(i64, i64)> {
    let b = &c.b;
    let (from, to) = (c.t0 + 3_000, now_ms() - 2_500);
    // whole seconds: the form's fields show seconds
    let (from, to) = (from / 1000 * 1000, to / 1000 * 1000);
    b.goto(&format!(
        "/exports?cameras=gate&from={}&to={}",
        rfc3339(from),
        rfc3339(to)
    ))
    .await?;
    // Prefilled: the camera ticked, the range in the site's zone.
    let gate = b.named_in(Kind::Field, "Gate", None).await?;
    ensure!(gate.is_selected().await?, "the Gate box is not ticked");
    let hall = b.named_in(Kind::Field, "Hall", None).await?;
    ensure!(!hall.is_selected().await?, "the Hall box is ticked");
    for (name, ms) in [("From", from), ("To", to)] {
        let v = b
            .field(name)
            .await?
            .prop("value")
            .await?
            .unwrap_or_default();
        ensure!(
            v.starts_with(&site_local(ms)[..16]),
            "{name} is prefilled with {v:?}, not {} ({} in {ZONE})",
            site_local(ms),
            rfc3339(ms)
        );
    }
    b.fill("Case reference", CASE).await?;
    b.fill("Reason", "incident at the gate").await?;
    b.click_button("Export").await?;
    b.wait_css("progress").await.context("export progress")?;
    // The job's panel and the list of exports may both offer it: the same file.
    let links = b
        .wait_js(
            "the finished export's Download link",
            "const out = []; \
             for (const a of document.querySelectorAll('main a[href]')) \
               if (a.textContent.trim() === 'Download' && a.getClientRects().length) out.push(a); \
             return out.length ? out : null;",
            vec![],
        )
        .await?;
    let mut hrefs = Vec::new();
    for v in links.as_array().cloned().unwrap_or_default() {
        let el = b.element(&v).context("not an element")?;
        ensure!(
            b.label(&el).await? == "Download",
            "accessible name of the link"
        );
        hrefs.push(el.attr("href").await?.unwrap_or_default());
    }
    hrefs.dedup();
    ensure!(
        hrefs.len() == 1,
        "Download links to several files: {hrefs:?}"
    );
    let download = b.find_named(Kind::Link, "Download", None).await?.remove(0);
    let progress = b
        .js(
            "const p = document.querySelector('progress'); return p ? [p.value, p.max] : null;",
            vec![],
        )
        .await?;
    ensure!(
        progress[0] == progress[1],
        "progress at the end: {progress}"
    );
    b.screenshot("exports").await?;
    let href = download.attr("href").await?.unwrap_or_default();
    ensure!(href.contains("/exports/"), "Download links to {href}");
    download.click().await?;
    let zip = b.wait_download(Duration::from_secs(30)).await?;
    let bundle = c.site.dir.path().join("console-bundle.zip");
    std::fs::copy(&zip, &bundle)?;
    let (code, out, err) = run_bin(
        "viewer-api",
        &["verify-export", bundle.to_str().unwrap()],
        None,
        None,
    );
    ensure!(
        code == 0,
        "verify-export of the downloaded bundle exited {code}:\n{out}{err}"
    );
    Ok((from, to))
}

/// A grant from `it` (through the API) for `gate` only, playback from `t0 + 8 s` on;
/// the contractor sees `gate` alone, is refused before the window and may watch in it.
async fn contractor(c: &Ctx) -> Result<()> {
    let b = &c.b;
    let ivan = c.api.login("ivan", PW).await;
    let now = now_ms();
    let window_from = c.t0 + 8_000;
    let r = c
        .api
        .post(
            &ivan,
            "/api/v1/grants",
            json!({
                "user": "cora", "cameras": ["gate"],
                "from": rfc3339(now - 60_000), "until": rfc3339(now + 3_600_000),
                "allow": ["playback"],
                "playback_from": rfc3339(window_from), "playback_to": rfc3339(now + 3_600_000),
                "ticket": "TICKET-UI-7",
            }),
        )
        .await;
    ensure!(
        r.status == 201,
        "grant: {} {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );

    sign_in(b, "cora", PW).await?;
    b.link("Gate").await.context("the granted camera")?;
    let listed = b
        .js(
            "return [...new Set([...document.querySelectorAll('main a[href^=\"/cameras/\"]')]
               .map((a) => a.getAttribute('href').split(/[/?]/)[2]))].sort();",
            vec![],
        )
        .await?;
    ensure!(
        listed == json!(["gate"]),
        "the contractor's cameras page links to {listed}"
    );
    ensure!(
        b.find_named(Kind::Link, "Hall", None).await?.is_empty(),
        "the contractor sees a link to Hall"
    );
    b.screenshot("contractor").await?;

    // Before the grant's playback window: refused, visibly, nothing plays.
    let outside = c.t0 + 3_000;
    b.goto(&format!("/cameras/gate?at={}", rfc3339(outside)))
        .await?;
    b.fill("Purpose", "repair of the gate camera").await?;
    b.click_button("View").await?;
    let msg = b
        .wait_js(
            "a visible refusal",
            "for (const e of document.querySelectorAll('main [role=alert], main .error')) \
               if (e.getClientRects().length && !e.hidden && e.textContent.trim()) return e.textContent.trim(); \
             return null;",
            vec![],
        )
        .await?;
    let state = b.js(VIDEO_STATE, vec![]).await?;
    ensure!(
        state.is_null() || state["ready"].as_i64() == Some(0),
        "a refused viewing still plays: {state}"
    );
    b.screenshot("contractor-refused").await?;
    // ... and the message is the policy's refusal, as the access log has it.
    let log = c.api.get(&ivan, "/api/v1/audit?actor=cora").await;
    ensure!(log.status == 200, "audit as it: {}", log.status);
    let denied: Vec<Value> = log
        .json()
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["action"] == "playback" && e["camera"] == "gate")
        .collect();
    ensure!(
        denied.len() == 1
            && denied[0]["outcome"]
                .as_str()
                .is_some_and(|o| o.starts_with("denied")),
        "the contractor's refused viewing in the log: {denied:?} (page said {msg})"
    );

    // Inside the window: plays.
    let inside = now_ms() - 5_000;
    ensure!(inside > window_from + 1_000, "the test ran out of order");
    b.goto(&format!("/cameras/gate?at={}", rfc3339(inside)))
        .await?;
    b.fill("Purpose", "repair of the gate camera").await?;
    b.click_button("View").await?;
    let first = first_frame(b)
        .await
        .context("the contractor's viewing inside the window")?;
    plays_past(b, first["ct"].as_f64().unwrap_or(0.0), 0.5).await?;
    Ok(())
}

/// Counts the rows of log tables with these attributes (`action` may end in `*`: a
/// prefix; `camera` is one of the row's comma-separated cameras). With `fresh`, only
/// rows that were not in the page at the last [`mark_rows`] (a new report's rows).
const COUNT_ROWS: &str = "const [action, actor, camera, fresh] = arguments;
let n = 0;
for (const r of document.querySelectorAll('main tr[data-action]')) {
  if (fresh && r.rfSeen) continue;
  const a = r.dataset.action;
  const okA = action.endsWith('*') ? a.startsWith(action.slice(0, -1)) : a === action;
  const okActor = actor === '*' || r.dataset.actor === actor;
  if (okA && okActor && (r.dataset.camera || '').split(',').includes(camera)) n += 1;
}
return n;";

/// Marks the log rows now in the page (see `fresh` of [`count_rows`]).
async fn mark_rows(b: &Browser) -> Result<()> {
    b.js(
        "for (const r of document.querySelectorAll('main tr[data-action]')) r.rfSeen = true;",
        vec![],
    )
    .await?;
    Ok(())
}

async fn count_rows(
    b: &Browser,
    action: &str,
    actor: &str,
    camera: &str,
    fresh: bool,
) -> Result<u64> {
    let args = vec![json!(action), json!(actor), json!(camera), json!(fresh)];
    Ok(b.js(COUNT_ROWS, args).await?.as_u64().unwrap_or(0))
}

/// Waits until the log tables (only new rows, with `fresh`) have a row like this.
async fn wait_row(b: &Browser, action: &str, actor: &str, camera: &str, fresh: bool) -> Result<()> {
    let args = vec![json!(action), json!(actor), json!(camera), json!(fresh)];
    b.wait_js(
        &format!("a row {action} by {actor} on {camera}"),
        COUNT_ROWS,
        args,
    )
    .await?;
    Ok(())
}

/// The access log's chain status once the check has ended: the line once it matches
/// `verdict` (a regular expression of the language's words for intact and broken,
/// case-insensitive).
async fn chain_status(b: &Browser, verdict: &str) -> Result<String> {
    let text = b
        .wait_js(
            &format!("the access log's chain status ({verdict})"),
            "const e = document.querySelector('[data-testid=chain-status]'); \
             const t = e ? e.textContent.trim() : ''; \
             return new RegExp(arguments[0], 'i').test(t) ? t : null;",
            vec![json!(verdict)],
        )
        .await?;
    Ok(text.as_str().unwrap_or_default().to_string())
}

/// The auditor finds the officer's views and export in the log and in subject-access
/// reports, and the chain verified.
async fn auditor(c: &Ctx, gate_at: i64, export: (i64, i64)) -> Result<()> {
    let b = &c.b;
    sign_in(b, "aude", PW).await?;
    b.goto("/audit").await?;
    for (action, cam) in [
        ("playback", "gate"),
        ("playback", "hall"),
        ("live", "hall"),
        ("export.request", "gate"),
        ("export.download", "gate"),
    ] {
        wait_row(b, action, "pia", cam, false)
            .await
            .context("the access log")?;
    }
    let chain = chain_status(b, "intact|broken").await?;
    ensure!(
        chain.contains("intact") && !chain.to_lowercase().contains("broken"),
        "chain status: {chain:?}"
    );
    b.screenshot("audit").await?;

    // The subject-access form is the one with the "Report" button; its result rows are
    // the rows that were not in the page before it was sent.
    let report_btn = b.button("Report").await?;
    let form = b
        .js(
            "return arguments[0].closest('form')",
            vec![Browser::arg(&report_btn)],
        )
        .await?;
    let form = b
        .element(&form)
        .context("the Report button is not in a form")?;
    let (from, to) = (export.0.min(gate_at) - 10_000, now_ms() + 1_000);
    for (cam, other) in [("gate", "hall"), ("hall", "gate")] {
        let field = b.named_in(Kind::Field, "Camera", Some(&form)).await?;
        field.clear().await?;
        field.send_keys(cam).await?;
        set_time(
            b,
            &b.named_in(Kind::Field, "From", Some(&form)).await?,
            from,
        )
        .await?;
        set_time(b, &b.named_in(Kind::Field, "To", Some(&form)).await?, to).await?;
        mark_rows(b).await?;
        b.named_in(Kind::Button, "Report", Some(&form))
            .await?
            .click()
            .await?;
        wait_row(b, "playback", "pia", cam, true)
            .await
            .with_context(|| format!("the subject-access report of {cam}"))?;
        ensure!(
            count_rows(b, "*", "*", other, true).await? == 0,
            "the subject-access report of {cam} lists footage of {other}"
        );
        if cam == "gate" {
            for (action, actor) in [
                ("export.request", "pia"),
                ("export.download", "pia"),
                ("playback", "cora"),
            ] {
                ensure!(
                    count_rows(b, action, actor, "gate", true).await? >= 1,
                    "the subject-access report of gate lacks {action} by {actor}"
                );
            }
            b.screenshot("subject-access").await?;
        }
    }
    // The health page: every camera's state, the store, the disk under it as the
    // recorder probed it, and no alarm on a healthy box.
    b.goto("/health").await?;
    let seen = b
        .wait_js(
            "the health page with both cameras and the store",
            "const rows = [...document.querySelectorAll('main tr[data-camera]')].map((r) => r.dataset.camera); \
             const h2 = [...document.querySelectorAll('main h2')].map((e) => e.textContent.trim()); \
             return rows.includes('gate') && rows.includes('hall') && h2.includes('Storage') \
               ? { rows, h2 } : null;",
            vec![],
        )
        .await?;
    ensure!(
        seen["h2"][0] == "No alarm",
        "a healthy box shows an alarm: {seen}"
    );
    b.screenshot("health").await?;

    // The same page in French, as a French-speaking IT officer reads it.
    b.js(
        "localStorage.setItem('rf-lang', 'fr'); return null;",
        vec![],
    )
    .await?;
    b.goto("/health").await?;
    let fr = b
        .wait_js(
            "the health page in French",
            "const h2 = [...document.querySelectorAll('main h2')].map((e) => e.textContent.trim()); \
             const rows = document.querySelectorAll('main tr[data-camera]').length; \
             const text = document.querySelector('main').textContent; \
             const sizes = { \
               french: /\\d(,\\d)?\\s(ko|Mo|Go|To)\\b/.test(text), \
               english: /\\d\\s?(kB|KB|MB|GB|TB)\\b/.test(text), \
             }; \
             return document.documentElement.lang === 'fr' && rows >= 2 && h2.length ? {h2, sizes, text} : null;",
            vec![],
        )
        .await?;
    ensure!(
        fr["h2"][0] == "Aucune alarme",
        "the French health page: {fr}"
    );
    // Sizes in French units (octets): "12,5 Mo", never "MB".
    ensure!(
        fr["sizes"]["french"] == true && fr["sizes"]["english"] == false,
        "the French health page's sizes: {fr}"
    );
    b.screenshot("health-fr").await?;
    // ... and the access log, its chain status in French.
    b.goto("/audit").await?;
    let chain = chain_status(b, "intacte|ROMPUE").await?;
    ensure!(
        chain.starts_with("Chaîne intacte : entrées n° 1 à "),
        "the French chain status: {chain:?}"
    );
    // Roles in the entries too (the log stores `auditor`).
    let roles = b
        .js(
            "return [...document.querySelectorAll('main tr[data-actor=aude] small[data-role]')] \
               .map((e) => e.textContent);",
            vec![],
        )
        .await?;
    ensure!(
        roles
            .as_array()
            .is_some_and(|r| !r.is_empty() && r.iter().all(|x| x == "auditeur")),
        "aude's role in the French access log: {roles}"
    );
    // Actions by their French name, with the log's own word beneath.
    let read = b
        .js(
            "const c = document.querySelector('main tr[data-action=\"audit.read\"] td:nth-child(4)'); \
             return c ? c.innerText : null;",
            vec![],
        )
        .await?;
    ensure!(
        read.as_str() == Some("Lecture du journal des accès\naudit.read"),
        "the French name of audit.read: {read}"
    );
    b.screenshot("audit-fr").await?;
    b.js(
        "localStorage.setItem('rf-lang', 'en'); return null;",
        vec![],
    )
    .await?;
    Ok(())
}

#[test]
fn site_times() {
    // 2026-03-01T12:00:00Z is 21:00:00 in Tokyo
    let ms = 1_772_366_400_000;
    assert_eq!(rfc3339(ms), "2026-03-01T12:00:00.000Z");
    assert_eq!(site_hms(ms), "21:00:00");
    assert_eq!(site_local(ms), "2026-03-01T21:00:00");
    // the harness's own formatting (used by the UI benchmark) agrees with Ringfence's
    for t in [0, ms, ms + 999, 951_782_400_123, 4_107_542_399_999, -1] {
        assert_eq!(ringfence_tests::browser::rfc3339_utc(t), rfc3339(t), "{t}");
    }
}
