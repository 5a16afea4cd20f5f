// The timeline: one row per camera on a shared time axis, from 31 days down to a few
// seconds. Recorded spans, gaps (with their reasons), holds, the ring's oldest footage
// and now; the moment playing and a selected range. Mouse: drag pans, wheel zooms, a
// click picks a moment, shift-drag (or the "Select range" switch, for touch) selects a
// range. Touch: one finger pans, two zoom. Keyboard (the timeline is focusable): ← →
// move the cursor, Page Up/Down pan, + − zoom, Shift+← → extend the selection, Enter
// plays from the cursor.

import { api, query } from './api.js';
import { button, h } from './dom.js';
import { fmtDate, fmtDateTime, fmtTime, fromLocalInput, startOfDay, t, toDateInput, utc, zoneOffset } from './i18n.js';

const SEC = 1000;
const MIN = 60 * SEC;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const MIN_SPAN = 10 * SEC;
const MAX_SPAN = 31 * DAY;
const STEPS = [SEC, 2 * SEC, 5 * SEC, 10 * SEC, 15 * SEC, 30 * SEC, MIN, 2 * MIN, 5 * MIN, 10 * MIN, 15 * MIN, 30 * MIN, HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY];
const ROW = 30;
const AXIS = 24;

const COLORS = {
  bg: '#f4f6f8',
  row: '#ffffff',
  span: '#2e7d32',
  gap: '#c62828',
  hold: '#b26a00',
  sel: 'rgba(21, 101, 192, 0.22)',
  cursor: '#0d47a1',
  play: '#111111',
  now: '#555555',
  text: '#1f2933',
  grid: '#d5dbe1',
};

export class Timeline {
  constructor({ cameras, role, onPick, onSelect, thumbAt }) {
    this.cameras = cameras;
    this.role = role;
    this.onPick = onPick;
    this.onSelect = onSelect || (() => {});
    this.thumbAt = thumbAt || (() => null);
    const now = Date.now();
    this.view = { start: now - HOUR, end: now + 5 * MIN };
    this.cursor = now - MIN;
    this.playing = null;
    this.selection = null;
    this.data = new Map();
    this.holds = [];
    this.oldest = new Map();
    this.selectMode = false;
    this.pointers = new Map();

    this.canvas = h('canvas', {
      class: 'timeline-canvas',
      tabindex: 0,
      role: 'slider',
      'aria-label': t('tl.label'),
      'aria-describedby': 'tl-help',
    });
    this.tip = h('div', { class: 'tl-tip', hidden: true, role: 'tooltip' });
    this.thumb = h('img', { class: 'tl-thumb', alt: '', hidden: true });
    this.day = h('input', { type: 'date', 'aria-label': t('tl.day'), onchange: () => this.showDay() });
    this.selBtn = button(t('tl.select'), () => this.toggleSelect(), { 'aria-pressed': 'false' });
    this.el = h(
      'section',
      { class: 'timeline', 'aria-label': t('tl.title') },
      h(
        'div',
        { class: 'tl-tools' },
        button('−', () => this.zoom(2), { 'aria-label': t('tl.zoom_out'), title: t('tl.zoom_out') }),
        button('+', () => this.zoom(0.5), { 'aria-label': t('tl.zoom_in'), title: t('tl.zoom_in') }),
        button('◀', () => this.pan(-0.5), { 'aria-label': t('tl.earlier'), title: t('tl.earlier') }),
        button('▶', () => this.pan(0.5), { 'aria-label': t('tl.later'), title: t('tl.later') }),
        button(t('tl.now'), () => this.showAround(Date.now() - 30 * MIN, HOUR)),
        button(t('tl.days30'), () => this.setView(Date.now() - 30 * DAY, Date.now() + HOUR)),
        this.day,
        this.selBtn,
        h('span', { class: 'tl-legend', 'aria-hidden': 'true' },
          h('i', { class: 'lg-span' }), t('tl.recorded'), h('i', { class: 'lg-gap' }), t('tl.gap'), h('i', { class: 'lg-hold' }), t('tl.hold')),
      ),
      h('div', { class: 'tl-body' }, h('ul', { class: 'tl-names', 'aria-hidden': 'true' }, cameras.map((c) => h('li', {}, c.name))), h('div', { class: 'tl-wrap' }, this.canvas, this.tip, this.thumb)),
      h('p', { id: 'tl-help', class: 'hint' }, t('tl.help')),
      this.summary = h('p', { class: 'tl-summary', 'aria-live': 'polite' }),
    );
    this.bind();
    this.resizeObserver = new ResizeObserver(() => this.draw());
    this.resizeObserver.observe(this.canvas);
    this.loadHolds();
    this.loadOldest();
  }

