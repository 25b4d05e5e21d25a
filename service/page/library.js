// The library: its videos a page at a time, uploads (several files, drag and drop) and paths added as jobs with a
// progress bar each (GET /jobs/{id}), deletion. Tells the rest of the page with a 'vmr:library-changed' event.
import {call, send, words} from './api.js';
import {clock, el, fieldChips, notify, takeFiles} from './dom.js';
import {play} from './player.js';

const K = 24;
const POLL_MS = 500;
const list = document.getElementById('library');
const count = document.getElementById('library-count');
const more = document.getElementById('library-more');
const sort = document.getElementById('library-sort');
const jobs = document.getElementById('jobs');
const upload = document.getElementById('upload');
const dropzone = document.getElementById('dropzone');
const fieldsInput = dropzone.querySelector('input[name=fields]');
const pathForm = document.getElementById('add-path');
const added = new Intl.DateTimeFormat(undefined, {dateStyle: 'medium', timeStyle: 'short'});
let listing = 0; // which listing is on screen, so a late page of an older one is dropped

function changed() {
  document.dispatchEvent(new Event('vmr:library-changed'));
}

async function remove(video, button) {
  // two clicks: the first one asks, the second one deletes
  if (!button.classList.contains('confirm')) {
    button.classList.add('confirm');
    button.textContent = 'Really delete?';
    setTimeout(() => {
      button.classList.remove('confirm');
      button.textContent = 'Delete';
    }, 4000);
    return;
  }
  button.disabled = true;
  try {
    await call('DELETE', `/videos/${video.id}`);
  } catch (err) {
    button.disabled = false;
    notify(`“${video.title}” was not deleted: ${words(err)}`);
    return;
  }
  changed();
}

function entry(video) {
  const status = video.status === 'ready' ? null : el('span', {class: 'warn'}, 'file missing');
  const button = el('button', {type: 'button', class: 'delete'}, 'Delete');
  button.addEventListener('click', () => remove(video, button));
  return el('article', {class: 'entry', 'data-library-video-id': video.id},
    el('button', {type: 'button', class: 'thumb', title: 'Play', onclick: () => play(video, [], 0)},
      el('img', {src: video.thumbnail_url, alt: video.title})),
    el('div', {class: 'info'},
      el('h3', {title: video.title}, video.title),
      el('p', {class: 'meta'}, [clock(video.duration), `added ${added.format(new Date(video.created * 1000))}`,
        ...fieldChips(video.fields)].join(' · '), status ? ' · ' : '', status),
      button));
}

async function showPage(token, mine) {
  const query = new URLSearchParams({k: K, sort: sort.value});
  if (token) query.set('page_token', token);
  let answer;
  try {
    answer = await call('GET', `/videos?${query}`);
  } catch (err) {
    if (mine === listing) notify(`The library could not be listed: ${words(err)}`);
    return;
  }
  if (mine !== listing) return;
  list.append(...answer.videos.map(entry));
  count.textContent = `${answer.total} video${answer.total === 1 ? '' : 's'}`;
  more.hidden = !answer.next_page_token;
  more.onclick = () => showPage(answer.next_page_token, mine);
}

export function loadLibrary() {
  listing += 1;
  list.replaceChildren();
  more.hidden = true;
  return showPage(null, listing);
}

// One row per job: a progress bar for the upload, then for the indexing, then the outcome in words.
function jobRow(name) {
  const bar = el('progress', {max: 1, value: 0});
  const state = el('span', {class: 'state'}, 'sending…');
  const row = el('li', {class: 'job'}, el('span', {class: 'name'}, name), bar, state);
  jobs.prepend(row);
  return {
    sending: fraction => { bar.value = fraction; state.textContent = `sending ${Math.round(100 * fraction)}%`; },
    fail: text => { row.classList.add('failed'); bar.remove(); state.textContent = text; },
    watch: job => follow(job, bar, state, row),
  };
}

async function follow(job, bar, state, row) {
  row.dataset.jobId = job.id;
  while (job.status === 'queued' || job.status === 'running') {
    bar.value = job.progress;
    state.textContent = job.status === 'queued' ? 'waiting to be indexed'
      : `indexing ${Math.round(100 * job.progress)}%`;
    await new Promise(resolve => setTimeout(resolve, POLL_MS));
    try {
      job = await call('GET', `/jobs/${job.id}`);
    } catch (err) {
      state.textContent = `lost track of the job: ${words(err)}`;
      return;
    }
  }
  row.dataset.status = job.status;
  if (job.status === 'done') {
    bar.value = 1;
    state.textContent = `added as video ${job.video_id}`;
    changed();
  } else {
    row.classList.add('failed');
    state.textContent = `failed: ${job.error}`;
  }
}

async function add(name, body) {
  const fields = fieldsInput.value.trim();
  if (fields) body.append('fields', fields);
  const row = jobRow(name);
  let job;
  try {
    job = await send('/videos', body, row.sending);
  } catch (err) {
    row.fail(`refused: ${words(err)}`);
    return;
  }
  await row.watch(job);
}

function addFiles(files) {
  // one after the other: the server indexes one video at a time anyway
  return files.reduce((previous, file) => previous.then(() => {
    const body = new FormData();
    body.append('file', file);
    return add(file.name, body);
  }), Promise.resolve());
}

takeFiles(upload, dropzone, dropzone, addFiles);

pathForm.addEventListener('submit', e => {
  e.preventDefault();
  const path = pathForm.path.value.trim();
  if (!path) return;
  const body = new FormData();
  body.append('path', path);
  pathForm.reset();
  add(path, body);
});

sort.addEventListener('change', loadLibrary);
