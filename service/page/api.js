// Every call to the service goes through here: the API key (kept for this browser session), JSON or multipart
// bodies, and the API's {detail, code} errors turned into words.

const STORE = 'vmr_api_key';
let apiKey = null;
let onRefused = () => {};

export class ApiError extends Error {
  constructor(status, code, detail) {
    super(detail);
    this.status = status;
    this.code = code;
  }
}

export function setKey(value) {
  apiKey = value || null;
  if (apiKey) sessionStorage.setItem(STORE, apiKey);
  else sessionStorage.removeItem(STORE);
  // <img> and <video> cannot send a header: the server also reads the key from this cookie, for reads only
  const expiry = apiKey ? '' : '; max-age=0';
  document.cookie = `${STORE}=${encodeURIComponent(apiKey ?? '')}; path=/; SameSite=Strict${expiry}`;
}

// every tab shares the cookie, and another one may have cleared it: set it again from this tab's key
if (sessionStorage.getItem(STORE)) setKey(sessionStorage.getItem(STORE));

// Called with the error whenever the server refuses the key (401 or 403), so the page can ask for it again.
export function whenRefused(handler) {
  onRefused = handler;
}

function headers() {
  return apiKey ? {'X-API-Key': apiKey} : {};
}

function answer(status, text) {
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    // not JSON (a proxy's error page, say): described by its status below
  }
  if (status >= 200 && status < 300) return body;
  const error = new ApiError(status, body?.code ?? 'error',
    body?.detail ?? `the server answered ${status}${text ? ': ' + text.slice(0, 200) : ''}`);
  if (status === 401 || status === 403) onRefused(error);
  throw error;
}

export async function call(method, path, {json, form} = {}) {
  const init = {method, headers: headers()};
  if (json !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(json);
  } else if (form) {
    init.body = form;
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'unreachable', 'the server did not answer; is it still running?');
  }
  return answer(response.status, await response.text());
}

// A multipart POST that reports how much of the body was sent (fetch cannot tell).
export function send(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', path);
    for (const [name, value] of Object.entries(headers())) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = e => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
    xhr.onload = () => {
      try {
        resolve(answer(xhr.status, xhr.responseText));
      } catch (err) {
        reject(err);
      }
    };
    xhr.onerror = () => reject(new ApiError(0, 'unreachable', 'the upload did not reach the server'));
    xhr.send(form);
  });
}

export function words(err) {
  if (err instanceof ApiError) return err.status ? `${err.message} (HTTP ${err.status}, ${err.code})` : err.message;
  return String(err?.message ?? err);
}