  destroy() {
    this.resizeObserver.disconnect();
    clearTimeout(this.fetchTimer);
    clearInterval(this.refresh);
  }

  start() {
    this.refresh = setInterval(() => this.fetch(), 15 * SEC);
    this.fetch();
  }

  // --- view

  setView(start, end) {
    let span = Math.min(MAX_SPAN, Math.max(MIN_SPAN, end - start));
    const mid = (start + end) / 2;
    start = mid - span / 2;
    end = mid + span / 2;
    this.view = { start, end };
    this.day.value = toDateInput(mid);
    this.scheduleFetch();
    this.draw();
  }

  showAround(ms, span) {
    this.setView(ms - span / 2, ms + span / 2);
  }

  showDay() {
    const d = fromLocalInput(this.day.value);
    if (Number.isFinite(d)) this.setView(d, d + DAY);
  }

  zoom(factor, atMs) {
    const { start, end } = this.view;
    const at = atMs ?? (this.cursor >= start && this.cursor <= end ? this.cursor : (start + end) / 2);
    const span = Math.min(MAX_SPAN, Math.max(MIN_SPAN, (end - start) * factor));
    const ratio = (at - start) / (end - start);
    this.setView(at - span * ratio, at - span * ratio + span);
  }

  pan(fraction) {
    const span = this.view.end - this.view.start;
    this.setView(this.view.start + span * fraction, this.view.end + span * fraction);
  }

  setPlaying(ms) {
    this.playing = ms;
    if (ms !== null && (ms < this.view.start || ms > this.view.end)) this.pan((ms - (this.view.start + this.view.end) / 2) / (this.view.end - this.view.start));
    else this.draw();
  }

  setCursor(ms) {
    this.cursor = ms;
    this.canvas.setAttribute('aria-valuenow', String(Math.round(ms)));
    this.canvas.setAttribute('aria-valuetext', fmtDateTime(ms));
    if (ms < this.view.start || ms > this.view.end) this.pan((ms - (this.view.start + this.view.end) / 2) / (this.view.end - this.view.start));
    else this.draw();
  }

  toggleSelect() {
    this.selectMode = !this.selectMode;
    this.selBtn.setAttribute('aria-pressed', String(this.selectMode));
  }

  setSelection(from, to) {
    this.selection = from !== null && to > from ? { from, to } : null;
    this.draw();
    if (this.selection) this.onSelect(this.selection.from, this.selection.to);
  }

  // --- data

  scheduleFetch() {
    clearTimeout(this.fetchTimer);
    this.fetchTimer = setTimeout(() => this.fetch(), 150);
  }

  async fetch() {
    const { start, end } = this.view;
    const span = end - start;
    const from = Math.max(start - span / 2, Date.now() - MAX_SPAN + HOUR);
    const to = Math.min(end + span / 2, from + MAX_SPAN - HOUR, Date.now() + HOUR);
    if (to <= from) return;
    await Promise.all(
      this.cameras.map(async (c) => {
        try {
          const r = await api(`/cameras/${c.id}/recordings${query({ from: utc(from), to: utc(to) })}`);
          this.data.set(c.id, { ...r, error: null, from, to });
        } catch (e) {
          this.data.set(c.id, { spans: [], gaps: [], error: e.message, from, to });
        }
      }),
    );
    this.draw();
    this.describe();
  }

  async loadHolds() {
    if (!['police', 'it', 'auditor'].includes(this.role)) return;
    try {
      const r = await api('/holds');
      this.holds = (Array.isArray(r) ? r : r.holds || []).filter((x) => !x.status || x.status === 'active');
      this.draw();
    } catch {
      this.holds = [];
    }
  }

