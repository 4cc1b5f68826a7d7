// Log in: the token goes to sessionStorage.

import { html, useState } from '../../vendor/htm-3.1.1-preact-standalone.module.js';
import { logIn } from '../api.js';
import { t } from '../i18n.js';
import { Notice } from '../ui.js';

export function Login({ message, onDone }) {
  const [login, setLogin] = useState('admin');
  const [password, setPassword] = useState('');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);

  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError('');
    try {
      await logIn(login, password);
      onDone();
    } catch (err) {
      setError(err.status === 401 ? t('login.wrong') : err.message);
    } finally {
      setBusy(false);
    }
  };

  return html`<div class="login-wrap">
    <form class="card login" onSubmit=${submit}>
      <h2>${t('login.title')}</h2>
      ${message ? html`<${Notice} kind="info">${t(`login.${message}`)}<//>` : null}
      <label>${t('login.user')}<input name="login" autocomplete="username" value=${login} onInput=${(e) => setLogin(e.target.value)} required /></label>
      <label>${t('login.password')}<input name="password" type="password" autocomplete="current-password" value=${password} onInput=${(e) => setPassword(e.target.value)} required /></label>
      <${Notice}>${error}<//>
      <button class="btn primary" type="submit" disabled=${busy}>${t('login.submit')}</button>
    </form>
  </div>`;
}
