// Live view through Media Source Extensions: the server sends fragmented MP4 (an init
// segment, then one `prft` + `moof` + `mdat` per stored chunk) over one chunked
// response. Each fragment is appended as it arrives; the `prft` box carries the wall time
// of the fragment's first frame (the camera's clock, as the recorder set it), which gives
// the latency shown (this
// assumes the viewing computer's clock is in time with the device's, as NTP keeps it).
//
// With `preview`, the same from `live-preview.mp4`: the server's H.264 transcoding of the
// live view, for browsers that cannot decode the camera's codec (Chromium and H.265).

import { reasonParams, query } from './api.js';

function u32(b, i) {
  return ((b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]) >>> 0;
}

function boxType(b, i) {
  return String.fromCharCode(b[i + 4], b[i + 5], b[i + 6], b[i + 7]);
}

function find(b, type) {
  const c = [...type].map((x) => x.charCodeAt(0));
  for (let i = 0; i + 4 <= b.length; i += 1) {
    if (b[i] === c[0] && b[i + 1] === c[1] && b[i + 2] === c[2] && b[i + 3] === c[3]) return i;
  }
  return -1;
}

const hex = (n) => n.toString(16).padStart(2, '0');

// RFC 6381 codec string from the init segment's decoder configuration.
export function codecOf(init) {
  const a = find(init, 'avcC');
  if (a >= 0) return `avc1.${hex(init[a + 5])}${hex(init[a + 6])}${hex(init[a + 7])}`;
  const v = find(init, 'hvcC');
  if (v >= 0) {
    const b = init.subarray(v + 4);
    const space = ['', 'A', 'B', 'C'][b[1] >> 6];
    const tier = b[1] & 0x20 ? 'H' : 'L';
    let compat = u32(b, 2);
    let rev = 0;
    for (let i = 0; i < 32; i += 1) {
      rev = ((rev << 1) | (compat & 1)) >>> 0;
      compat >>>= 1;
    }
    const cons = [...b.subarray(6, 12)].map((x) => hex(x).toUpperCase());
    while (cons.length && cons[cons.length - 1] === '00') cons.pop();
    return [`hvc1.${space}${b[1] & 0x1f}`, rev.toString(16).toUpperCase(), `${tier}${b[12]}`, ...cons].join('.');
  }
  return null;
}

function prftMs(b) {
  const hi = u32(b, 16);
  const lo = u32(b, 20);
  return (hi - 2208988800) * 1000 + Math.floor((lo / 4294967296) * 1000);
}

export class LivePlayer {
  constructor(video, { onLatency = () => {}, onError = () => {} } = {}) {
    this.video = video;
    this.onLatency = onLatency;
    this.onError = onError;
    this.abort = null;
  }

  async start(camera, reason, { preview = false } = {}) {
    this.stop();
    const abort = new AbortController();
    this.abort = abort;
    const file = preview ? 'live-preview.mp4' : 'live.mp4';
    const url = `/api/v1/cameras/${camera}/${file}${query(reasonParams(reason))}`;
    const r = await fetch(url, { credentials: 'same-origin', signal: abort.signal });
    if (!r.ok) {
      let m = r.statusText;
      try {
        m = (await r.json()).error || m;
      } catch {
        /* not JSON */
      }
      const e = new Error(m);
      e.status = r.status;
      throw e;
    }
    const reader = r.body.getReader();
    const ms = new MediaSource();
    this.objectUrl = URL.createObjectURL(ms);
    this.video.src = this.objectUrl;
    await new Promise((ok) => ms.addEventListener('sourceopen', ok, { once: true }));
    let sb = null;
    const queue = [];
    let pending = new Uint8Array(0);
    let init = [];
    let moof = null;
    let fragWall = null;
    const pump = () => {
      if (sb && !sb.updating && queue.length) {
        const next = queue.shift();
        try {
          sb.appendBuffer(next.bytes);
          this.appendedWall = next.wall;
        } catch (e) {
          this.onError(e);
        }
      }
    };
    const afterAppend = () => {
      const v = this.video;
      const b = v.buffered;
      if (b.length) {
        const end = b.end(b.length - 1);
        if (end - v.currentTime > 1.2 || v.currentTime < b.start(0)) v.currentTime = Math.max(b.start(b.length - 1), end - 0.2);
        if (v.currentTime - b.start(0) > 30 && !sb.updating) {
          sb.remove(b.start(0), v.currentTime - 10);
          return;
        }
        if (this.appendedWall !== null && this.appendedWall !== undefined) {
          const behind = (end - v.currentTime) * 1000;
          this.onLatency(Date.now() - this.appendedWall + behind);
        }
      }
      if (v.paused) v.play().catch(() => {});
      pump();
    };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      const buf = new Uint8Array(pending.length + value.length);
      buf.set(pending);
      buf.set(value, pending.length);
      let at = 0;
      while (buf.length - at >= 8) {
        const size = u32(buf, at);
        if (size < 8 || buf.length - at < size) break;
        const type = boxType(buf, at);
        const box = buf.subarray(at, at + size);
        at += size;
        if (type === 'ftyp') init = [box];
        else if (type === 'moov') {
          init.push(box);
          const all = concat(init);
          const codec = codecOf(all);
          const mime = `video/mp4; codecs="${codec}"`;
          if (!sb) {
            if (!codec || !MediaSource.isTypeSupported(mime)) {
              // Nothing more of this stream: the caller may ask for the preview.
              abort.abort();
              const e = new Error('codec');
              e.unsupported = true;
              e.mime = mime;
              throw e;
            }
            sb = ms.addSourceBuffer(mime);
            sb.addEventListener('updateend', afterAppend);
          }
          queue.push({ bytes: all, wall: null });
        } else if (type === 'prft') fragWall = prftMs(box);
        else if (type === 'moof') moof = box;
        else if (type === 'mdat' && moof) {
          queue.push({ bytes: concat([moof, box]), wall: fragWall });
          moof = null;
        }
      }
      pending = buf.slice(at);
      pump();
    }
  }

  stop() {
    if (this.abort) this.abort.abort();
    this.abort = null;
    if (this.objectUrl) {
      this.video.removeAttribute('src');
      this.video.load();
      URL.revokeObjectURL(this.objectUrl);
      this.objectUrl = null;
    }
  }
}

function concat(parts) {
  const n = parts.reduce((s, p) => s + p.length, 0);
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
