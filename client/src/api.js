// Thin promise wrappers over Girder's REST helper (the global `girder` object at run time).

// Where this bundle was loaded from: /plugin_static/miqa/ (also serves the itk-wasm pipelines).
const scriptSrc = (typeof document !== 'undefined' && document.currentScript && document.currentScript.src) || '';
const STATIC_ROOT = scriptSrc ? scriptSrc.replace(/[^/]*$/, '') : 'plugin_static/miqa/';

export function staticRoot() {
  return STATIC_ROOT;
}

export function apiUrl(path) {
  return `${girder.rest.getApiRoot()}/${path.replace(/^\//, '')}`;
}

export function authHeaders() {
  const token = girder.auth.getCurrentToken() || window.localStorage.getItem('girderToken');
  return token ? { 'Girder-Token': token } : {};
}

/** An Error carrying the HTTP status and Girder's message. */
export class ApiError extends Error {
  constructor(xhr) {
    const json = xhr && xhr.responseJSON;
    super((json && json.message) || (xhr && xhr.statusText) || 'Request failed');
    this.status = xhr ? xhr.status : 0;
    this.json = json;
  }
}

/** girder.rest.restRequest as a real Promise; errors reject with ApiError (no global alert). */
export function rest(opts) {
  return new Promise((resolve, reject) => {
    girder.rest.restRequest({ error: null, ...opts })
      .done((resp) => resolve(resp))
      .fail((xhr) => reject(new ApiError(xhr)));
  });
}

/** A request with a JSON body. */
export function restJson(method, url, body) {
  return rest({
    method,
    url,
    data: JSON.stringify(body),
    contentType: 'application/json',
    processData: false,
  });
}

export function currentUser() {
  const user = girder.auth.getCurrentUser();
  return user ? user.toJSON() : null;
}

export function escapeHtml(value) {
  return String(value ?? '').replace(/[&<>"']/g, (c) => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
  }[c]));
}

export function alertMessage(text, type = 'danger') {
  girder.events.trigger('g:alert', { text, type, timeout: 5000, icon: type === 'success' ? 'ok' : 'attention' });
}

/** Items of a list answer, whether it is a bare list or {items: [...]}. */
export function listOf(resp) {
  if (Array.isArray(resp)) {
    return resp;
  }
  return (resp && (resp.items || resp.results || resp.data)) || [];
}

let rulesPromise = null;

/**
 * The review rules (GET /miqa/rules: tier decisions, the bad rule, the default artifacts, the
 * image file endings), loaded once per page load; a failed load is tried again next time.
 */
export function loadRules() {
  if (!rulesPromise) {
    rulesPromise = rest({ url: 'miqa/rules' }).catch((err) => {
      rulesPromise = null;
      throw err;
    });
  }
  return rulesPromise;
}

/** The calls a review session makes (see review/session.js), over Girder's REST API. */
export const reviewApi = {
  queue: ({ projectId, tier, limit, offset = 0 }) => rest({ url: `miqa/project/${projectId}/queue`, data: { tier, limit, offset } }),
  lock: (itemId) => rest({ url: `item/${itemId}/miqa/lock`, method: 'POST' }),
  unlock: (itemId) => rest({ url: `item/${itemId}/miqa/lock`, method: 'DELETE' }),
};
