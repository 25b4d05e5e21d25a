// The page's start: which view is shown (#search or #library), the API key (GET /auth says what it guards; asked for
// once when the server has one and kept for this browser session), and the server's state in the header
// (GET /healthz, read once the page may read).
import {call, setKey, whenRefused, words} from './api.js';
import {clearMessage, notify} from './dom.js';
import {loadLibrary} from './library.js';
import {loadFields} from './search.js';

const STATUS_MS = 5000;
const status = document.getElementById('status');
const keyForm = document.getElementById('key');
const keyNote = document.getElementById('key-note');
let videos = null; // the library's size at the last look, to notice videos added elsewhere
let loaded = false; // whether the fields and the library have been read
let readable = false; // whether the server lets this page read (no key needed, or the key kept is accepted)

function showView() {
  const name = location.hash === '#library' ? 'library' : 'search';
  for (const view of document.querySelectorAll('.view')) view.hidden = view.id !== `view-${name}`;
  for (const link of document.querySelectorAll('[data-view]')) {
    if (link.dataset.view === name) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

function load() {
  loaded = true;
  loadFields();
  loadLibrary();
}

function askForKey(note) {
  keyNote.textContent = note;
  keyForm.hidden = false;
  keyForm.api_key.focus();
}

// What the server says of the key: ask for one when it needs it and has none (or refused the one kept).
function authorize(auth) {
  if (auth.key === 'accepted' || auth.key === 'not_required') {
    keyForm.hidden = true;
  } else if (auth.key === 'wrong') {
    setKey(null);
    askForKey('The server refused the key kept for this session (wrong API key): enter it again.');
  } else {
    askForKey(auth.reads ? 'This server needs its API key to search and to show the library.'
      : 'This server needs its API key to add or delete videos.');
  }
  readable = !auth.reads || auth.key === 'accepted';
  if (readable && !loaded) load();
}

async function checkAuth() {
  try {
    return await call('GET', '/auth');
  } catch (err) {
    status.textContent = `server: ${words(err)}`;
    return null;
  }
}

function describe(health) {
  const parts = [`${health.videos} video${health.videos === 1 ? '' : 's'}`];
  const demo = health.default_library;
  if (demo && demo !== 'ready') parts.push(`demo library: ${demo}`);
  const busy = health.jobs.queued + health.jobs.running;
  if (busy) parts.push(`${busy} job${busy === 1 ? '' : 's'} in progress`);
  if (health.library && typeof health.library === 'object') {
    // the watched --library folder, whatever its progress object holds
    const progress = Object.entries(health.library).filter(([, v]) => v !== null && typeof v !== 'object')
      .map(([k, v]) => `${k} ${v}`).join(', ');
    parts.push(`library folder: ${progress}`);
  }
  return parts.join(' · ');
}

async function checkHealth() {
  if (!readable) return null;
  let health;
  try {
    health = await call('GET', '/healthz');
  } catch (err) {
    status.textContent = `server: ${words(err)}`;
    return null;
  }
  status.textContent = describe(health);
  if (loaded && videos !== null && health.videos !== videos) document.dispatchEvent(new Event('vmr:library-changed'));
  videos = health.videos;
  return health;
}

keyForm.addEventListener('submit', async e => {
  e.preventDefault();
  setKey(keyForm.api_key.value.trim());
  const auth = await checkAuth();
  if (!auth) return;
  if (auth.key === 'accepted') {
    keyForm.reset();
    clearMessage();
    authorize(auth);
    checkHealth();
  } else {
    setKey(null);
    keyForm.api_key.select();
    keyNote.textContent = 'The server refused this key: wrong API key.';
  }
});

// the refused call says what failed in words; here the key is asked for again when that was the reason
whenRefused(async () => {
  const auth = await checkAuth();
  if (auth) authorize(auth);
});

document.addEventListener('vmr:library-changed', () => {
  loadLibrary();
  loadFields();
  checkHealth();
});

window.addEventListener('hashchange', showView);
// a file dropped outside the drop areas would otherwise replace the page
window.addEventListener('dragover', e => e.preventDefault());
window.addEventListener('drop', e => e.preventDefault());

showView();
const auth = await checkAuth();
if (auth) {
  authorize(auth);
  checkHealth();
} else {
  notify('The server did not answer; reload the page once it runs.');
}
setInterval(checkHealth, STATUS_MS);
