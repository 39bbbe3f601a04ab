// research_data.js — the per-frame research data of one participant: one row per confirmed frame
// (the engine hands them out as they confirm: web/p2psync.js onRow), kept per episode as the page
// asks, and exported as CSV or JSON. Every column but the local-only ones is equal on every peer.
//
// Columns (ids = config.playerIds, default the player index; bots are bot0, bot1, ...):
//   episode, episodeFrame, frame        the episode, the frame within it, the session-wide frame
//   action.<id>                         every actor's action (players, then bots)
//   wasSpeculative.<id>                 LOCAL: the player's action was predicted when this peer first stepped the frame
//   rollbacks                           LOCAL: rollbacks (mispredictions) that re-simulated this frame on this peer
//   reward.<id>                         the step's reward per actor (the frame's last simulation)
//   terminated, truncated               the step ended the episode (the frame's last simulation)
//   isFocused.<id>                      false when the player's page was hidden as it chose this frame's
//                                       input, or the frame is one it missed while hidden (its catch-up)
//   inputDelay                          the input delay (frames) the episode ran with (agreed by every
//                                       peer with inputDelay 'auto')
//   timestamp                           LOCAL: wall-clock ms (epoch) when this peer first stepped the frame
// LOCAL columns describe this participant's own experience of the frame (what it had to predict,
// how often it was corrected, when): they differ between peers by nature. Every other column is
// identical on every peer.
//
// Episode records also hold what happened between frames (local-only timing): pauses (focusPolicy
// 'pause'), the end (synced or endTimeout, missing peers), and gaps.

/** Whether a column is local to each peer (see above). */
export function isLocalColumn(name) {
  return name === 'timestamp' || name === 'rollbacks' || name.startsWith('wasSpeculative.');
}

export class ResearchData {
  /**
   * @param {object} o
   * @param {number} o.numPlayers
   * @param {number} [o.numBots=0]
   * @param {(string|number)[]} [o.playerIds]
   * @param {'episode'|'session'|'none'|number} [o.keep='episode']  what stays in memory: the
   *   current and the previous episode ('episode'), every episode ('session'), nothing ('none':
   *   rows only go to onRow), or the last N episodes
   * @param {number} [o.clockOrigin=0]  added to the engine's ms to make the wall-clock timestamp
   */
  constructor({ numPlayers, numBots = 0, playerIds = null, keep = 'episode', clockOrigin = 0 }) {
    this.numPlayers = numPlayers;
    this.numBots = numBots;
    this.ids = Array.from({ length: numPlayers }, (_, p) => String(playerIds ? playerIds[p] : p));
    this.actorIds = [...this.ids, ...Array.from({ length: numBots }, (_, b) => `bot${b}`)];
    this.keepEpisodes = keep === 'session' ? Infinity : keep === 'none' ? 0 : keep === 'episode' ? 2 : Math.max(0, keep | 0);
    this.clockOrigin = clockOrigin;
    this.episodes = new Map(); // episode -> {episode, rows: [], pauses: [], end: null}
    this.rowsSeen = 0;
    this.columns = this._columns();
  }

  _columns() {
    const c = ['episode', 'episodeFrame', 'frame'];
    for (const id of this.actorIds) c.push(`action.${id}`);
    for (const id of this.ids) c.push(`wasSpeculative.${id}`);
    c.push('rollbacks');
    for (const id of this.actorIds) c.push(`reward.${id}`);
    c.push('terminated', 'truncated');
    for (const id of this.ids) c.push(`isFocused.${id}`);
    c.push('inputDelay', 'timestamp');
    return Object.freeze(c);
  }

  /** The columns shared by every peer (all but the local-only ones). */
  get sharedColumns() { return this.columns.filter((c) => !isLocalColumn(c)); }
  /** The columns local to this peer. */
  get localColumns() { return this.columns.filter(isLocalColumn); }

  _episode(e) {
    let ep = this.episodes.get(e);
    if (!ep) {
      ep = { episode: e, rows: [], pauses: [], end: null };
      if (this.keepEpisodes > 0) {
        this.episodes.set(e, ep);
        while (this.episodes.size > this.keepEpisodes) this.episodes.delete(this.episodes.keys().next().value);
      }
    }
    return ep;
  }

