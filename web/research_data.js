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
// 'pause'), the end (synced or endTimeout, missing peers), gaps (a player's page reloaded and
// rejoined: the frame it came back at, its last input before, how long it was away), resyncs
// (desyncPolicy 'resync': the frame whose state every peer took from one source) and, on a page
// that rejoined, `recovered`: the rows before its reload, received from a peer (their local
// columns are empty: this participant's own timing of them is lost).

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
      ep = { episode: e, rows: [], pauses: [], end: null, gaps: [], resyncs: [], recovered: null };
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
    if (this.keepEpisodes > 0) {
      // A row again for a frame already recorded (a desync recovery re-simulated it): it replaces
      // that row and every later one (they come again, in order).
      const rows = this._episode(r.episode).rows;
      while (rows.length && rows[rows.length - 1].frame >= row.frame) rows.pop();
      rows.push(row);
    }
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
    } else if (ev.type === 'rejoin') {
      const cur = Number.isInteger(ev.episode) ? this._episode(ev.episode) : this.episodes.size ? [...this.episodes.values()].pop() : null;
      if (cur) cur.gaps.push({ type: 'rejoin', peer: ev.peer, frame: ev.frame, lastInputFrame: ev.lastInputFrame, downMs: Math.round(ev.downMs), timeMs: Math.round(this.clockOrigin + ev.timeMs) });
    } else if (ev.type === 'resync') {
      const cur = Number.isInteger(ev.episode) ? this._episode(ev.episode) : this.episodes.size ? [...this.episodes.values()].pop() : null;
      if (cur) cur.resyncs.push({ frame: ev.frame, episodeFrame: ev.episodeFrame, source: ev.source, peers: ev.peers, reason: ev.reason, timeMs: Math.round(this.clockOrigin + ev.timeMs) });
    }
  }

  /**
   * What a rejoining peer gets with the state (the transfer's attachment): the shared columns of
   * every kept episode's rows, compact ({v, columns, episodes: [{episode, rows: [[...]], pauses,
   * end, gaps, resyncs}]}).
   */
  exportForTransfer() {
    const columns = this.sharedColumns;
    return {
      v: 1,
      columns,
      episodes: [...this.episodes.values()].map((e) => ({
        episode: e.episode, rows: e.rows.map((r) => columns.map((c) => r[c])), pauses: e.pauses, end: e.end, gaps: e.gaps, resyncs: e.resyncs,
      })),
    };
  }

  /**
   * On a page that rejoined: takes the rows of the frames before `beforeFrame` (and of earlier
   * episodes) from a peer's exportForTransfer(). The input is untrusted: anything not of that
   * shape (other columns, a cell that is not a number or boolean, rows out of order) is refused
   * and the rows stay missing (recovered.rows 0, with the reason). Returns the rows taken.
   */
  importTransfer(att, { episode, beforeFrame, fromPeer }) {
    const ep = this._episode(episode);
    const fail = (why) => { ep.recovered = { fromPeer, rows: 0, beforeFrame, missing: why }; return 0; };
    if (this.keepEpisodes === 0) return 0;
    const columns = this.sharedColumns;
    if (!att || typeof att !== 'object' || att.v !== 1) return fail('no rows sent');
    if (!Array.isArray(att.columns) || att.columns.length !== columns.length || att.columns.some((c, i) => c !== columns[i])) return fail('other columns');
    if (!Array.isArray(att.episodes)) return fail('malformed');
    const fi = columns.indexOf('frame');
    const taken = [];
    for (const e of att.episodes) {
      if (!e || !Number.isInteger(e.episode) || e.episode > episode || !Array.isArray(e.rows)) return fail('malformed');
      const rows = [];
      let last = -Infinity;
      for (const r of e.rows) {
        if (!Array.isArray(r) || r.length !== columns.length || r.some((v) => typeof v !== 'number' && typeof v !== 'boolean')) return fail('malformed');
        if (!(r[fi] > last)) return fail('rows out of order');
        last = r[fi];
        if (e.episode === episode && r[fi] >= beforeFrame) break;
        const row = {};
        columns.forEach((c, i) => { row[c] = r[i]; });
        for (const c of this.localColumns) row[c] = null;
        rows.push(row);
      }
      taken.push({ e, rows });
    }
    let n = 0;
    for (const { e, rows } of taken) {
      const target = this._episode(e.episode);
      target.rows = rows.concat(target.rows.filter((r) => e.episode !== episode || r.frame >= beforeFrame));
      if (e.episode !== episode) {
        if (!target.end && e.end) target.end = e.end;
        if (Array.isArray(e.pauses) && !target.pauses.length) target.pauses = e.pauses;
      }
      n += rows.length;
    }
    ep.recovered = { fromPeer, rows: n, beforeFrame };
    return n;
  }

  /** The kept episode numbers, oldest first. */
  get keptEpisodes() { return [...this.episodes.keys()]; }

  rowsOf(episode) {
    const ep = this.episodes.get(episode);
    return ep ? ep.rows : [];
  }

  /** One episode as CSV text (header + one line per row) or as {episode, columns, rows, pauses, end}. */
  exportEpisode(episode, { format = 'csv', columns = this.columns } = {}) {
    const ep = this.episodes.get(episode) || { episode, rows: [], pauses: [], end: null, gaps: [], resyncs: [], recovered: null };
    if (format === 'json') {
      return {
        episode, columns: [...columns], localColumns: columns.filter(isLocalColumn), rows: ep.rows, pauses: ep.pauses, end: ep.end,
        gaps: ep.gaps ?? [], resyncs: ep.resyncs ?? [], recovered: ep.recovered ?? null,
      };
    }
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
