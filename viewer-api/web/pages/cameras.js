// The cameras the user may see, with their state; live tiles where the role allows
// live view (asked for the reason once, for all tiles).

import { button, h } from '../dom.js';
import { fmtDateTime, t, timeEl } from '../i18n.js';
import { Player } from '../player.js';
import { askReason } from '../prompt.js';

export function stateText(c) {
  if (c.state === 'recording') return t('state.recording');
  if (c.state === 'offline') return c.since ? t('state.offline_since', { since: fmtDateTime(c.since ? Date.parse(c.since) : null) }) : t('state.offline');
  if (c.state === 'disk-full' || c.state === 'disk_full') return t('state.disk_full');
  return t('state.unknown');
}

export async function render(main, ctx) {
  ctx.cameras = null;
  const cams = await ctx.loadCameras();
  const players = [];
  main.append(h('div', { class: 'page-head' }, h('h1', {}, t('cameras.title'))));
  if (!cams.length) {
    main.append(h('p', {}, ctx.me.role === 'contractor' ? t('cameras.none_contractor') : t('cameras.none')));
    return null;
  }
  const liveAllowed = ctx.me.role !== 'auditor';
  const tiles = cams.map((c) => {
    const media = h('div', { class: 'tile-media' }, h('span', { class: 'placeholder', 'aria-hidden': 'true' }, c.name.slice(0, 1)));
    return {
      c,
      media,
      el: h(
        'li',
        { class: 'tile', 'data-camera': c.id },
        media,
        h(
          'div',
          { class: 'tile-body' },
          h('h2', {}, h('a', { href: `/cameras/${c.id}`, 'data-nav': '' }, c.name)),
          h('p', { class: `state state-${c.state}` }, h('span', { class: 'dot', 'aria-hidden': 'true' }), stateText(c)),
          c.reason ? h('p', { class: 'hint' }, c.reason) : null,
          c.since ? h('p', { class: 'hint' }, t('state.since'), ' ', timeEl(Date.parse(c.since))) : null,
          h('a', { href: `/cameras/${c.id}`, 'data-nav': '', class: 'button' }, t('cameras.open')),
        ),
      ),
    };
  });
  if (liveAllowed) {
    const liveBtn = button(t('cameras.live_tiles'), async () => {
      const reason = await askReason(ctx.me.role, { what: t('cameras.live_what') });
      if (!reason) return;
      liveBtn.disabled = true;
      for (const tile of tiles) {
        const p = new Player(tile.c);
        players.push(p);
        tile.media.replaceChildren(p.el);
        p.goLive(reason);
      }
    });
    main.querySelector('.page-head').append(liveBtn);
  }
  main.append(h('ul', { class: 'tiles' }, tiles.map((x) => x.el)));
  return () => players.forEach((p) => p.stop());
}