  async loadOldest() {
    const now = Date.now();
    await Promise.all(
      this.cameras.map(async (c) => {
        try {
          const r = await api(`/cameras/${c.id}/recordings${query({ from: utc(now - MAX_SPAN + HOUR), to: utc(now + MIN) })}`);
          if (r.spans.length) this.oldest.set(c.id, Date.parse(r.spans[0].from));
        } catch {
          /* shown as unknown */
        }
      }),
    );
    this.draw();
  }

  describe() {
    const parts = this.cameras.map((c) => {
      const d = this.data.get(c.id);
      if (!d) return null;
      if (d.error) return `${c.name}: ${d.error}`;
      const inView = (x) => Date.parse(x.to || utc(Date.now())) > this.view.start && Date.parse(x.from) < this.view.end;
      return t('tl.summary', { name: c.name, spans: d.spans.filter(inView).length, gaps: d.gaps.filter(inView).length });
    });
    this.summary.textContent = `${fmtDateTime(this.view.start, { seconds: false })} – ${fmtDateTime(this.view.end, { seconds: false })}. ${parts.filter(Boolean).join(' ')}`;
  }

  // --- drawing

  x(ms, w) {
    return ((ms - this.view.start) / (this.view.end - this.view.start)) * w;
  }

  timeAt(px, w) {
    return this.view.start + (px / w) * (this.view.end - this.view.start);
  }

