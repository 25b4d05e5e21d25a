// Search: a text, "A then B", an image or clip dropped on the form, or "similar" on a moment; results grouped by
// video with their moments, a page at a time; filters built from the library's fields (GET /fields).
import {call, words} from './api.js';
import {clearMessage, clock, el, fieldChips, notify, takeFiles} from './dom.js';
import {play, track} from './player.js';

const K = 10;
const view = document.getElementById('view-search');
const form = document.getElementById('search');
const filterBox = document.getElementById('filters');
const results = document.getElementById('results');
const more = document.getElementById('more');
const summary = document.getElementById('summary');
let search = null; // the search on screen: {what, fetchPage(token), numbered}

// {"field": value | {"gte": .., "lte": ..}} from the filter controls; undefined when none is set.
function filters() {
  const out = {};
  for (const input of filterBox.querySelectorAll('[data-field]')) {
    if (input.value === '') continue;
    const value = input.tagName === 'SELECT' ? JSON.parse(input.value) : Number(input.value);
    if (input.dataset.op) out[input.dataset.field] = {...out[input.dataset.field], [input.dataset.op]: value};
    else out[input.dataset.field] = value;
  }
  return Object.keys(out).length ? out : undefined;
}

// a filter control's place: its field, and for a range its bound
const where = input => `${input.dataset.field} ${input.dataset.op ?? ''}`;

// The library's fields that make good filters: few enough values to list them all, or numbers.
export async function loadFields() {
  let answer;
  try {
    answer = await call('GET', '/fields');
  } catch (err) {
    notify(`The library's fields could not be read: ${words(err)}`);
    return;
  }
  // rebuilt whenever the library changes: what was chosen stays chosen
  const chosen = new Map([...filterBox.querySelectorAll('.field [data-field]')].map(i => [where(i), i.value]));
  filterBox.querySelectorAll('.field').forEach(node => node.remove());
  for (const field of answer.fields) {
    if (field.type === 'number') {
      filterBox.append(el('label', {class: 'field'}, `${field.name} from `,
        el('input', {type: 'number', step: 'any', 'data-field': field.name, 'data-op': 'gte'}), ' to ',
        el('input', {type: 'number', step: 'any', 'data-field': field.name, 'data-op': 'lte'})));
    } else if ((field.type === 'text' || field.type === 'boolean') && field.distinct <= field.values.length) {
      filterBox.append(el('label', {class: 'field'}, `${field.name} `,
        el('select', {'data-field': field.name}, el('option', {value: ''}, 'any'),
          field.values.map(v => el('option', {value: JSON.stringify(v.value)}, `${v.value} (${v.videos})`)))));
    }
  }
  for (const input of filterBox.querySelectorAll('.field [data-field]')) input.value = chosen.get(where(input)) ?? '';
}

function card(result, numbered) {
  const video = {id: result.video_id, title: result.title || `video ${result.video_id}`, duration: result.duration,
    media_url: result.media_url};
  const moments = result.moments;
  const bar = el('div', {class: 'track', 'aria-hidden': 'true'});
  track(bar, result.duration, moments, -1, numbered);
  const buttons = moments.map((m, i) => el('button', {
    type: 'button', class: 'moment', 'data-start': m.start, 'data-end': m.end, title: 'Play from here',
    onclick: () => playMoment(i),
  }, numbered ? `${i + 1}. ` : '', `${clock(m.start)}–${clock(m.end)} `,
  el('span', {class: 'score'}, m.score.toFixed(3))));
  const playMoment = index => {
    results.querySelectorAll('.moment.active').forEach(b => b.classList.remove('active'));
    buttons[index]?.classList.add('active');
    track(bar, result.duration, moments, index, numbered);
    play(video, moments, index, numbered);
  };
  const items = moments.map((m, i) => el('li', {}, buttons[i], el('button', {type: 'button', class: 'similar',
    title: 'Find moments like this one', onclick: () => similar(video, m)}, 'similar')));
  return el('article', {class: 'result', 'data-video-id': result.video_id},
    el('button', {type: 'button', class: 'thumb', title: 'Play the best moment', onclick: () => playMoment(0)},
      el('img', {src: result.thumbnail_url, alt: `${video.title} at ${clock(moments[0]?.start ?? 0)}`})),
    el('div', {class: 'info'},
      el('h3', {}, video.title),
      el('p', {class: 'meta'}, [clock(result.duration), `score ${result.score.toFixed(3)}`,
        ...fieldChips(result.fields)].join(' · ')),
      typeof result.fields.caption === 'string' ? el('p', {class: 'caption'}, result.fields.caption) : null,
      bar,
      el('ol', {class: 'moments'}, items)));
}

async function showPage(token) {
  const mine = search;
  more.disabled = true;
  let answer;
  try {
    answer = await mine.fetchPage(token);
  } catch (err) {
    if (mine === search) {
      summary.textContent = '';
      notify(`The search failed: ${words(err)}`);
    }
    return;
  } finally {
    more.disabled = false;
  }
  if (mine !== search) return; // a newer search replaced this one while it ran
  results.append(...answer.results.map(r => card(r, mine.numbered)));
  const shown = results.children.length;
  summary.textContent = shown ? `${shown} video${shown === 1 ? '' : 's'} for ${mine.what} · ` +
    `${Math.round(answer.took_ms)} ms on the server` : `Nothing found for ${mine.what}.`;
  more.hidden = !answer.next_page_token;
  more.onclick = () => showPage(answer.next_page_token);
  // for benchmarks/bench_page.py: when the results were on screen (the frame after this one was painted)
  requestAnimationFrame(() => setTimeout(() => performance.mark('vmr:results-rendered')));
}

function begin(what, fetchPage, numbered = false) {
  clearMessage();
  search = {what, fetchPage, numbered};
  results.replaceChildren();
  more.hidden = true;
  summary.textContent = `Searching for ${what}…`;
  return showPage(null);
}

function similar(video, moment) {
  const filter = filters();
  const what = `moments like ${video.title} ${clock(moment.start)}–${clock(moment.end)}`;
  return begin(what, token => call('POST', '/search', {json: {
    example: {video_id: video.id, start: moment.start, end: moment.end}, k: K, filters: filter,
    page_token: token ?? undefined}}));
}

function searchByFile(file) {
  const filter = filters();
  return begin(`moments that look like “${file.name}”`, token => {
    const body = new FormData();
    body.append('file', file);
    body.append('options', JSON.stringify({k: K, filters: filter, page_token: token ?? undefined}));
    return call('POST', '/search/file', {form: body});
  });
}

form.addEventListener('submit', e => {
  e.preventDefault();
  const query = form.q.value.trim();
  const then = form.then.value.trim();
  if (!query) {
    notify('Type what to look for, or drop an image or a clip on the search form.');
    return;
  }
  const body = {query, k: K, filters: filters()};
  let what = `“${query}”`;
  if (then) {
    body.then = then;
    body.max_gap = Number(form.max_gap.value || 10);
    what += `, then “${then}” within ${body.max_gap} s`;
  } else {
    body.mode = form.mode.value;
    what += ` (${body.mode})`;
  }
  begin(what, token => call('POST', '/search', {json: {...body, page_token: token ?? undefined}}), Boolean(then));
});

// "A then B" is a vector search: the mode does not apply to it
form.then.addEventListener('input', () => { form.mode.disabled = form.then.value.trim() !== ''; });

takeFiles(document.getElementById('example'), view, form, files => searchByFile(files[0]));
