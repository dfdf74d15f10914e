import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { SHORTCUTS, artifactKeys, isTyping, keyAction } from './keymap.js';

const press = (key, extra = {}) => keyAction({ key, code: '', ...extra });

describe('keyAction', () => {
  it('maps the decision letters in either case', () => {
    assert.deepEqual(press('g'), { name: 'decide', arg: 'good' });
    assert.deepEqual(press('Q'), { name: 'decide', arg: 'questionable' });
    assert.deepEqual(press('b'), { name: 'decide', arg: 'bad' });
  });

  it('maps digits to artifacts 1-10 and Shift+digit to confidence 1-5', () => {
    assert.deepEqual(press('1', { code: 'Digit1' }), { name: 'cycleArtifact', arg: 0 });
    assert.deepEqual(press('9', { code: 'Digit9' }), { name: 'cycleArtifact', arg: 8 });
    assert.deepEqual(press('0', { code: 'Digit0' }), { name: 'cycleArtifact', arg: 9 });
    // Shift+3 types '#' (or '§', ...) by layout: the code decides
    assert.deepEqual(press('#', { code: 'Digit3', shiftKey: true }), { name: 'setConfidence', arg: 3 });
    assert.equal(press('^', { code: 'Digit6', shiftKey: true }), null);
  });

  it('L sets the location, Shift+L clears it', () => {
    assert.deepEqual(press('l'), { name: 'useLocation', arg: undefined });
    assert.deepEqual(press('L', { shiftKey: true }), { name: 'clearLocation', arg: undefined });
  });

  it('maps the viewer keys with their steps and factors', () => {
    assert.deepEqual(press('ArrowUp'), { name: 'moveSlice', arg: 1 });
    assert.deepEqual(press('PageDown'), { name: 'moveSlice', arg: -10 });
    assert.deepEqual(press('+'), { name: 'zoom', arg: 1.25 });
    assert.deepEqual(press('='), { name: 'zoom', arg: 1.25 });
    assert.deepEqual(press('-'), { name: 'zoom', arg: 0.8 });
    for (const [key, name] of [['v', 'nextView'], ['p', 'nextPreset'], ['r', 'resetView'],
      ['x', 'toggleCrosshair'], ['t', 'cycleTileLayer'], ['n', 'skip'], ['c', 'focusComment'],
      ['?', 'toggleHelp'], ['Escape', 'closeHelp']]) {
      assert.equal(press(key).name, name, key);
    }
  });

  it('leaves keys with Ctrl, Meta or Alt, and unknown keys, to the browser', () => {
    assert.equal(press('g', { ctrlKey: true }), null);
    assert.equal(press('r', { metaKey: true }), null);
    assert.equal(press('1', { altKey: true }), null);
    assert.equal(press('z'), null);
    assert.equal(press('F5'), null);
  });

  it('every single-key shortcut in the help table has an action', () => {
    const letters = SHORTCUTS.flatMap((s) => s.keys).filter((k) => /^[A-Z?]$/.test(k));
    assert.ok(letters.length >= 12);
    letters.forEach((k) => assert.ok(press(k === '?' ? k : k.toLowerCase()), k));
  });
});

describe('isTyping and artifactKeys', () => {
  it('text fields take the keys', () => {
    assert.equal(isTyping({ tagName: 'TEXTAREA' }), true);
    assert.equal(isTyping({ tagName: 'SELECT' }), true);
    assert.equal(isTyping({ tagName: 'DIV', isContentEditable: true }), true);
    assert.equal(isTyping({ tagName: 'BODY' }), false);
    assert.equal(isTyping(null), false);
  });

  it('numbers the first ten artifacts 1..9, 0', () => {
    const vocab = Array.from({ length: 12 }, (_, i) => ({ key: `a${i}`, label: `A${i}` }));
    const keys = artifactKeys(vocab);
    assert.equal(keys.length, 10);
    assert.deepEqual(keys[0], { key: '1', label: 'A0' });
    assert.deepEqual(keys[9], { key: '0', label: 'A9' });
  });
});
