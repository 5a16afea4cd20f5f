// The access log: who looked at what, when and why. Filters, the chain's verification,
// and the subject-access report a person filmed may ask for (printable).

import { api, query } from '../api.js';
import { alertBox, button, field, h } from '../dom.js';
import { fmtDateTime, fromLocalInput, rangeEl, t, timeEl, timeInput, timeZone, utc } from '../i18n.js';

const ACTIONS = ['playback', 'live', 'live.end', 'export.request', 'export.download', 'export.expire', 'login', 'logout', 'grant.create', 'grant.revoke', 'hold.create', 'hold.release', 'audit.read', 'audit.subject-access'];

function rangeText(e) {
  if (!e.from) return '—';
  return rangeEl(Date.parse(e.from), e.to ? Date.parse(e.to) : NaN);
}

// The server writes "allowed" or "denied: why"; the words are translated, the why is not.
function outcomeText(o) {
  if (!o) return '';
  if (o === 'allowed') return t('audit.allowed');
  if (o.startsWith('allowed')) return `${t('audit.allowed')}${o.slice('allowed'.length)}`;
  if (o.startsWith('denied')) return `${t('audit.denied')}${o.slice('denied'.length)}`;
  return o;
}

// A role or an action in the reader's language; one the console does not know, as the
// log has it.
function named(prefix, id) {
  if (!id) return '';
  const key = `${prefix}.${id}`;
  const text = t(key);
  return text === key ? id : text;
}

// An action: its name, and the log's own word for it (what the collector and
// `audit verify` show) beneath.
function actionCell(a) {
  const name = named('action', a);
  return name === a ? a : [name, h('br'), h('small', { class: 'action-id' }, a)];
}

// Entries per page; older pages follow the server's X-Next-Before cursor.
const PAGE = 200;

// Newest first, a page at a time: the server answers each page oldest first.
async function fetchPage(path, q, before) {
  const r = await api(`${path}${query({ ...q, limit: PAGE, before })}`, { withHeaders: true });
  return { rows: r.data.slice().reverse(), next: r.headers.get('x-next-before') };
}

function entryRow(e) {
  const denied = (e.outcome || '').startsWith('denied');
  return h(
    'tr',
    { 'data-action': e.action, 'data-actor': e.actor, 'data-camera': e.camera || '', class: denied ? 'denied' : null },
    h('td', {}, e.seq),
    h('td', {}, timeEl(Date.parse(e.at))),
    h('td', {}, e.actor, h('br'), h('small', { 'data-role': e.role || '' }, named('role', e.role))),
    h('td', {}, actionCell(e.action)),
    h('td', {}, e.camera || '—'),
    h('td', {}, rangeText(e)),
    h('td', {}, e.case ? [h('small', {}, t('audit.case')), ' ', e.case] : e.purpose || '—'),
    h('td', {}, e.client || ''),
    h('td', { class: 'outcome' }, outcomeText(e.outcome)),
  );
}

// A table of entries; `more()` (if given) fetches the next, older page.
function table(first, empty, more) {
  if (!first.rows.length) return h('p', {}, empty);
  const body = h('tbody', {}, first.rows.map(entryRow));
  let next = first.next;
  const moreBtn = button(t('audit.older'), async () => {
    moreBtn.disabled = true;
    const page = await more(next);
    body.append(...page.rows.map(entryRow));
    next = page.next;
    moreBtn.disabled = false;
    moreBtn.hidden = !next;
  }, { class: 'no-print', hidden: !next || !more });
  return h(
    'div',
    { class: 'table-wrap' },
    h('table', { class: 'log' },
      h('thead', {}, h('tr', {}, ['#', t('audit.when'), t('audit.who'), t('audit.action'), t('audit.camera'), t('audit.footage'), t('audit.why'), t('audit.client'), t('audit.outcome')].map((x) => h('th', { scope: 'col' }, x)))),
      body),
    moreBtn,
  );
}

