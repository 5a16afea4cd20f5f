// The console's shell: who is signed in, the header and navigation, and which page the
// address shows. Pages are modules with `render(main, ctx)` that may return a cleanup
// (stopping videos and timers) run before the next page.

import { api, setAuthLostHandler, stopIdle } from './api.js';
import { h, button } from './dom.js';
import { LANGS, getLang, setLang, setTimeZone, t } from './i18n.js';
import * as signin from './pages/signin.js';

const PAGES = {
  cameras: () => import('./pages/cameras.js'),
  camera: () => import('./pages/camera.js'),
  exports: () => import('./pages/exports.js'),
  holds: () => import('./pages/holds.js'),
  grants: () => import('./pages/grants.js'),
  audit: () => import('./pages/audit.js'),
  health: () => import('./pages/health.js'),
};

// Which pages each role has, in the order of the navigation.
const NAV = {
  police: ['cameras', 'exports', 'holds', 'audit', 'health'],
  it: ['cameras', 'holds', 'grants', 'audit', 'health'],
  contractor: ['cameras', 'health'],
  auditor: ['audit', 'holds', 'health'],
};
const PATHS = {
  cameras: '/',
  exports: '/exports',
  holds: '/holds',
  grants: '/grants',
  audit: '/audit',
  health: '/health',
};

const ctx = { me: null, site: {}, navigate, cameras: null };
let cleanup = null;
let expired = false;
let renderSeq = 0;

function routeOf(path) {
  const m = /^\/cameras\/([a-z0-9-]{1,32})\/?$/.exec(path);
  if (m) return { page: 'camera', id: m[1] };
  for (const [page, p] of Object.entries(PATHS)) if (p === path) return { page };
  return { page: 'notfound' };
}

export function navigate(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  render();
}

async function loadCameras() {
  if (!ctx.cameras) ctx.cameras = await api('/cameras').catch(() => []);
  return ctx.cameras;
}
ctx.loadCameras = loadCameras;

function authLost() {
  if (!ctx.me) return;
  ctx.me = null;
  ctx.cameras = null;
  expired = true;
  stopIdle();
  sessionStorage.setItem('rf-return', location.pathname + location.search);
  render();
}

async function signedIn() {
  expired = false;
  ctx.me = await api('/me');
  const back = sessionStorage.getItem('rf-return');
  sessionStorage.removeItem('rf-return');
  if (back && back !== location.pathname + location.search) navigate(back, { replace: true });
  else render();
}

async function signOut() {
  try {
    await api('/logout', { method: 'POST' });
  } catch {
    /* the session may have ended already */
  }
  ctx.me = null;
  ctx.cameras = null;
  stopIdle();
  navigate('/');
}

function langSelect() {
  const sel = h(
    'select',
    { 'aria-label': 'Language', class: 'lang', onchange: (e) => { setLang(e.target.value); render(); } },
    LANGS.map(([code, name]) => h('option', { value: code, lang: code, selected: code === getLang() }, name)),
  );
  return sel;
}

function header(route) {
  const me = ctx.me;
  const items = me ? NAV[me.role] || [] : [];
  const current = route.page === 'camera' ? 'cameras' : route.page;
  return h(
    'header',
    { class: 'top' },
    h('a', { href: '/', 'data-nav': '', class: 'brand' }, h('span', { class: 'logo', 'aria-hidden': 'true' }), 'Ringfence'),
    me
      ? h(
          'nav',
          { 'aria-label': t('nav.label') },
          h(
            'ul',
            {},
            items.map((p) =>
              h('li', {}, h('a', { href: PATHS[p], 'data-nav': '', 'aria-current': p === current ? 'page' : null }, t(`nav.${p}`))),
            ),
          ),
        )
      : h('span', { class: 'spacer' }),
    h(
      'div',
      { class: 'who' },
      langSelect(),
      me ? h('span', { class: 'user' }, me.name, ' ', h('span', { class: 'role' }, t(`role.${me.role}`))) : null,
      me ? button(t('nav.signout'), signOut, { class: 'ghost' }) : null,
    ),
  );
}

export async function render() {
  const seq = ++renderSeq;
  if (cleanup) {
    try {
      cleanup();
    } catch (e) {
      console.error(e);
    }
    cleanup = null;
  }
  const root = document.getElementById('app');
  const route = routeOf(location.pathname);
  const main = h('main', { id: 'main', tabindex: '-1' });
  root.replaceChildren(header(route), main);
  if (!ctx.me) {
    document.title = `${t('signin.title')} · Ringfence`;
    signin.render(main, { expired, onSignedIn: signedIn });
    return;
  }
  let page = route.page;
  if (page === 'cameras' && !NAV[ctx.me.role].includes('cameras')) {
    navigate(PATHS[NAV[ctx.me.role][0]], { replace: true });
    return;
  }
  if (page === 'notfound') {
    main.append(h('h1', {}, t('notfound.title')), h('p', {}, h('a', { href: '/', 'data-nav': '' }, t('notfound.home'))));
    return;
  }
  document.title = `${t(`nav.${page === 'camera' ? 'cameras' : page}`)} · Ringfence`;
  main.setAttribute('aria-busy', 'true');
  try {
    const mod = await PAGES[page]();
    if (seq !== renderSeq) return;
    const c = await mod.render(main, { ...ctx, route, params: new URLSearchParams(location.search) });
    if (seq !== renderSeq) {
      if (typeof c === 'function') c();
      return;
    }
    if (typeof c === 'function') cleanup = c;
  } catch (e) {
    if (e && e.status === 401) return;
    console.error(e);
    main.append(h('p', { class: 'alert error', role: 'alert' }, e.message || String(e)));
  } finally {
    main.removeAttribute('aria-busy');
  }
}

document.addEventListener('click', (e) => {
  const a = e.target.closest && e.target.closest('a[data-nav]');
  if (!a || e.defaultPrevented || e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey || e.altKey) return;
  e.preventDefault();
  navigate(a.getAttribute('href'));
});
window.addEventListener('popstate', () => render());

async function boot() {
  setAuthLostHandler(authLost);
  try {
    ctx.site = await fetch('/api/v1/site').then((r) => r.json());
    if (ctx.site.time_zone) setTimeZone(ctx.site.time_zone);
  } catch {
    /* defaults */
  }
  try {
    ctx.me = await api('/me');
  } catch {
    ctx.me = null;
    if (location.pathname !== '/') sessionStorage.setItem('rf-return', location.pathname + location.search);
  }
  render();
}

boot();