  /** An engine row (web/p2psync.js) as a data row: {column: value}. Kept per `keep`. */
  add(r) {
    const row = { episode: r.episode, episodeFrame: r.episodeFrame, frame: r.frame };
    const a = this.actorIds;
    for (let i = 0; i < a.length; i++) row[`action.${a[i]}`] = r.actions[i];
    for (let p = 0; p < this.numPlayers; p++) row[`wasSpeculative.${this.ids[p]}`] = (r.predictedMask >> p & 1) === 1;
    row.rollbacks = r.rollbacks;
    for (let i = 0; i < a.length; i++) row[`reward.${a[i]}`] = r.rewards[i];
    row.terminated = r.terminated;
    row.truncated = r.truncated;
    for (let p = 0; p < this.numPlayers; p++) row[`isFocused.${this.ids[p]}`] = (r.unfocusedMask >> p & 1) === 0;
    row.inputDelay = r.inputDelay;
    row.timestamp = Math.round(this.clockOrigin + r.firstSteppedMs);
    this.rowsSeen++;
    if (this.keepEpisodes > 0) this._episode(r.episode).rows.push(row);
    return row;
  }

  /** Remembers a pause / resume, or the episode's end (from the engine's events). */
  note(ev) {
    if (this.keepEpisodes === 0) return;
    if (ev.type === 'pause' || ev.type === 'resume') {
      const cur = this.episodes.size ? [...this.episodes.values()].pop() : null;
      if (cur) cur.pauses.push({ type: ev.type, frame: ev.frame, timeMs: Math.round(this.clockOrigin + ev.timeMs), ...(ev.downMs != null ? { ms: Math.round(ev.downMs) } : {}) });
    } else if (ev.type === 'episodeEnd') {
      const ep = this._episode(ev.episode);
      ep.end = { frame: ev.frame, episodeFrame: ev.episodeFrame, reason: ev.reason, truncated: !!ev.truncated, missingPeers: ev.missingPeers ?? [] };
    }
  }

  /** The kept episode numbers, oldest first. */
  get keptEpisodes() { return [...this.episodes.keys()]; }

  rowsOf(episode) {
    const ep = this.episodes.get(episode);
    return ep ? ep.rows : [];
  }

  /** One episode as CSV text (header + one line per row) or as {episode, columns, rows, pauses, end}. */
  exportEpisode(episode, { format = 'csv', columns = this.columns } = {}) {
    const ep = this.episodes.get(episode) || { episode, rows: [], pauses: [], end: null };
    if (format === 'json') return { episode, columns: [...columns], localColumns: columns.filter(isLocalColumn), rows: ep.rows, pauses: ep.pauses, end: ep.end };
    if (format !== 'csv') throw new TypeError(`export: format must be 'csv' or 'json' (got ${format})`);
    return toCSV(columns, ep.rows);
  }

  /** Every kept episode: CSV (one table) or JSON ({columns, episodes: [...]}). */
  exportSession({ format = 'csv', columns = this.columns } = {}) {
    const eps = [...this.episodes.values()];
    if (format === 'json') {
      return { columns: [...columns], localColumns: columns.filter(isLocalColumn), episodes: eps.map((e) => this.exportEpisode(e.episode, { format: 'json', columns })) };
    }
    if (format !== 'csv') throw new TypeError(`export: format must be 'csv' or 'json' (got ${format})`);
    return toCSV(columns, eps.flatMap((e) => e.rows));
  }
}

function cell(v) {
  if (v === null || v === undefined) return '';
  if (typeof v === 'string') return /[",\n\r]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
  return String(v);
}

/** CSV text of `rows` over `columns` (RFC 4180 quoting, \n line ends). */
export function toCSV(columns, rows) {
  const lines = [columns.map(cell).join(',')];
  for (const r of rows) lines.push(columns.map((c) => cell(r[c])).join(','));
  return `${lines.join('\n')}\n`;
}

export default ResearchData;
