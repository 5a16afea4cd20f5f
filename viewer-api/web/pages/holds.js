// Legal holds: footage under a hold survives the 30-day ring until released. Police
// place and release their own (with a case reference); IT and auditors see the list.

import { api } from '../api.js';
import { alertBox, button, cameraChoice, field, h } from '../dom.js';
import { fromLocalInput, parseTime, t, timeEl, timeInput, timeZone, utc, rangeEl } from '../i18n.js';

export async function render(main, ctx) {
  const { me, params } = ctx;
  const alert = alertBox();
  main.append(h('div', { class: 'page-head' }, h('h1', {}, t('holds.title'))), alert);
  if (me.role === 'police') {
    const cams = await ctx.loadCameras();
    const chosen = new Set((params.get('cameras') || '').split(',').filter(Boolean));
    const camBox = cameraChoice(t('exports.cameras'), cams, chosen);
    const fromIn = timeInput(parseTime(params.get('from')));
    const toIn = timeInput(parseTime(params.get('to')));
    const untilIn = timeInput(NaN);
    const caseIn = h('input', { maxlength: 200, autocomplete: 'off' });
    const form = h(
      'form',
      { class: 'card form-grid', novalidate: true },
      h('h2', {}, t('holds.place')),
      camBox,
      field(t('exports.from'), fromIn, t('common.zone', { zone: timeZone() })),
      field(t('exports.to'), toIn),
      field(t('holds.case'), caseIn),
      field(t('holds.until'), untilIn, t('holds.until_hint')),
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, t('holds.submit'))),
    );
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const cameras = camBox.chosen();
      const f = fromLocalInput(fromIn.value);
      const to = fromLocalInput(toIn.value);
      const until = fromLocalInput(untilIn.value);
      if (!cameras.length || !Number.isFinite(f) || !Number.isFinite(to) || to <= f || !caseIn.value.trim()) {
        alert.show(t('holds.incomplete'));
        return;
      }
      try {
        await api('/holds', { method: 'POST', body: { cameras, from: utc(f), to: utc(to), case: caseIn.value.trim(), ...(Number.isFinite(until) ? { until: utc(until) } : {}) } });
        alert.show(t('holds.placed'), 'ok');
        load();
      } catch (err) {
        alert.show(err.message);
      }
    });
    main.append(form);
  }
  const list = h('section', { class: 'card' });
  main.append(list);
  async function load() {
    let rows;
    try {
      rows = await api('/holds');
    } catch (e) {
      list.replaceChildren(h('p', { class: 'alert error' }, e.message));
      return;
    }
    rows = Array.isArray(rows) ? rows : rows.holds || [];
    list.replaceChildren(
      h('h2', {}, t('holds.list')),
      rows.length
        ? h('table', {},
            h('thead', {}, h('tr', {}, [t('holds.cameras'), t('exports.range'), t('holds.case'), t('holds.by'), t('holds.until'), t('holds.status'), ''].map((x) => h('th', { scope: 'col' }, x)))),
            h('tbody', {}, rows.map((r) => h('tr', { 'data-hold': r.id },
              h('td', {}, (r.cameras || []).map((c) => (c === 'all' ? t('holds.all') : c)).join(', ')),
              h('td', {}, rangeEl(Date.parse(r.from), Date.parse(r.to))),
              h('td', {}, r.case),
              h('td', {}, r.by || r.placed_by || ''),
              h('td', {}, r.until ? timeEl(Date.parse(r.until)) : '—'),
              h('td', {}, r.status || ''),
              h('td', {}, me.role === 'police' && (r.by || r.placed_by) === me.name && (!r.status || r.status === 'active')
                ? button(t('holds.release'), async () => {
                    if (!window.confirm(t('holds.confirm_release', { case: r.case }))) return;
                    try {
                      await api(`/holds/${r.id}`, { method: 'DELETE' });
                      load();
                    } catch (err) {
                      alert.show(err.message);
                    }
                  })
                : null)))))
        : h('p', {}, t('holds.none')),
    );
  }
  load();
  return null;
}
