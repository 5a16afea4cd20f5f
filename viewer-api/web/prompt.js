// Asking why, once per viewing: police give a case reference, everyone else a purpose.
// The dialog says that the look is written to the access log.

import { alertBox, field, h, newId } from './dom.js';
import { t } from './i18n.js';

export function askReason(role, { what = '' } = {}) {
  return new Promise((resolve) => {
    const police = role === 'police';
    const input = h('input', { name: police ? 'case' : 'purpose', maxlength: 200, required: true, autocomplete: 'off' });
    const titleId = newId('dlg');
    const msg = alertBox();
    const dialog = h('dialog', { class: 'prompt', 'aria-labelledby': titleId });
    const done = (value) => {
      dialog.close();
      dialog.remove();
      resolve(value);
    };
    const form = h(
      'form',
      { method: 'dialog' },
      h('h2', { id: titleId }, t('prompt.title')),
      what ? h('p', {}, what) : null,
      h('p', { class: 'notice' }, police ? t('prompt.logged_case') : t('prompt.logged_purpose')),
      field(police ? t('prompt.case') : t('prompt.purpose'), input),
      msg,
      h(
        'div',
        { class: 'actions' },
        h('button', { type: 'button', onclick: () => done(null) }, t('common.cancel')),
        h('button', { type: 'submit', class: 'primary' }, t('prompt.view')),
      ),
    );
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const v = input.value.trim();
      if (!v) {
        msg.show(police ? t('prompt.need_case') : t('prompt.need_purpose'));
        input.focus();
        return;
      }
      done(police ? { case: v } : { purpose: v });
    });
    dialog.addEventListener('cancel', (e) => {
      e.preventDefault();
      done(null);
    });
    dialog.append(form);
    document.body.append(dialog);
    dialog.showModal();
    input.focus();
  });
}

// "CASE-17" or "purpose: repair of the gate camera" as shown in the page.
export function reasonText(reason) {
  return reason.case ? t('prompt.case_is', { v: reason.case }) : t('prompt.purpose_is', { v: reason.purpose });
}
