// System health: is every camera recording, how much is held, what was deleted and why.

import { api, query } from '../api.js';
import { h } from '../dom.js';
import { fmtBytes, fmtDuration, t, timeEl, utc, rangeEl } from '../i18n.js';
import { stateText } from './cameras.js';

// The IT user who has looked at the box clears the case-open alarm (logged).
function ackButton(main, ctx) {
  const msg = h('span', { class: 'hint', role: 'status' });
  const b = h('button', { type: 'button', class: 'primary' }, t('health.tamper_ack'));
  b.addEventListener('click', async () => {
    b.disabled = true;
    try {
      await api('/tamper/ack', { method: 'POST', body: {} });
      main.replaceChildren();
      await render(main, ctx);
    } catch (e) {
      msg.textContent = e.message;
      b.disabled = false;
    }
  });
  return h('p', {}, b, ' ', msg);
}

export async function render(main, ctx) {
  main.append(h('div', { class: 'page-head' }, h('h1', {}, t('health.title'))));
  const body = h('div', { class: 'health' });
  main.append(body);
  let hlt;
  try {
    hlt = await api('/health');
  } catch (e) {
    body.append(h('p', { class: 'alert error', role: 'alert' }, e.message));
    return null;
  }
  const now = hlt.now ? Date.parse(hlt.now) : Date.now();
  const store = hlt.store;
  const alarms = [];
  const ret = (store && store.retention) || {};
  if (ret.alarm) alarms.push(...(ret.alarms && ret.alarms.length ? ret.alarms.map((a) => `${t('health.alarm_retention')} ${a}`) : [t('health.alarm_retention')]));
  if (ret.clock_refused) alarms.push(`${t('health.alarm_clock')}${ret.clock_refused_reason ? ` (${ret.clock_refused_reason})` : ''}`);
  const disk = (store && store.disk) || {};
  for (const a of disk.alarms || []) alarms.push(`${t(`health.disk_${a.kind}`)} (${a.text})`);
  const tamper = (store && store.tamper) || null;
  if (tamper && tamper.alarm) alarms.push(t(tamper.found_open_at_start ? 'health.tamper_found_open' : 'health.tamper_opened', { at: new Date(Date.parse(tamper.opened_at)).toISOString().replace('T', ' ').slice(0, 19), n: tamper.openings }));
  if (tamper && tamper.input_error) alarms.push(`${t('health.tamper_input')} (${tamper.input_error})`);
  const fwd = hlt.log_forwarding;
  if (fwd && !fwd.connected) alarms.push(`${t('health.alarm_syslog')}${fwd.last_error ? ` (${fwd.last_error})` : ''}`);
  const skew = Math.abs(Date.now() - now);
  body.append(
    h('section', { class: `card summary ${alarms.length ? 'bad' : 'ok'}` },
      h('h2', {}, alarms.length ? t('health.alarms') : t('health.all_ok')),
      alarms.length ? h('ul', {}, alarms.map((a) => h('li', {}, a))) : null,
      tamper && tamper.alarm && ctx.me.role === 'it' ? ackButton(main, ctx) : null,
      h('p', {}, t('health.server_time'), ' ', timeEl(now), skew > 5000 ? h('span', { class: 'badge warn' }, t('health.skew', { s: Math.round(skew / 1000) })) : null)),
  );
  if (store) {
    const used = store.bytes_used ?? store.used_bytes;
    const max = store.max_bytes;
    const pct = max ? Math.round((used / max) * 100) : null;
    body.append(
      h('section', { class: 'card' },
        h('h2', {}, t('health.store')),
        pct !== null ? h('p', {}, h('meter', { min: 0, max: 100, value: pct, high: 90, 'aria-label': t('health.fill') }), ` ${pct} % — ${fmtBytes(used)} / ${fmtBytes(max)}`) : null,
        store.fs_free_bytes !== undefined ? h('p', {}, t('health.fs_free', { free: fmtBytes(store.fs_free_bytes), size: fmtBytes(store.fs_size_bytes) })) : null,
        disk.device ? h('p', {}, t('health.disk', { dev: disk.device, n: disk.io_errors })) : null,
        store.holds_active !== undefined ? h('p', {}, t('health.holds', { n: store.holds_active })) : null,
        fwd && fwd.connected ? h('p', {}, t('health.syslog_ok', { n: fwd.forwarded_seq })) : null),
    );
  }
  const cams = hlt.cameras || [];
  body.append(
    h('section', { class: 'card' },
      h('h2', {}, t('health.cameras')),
      h('div', { class: 'table-wrap' }, h('table', {},
        h('thead', {}, h('tr', {}, [t('health.camera'), t('health.state'), t('health.held'), t('health.oldest'), t('health.retention'), t('health.bytes'), t('health.gaps24')].map((x) => h('th', { scope: 'col' }, x)))),
        h('tbody', {}, cams.map((c) => {
          const oldest = c.oldest ? Date.parse(c.oldest) : null;
          const gaps = c.gaps_24h || [];
          return h('tr', { 'data-camera': c.id },
            h('th', { scope: 'row' }, c.name || c.id),
            h('td', { class: `state-${c.state}` }, stateText({ ...c, since: c.state_since || c.since }), c.state_reason ? h('small', {}, ` (${c.state_reason})`) : null),
            h('td', {}, oldest ? fmtDuration(now - oldest) : '—'),
            h('td', {}, oldest ? timeEl(oldest) : '—'),
            h('td', {}, c.retention_days !== undefined ? `${c.retention_days} ${t('unit.days')}` : '—'),
            h('td', {}, fmtBytes(c.bytes)),
            h('td', {}, gaps.length ? h('ul', { class: 'gaps' }, gaps.slice(0, 8).map((g) => h('li', {}, timeEl(Date.parse(g.from)), ' ', g.reason))) : t('health.no_gaps')));
        }))))),
  );
  if (!['it', 'auditor'].includes(ctx.me.role)) return null;
  const journal = h('section', { class: 'card' }, h('h2', {}, t('health.journal')));
  body.append(journal);
  try {
    const rows = await api(`/journal${query({ since: utc(now - 7 * 24 * 3600 * 1000), limit: 200 })}`);
    const list = rows.entries || [];
    journal.append(
      h('p', { class: 'hint' }, t('health.journal_intro')),
      list.length
        ? h('div', { class: 'table-wrap' }, h('table', {},
            h('thead', {}, h('tr', {}, [t('health.deleted_at'), t('health.camera'), t('exports.range'), t('health.bytes'), t('health.why')].map((x) => h('th', { scope: 'col' }, x)))),
            h('tbody', {}, list.map((j) => h('tr', {},
              h('td', {}, timeEl(Date.parse(j.deleted_at))),
              h('td', {}, j.camera),
              h('td', {}, rangeEl(Date.parse(j.from), Date.parse(j.to))),
              h('td', {}, fmtBytes(j.bytes)),
              h('td', {}, j.reason))))))
        : h('p', {}, t('health.journal_none')),
    );
  } catch (e) {
    journal.append(h('p', { class: 'hint' }, e.message));
  }
  return null;
}
