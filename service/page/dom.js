// Small helpers shared by the page's modules: building elements, clock times, the message line.

// el('button', {class: 'x', 'data-start': 4, onclick: f}, 'text', child, [more children])
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  node.append(...children.flat().filter(c => c !== null && c !== undefined && c !== false));
  return node;
}

// 75.5 -> "1:15.5", 4 -> "0:04", 3725 -> "1:02:05"
export function clock(seconds, digits = 1) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '?';
  const tenths = Math.round(Math.max(0, seconds) * 10 ** digits) / 10 ** digits;
  const hours = Math.floor(tenths / 3600);
  const minutes = Math.floor((tenths % 3600) / 60);
  const rest = tenths % 60;
  const secs = (Number.isInteger(rest) ? rest.toFixed(0) : rest.toFixed(digits)).padStart(2, '0')
    .replace(/^(\d)\./, '0$1.');
  return hours ? `${hours}:${String(minutes).padStart(2, '0')}:${secs}` : `${minutes}:${secs}`;
}

// A video's short fields as "name: value" (the caption has a line of its own where it is shown at all).
export function fieldChips(fields) {
  return Object.entries(fields)
    .filter(([name, value]) => name !== 'caption' && ['string', 'number', 'boolean'].includes(typeof value)
      && String(value).length <= 40)
    .map(([name, value]) => `${name}: ${value}`);
}

const message = document.getElementById('message');
message.querySelector('button').addEventListener('click', () => { message.hidden = true; });

// The one place errors and notices are shown, in words.
export function notify(text) {
  message.querySelector('span').textContent = text;
  message.hidden = false;
}

export function clearMessage() {
  message.hidden = true;
}

// Files chosen in a file input, or dropped on `area` (marking `marked` while they are dragged over it), go to
// handle(files).
export function takeFiles(input, area, marked, handle) {
  input.addEventListener('change', () => {
    const files = [...input.files];
    input.value = ''; // so that choosing the same file again is a change too
    if (files.length) handle(files);
  });
  area.addEventListener('dragover', e => {
    e.preventDefault();
    marked.classList.add('dropping');
  });
  area.addEventListener('dragleave', () => marked.classList.remove('dropping'));
  area.addEventListener('drop', e => {
    e.preventDefault();
    marked.classList.remove('dropping');
    if (e.dataTransfer.files.length) handle([...e.dataTransfer.files]);
  });
}
