// Sign-in. A lock-out (too many wrong passwords) says when to try again.

import { api, ApiError } from '../api.js';
import { alertBox, field, h } from '../dom.js';
import { fmtTime, t } from '../i18n.js';

export function render(main, { expired, onSignedIn }) {
  const user = h('input', { name: 'username', autocomplete: 'username', required: true, autocapitalize: 'none', spellcheck: 'false' });
  const pass = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const msg = alertBox();
  const submit = h('button', { type: 'submit', class: 'primary' }, t('signin.submit'));
  const form = h(
    'form',
    { class: 'signin card', novalidate: true },
    h('h1', {}, t('signin.title')),
    expired ? h('p', { class: 'notice' }, t('signin.expired')) : null,
    field(t('signin.username'), user),
    field(t('signin.password'), pass),
    msg,
    submit,
    h('p', { class: 'fineprint' }, t('signin.logged')),
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!user.value.trim() || !pass.value) {
      msg.show(t('signin.missing'));
      (user.value.trim() ? pass : user).focus();
      return;
    }
    submit.disabled = true;
    msg.show('');
    try {
      await api('/login', { method: 'POST', body: { username: user.value.trim(), password: pass.value } });
      pass.value = '';
      await onSignedIn();
    } catch (err) {
      pass.value = '';
      if (err instanceof ApiError && err.retryAfter) {
        const secs = Number(err.retryAfter);
        msg.show(t('signin.locked', { minutes: Math.max(1, Math.ceil(secs / 60)), at: fmtTime(Date.now() + secs * 1000, false) }));
      } else if (err instanceof ApiError && err.status === 401) {
        msg.show(t('signin.wrong'));
      } else {
        msg.show(err.message);
      }
      pass.focus();
    } finally {
      submit.disabled = false;
    }
  });
  main.append(h('div', { class: 'center' }, form));
  user.focus();
}