export async function render(main, ctx) {
  const { me } = ctx;
  const alert = alertBox();
  const chain = h('p', { class: 'chain', 'data-testid': 'chain-status', role: 'status' }, t('audit.chain_checking'));
  main.append(h('div', { class: 'page-head no-print' }, h('h1', {}, t('audit.title')), chain), alert);
  if (me.role === 'police') chain.textContent = t('audit.own_only');
  else {
    api('/audit/verify')
      .then((r) => {
        const ok = r.entries > 0 ? t('audit.chain_ok', { n: r.entries }) : t('audit.chain_empty');
        chain.textContent = r.intact ? ok : t('audit.chain_broken', { seq: r.first_bad_seq, why: r.why });
        chain.className = `chain ${r.intact ? 'ok' : 'bad'}`;
      })
      .catch((e) => {
        chain.textContent = e.message;
      });
  }

  // --- the log, filtered
  const camIn = h('input', { list: 'audit-cams', maxlength: 32, autocomplete: 'off' });
  const fromIn = timeInput(NaN);
  const toIn = timeInput(NaN);
  const actorIn = h('input', { maxlength: 64, autocomplete: 'off', value: me.role === 'police' ? me.name : '', disabled: me.role === 'police' });
  const actionSel = h('select', {}, h('option', { value: '' }, t('audit.any')), ACTIONS.map((a) => h('option', { value: a }, named('action', a))));
  const results = h('div', { class: 'results' });
  const cams = await ctx.loadCameras().catch(() => []);
  const filters = h(
    'form',
    { class: 'card filters no-print', novalidate: true },
    h('h2', {}, t('audit.log')),
    h('datalist', { id: 'audit-cams' }, cams.map((c) => h('option', { value: c.id }, c.name))),
    h('div', { class: 'row' },
      field(t('audit.camera'), camIn),
      field(t('audit.from'), fromIn, t('common.zone', { zone: timeZone() })),
      field(t('audit.to'), toIn),
      field(t('audit.actor'), actorIn),
      field(t('audit.action'), actionSel),
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, t('audit.search')))),
  );
  filters.addEventListener('submit', (e) => {
    e.preventDefault();
    search();
  });
  async function search() {
    alert.show('');
    const f = fromLocalInput(fromIn.value);
    const to = fromLocalInput(toIn.value);
    const q = {
      camera: camIn.value.trim(),
      from: Number.isFinite(f) ? utc(f) : '',
      to: Number.isFinite(to) ? utc(to) : '',
      actor: me.role === 'police' ? '' : actorIn.value.trim(),
    };
    try {
      const action = actionSel.value;
      const load = async (before) => {
        const page = await fetchPage('/audit', q, before);
        if (action) page.rows = page.rows.filter((r) => r.action === action);
        return page;
      };
      const first = await load();
      results.replaceChildren(h('p', { class: 'hint' }, t('audit.newest')), table(first, t('audit.none'), load));
    } catch (err) {
      alert.show(err.message);
    }
  }
  main.append(filters, results);

  // --- the subject-access report
  if (me.role === 'auditor' || me.role === 'it') {
    const sCam = h('input', { list: 'audit-cams', maxlength: 32, autocomplete: 'off' });
    const sFrom = timeInput(NaN);
    const sTo = timeInput(NaN);
    const report = h('section', { class: 'report' });
    const form = h(
      'form',
      { class: 'card no-print', novalidate: true },
      h('h2', {}, t('sar.title')),
      h('p', { class: 'hint' }, t('sar.intro')),
      h('div', { class: 'row' },
        field(t('sar.camera'), sCam),
        field(t('sar.from'), sFrom, t('common.zone', { zone: timeZone() })),
        field(t('sar.to'), sTo),
        h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, t('sar.submit')))),
    );
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const f = fromLocalInput(sFrom.value);
      const to = fromLocalInput(sTo.value);
      if (!sCam.value.trim() || !Number.isFinite(f) || !Number.isFinite(to) || to <= f) {
        alert.show(t('sar.incomplete'));
        return;
      }
      alert.show('');
      try {
        const sq = { camera: sCam.value.trim(), from: utc(f), to: utc(to) };
        // A report is printed whole: every page of it (a camera and a period are few).
        const first = await fetchPage('/audit/subject-access', sq);
        for (let i = 0; first.next && i < 50; i += 1) {
          const page = await fetchPage('/audit/subject-access', sq, first.next);
          first.rows.push(...page.rows);
          first.next = page.next;
        }
        const load = (before) => fetchPage('/audit/subject-access', sq, before);
        report.replaceChildren(
          h('h2', {}, t('sar.heading')),
          h('dl', { class: 'facts' },
            h('dt', {}, t('sar.camera')), h('dd', {}, sCam.value.trim()),
            h('dt', {}, t('sar.period')), h('dd', {}, timeEl(f), ' – ', timeEl(to), ` (${timeZone()})`),
            h('dt', {}, t('sar.generated')), h('dd', {}, fmtDateTime(Date.now()), ` — ${me.name}`),
            h('dt', {}, t('sar.count')), h('dd', {}, first.next ? t('sar.count_more', { n: first.rows.length }) : String(first.rows.length))),
          table(first, t('sar.none'), load),
          h('p', { class: 'fineprint' }, t('sar.footer')),
          button(t('sar.print'), () => window.print(), { class: 'no-print' }),
        );
        report.scrollIntoView({ block: 'start' });
      } catch (err) {
        alert.show(err.message);
      }
    });
    main.insertBefore(report, filters);
    main.insertBefore(form, report);
  }
  search();
  return null;
}
