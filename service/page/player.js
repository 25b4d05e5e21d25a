// The one player: a video played from a moment's start (the file is served with HTTP Range, so it seeks), and
// its moments marked on the timeline under it.
import {clock, el, notify} from './dom.js';

const viewer = document.getElementById('viewer');
const player = document.getElementById('player');
const timeline = document.getElementById('timeline');
const playhead = timeline.querySelector('.playhead');
const caption = document.getElementById('now-playing');
let current = {ticket: 0, videoId: null};

// Marks for `moments` on a bar that stands for `duration` seconds; numbered when they are an ordered pair.
export function track(bar, duration, moments, active, numbered) {
  const length = duration || Math.max(1, ...moments.map(m => m.end));
  const pct = t => `${(100 * Math.min(Math.max(t, 0), length) / length).toFixed(2)}%`;
  bar.querySelectorAll('.mark').forEach(mark => mark.remove());
  moments.forEach((m, i) => bar.append(el('span', {
    class: i === active ? 'mark active' : 'mark',
    style: `left:${pct(m.start)};width:calc(${pct(m.end)} - ${pct(m.start)})`,
    title: `${clock(m.start)}–${clock(m.end)}`,
  }, numbered ? String(i + 1) : '')));
}

function metadata() {
  return new Promise((resolve, reject) => {
    const done = () => { off(); resolve(); };
    const failed = () => {
      off();
      reject(new Error(player.error?.message || 'the file could not be loaded'));
    };
    const off = () => {
      player.removeEventListener('loadedmetadata', done);
      player.removeEventListener('error', failed);
    };
    player.addEventListener('loadedmetadata', done);
    player.addEventListener('error', failed);
  });
}

// video: {id, title, duration, media_url}; plays moments[index] (from the start when there are no moments).
export async function play(video, moments, index, numbered = false) {
  const ticket = ++current.ticket;
  viewer.hidden = false;
  const start = moments[index]?.start ?? 0;
  caption.textContent = `${video.title} · from ${clock(start)}`;
  track(timeline, video.duration, moments, index, numbered);
  if (current.videoId !== video.id) {
    current.videoId = video.id;
    const loaded = metadata();
    player.src = video.media_url;
    try {
      await loaded;
    } catch (err) {
      if (ticket === current.ticket) notify(`The video “${video.title}” cannot be played: ${err.message}`);
      current.videoId = null;
      return;
    }
  }
  if (ticket !== current.ticket) return; // another moment was clicked meanwhile
  if (!video.duration) track(timeline, player.duration, moments, index, numbered);
  player.currentTime = start;
  viewer.scrollIntoView({block: 'nearest', behavior: 'smooth'});
  try {
    await player.play();
  } catch (err) {
    // AbortError: another source was set before this one started, which is not a failure
    if (err.name !== 'AbortError') notify(`The video cannot play: ${err.message}`);
  }
}

player.addEventListener('timeupdate', () => {
  if (player.duration) playhead.style.left = `${(100 * player.currentTime / player.duration).toFixed(2)}%`;
});

timeline.addEventListener('click', e => {
  if (!player.duration) return;
  const box = timeline.getBoundingClientRect();
  player.currentTime = player.duration * (e.clientX - box.left) / box.width;
});
