// Building the page without innerHTML: every text from the server or the user becomes a
// text node, so nothing they contain can run.

const PROPS = new Set(['value', 'checked', 'selected', 'disabled', 'hidden', 'muted', 'indeterminate']);
let uid = 0;

export function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2).toLowerCase(), v);
    else if (k === 'class') el.className = v;
    else if (PROPS.has(k)) el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, kids);
  return el;
}

export function append(el, kids) {
  for (const k of kids.flat(Infinity)) {
    if (k === null || k === undefined || k === false) continue;
    el.append(k instanceof Node ? k : String(k));
  }
  return el;
}

export function newId(prefix = 'f') {
  uid += 1;
  return `${prefix}${uid}`;
}

// A labelled control: the label is a separate element whose text is the control's
// accessible name, exactly.
export function field(label, input, hint) {
  if (!input.id) input.id = newId();
  const hintEl = hint ? h('small', { id: `${input.id}-hint`, class: 'hint' }, hint) : null;
  if (hintEl) input.setAttribute('aria-describedby', hintEl.id);
  return h('div', { class: 'field' }, h('label', { for: input.id }, label), input, hintEl);
}

export function button(label, onclick, attrs = {}) {
  return h('button', { type: 'button', onclick, ...attrs }, label);
}

// A message area announced to screen readers.
export function alertBox() {
  const el = h('p', { class: 'alert', role: 'alert', hidden: true });
  el.show = (text, kind = 'error') => {
    el.textContent = text;
    el.className = `alert ${kind}`;
    el.hidden = !text;
  };
  return el;
}

// A fieldset of camera checkboxes; `.chosen()` gives the ids ticked.
export function cameraChoice(legend, cams, chosen = new Set()) {
  const boxes = cams.map((c) => h('input', { type: 'checkbox', name: 'camera', value: c.id, checked: chosen.has(c.id) }));
  const el = h('fieldset', {}, h('legend', {}, legend), boxes.map((b, i) => h('label', { class: 'check' }, b, ' ', cams[i].name)));
  el.chosen = () => boxes.filter((b) => b.checked).map((b) => b.value);
  return el;
}
