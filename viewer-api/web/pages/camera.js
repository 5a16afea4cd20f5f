// Playback of up to four cameras side by side, synchronised on the footage's wall-clock
// time, with the timeline below. Choosing a moment asks once for the reason (case or
// purpose), then every look from this page carries it.

import { alertBox, button, field, h } from '../dom.js';
import { fmtDateTime, parseTime, t, utc } from '../i18n.js';
import { Player } from '../player.js';
import { askReason, reasonText } from '../prompt.js';
import { Timeline } from '../timeline.js';

const SPEEDS = [0.25, 0.5, 1, 2, 4, 8];
const MAX_CAMERAS = 4;

export async function render(main, ctx) {
  const { me, route, params, navigate } = ctx;
  const all = await ctx.loadCameras();
  const ids = [route.id, ...(params.get('with') || '').split(',')].filter((x, i, a) => x && a.indexOf(x) === i).slice(0, MAX_CAMERAS);
  const cams = ids.map((id) => all.find((c) => c.id === id)).filter(Boolean);
  if (!cams.length) {
    main.append(h('h1', {}, t('camera.unknown')), h('p', {}, h('a', { href: '/', 'data-nav': '' }, t('nav.cameras'))));
    return null;
  }
  const at = parseTime(params.get('at'));
  let reason = null;
  let timer = null;
  const alert = alertBox();
  const players = cams.map((c) => new Player(c, { onEnded: () => continueAfter() }));
  // The camera the others follow: the first one that plays.
  const master = () => players.find((p) => p.v && p.ok) || players.find((p) => p.v) || null;
  const urlFor = (list, atMs) => {
    const q = new URLSearchParams();
    if (list.length > 1) q.set('with', list.slice(1).map((c) => c.id).join(','));
    if (Number.isFinite(atMs)) q.set('at', utc(atMs));
    const s = q.toString();
    return `/cameras/${list[0].id}${s ? `?${s}` : ''}`;
  };

  // --- header and tools
  const others = all.filter((c) => !cams.includes(c));
  const addSel = h(
    'select',
    {
      onchange: (e) => {
        if (!e.target.value) return;
        const list = [...cams, all.find((c) => c.id === e.target.value)];
        const wall = master() ? master().currentWall() : at;
        navigate(urlFor(list, wall));
      },
    },
    h('option', { value: '' }, t('camera.add_choose')),
    others.map((c) => h('option', { value: c.id }, c.name)),
  );
  const liveBtn = button(t('camera.live'), () => toggleLive(), { 'aria-pressed': 'false' });
  const exportBtn = button(t('camera.export_sel'), () => {
    const s = timeline.selection;
    navigate(`/exports?cameras=${ids.join(',')}&from=${encodeURIComponent(utc(s.from))}&to=${encodeURIComponent(utc(s.to))}`);
  }, { disabled: true });
  const holdBtn = button(t('camera.hold_sel'), () => {
    const s = timeline.selection;
    navigate(`/holds?cameras=${ids.join(',')}&from=${encodeURIComponent(utc(s.from))}&to=${encodeURIComponent(utc(s.to))}`);
  }, { disabled: true });
  const reasonEl = h('p', { class: 'reason', hidden: true });
  main.append(
    h('div', { class: 'page-head' },
      h('h1', {}, cams.map((c) => c.name).join(' · ')),
      h('div', { class: 'tools' },
        cams.length < MAX_CAMERAS && others.length ? field(t('camera.add'), addSel) : null,
        cams.length > 1 ? cams.map((c) => button(t('camera.remove', { name: c.name }), () => navigate(urlFor(cams.filter((x) => x !== c), master()?.currentWall())), { class: 'ghost' })) : null,
        me.role !== 'auditor' ? liveBtn : null,
        me.role === 'police' ? [exportBtn, holdBtn] : null,
      )),
    reasonEl,
    alert,
  );

  // --- players and transport
  main.append(h('div', { class: `players n${cams.length}` }, players.map((p) => p.el)));
  const playBtn = button(t('player.play'), () => {
    const m = master();
    if (!m) return;
    if (m.video.paused) players.forEach((p) => p.v && p.video.play().catch(() => {}));
    else players.forEach((p) => p.video.pause());
  }, { class: 'primary', disabled: true });
  const prevBtn = button('|◀', () => players.forEach((p) => p.frameStep(-1)), { 'aria-label': t('player.prev_frame'), title: t('player.prev_frame'), disabled: true });
  const nextBtn = button('▶|', () => players.forEach((p) => p.frameStep(1)), { 'aria-label': t('player.next_frame'), title: t('player.next_frame'), disabled: true });
  const speed = h('select', { onchange: () => players.forEach((p) => { p.video.playbackRate = Number(speed.value); }) },
    SPEEDS.map((s) => h('option', { value: s, selected: s === 1 }, `${s}×`)));
  const pos = h('input', { type: 'range', min: 0, max: 1000, value: 0, step: 1, disabled: true, class: 'position' });
  const skipBtn = button(t('player.skip_gap'), () => {
    const m = master();
    const w = m && m.nextResume();
    if (w) seekAll(w);
  }, { disabled: true });
  const clock = h('span', { class: 'master-clock', 'aria-live': 'off' }, '');
  const transport = h('div', { class: 'transport', role: 'group', 'aria-label': t('player.controls') },
    playBtn, prevBtn, nextBtn, field(t('player.speed'), speed), field(t('player.position'), pos), skipBtn, clock);
  main.append(transport);
  // The position is the moment's place in the viewing's wall-clock range (a preview is
  // a stream whose length is not known while it plays).
  let seekTimer = null;
  pos.addEventListener('input', () => {
    clearTimeout(seekTimer);
    seekTimer = setTimeout(() => {
      const m = master();
      if (!m || !m.v) return;
      seekAll(m.v.from_ms + (Number(pos.value) / 1000) * (m.v.to_ms - m.v.from_ms));
    }, 120);
  });

  // --- timeline
  const timeline = new Timeline({
    cameras: cams,
    role: me.role,
    onPick: (ms) => pick(ms),
    onSelect: () => {
      exportBtn.disabled = false;
      holdBtn.disabled = false;
    },
    thumbAt: (camId, ms) => {
      const p = players.find((x) => x.camera.id === camId);
      return p && p.v ? p.thumbUrl(ms) : null;
    },
  });
  main.append(timeline.el);
  timeline.start();

  function setEnabled(on) {
    for (const b of [playBtn, prevBtn, nextBtn, skipBtn]) b.disabled = !on;
    pos.disabled = !on;
  }

  async function ensureReason(ms) {
    if (reason) return reason;
    const what = t('prompt.what', { names: cams.map((c) => c.name).join(', '), time: fmtDateTime(ms) });
    reason = await askReason(me.role, { what });
    if (reason) {
      reasonEl.textContent = reasonText(reason);
      reasonEl.hidden = false;
    }
    return reason;
  }

  async function pick(ms) {
    if (!(await ensureReason(ms))) return;
    alert.show('');
    stopLive();
    history.replaceState(null, '', urlFor(cams, ms));
    timeline.setPlaying(ms);
    const results = await Promise.allSettled(players.map((p) => p.open(ms, reason)));
    const ok = results.some((r) => r.status === 'fulfilled');
    setEnabled(ok);
    const failed = results.filter((r) => r.status === 'rejected' && r.reason && r.reason.status === 403);
    // A single camera's tile says why itself; over several, the page says it once.
    if (failed.length && players.length > 1) alert.show(failed[0].reason.message);
  }

  function seekAll(wall) {
    const outside = players.filter((p) => p.v && !p.seekWall(wall));
    if (outside.length) {
      Promise.allSettled(outside.map((p) => p.open(wall, reason))).then(() => {});
    }
    timeline.setPlaying(wall);
  }

  async function continueAfter() {
    const m = master();
    if (!m || !m.v) return;
    if (m.v.to_ms > Date.now() - 1500) return; // the end of what is recorded so far
    const next = m.v.to_ms + 1;
    await Promise.allSettled(players.map((p) => p.open(next, reason)));
  }

  // --- live
  let live = false;
  async function toggleLive() {
    if (live) {
      stopLive();
      return;
    }
    if (!(await ensureReason(Date.now()))) return;
    alert.show('');
    live = true;
    liveBtn.setAttribute('aria-pressed', 'true');
    setEnabled(false);
    timeline.setPlaying(null);
    players.forEach((p) => p.goLive(reason));
  }
  function stopLive() {
    if (!live) return;
    live = false;
    liveBtn.setAttribute('aria-pressed', 'false');
    players.forEach((p) => p.stop());
  }

  // --- keep the cameras together and the controls current
  timer = setInterval(() => {
    const m = master();
    if (!m || !m.v || live) return;
    const wall = m.currentWall();
    playBtn.textContent = m.video.paused ? t('player.play') : t('player.pause');
    if (wall === null) return;
    clock.textContent = fmtDateTime(wall, { tenths: true });
    clock.title = `UTC ${utc(wall)}`;
    timeline.setPlaying(wall);
    if (m.v.to_ms > m.v.from_ms) pos.value = String(Math.round(((wall - m.v.from_ms) / (m.v.to_ms - m.v.from_ms)) * 1000));
    pos.setAttribute('aria-valuetext', fmtDateTime(wall));
    for (const p of players) {
      if (p === m || !p.v || p.live) continue;
      if (p.video.playbackRate !== m.video.playbackRate) p.video.playbackRate = m.video.playbackRate;
      if (m.video.paused !== p.video.paused) {
        if (m.video.paused) p.video.pause();
        else p.video.play().catch(() => {});
      }
      const pw = p.currentWall();
      if (pw !== null && Math.abs(pw - wall) > (p.preview ? 2000 : 300)) {
        if (p.covers(wall)) p.seekWall(wall);
      }
    }
  }, 250);

  if (Number.isFinite(at)) {
    timeline.showAround(at, 20 * 60 * 1000);
    timeline.setCursor(at);
    pick(at);
  } else {
    timeline.showAround(Date.now() - 20 * 60 * 1000, 60 * 60 * 1000);
    alert.show(t('camera.pick_hint'), 'info');
  }

  return () => {
    clearInterval(timer);
    players.forEach((p) => p.stop());
    timeline.destroy();
  };
}
