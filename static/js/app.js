// The admin page: hash routes, the frame (header, language, log out) and the live stream.

import { html, render, useEffect, useState } from '../vendor/htm-3.1.1-preact-standalone.module.js';
import { onSessionEnd, token, logOut } from './api.js';
import * as i18n from './i18n.js';
import * as live from './live.js';
import { t } from './i18n.js';
import { Login } from './views/login.js';
import { TaskList } from './views/tasks.js';
import { TaskEditor } from './views/editor.js';
import { TaskDetail } from './views/detail.js';
import { ImportWizard } from './views/import.js';
import { DncList } from './views/dnc.js';

function parseRoute() {
  const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean);
  if (parts[0] === 'login') return { name: 'login' };
  if (parts[0] === 'dnc') return { name: 'dnc' };
  if (parts[0] === 'tasks' && parts[1] === 'new') return { name: 'edit', id: null };
  if (parts[0] === 'tasks' && /^\d+$/.test(parts[1] || '')) {
    if (parts[2] === 'edit') return { name: 'edit', id: parts[1] };
    if (parts[2] === 'import') return { name: 'import', id: parts[1] };
    return { name: 'detail', id: parts[1] };
  }
  return { name: 'tasks' };
}

function LiveDot() {
  const [on, setOn] = useState(live.isConnected());
  useEffect(() => {
    const off = live.subscribe(() => setOn(live.isConnected()));
    setOn(live.isConnected()); // the stream may have opened between the render and now
    return off;
  }, []);
  return html`<span class=${`live-dot ${on ? 'on' : 'off'}`} title=${on ? t('live.on') : t('live.off')}>
    ${on ? t('live.on') : t('live.off')}</span>`;
}

function App() {
  const [route, setRoute] = useState(parseRoute());
  const [lang, setLang] = useState(i18n.currentLang());
  const [loginMessage, setLoginMessage] = useState('');

  useEffect(() => {
    const onHash = () => setRoute(parseRoute());
    addEventListener('hashchange', onHash);
    const off = onSessionEnd((reason) => {
      live.stop();
      setLoginMessage(reason);
      location.hash = '#/login';
    });
    return () => { removeEventListener('hashchange', onHash); off(); };
  }, []);

  const loggedIn = !!token();
  useEffect(() => {
    if (!loggedIn && route.name !== 'login') location.hash = '#/login';
    if (loggedIn) live.start();
  }, [loggedIn, route.name]);

  const switchLang = async () => {
    await i18n.setLang(lang === 'zh-CN' ? 'en' : 'zh-CN');
    setLang(i18n.currentLang());
  };

  let view;
  if (route.name === 'login' || !loggedIn) {
    view = html`<${Login} message=${loginMessage} onDone=${() => { setLoginMessage(''); live.start(); location.hash = '#/tasks'; }} />`;
  } else if (route.name === 'edit') {
    view = html`<${TaskEditor} key=${`e${route.id}`} id=${route.id} />`;
  } else if (route.name === 'detail') {
    view = html`<${TaskDetail} key=${`d${route.id}`} id=${route.id} />`;
  } else if (route.name === 'dnc') {
    view = html`<${DncList} />`;
  } else if (route.name === 'import') {
    view = html`<${ImportWizard} key=${`i${route.id}`} id=${route.id} />`;
  } else {
    view = html`<${TaskList} />`;
  }

  return html`<div class="shell" key=${lang}>
    <header class="topbar">
      <a class="brand" href="#/tasks"><span class="logo">☎</span> outcall <small>${t('app.subtitle')}</small></a>
      <nav>${loggedIn && route.name !== 'login' ? html`<a href="#/tasks" class=${route.name === 'tasks' ? 'active' : ''}>${t('nav.tasks')}</a>
        <a href="#/dnc" id="nav-dnc" class=${route.name === 'dnc' ? 'active' : ''}>${t('nav.dnc')}</a>` : null}</nav>
      <div class="topbar-right">
        ${loggedIn && route.name !== 'login' ? html`<${LiveDot} />` : null}
        <button class="btn ghost" id="lang-switch" onClick=${switchLang}>${lang === 'zh-CN' ? 'English' : '中文'}</button>
        ${loggedIn && route.name !== 'login' ? html`<button class="btn ghost" id="logout" onClick=${() => logOut()}>${t('nav.logout')}</button>` : null}
      </div>
    </header>
    <main>${view}</main>
  </div>`;
}

await i18n.init();
const root = document.getElementById('app');
root.textContent = ''; // the boot message goes; Preact would otherwise keep it
render(html`<${App} />`, root);
