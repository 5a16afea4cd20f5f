// One camera's player: a <video> fed by a viewing (the server's authorized, logged look
// from a moment on), or by the live stream. The footage's wall-clock time is shown under
// the picture, computed from the viewing's time map (the MP4 skips gaps, so media time
// and wall time part at each gap), never from the browser's clock.
//
// Browsers that cannot decode the camera's codec (Chromium and H.265) get the server's
// H.264 preview of the same frames, labelled as such.

import { api, reasonParams } from './api.js';
import { h } from './dom.js';
import { LivePlayer } from './live.js';
import { fmtDateTime, t, utc } from './i18n.js';

export function canPlay(mime) {
  try {
    if (window.MediaSource && MediaSource.isTypeSupported(mime)) return true;
  } catch {
    /* fall through */
  }
  return document.createElement('video').canPlayType(mime) !== '';
}

// Whether Media Source Extensions (the live view's player) can decode `mime`.
export function canPlayLive(mime) {
  try {
    return Boolean(window.MediaSource && MediaSource.isTypeSupported(mime));
  } catch {
    return false;
  }
}

// Cameras whose live view this browser cannot decode (learnt from a viewing's MIME type
// or a live view's first bytes): their live view is the server's H.264 preview at once.
const livePreviewCameras = new Set();

export class Player {
  constructor(camera, { onEnded = () => {} } = {}) {
    this.camera = camera;
    this.onEnded = onEnded;
    this.v = null;
    this.preview = false;
    this.previewOffset = 0;
    this.live = null;
    this.video = h('video', { muted: true, playsinline: true, preload: 'auto', 'aria-label': t('player.video', { name: camera.name }) });
    this.video.muted = true;
    this.clock = h('output', { class: 'wallclock', 'data-testid': 'wallclock', 'aria-label': t('player.time', { name: camera.name }) }, '—');
    this.badge = h('span', { class: 'badge preview', 'data-testid': 'preview-badge', hidden: true, title: t('player.preview_title') }, t('player.preview'));
    this.liveBadge = h('span', { class: 'badge live', hidden: true }, t('player.live'));
    this.msg = h('p', { class: 'player-msg', role: 'status' });
    this.el = h(
      'figure',
      { class: 'player', 'data-camera': camera.id },
      h('div', { class: 'frame' }, this.video),
      h('figcaption', {}, h('strong', {}, camera.name), ' ', this.badge, this.liveBadge, h('br'), this.clock, this.msg),
    );
    this.video.addEventListener('ended', () => this.onEnded(this));
    this.video.addEventListener('seeked', () => this.showTime());
    this.video.addEventListener('timeupdate', () => this.showTime());
    const frames = () => {
      if (!this.video.isConnected) return;
      this.showTime();
      this.video.requestVideoFrameCallback(frames);
    };
    if (this.video.requestVideoFrameCallback) this.video.requestVideoFrameCallback(frames);
  }

  // --- the time map

  mediaMs() {
    return (this.video.currentTime + this.previewOffset) * 1000;
  }

  wallOf(mediaMs) {
    const map = this.v ? this.v.map : [];
    if (!map.length) return null;
    let p = map[0];
    for (const q of map) {
      if (q[0] <= mediaMs) p = q;
      else break;
    }
    return p[1] + (mediaMs - p[0]);
  }

  mediaOf(wallMs) {
    const map = this.v ? this.v.map : [];
    if (!map.length) return null;
    for (let i = 0; i < map.length; i += 1) {
      const [m, w] = map[i];
      const next = map[i + 1];
      if (wallMs < w) return m; // in a gap before this point: the footage resumes here
      if (!next || wallMs < next[1]) {
        const at = m + (wallMs - w);
        return next && at > next[0] ? next[0] : at;
      }
    }
    return null;
  }

  currentWall() {
    if (this.live) return null;
    return this.v ? this.wallOf(this.mediaMs()) : null;
  }

  covers(wallMs) {
    return this.v && wallMs >= this.v.from_ms - 1 && wallMs <= this.v.to_ms;
  }

  showTime() {
    const wall = this.currentWall();
    if (wall === null) return;
    this.clock.dataset.unixMs = String(Math.round(wall));
    this.clock.textContent = fmtDateTime(wall, { tenths: true });
    this.clock.title = `UTC ${utc(wall)}`;
  }

  message(text, kind = '') {
    this.msg.textContent = text || '';
    this.msg.className = `player-msg ${kind}`;
  }

  // --- playback

