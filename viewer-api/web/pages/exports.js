// Exports (police): a range of one or more cameras, with a case and a reason, becomes a
// signed bundle anyone can verify. Progress while it is made; then "Download".

import { api, query } from '../api.js';
import { alertBox, cameraChoice, field, h } from '../dom.js';
import { fmtBytes, fromLocalInput, parseTime, t, timeEl, timeInput, timeZone, utc, rangeEl } from '../i18n.js';

function verifyText() {
  return h(
    'details',
    { class: 'verify' },
    h('summary', {}, t('exports.how_verify')),
    h('p', {}, t('exports.verify_intro')),
    h('pre', {}, 'viewer-api verify-export BUNDLE.zip'),
    h('p', {}, t('exports.verify_openssl')),
    h('pre', {}, 'unzip BUNDLE.zip -d bundle && cd bundle\nopenssl pkeyutl -verify -pubin -inkey device.pub.pem -rawin \\\n  -in manifest.json -sigfile manifest.sig\nopenssl pkey -pubin -in device.pub.pem -outform DER | tail -c 32 | sha256sum\nsha256sum *.mp4'),
    h('p', {}, t('exports.verify_files')),
    h('p', {}, t('exports.verify_key')),
  );
}

function downloadLink(id) {
  return h('a', { href: `/api/v1/exports/${id}/download`, download: `${id}.zip`, class: 'button primary' }, t('exports.download'));
}

export async function render(main, ctx) {
  const { params } = ctx;
  const cams = await ctx.loadCameras();
  const chosen = new Set((params.get('cameras') || '').split(',').filter(Boolean));
  const camBox = cameraChoice(t('exports.cameras'), cams, chosen);
  const from = parseTime(params.get('from'));
  const to = parseTime(params.get('to'));
  const alert = alertBox();
  main.append(h('div', { class: 'page-head' }, h('h1', {}, t('exports.title'))));
  if (ctx.me.role !== 'police') {
    main.append(h('p', {}, t('exports.police_only')));
    return null;
  }
  const fromIn = timeInput(from);
  const toIn = timeInput(to);
  const caseIn = h('input', { name: 'case', maxlength: 200, autocomplete: 'off' });
  const reasonIn = h('textarea', { name: 'reason', maxlength: 200, rows: 2 });
  const submit = h('button', { type: 'submit', class: 'primary' }, t('exports.submit'));
  const jobs = h('div', { class: 'jobs' });
  const form = h(
    'form',
    { class: 'card form-grid', novalidate: true },
    camBox,
    field(t('exports.from'), fromIn, t('common.zone', { zone: timeZone() })),
    field(t('exports.to'), toIn, t('exports.max24')),
    field(t('exports.case'), caseIn),
    field(t('exports.reason'), reasonIn),
    alert,
    h('p', { class: 'notice' }, t('exports.logged')),
    h('div', { class: 'actions' }, submit),
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const cameras = camBox.chosen();
    const f = fromLocalInput(fromIn.value);
    const tt = fromLocalInput(toIn.value);
    const problems = [];
    if (!cameras.length) problems.push(t('exports.need_camera'));
    if (!Number.isFinite(f) || !Number.isFinite(tt) || tt <= f) problems.push(t('exports.need_range'));
    else if (tt - f > 24 * 3600 * 1000) problems.push(t('exports.max24'));
    if (!caseIn.value.trim()) problems.push(t('exports.need_case'));
    if (!reasonIn.value.trim()) problems.push(t('exports.need_reason'));
    if (problems.length) {
      alert.show(problems.join(' '));
      return;
    }
    submit.disabled = true;
    alert.show('');
    try {
      const r = await api('/exports', {
        method: 'POST',
        body: { cameras, from: utc(f), to: utc(tt), case: caseIn.value.trim(), reason: reasonIn.value.trim() },
      });
      jobs.prepend(jobPanel(r.id));
    } catch (err) {
      alert.show(err.message);
    } finally {
      submit.disabled = false;
    }
  });
  main.append(form, jobs, verifyText());

  const list = h('div', { class: 'my-exports' }, h('h2', {}, t('exports.mine')));
  main.append(list);
  const timers = [];
  function jobPanel(id) {
    const bar = h('progress', { max: 100, value: 0, 'aria-label': t('exports.progress') });
    const status = h('p', { role: 'status' }, t('exports.queued'));
    const panel = h('section', { class: 'card job', 'data-export': id }, h('h2', {}, t('exports.job', { id: id.slice(0, 8) })), bar, status);
    const poll = async () => {
      try {
        const s = await api(`/exports/${id}`);
        bar.value = Math.round((s.progress || 0) * 100);
        if (s.state === 'done') {
          bar.value = 100;
          status.replaceChildren(t('exports.done', { size: fmtBytes(s.bytes) }), ' ', s.expires ? h('span', {}, t('exports.expires'), ' ', timeEl(Date.parse(s.expires))) : null);
          panel.append(downloadLink(id));
          loadList();
          return;
        }
        if (s.state === 'failed') {
          status.textContent = t('exports.failed', { error: s.error || '' });
          status.className = 'alert error';
          return;
        }
        status.textContent = t(`exports.state_${s.state}`);
        timers.push(setTimeout(poll, 500));
      } catch (err) {
        status.textContent = err.message;
      }
    };
    poll();
    return panel;
  }

  async function loadList() {
    let rows;
    try {
      rows = await api(`/exports${query({})}`);
    } catch (e) {
      list.replaceChildren(h('h2', {}, t('exports.mine')), h('p', { class: 'hint' }, e.message));
      return;
    }
    rows = Array.isArray(rows) ? rows : rows.exports || [];
    list.replaceChildren(
      h('h2', {}, t('exports.mine')),
      rows.length
        ? h('table', {},
            h('thead', {}, h('tr', {}, [t('exports.created'), t('exports.cameras'), t('exports.range'), t('exports.case'), t('exports.state'), t('exports.expires_col'), ''].map((x) => h('th', { scope: 'col' }, x)))),
            h('tbody', {}, rows.map((r) => h('tr', { 'data-export': r.id },
              h('td', {}, timeEl(Date.parse(r.created))),
              h('td', {}, (r.cameras || []).join(', ')),
              h('td', {}, rangeEl(Date.parse(r.from), Date.parse(r.to))),
              h('td', {}, r.case),
              h('td', {}, t(`exports.state_${r.state}`)),
              h('td', {}, r.expires ? timeEl(Date.parse(r.expires)) : '—'),
              h('td', {}, r.state === 'done' ? downloadLink(r.id) : null)))))
        : h('p', {}, t('exports.none')),
    );
  }
  loadList();
  return () => timers.forEach(clearTimeout);
}
