// The README's "Integration guide: mug's pyodide_multiplayer_game.js": every code block in it is an
// excerpt of a file the compat tests run (web/mug/adapter.js, web/transport_mug.js,
// web/mug/p2psync_mug.py), shown as it is in the file; and the guide targets mug HEAD.
//   node --test tests/compat/guide.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { REPO } from './helpers.mjs';

const SOURCES = {
  js: ['web/mug/adapter.js', 'web/transport_mug.js'],
  python: ['web/mug/p2psync_mug.py'],
};
const HEADING = "## Integration guide: mug's `pyodide_multiplayer_game.js`";

function guideSection() {
  const readme = fs.readFileSync(path.join(REPO, 'README.md'), 'utf8');
  const start = readme.indexOf(HEADING);
  assert.ok(start >= 0, 'the README has the guide');
  const next = readme.indexOf('\n## ', start + HEADING.length);
  return readme.slice(start, next < 0 ? undefined : next);
}

function codeBlocks(text) {
  const blocks = [];
  const re = /^```(\w*)\n([\s\S]*?)^```$/gm;
  let m;
  while ((m = re.exec(text))) blocks.push({ lang: m[1], lines: m[2].replace(/\n$/, '').split('\n'), at: text.slice(0, m.index).split('\n').length });
  return blocks;
}

/** Whether `block` lines appear in `file` lines, consecutively, all shifted by one indentation. */
function containsExcerpt(fileLines, block) {
  const first = block.findIndex((l) => l.trim());
  for (let i = 0; i + block.length <= fileLines.length; i++) {
    const f = fileLines[i + first];
    if (f.trim() !== block[first].trim()) continue;
    const indent = f.length - f.trimStart().length - (block[first].length - block[first].trimStart().length);
    if (indent < 0) continue;
    const pad = ' '.repeat(indent);
    if (block.every((l, k) => (l.trim() ? fileLines[i + k] === pad + l : !fileLines[i + k].trim()))) return true;
  }
  return false;
}

test('every code block of the mug integration guide is an excerpt of a tested file, as it is there', () => {
  const blocks = codeBlocks(guideSection());
  assert.ok(blocks.length >= 8, `the guide has its code blocks (${blocks.length})`);
  const files = Object.fromEntries(Object.values(SOURCES).flat().map((f) => [f, fs.readFileSync(path.join(REPO, f), 'utf8').split('\n')]));
  for (const b of blocks) {
    assert.ok(b.lang in SOURCES, `block at guide line ${b.at}: language '${b.lang}' is not one whose files the tests run`);
    const where = SOURCES[b.lang].filter((f) => containsExcerpt(files[f], b.lines));
    assert.ok(where.length > 0, `block at guide line ${b.at} (${b.lines[0].trim()} …) is not in ${SOURCES[b.lang].join(' / ')} as shown`);
  }
});

test('the guide targets mug HEAD: its names, its defaults, no d162bc0-only names', () => {
  const g = guideSection();
  for (const s of ['b46a1b0', 'config.fps \\|\\| 10', 'sessionMetrics.rollbacks', 'p2pMetrics', 'cumulative_rewards', 'step_num',
    'pyodide_game_ready', 'webrtc_signal', 'pyodide_other_player_action', 'p2p_state_sync', 'turn_config', 'force_relay',
    'signalEpisodeComplete()', 'exportEpisodeDataFromBuffer()', 'setupMultiplayerHandlers()', 'frameDataBuffer', 'visibilitychange', 'Bots']) {
    assert.ok(g.includes(s), `the guide mentions ${s}`);
  }
  for (const stale of ['inputBufferMaxSize', 'maxSnapshots', '30 FPS', "actionPopulationMethod === 'default'"]) {
    assert.ok(!g.includes(stale), `the guide does not use ${stale} (not at mug HEAD)`);
  }
});
