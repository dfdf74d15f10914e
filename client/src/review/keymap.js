// The review page's keyboard: one table of shortcuts (the help dialog is generated from it) and
// the mapping of a key event to a named action, kept free of the DOM so that node can test it.

/** Every keyboard shortcut of the review page, as the help dialog lists them. */
export const SHORTCUTS = [
  { group: 'Decision', keys: ['G'], text: 'Mark good and move on (tiers 1 and 2)' },
  { group: 'Decision', keys: ['Q'], text: 'Mark questionable and move on (tier 1)' },
  { group: 'Decision', keys: ['B'], text: 'Mark bad and move on (tier 2; needs an artifact or a comment)' },
  { group: 'Decision', keys: ['1 … 9', '0'], text: 'Artifact 1–10: cycle not stated → present → absent' },
  { group: 'Decision', keys: ['S'], text: 'Accept the model\'s suggestions (marks them present; the decision records them as accepted)' },
  { group: 'Decision', keys: ['C'], text: 'Write a comment (Esc leaves the comment box)' },
  { group: 'Decision', keys: ['L'], text: 'Use the crosshair position as the location of interest' },
  { group: 'Decision', keys: ['Shift+L'], text: 'Clear the location of interest' },
  { group: 'Decision', keys: ['Shift+1 … 5'], text: 'Confidence 1 (unsure) … 5 (certain)' },
  { group: 'Decision', keys: ['N'], text: 'Skip this scan (release it) and open the next one' },
  { group: 'Viewer', keys: ['Click', 'drag'], text: 'Move the crosshairs (the other two views follow)' },
  { group: 'Viewer', keys: ['Wheel', '↑', '↓'], text: 'Next / previous slice in the view under the mouse' },
  { group: 'Viewer', keys: ['PgUp', 'PgDn'], text: 'Ten slices forward / back' },
  { group: 'Viewer', keys: ['V'], text: 'Make the next view the active one (for the keys)' },
  { group: 'Viewer', keys: ['Right-drag', 'Shift+drag'], text: 'Window (left/right) and level (up/down)' },
  { group: 'Viewer', keys: ['P'], text: 'Next window/level preset' },
  { group: 'Viewer', keys: ['Ctrl+wheel', '+', '−'], text: 'Zoom in / out' },
  { group: 'Viewer', keys: ['Middle-drag', 'Ctrl+drag'], text: 'Pan' },
  { group: 'Viewer', keys: ['R'], text: 'Reset zoom, pan, crosshairs and window/level' },
  { group: 'Viewer', keys: ['X'], text: 'Show / hide the crosshairs' },
  { group: 'Viewer', keys: ['T'], text: 'Cycle the tile-map overlay (off, quality, each artifact)' },
  { group: 'Page', keys: ['?'], text: 'Show / hide this help' },
  { group: 'Page', keys: ['Esc'], text: 'Close this help, leave the comment box' },
];

/** The key that records each decision (shown on its button). */
export const DECISION_KEYS = { good: 'G', questionable: 'Q', bad: 'B' };

// Single letters (either case) without Shift-specific meaning, and the action each one names.
const LETTERS = {
  g: ['decide', 'good'],
  q: ['decide', 'questionable'],
  b: ['decide', 'bad'],
  c: ['focusComment'],
  s: ['acceptSuggestions'],
  n: ['skip'],
  v: ['nextView'],
  p: ['nextPreset'],
  r: ['resetView'],
  x: ['toggleCrosshair'],
  t: ['cycleTileLayer'],
};

const NAMED = {
  '?': ['toggleHelp'],
  Escape: ['closeHelp'],
  ArrowUp: ['moveSlice', 1],
  ArrowDown: ['moveSlice', -1],
  PageUp: ['moveSlice', 10],
  PageDown: ['moveSlice', -10],
  '+': ['zoom', 1.25],
  '=': ['zoom', 1.25],
  '-': ['zoom', 1 / 1.25],
  _: ['zoom', 1 / 1.25],
};

/**
 * The action a key press on the review page asks for, or null when the page leaves it alone.
 *
 * Args:
 *   event: {key, code, shiftKey, ctrlKey, metaKey, altKey}, as a KeyboardEvent has them.
 * Returns:
 *   {name, arg} (arg: the decision, the artifact index 0-9, the confidence 1-5, the slice step
 *   or the zoom factor), or null. Keys with Ctrl, Meta or Alt are the browser's.
 */
export function keyAction(event) {
  const { key = '', code = '', shiftKey = false } = event;
  if (event.ctrlKey || event.metaKey || event.altKey) return null;
  let entry = null;
  if (shiftKey && /^Digit[1-5]$/.test(code)) {
    entry = ['setConfidence', Number(code.slice(5))];
  } else if (!shiftKey && /^[0-9]$/.test(key)) {
    entry = ['cycleArtifact', key === '0' ? 9 : Number(key) - 1];
  } else if (key.length === 1 && key.toLowerCase() === 'l') {
    entry = [shiftKey ? 'clearLocation' : 'useLocation'];
  } else if (key in NAMED) {
    entry = NAMED[key];
  } else if (key.length === 1 && key.toLowerCase() in LETTERS) {
    entry = LETTERS[key.toLowerCase()];
  }
  return entry ? { name: entry[0], arg: entry[1] } : null;
}

/** Whether a key event's target is a text field (its keys are typing, except Escape). */
export function isTyping(target) {
  if (!target) return false;
  return ['TEXTAREA', 'INPUT', 'SELECT'].includes(target.tagName) || Boolean(target.isContentEditable);
}

/** The artifact hint of the help dialog: the first ten vocabulary entries and their digit keys. */
export function artifactKeys(vocabulary) {
  return vocabulary.slice(0, 10).map((entry, i) => ({ key: String((i + 1) % 10), label: entry.label }));
}