  async open(atMs, reason, { play = true } = {}) {
    this.stopLive();
    this.message(t('player.opening'));
    let v;
    try {
      v = await api(`/cameras/${this.camera.id}/viewings`, { method: 'POST', body: { at: utc(atMs), ...reasonParams(reason) } });
    } catch (e) {
      this.v = null;
      this.ok = false;
      this.video.removeAttribute('src');
      this.video.load();
      this.clock.textContent = '—';
      delete this.clock.dataset.unixMs;
      this.message(e.status === 404 ? t('player.nothing') : e.message, 'error');
      throw e;
    }
    this.v = v;
    this.ok = false;
    this.reason = reason;
    if (!canPlayLive(v.mime)) livePreviewCameras.add(this.camera.id);
    this.preview = !canPlay(v.mime);
    this.badge.hidden = !this.preview;
    this.message('');
    await this.load(this.mediaOf(atMs) ?? 0);
    if (play) this.video.play().catch(() => {});
    return v;
  }

  load(mediaMs) {
    const video = this.video;
    this.previewOffset = 0;
    const ready = new Promise((ok, fail) => {
      const done = () => {
        video.removeEventListener('loadeddata', done);
        video.removeEventListener('error', bad);
        this.ok = true;
        ok();
      };
      const bad = () => {
        video.removeEventListener('loadeddata', done);
        video.removeEventListener('error', bad);
        this.ok = false;
        this.message(t('player.failed'), 'error');
        fail(new Error('the video could not be played'));
      };
      video.addEventListener('loadeddata', done);
      video.addEventListener('error', bad);
    });
    if (this.preview) {
      const start = Math.max(0, Math.floor(mediaMs));
      this.previewStart = start;
      video.src = `${this.v.preview}?t=${start}`;
      return ready.then(() => {
        // A preview stream may number its time from 0 or from its start: keep media time.
        const first = video.buffered.length ? video.buffered.start(0) : video.currentTime;
        if (first * 1000 < start - 500) this.previewOffset = start / 1000 - first;
        this.showTime();
      });
    }
    video.src = this.v.video;
    return ready.then(() => {
      video.currentTime = mediaMs / 1000;
      this.showTime();
    });
  }

  // Seeks to a wall time inside this viewing; false when outside (the page opens a new one).
  seekWall(wallMs) {
    if (!this.covers(wallMs)) return false;
    const m = this.mediaOf(wallMs);
    if (m === null) return false;
    this.seekMedia(m);
    return true;
  }

  seekMedia(m) {
    if (this.preview) {
      const playing = !this.video.paused;
      this.load(m).then(() => playing && this.video.play().catch(() => {}), () => {});
    } else this.video.currentTime = m / 1000;
  }

  frameStep(dir) {
    if (!this.v || this.preview) return;
    this.video.pause();
    const f = this.v.frame_ms / 1000;
    const n = Math.round(this.video.currentTime / f) + dir;
    this.video.currentTime = Math.max(0, n * f + f / 4);
  }

  // The wall time where recording resumes after the next gap, if any.
  nextResume() {
    if (!this.v) return null;
    const m = this.mediaMs();
    const p = this.v.map.find(([pm]) => pm > m + 50);
    return p ? p[1] : null;
  }

  thumbUrl(wallMs) {
    if (!this.covers(wallMs)) return null;
    const s = Math.floor(wallMs / 2000) * 2000;
    return `${this.v.thumb}?at=${encodeURIComponent(utc(Math.max(this.v.from_ms, s)))}`;
  }

  // --- live

  // The camera's live view; where this browser cannot decode its codec, the server's
  // H.264 preview of it, labelled as such.
  async goLive(reason) {
    this.stopLive();
    this.v = null;
    this.liveBadge.hidden = false;
    this.clock.textContent = t('player.live_connecting');
    delete this.clock.dataset.unixMs;
    this.message('');
    let preview = livePreviewCameras.has(this.camera.id);
    for (;;) {
      this.badge.hidden = !preview;
      this.badge.title = t('player.live_preview_title');
      const live = new LivePlayer(this.video, {
        onLatency: (ms) => {
          this.clock.textContent = t('player.latency', { s: (ms / 1000).toFixed(1) });
        },
        onError: (e) => this.message(e.message, 'error'),
      });
      this.live = live;
      try {
        await live.start(this.camera.id, reason, { preview });
        this.message(t('player.live_ended'));
        return;
      } catch (e) {
        if (e.name === 'AbortError' && this.live !== live) return;
        if (e.unsupported && !preview) {
          // Learnt from the stream's first bytes: the preview, now and next time.
          livePreviewCameras.add(this.camera.id);
          preview = true;
          live.stop();
          continue;
        }
        if (e.name === 'AbortError') return;
        this.message(e.unsupported ? t('player.live_unsupported') : e.message, 'error');
        return;
      }
    }
  }

  stopLive() {
    if (this.live) this.live.stop();
    this.live = null;
    this.liveBadge.hidden = true;
    this.badge.title = t('player.preview_title');
  }

  stop() {
    this.stopLive();
    this.video.pause();
    this.video.removeAttribute('src');
    this.video.load();
  }
}
