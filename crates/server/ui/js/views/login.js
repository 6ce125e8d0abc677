// Log-in: paste a token; `GET /api/v1/me` checks it.

import { h } from '../dom.js';

export function render(main, target, ctx) {
  const input = h('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'off', spellcheck: 'false', required: true, autofocus: true, placeholder: 'weft_…', 'aria-describedby': 'token-help' });
  const error = h('p', { class: 'error', role: 'alert', hidden: true });
  const form = h(
    'form',
    {
      class: 'card login',
      onsubmit: async (e) => {
        e.preventDefault();
        error.hidden = true;
        const ok = await ctx.login(input.value.trim()).catch((err) => {
          error.textContent = `The server cannot be reached: ${err.message}`;
          error.hidden = false;
          return null;
        });
        if (ok === false) {
          error.textContent = 'That token is not valid (unknown, revoked or expired).';
          error.hidden = false;
          input.select();
        } else if (ok) {
          location.hash = target.query.next || '#/runs';
        }
      },
    },
    h('h1', {}, 'Log in to Weft'),
    h('label', { for: 'token' }, 'API token'),
    input,
    h('p', { id: 'token-help', class: 'muted' }, 'Create one with ', h('code', {}, 'weft token create --role viewer'), '. It is kept in this tab only, until you close it.'),
    error,
    h('button', { type: 'submit', class: 'primary' }, 'Log in'),
  );
  main.append(form);
  return { destroy() {} };
}
