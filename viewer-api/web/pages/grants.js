// Grants (IT): a contractor sees only the cameras, the window and the footage a grant
// names, and only while it runs. Ticket reference required.

import { api } from '../api.js';
import { alertBox, button, cameraChoice, field, h } from '../dom.js';
import { fromLocalInput, t, timeEl, timeInput, timeZone, utc, rangeEl } from '../i18n.js';

export async function render(main, ctx) {
  const cams = await ctx.loadCameras();
  const camBox = cameraChoice(t('exports.cameras'), cams);
  const alert = alertBox();
  main.append(h('div', { class: 'page-head' }, h('h1', {}, t('grants.title'))), alert);
  const now = Date.now();
  const userIn = h('input', { autocomplete: 'off', maxlength: 64 });
  const fromIn = timeInput(now);
  const untilIn = timeInput(now + 4 * 3600 * 1000);
  const liveBox = h('input', { type: 'checkbox', checked: true });
  const pbBox = h('input', { type: 'checkbox' });
  const pbFrom = timeInput(NaN);
  const pbTo = timeInput(NaN);
  const ticketIn = h('input', { autocomplete: 'off', maxlength: 200 });
  const form = h(
    'form',
    { class: 'card form-grid', novalidate: true },
    h('h2', {}, t('grants.new')),
    field(t('grants.user'), userIn),
    camBox,
    field(t('grants.from'), fromIn, t('common.zone', { zone: timeZone() })),
    field(t('grants.until'), untilIn),
    h('fieldset', {}, h('legend', {}, t('grants.allow')), h('label', { class: 'check' }, liveBox, ' ', t('grants.live')), h('label', { class: 'check' }, pbBox, ' ', t('grants.playback'))),
    field(t('grants.pb_from'), pbFrom),
    field(t('grants.pb_to'), pbTo),
    field(t('grants.ticket'), ticketIn),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, t('grants.submit'))),
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const allow = [liveBox.checked ? 'live' : null, pbBox.checked ? 'playback' : null].filter(Boolean);
    const body = {
      user: userIn.value.trim(),
      cameras: camBox.chosen(),
      from: utc(fromLocalInput(fromIn.value)),
      until: utc(fromLocalInput(untilIn.value)),
      allow,
      ticket: ticketIn.value.trim(),
    };
    if (pbBox.checked) {
      const a = fromLocalInput(pbFrom.value);
      const b = fromLocalInput(pbTo.value);
      if (Number.isFinite(a)) body.playback_from = utc(a);
      if (Number.isFinite(b)) body.playback_to = utc(b);
    }
    if (!body.user || !body.cameras.length || !allow.length || !body.ticket) {
      alert.show(t('grants.incomplete'));
      return;
    }
    try {
      await api('/grants', { method: 'POST', body });
      alert.show(t('grants.created'), 'ok');
      load();
    } catch (err) {
      alert.show(err.message);
    }
  });
  main.append(form);
  const list = h('section', { class: 'card' });
  main.append(list);
  async function load() {
    let rows;
    try {
      rows = await api('/grants');
    } catch (e) {
      list.replaceChildren(h('p', { class: 'alert error' }, e.message));
      return;
    }
    list.replaceChildren(
      h('h2', {}, t('grants.list')),
      rows.length
        ? h('table', {},
            h('thead', {}, h('tr', {}, [t('grants.user'), t('exports.cameras'), t('grants.window'), t('grants.allow'), t('grants.pb_range'), t('grants.ticket'), ''].map((x) => h('th', { scope: 'col' }, x)))),
            h('tbody', {}, rows.map((g) => h('tr', { 'data-grant': g.id },
              h('td', {}, g.user),
              h('td', {}, (g.cameras || []).join(', ')),
              h('td', {}, rangeEl(Date.parse(g.from), Date.parse(g.until))),
              h('td', {}, (g.allow || []).map((a) => t(`grants.${a}`)).join(', ')),
              h('td', {}, g.playback_from ? [rangeEl(Date.parse(g.playback_from), Date.parse(g.playback_to))] : '—'),
              h('td', {}, g.ticket),
              h('td', {}, g.revoked ? t('grants.revoked') : button(t('grants.revoke'), async () => {
                try {
                  await api(`/grants/${g.id}`, { method: 'DELETE' });
                  load();
                } catch (err) {
                  alert.show(err.message);
                }
              }))))))
        : h('p', {}, t('grants.none')),
    );
  }
  load();
  return null;
}
