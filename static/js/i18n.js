// Translations: Chinese by default, English on request; the choice is kept in localStorage.

const LANG_KEY = 'outcall.lang';
export const LANGS = ['zh-CN', 'en'];
let lang = LANGS.includes(localStorage.getItem(LANG_KEY)) ? localStorage.getItem(LANG_KEY) : 'zh-CN';
let strings = {};

async function load(which) {
  const response = await fetch(`i18n/${which}.json`);
  strings = await response.json();
  lang = which;
  document.documentElement.lang = which;
}

export const init = () => load(lang);
export const currentLang = () => lang;

export async function setLang(which) {
  localStorage.setItem(LANG_KEY, which);
  await load(which);
}

/** The text of `key`, with `{name}` placeholders filled from `vars`. */
export function t(key, vars) {
  let s = strings[key];
  if (s === undefined) return key;
  if (vars) for (const [k, v] of Object.entries(vars)) s = s.split(`{${k}}`).join(String(v));
  return s;
}