  draw() {
    const c = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth || 600;
    const hgt = AXIS + ROW * this.cameras.length + 6;
    c.style.height = `${hgt}px`;
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(hgt * dpr)) {
      c.width = Math.round(w * dpr);
      c.height = Math.round(hgt * dpr);
    }
    c.setAttribute('aria-valuemin', String(Math.round(this.view.start)));
    c.setAttribute('aria-valuemax', String(Math.round(this.view.end)));
    const g = c.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.fillStyle = COLORS.bg;
    g.fillRect(0, 0, w, hgt);
    this.drawAxis(g, w, hgt);
    const now = Date.now();
    this.cameras.forEach((cam, i) => {
      const y = AXIS + i * ROW;
      g.fillStyle = COLORS.row;
      g.fillRect(0, y + 3, w, ROW - 6);
      const d = this.data.get(cam.id);
      if (d) {
        g.fillStyle = COLORS.span;
        for (const s of d.spans) {
          const a = this.x(Date.parse(s.from), w);
          const b = this.x(Date.parse(s.to), w);
          if (b < 0 || a > w) continue;
          g.fillRect(Math.max(0, a), y + 7, Math.max(1, Math.min(w, b) - Math.max(0, a)), ROW - 14);
        }
        for (const gap of d.gaps) {
          const a = this.x(Date.parse(gap.from), w);
          const b = this.x(gap.to ? Date.parse(gap.to) : now, w);
          if (b < 0 || a > w) continue;
          g.fillStyle = COLORS.gap;
          g.fillRect(Math.max(0, a), y + ROW - 9, Math.max(2, Math.min(w, b) - Math.max(0, a)), 4);
        }
      }
      g.fillStyle = COLORS.hold;
      for (const hd of this.holds) {
        const cams = hd.cameras || [];
        if (cams.length && !cams.includes(cam.id) && !cams.includes('all')) continue;
        const a = this.x(Date.parse(hd.from), w);
        const b = this.x(Date.parse(hd.to), w);
        if (b < 0 || a > w) continue;
        g.fillRect(Math.max(0, a), y + 3, Math.max(2, Math.min(w, b) - Math.max(0, a)), 3);
      }
      const oldest = this.oldest.get(cam.id);
      if (oldest !== undefined) {
        const ox = this.x(oldest, w);
        if (ox >= 0 && ox <= w) {
          g.strokeStyle = COLORS.text;
          g.setLineDash([2, 2]);
          g.beginPath();
          g.moveTo(ox + 0.5, y + 2);
          g.lineTo(ox + 0.5, y + ROW - 2);
          g.stroke();
          g.setLineDash([]);
          g.fillStyle = COLORS.text;
          g.font = '10px system-ui, sans-serif';
          g.fillText(t('tl.oldest'), ox + 3, y + 12);
        }
      }
    });
    if (this.selection) {
      const a = this.x(this.selection.from, w);
      const b = this.x(this.selection.to, w);
      g.fillStyle = COLORS.sel;
      g.fillRect(a, AXIS, Math.max(2, b - a), hgt - AXIS);
    }
    const line = (ms, color, dash) => {
      const px = this.x(ms, w);
      if (px < 0 || px > w) return;
      g.strokeStyle = color;
      g.lineWidth = 2;
      g.setLineDash(dash || []);
      g.beginPath();
      g.moveTo(px, AXIS - 4);
      g.lineTo(px, hgt);
      g.stroke();
      g.setLineDash([]);
      g.lineWidth = 1;
    };
    line(now, COLORS.now, [4, 3]);
    if (document.activeElement === this.canvas) line(this.cursor, COLORS.cursor, [2, 2]);
    if (this.playing !== null) line(this.playing, COLORS.play);
  }

  drawAxis(g, w) {
    const span = this.view.end - this.view.start;
    const step = STEPS.find((s) => (s / span) * w >= 90) || STEPS[STEPS.length - 1];
    g.fillStyle = COLORS.text;
    g.font = '11px system-ui, sans-serif';
    g.strokeStyle = COLORS.grid;
    let t0;
    if (step >= DAY) t0 = startOfDay(this.view.start);
    else {
      const off = zoneOffset(this.view.start);
      t0 = Math.floor((this.view.start + off) / step) * step - off;
    }
    for (let ms = t0; ms <= this.view.end; ms += step) {
      const tick = step >= DAY ? startOfDay(ms + 2 * HOUR) : ms;
      const px = this.x(tick, w);
      if (px < -50) continue;
      g.beginPath();
      g.moveTo(px + 0.5, AXIS - 6);
      g.lineTo(px + 0.5, g.canvas.height);
      g.stroke();
      let label;
      if (step >= DAY) label = fmtDate(tick);
      else if (startOfDay(tick) === tick) label = fmtDate(tick);
      else label = fmtTime(tick, step < MIN);
      g.fillText(label, px + 3, 14);
    }
  }

  // --- input

  bind() {
    const c = this.canvas;
    let drag = null;
    c.addEventListener('pointerdown', (e) => {
      c.focus({ preventScroll: true });
      c.setPointerCapture(e.pointerId);
      this.pointers.set(e.pointerId, e.offsetX);
      const w = c.clientWidth;
      if (this.pointers.size === 2) {
        const [a, b] = [...this.pointers.values()];
        drag = { kind: 'pinch', dist: Math.abs(a - b) || 1, view: { ...this.view }, mid: this.timeAt((a + b) / 2, w) };
        return;
      }
      const kind = e.shiftKey || this.selectMode ? 'select' : 'pan';
      drag = { kind, x0: e.offsetX, view: { ...this.view }, t0: this.timeAt(e.offsetX, w), moved: false };
    });
    c.addEventListener('pointermove', (e) => {
      const w = c.clientWidth;
      if (this.pointers.has(e.pointerId)) this.pointers.set(e.pointerId, e.offsetX);
      if (!drag) {
        this.hover(e.offsetX, e.offsetY, w);
        return;
      }
      if (drag.kind === 'pinch' && this.pointers.size === 2) {
        const [a, b] = [...this.pointers.values()];
        const f = drag.dist / (Math.abs(a - b) || 1);
        const span = (drag.view.end - drag.view.start) * f;
        const r = (drag.mid - drag.view.start) / (drag.view.end - drag.view.start);
        this.setView(drag.mid - span * r, drag.mid - span * r + span);
        return;
      }
      if (Math.abs(e.offsetX - drag.x0) > 4) drag.moved = true;
      if (drag.kind === 'pan' && drag.moved) {
        const dt = ((e.offsetX - drag.x0) / w) * (drag.view.end - drag.view.start);
        this.view = { start: drag.view.start - dt, end: drag.view.end - dt };
        this.scheduleFetch();
        this.draw();
      } else if (drag.kind === 'select' && drag.moved) {
        const t1 = this.timeAt(e.offsetX, w);
        this.selection = { from: Math.min(drag.t0, t1), to: Math.max(drag.t0, t1) };
        this.draw();
      }
    });
    const end = (e) => {
      this.pointers.delete(e.pointerId);
      if (!drag) return;
      const d = drag;
      drag = null;
      if (d.kind === 'pinch') return;
      if (d.kind === 'pan' && !d.moved) {
        const ms = this.timeAt(e.offsetX, c.clientWidth);
        this.setCursor(ms);
        this.onPick(ms);
      } else if (d.kind === 'pan') {
        this.setView(this.view.start, this.view.end);
      } else if (d.kind === 'select' && this.selection) {
        this.setSelection(this.selection.from, this.selection.to);
      }
    };
    c.addEventListener('pointerup', end);
    c.addEventListener('pointercancel', (e) => {
      this.pointers.delete(e.pointerId);
      drag = null;
    });
    c.addEventListener('pointerleave', () => {
      this.tip.hidden = true;
      this.thumb.hidden = true;
    });
    c.addEventListener(
      'wheel',
      (e) => {
        e.preventDefault();
        const at = this.timeAt(e.offsetX, c.clientWidth);
        this.zoom(Math.pow(1.2, Math.sign(e.deltaY) * Math.min(3, Math.abs(e.deltaY) / 60 || 1)), at);
      },
      { passive: false },
    );
    c.addEventListener('focus', () => {
      if (this.cursor < this.view.start || this.cursor > this.view.end) this.cursor = (this.view.start + this.view.end) / 2;
      this.setCursor(this.cursor);
    });
    c.addEventListener('blur', () => this.draw());
    c.addEventListener('keydown', (e) => {
      const span = this.view.end - this.view.start;
      const step = e.altKey ? span / 200 : span / 40;
      let handled = true;
      if (e.key === 'ArrowLeft' || e.key === 'ArrowRight') {
        const dir = e.key === 'ArrowLeft' ? -1 : 1;
        const before = this.cursor;
        this.setCursor(this.cursor + dir * step);
        if (e.shiftKey) {
          const a = this.selection && this.selection.to === before ? this.selection.from : this.selection?.from === before ? this.selection.to : before;
          this.setSelection(Math.min(a, this.cursor), Math.max(a, this.cursor));
        }
      } else if (e.key === 'PageUp') this.pan(-0.5);
      else if (e.key === 'PageDown') this.pan(0.5);
      else if (e.key === '+' || e.key === '=' || e.key === 'ArrowUp') this.zoom(0.5, this.cursor);
      else if (e.key === '-' || e.key === 'ArrowDown') this.zoom(2, this.cursor);
      else if (e.key === 'Home') this.setCursor(Date.now() - MIN);
      else if (e.key === 'Enter' || e.key === ' ') this.onPick(this.cursor);
      else if (e.key === 'Escape') this.setSelection(null, 0);
      else handled = false;
      if (handled) e.preventDefault();
    });
  }

  hover(px, py, w) {
    const ms = this.timeAt(px, w);
    const row = Math.floor((py - AXIS) / ROW);
    const cam = this.cameras[row];
    let text = fmtDateTime(ms);
    if (cam) {
      const d = this.data.get(cam.id);
      const gap = d && d.gaps.find((g) => Date.parse(g.from) <= ms && (g.to ? Date.parse(g.to) : Date.now()) >= ms);
      if (gap) text += ` · ${t('tl.gap_reason', { reason: gap.reason })}`;
      const holds = this.holds.filter((hd) => Date.parse(hd.from) <= ms && Date.parse(hd.to) >= ms && (!hd.cameras || hd.cameras.includes(cam.id) || hd.cameras.includes('all')));
      if (holds.length) text += ` · ${t('tl.held', { case: holds.map((x) => x.case).join(', ') })}`;
      text = `${cam.name}: ${text}`;
    }
    this.tip.textContent = text;
    this.tip.hidden = false;
    this.tip.style.left = `${Math.min(px, w - 220)}px`;
    const src = cam ? this.thumbAt(cam.id, ms) : null;
    if (src) {
      if (this.thumb.dataset.src !== src) {
        this.thumb.dataset.src = src;
        clearTimeout(this.thumbTimer);
        this.thumbTimer = setTimeout(() => {
          this.thumb.src = src;
        }, 120);
      }
      this.thumb.hidden = false;
      this.thumb.style.left = `${Math.min(Math.max(0, px - 80), w - 160)}px`;
    } else this.thumb.hidden = true;
  }
}
