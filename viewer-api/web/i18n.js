// Strings and times. One catalogue per language (i18n/en.js, i18n/fr.js); the language
// comes from the browser unless the user chose one. Times are shown in the site's time
// zone (from the server), with UTC on hover.

import { h } from './dom.js';
import en from './i18n/en.js';
import fr from './i18n/fr.js';

const catalogs = { en, fr };
export const LANGS = [
  ['en', 'English'],
  ['fr', 'Français'],
];

function pick() {
  const saved = localStorage.getItem('rf-lang');
  if (saved && catalogs[saved]) return saved;
  for (const l of navigator.languages || [navigator.language || 'en']) {
    const base = l.slice(0, 2).toLowerCase();
    if (catalogs[base]) return base;
  }
  return 'en';
}

let lang = pick();
let zone = 'Europe/Luxembourg';
const formats = new Map();

export function getLang() {
  return lang;
}

export function setLang(l) {
  if (!catalogs[l]) return;
  lang = l;
  localStorage.setItem('rf-lang', l);
  document.documentElement.lang = l;
  formats.clear();
}
document.documentElement.lang = lang;

export function t(key, vars = {}) {
  const s = catalogs[lang][key] ?? catalogs.en[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (_, k) => (vars[k] ?? '').toString());
}

export function setTimeZone(z) {
  try {
    new Intl.DateTimeFormat('en', { timeZone: z });
    zone = z;
    formats.clear();
  } catch {
    console.warn('unknown time zone', z);
  }
}

export function timeZone() {
  return zone;
}

function fmt(opts, locale) {
  const key = (locale || lang) + JSON.stringify(opts);
  let f = formats.get(key);
  if (!f) {
    const loc = locale || (lang === 'fr' ? 'fr-FR' : 'en-GB');
    f = new Intl.DateTimeFormat(loc, { timeZone: zone, hourCycle: 'h23', ...opts });
    formats.set(key, f);
  }
  return f;
}

const DATE = { year: 'numeric', month: 'short', day: 'numeric' };
const TIME = { hour: '2-digit', minute: '2-digit' };

export function fmtDateTime(ms, { seconds = true, tenths = false } = {}) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '—';
  const o = { ...DATE, ...TIME };
  if (seconds) o.second = '2-digit';
  if (tenths) o.fractionalSecondDigits = 1;
  return fmt(o).format(ms);
}

export function fmtTime(ms, seconds = true) {
  return fmt(seconds ? { ...TIME, second: '2-digit' } : TIME).format(ms);
}

export function fmtDate(ms) {
  return fmt({ ...DATE, weekday: 'short' }).format(ms);
}

export function utc(ms) {
  return new Date(ms).toISOString().replace('.000Z', 'Z');
}

export function parseTime(s) {
  return s ? Date.parse(s) : NaN;
}

// A <time>: the site's time, UTC on hover.
export function timeEl(ms, opts) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return h('span', {}, '—');
  return h('time', { datetime: utc(ms), title: `UTC ${utc(ms)}` }, fmtDateTime(ms, opts));
}

// A range: the end without its date when both fall on the same day.
export function rangeEl(fromMs, toMs) {
  if (!Number.isFinite(fromMs)) return h('span', {}, '—');
  if (!Number.isFinite(toMs)) return timeEl(fromMs);
  const sameDay = startOfDay(fromMs) === startOfDay(toMs);
  const end = sameDay ? h('time', { datetime: utc(toMs), title: `UTC ${utc(toMs)}` }, fmtTime(toMs)) : timeEl(toMs);
  return h('span', { class: 'range' }, timeEl(fromMs), ' – ', end);
}

// Sizes in decimal units, written as the reader's language writes them (kB, MB … in
// English; ko, Mo … in French, where a byte is an octet).
const BYTE_UNITS = ['byte', 'kilobyte', 'megabyte', 'gigabyte', 'terabyte'];

export function fmtBytes(n) {
  if (n === null || n === undefined) return '—';
  let i = 0;
  while (n >= 1000 && i < BYTE_UNITS.length - 1) {
    n /= 1000;
    i += 1;
  }
  const digits = { maximumFractionDigits: n < 10 && i ? 1 : 0 };
  const loc = lang === 'fr' ? 'fr-FR' : 'en-GB';
  // (CLDR's short English byte is "byte": bytes take the language's own symbol)
  if (i === 0) return `${n.toLocaleString(loc, digits)} ${t('unit.bytes')}`;
  return new Intl.NumberFormat(loc, { style: 'unit', unit: BYTE_UNITS[i], unitDisplay: 'short', ...digits }).format(n);
}

export function fmtDuration(ms) {
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60 ? `${s % 60} s` : ''}`.trim();
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${(s / 86400).toLocaleString(lang, { maximumFractionDigits: 1 })} ${t('unit.days')}`;
}

// --- wall-clock fields in the site's zone (for <input type="datetime-local">, the day
// picker and the timeline's ticks)

function parts(ms) {
  const o = {};
  for (const p of fmt({ year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' }, 'en-US').formatToParts(ms)) {
    o[p.type] = p.value;
  }
  return { y: +o.year, mo: +o.month, d: +o.day, hh: +o.hour % 24, mi: +o.minute, ss: +o.second };
}

// How far the site's clock is ahead of UTC at `ms`, in ms.
export function zoneOffset(ms) {
  const p = parts(ms);
  return Date.UTC(p.y, p.mo - 1, p.d, p.hh, p.mi, p.ss) - Math.floor(ms / 1000) * 1000;
}

export function zoneToUtc(y, mo, d, hh = 0, mi = 0, ss = 0) {
  const guess = Date.UTC(y, mo - 1, d, hh, mi, ss);
  let ms = guess - zoneOffset(guess);
  ms = guess - zoneOffset(ms);
  return ms;
}

const pad = (n, w = 2) => String(n).padStart(w, '0');

export function toLocalInput(ms) {
  if (!Number.isFinite(ms)) return '';
  const p = parts(ms);
  return `${p.y}-${pad(p.mo)}-${pad(p.d)}T${pad(p.hh)}:${pad(p.mi)}:${pad(p.ss)}`;
}

export function fromLocalInput(s) {
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2}))?)?$/.exec(s || '');
  if (!m) return NaN;
  return zoneToUtc(+m[1], +m[2], +m[3], +(m[4] || 0), +(m[5] || 0), +(m[6] || 0));
}

export function toDateInput(ms) {
  const p = parts(ms);
  return `${p.y}-${pad(p.mo)}-${pad(p.d)}`;
}

export function startOfDay(ms) {
  const p = parts(ms);
  return zoneToUtc(p.y, p.mo, p.d);
}

// A datetime-local input in the site's zone, with the zone named next to it.
export function timeInput(ms, attrs = {}) {
  return h('input', { type: 'datetime-local', step: 1, value: toLocalInput(ms), ...attrs });
}
