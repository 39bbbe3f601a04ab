#!/usr/bin/env python3
"""mug_server.py -- a test server that speaks mug's multiplayer (P2P/Pyodide) server protocol.

It behaves like the relevant part of mug's Flask-SocketIO server (github chasemcd/mug at b46a1b0:
mug/server/app.py, mug/server/pyodide_game_coordinator.py, mug/server/game_manager.py), written
from that behaviour (see /work/notes/mug-protocol.md sections 3.4 and 13), on mug's stack:
Flask-SocketIO in eventlet mode, ping_interval 8 s, ping_timeout 30 s. It also serves the p2psync
demo page and its files (the same static routes as web/server.mjs), so

    /usr/bin/python3 web/mug_server.py --port 8080        (or: scripts/demo --serve --mug-protocol)

is a complete local "mug" for the demo page, which then uses web/transport_mug.js.

What it does, as mug's server does:
  * pairing: join_game from a socket puts it in a FIFO waiting room (waiting_room updates); when
    len(ids) sockets wait, the one that waited longest gets ids[0], and so on. game_id =
    str(uuid4()), game_seed = random.randint(0, 2**32 - 1). Each socket joins the Socket.IO room
    game_id and gets pyodide_player_assigned {player_id, game_id, game_seed, num_players}; then the
    room gets pyodide_game_ready {game_id, players, player_subjects, turn_config, scene_metadata}
    (the game is active from then on), match_found_countdown, and after --countdown seconds
    start_game {scene_metadata, game_id}. Player ids keep their JSON type (--ids 0,1 gives numbers,
    --ids agent_right,agent_left strings).
  * webrtc_signal {game_id, target_player_id, type, payload} -> the target's socket gets
    {type, from_player_id, game_id, payload}: any type, the payload untouched, from_player_id
    derived from the sending socket; the target is looked up as given, then as str, then as int
    (digit strings). Unknown game / target / sender: dropped.
  * pyodide_player_action {game_id, player_id, ...} (game must be active) -> every player whose id
    != player_id gets pyodide_other_player_action {player_id, action, frame_number, timestamp:
    server time.time() in seconds}; nothing else of the payload is kept and no sender is added.
  * p2p_state_sync {game_id, sender_id, ...} -> the same dict, unchanged, to every player whose id
    != sender_id (no is_active check). p2p_state_request / p2p_state_response -> the dict to
    target_id's socket (exact key).
  * p2p_validation_status -> {status} to the room; p2p_validation_success -> p2p_validation_complete
    {game_id} to the room once every player reported; p2p_validation_failed -> p2p_validation_repool
    to every player, game deleted; p2p_connection_lost -> p2p_pause (first report);
    p2p_reconnection_success -> p2p_resume once every reporter recovered; p2p_reconnection_timeout
    -> p2p_game_ended {reason: 'reconnection_timeout'}, game deleted.
  * disconnect / leave_game (active game) -> p2p_game_ended {game_id, reason:
    'partner_disconnected', disconnected_player_id} to the others, game deleted; advance_scene: the
    same with reason 'scene_completed'.
  * accepted and ignored: register_subject (answered with server_session_id), p2p_health_report,
    p2p_connection_type... see IGNORED. Any other event has no handler: dropped (counted in
    /__mug/stats as mug's server would drop it silently).
Not reproduced: scenes and the stager, the admin namespace, data upload (emit_episode_data needs
msgpack + pandas), entry screening, probes, reconnect/rejoin auth.

HTTP: the static routes of web/server.mjs (/ -> web/demo/index.html, /web/, /build/wasm/,
/socket.io-client/, /pyodide/; the demo page gets <meta name="p2psync-protocol" content="mug">, from
which it picks the mug transport), /server-info.json -> {"protocol": "mug", "ids": [...]},
/__mug/stats -> counters (tests).
"""
import eventlet

eventlet.monkey_patch()

import argparse  # noqa: E402
import json  # noqa: E402
import mimetypes  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections import Counter  # noqa: E402

import flask  # noqa: E402
from flask_socketio import SocketIO, join_room  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)

MIME = {
    '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8',
    '.mjs': 'text/javascript; charset=utf-8', '.cjs': 'text/javascript; charset=utf-8',
    '.wasm': 'application/wasm', '.css': 'text/css; charset=utf-8',
    '.json': 'application/json; charset=utf-8', '.map': 'application/json; charset=utf-8',
    '.py': 'text/x-python; charset=utf-8', '.zip': 'application/zip', '.whl': 'application/zip',
    '.tar': 'application/x-tar', '.png': 'image/png', '.svg': 'image/svg+xml', '.ico': 'image/x-icon',
    '.txt': 'text/plain; charset=utf-8', '.md': 'text/markdown; charset=utf-8',
}

# Client events mug's server has a handler for that do nothing this server needs to reproduce.
IGNORED = (
    'p2p_health_report', 'multiplayer_game_complete', 'participant_terminal_state', 'pyodide_loading_start',
    'pyodide_loading_complete', 'sync_globals', 'client_console_log', 'emit_multiplayer_metrics',
    'pyodide_hud_update', 'mid_game_exclusion', 'request_current_scene', 'static_scene_data_emission',
)


def parse_ids(text):
    """'0,1' -> [0, 1]; 'agent_right,agent_left' -> strings; a JSON list is taken as is."""
    text = text.strip()
    if text.startswith('['):
        ids = json.loads(text)
    else:
        ids = [int(x) if x.strip().lstrip('-').isdigit() else x.strip() for x in text.split(',')]
    if len(ids) < 2 or len(set(map(json.dumps, ids))) != len(ids):
        raise ValueError('--ids: at least two distinct ids')
    for i in ids:
        if isinstance(i, bool) or not isinstance(i, (int, str)):
            raise ValueError('--ids: ids are integers or strings')
    return ids


class Game:
    def __init__(self, game_id, seed, num_expected):
        self.game_id = game_id
        self.seed = seed
        self.num_expected = num_expected
        self.players = {}            # player_id -> sid, in slot order
        self.subjects = {}           # player_id -> subject id
        self.is_active = False
        self.validated = set()
        self.lost = set()            # p2p_connection_lost reporters
        self.recovered = set()
        self.paused = False


class MugServer:
    def __init__(self, ids, countdown_s=3.0, turn=None, scene=None, static_root=REPO_ROOT, log=None):
        self.ids = ids
        self.countdown_s = countdown_s
        self.turn = turn
        self.scene = dict(scene or {})
        self.static_root = os.path.abspath(static_root)
        self.log = log or (lambda m: print(f'[mug_server] {m}', file=sys.stderr, flush=True))
        self.session_id = uuid.uuid4().hex
        self.lock = threading.Lock()
        self.games = {}              # game_id -> Game
        self.player_of = {}          # sid -> (game_id, player_id)
        self.waiting = []            # sids, FIFO
        self.subjects = {}           # sid -> subject id
        self.stats = {'relayed': Counter(), 'dropped': Counter(), 'signal_types': Counter(), 'refused': Counter(),
                      'games': 0, 'connections': 0}
        self._drop_logs = 0

        self.app = flask.Flask(__name__, static_folder=None)
        self.sio = SocketIO(self.app, async_mode='eventlet', ping_interval=8, ping_timeout=30,
                            logger=False, engineio_logger=False)
        self._routes()
        self._handlers()

    # ------------------------------------------------------------------ helpers

    def scene_metadata(self):
        meta = {'scene_id': 'p2psync_mug_compat', 'scene_type': 'GymScene', 'pyodide_multiplayer': True,
                'policy_mapping': {str(i): 'human' for i in self.ids}}
        meta.update(self.scene)
        return meta

    def turn_config(self):
        if not self.turn or not self.turn.get('username'):
            return None  # mug sends null unless a TURN username is configured
        return {'username': self.turn['username'], 'credential': self.turn.get('credential'),
                'force_relay': bool(self.turn.get('force_relay'))}

    def drop(self, event, why):
        self.stats['refused'][f'{event}:{why}'] += 1
        if self._drop_logs < 50:
            self._drop_logs += 1
            self.log(f'drop {event}: {why}')

    def lookup_target(self, game, target):
        """mug's webrtc_signal target lookup: the value, then str(), then int() of a digit string."""
        sid = game.players.get(target)
        if sid is None:
            sid = game.players.get(str(target))
        if sid is None and isinstance(target, str) and target.isdigit():
            sid = game.players.get(int(target))
        return sid

    def emit_to(self, event, data, sid):
        self.sio.emit(event, data, room=sid)

    def game_of(self, data):
        """The game a client event names by its game_id (None for a malformed payload or an unknown game)."""
        return self.games.get(data.get('game_id')) if isinstance(data, dict) else None

    def end_game(self, data):
        """Removes the game the event names and frees its players' seats; returns it (None if unknown)."""
        game = self.games.pop(data.get('game_id'), None) if isinstance(data, dict) else None
        if game:
            for sid in game.players.values():
                self.player_of.pop(sid, None)
        return game

    # ------------------------------------------------------------------ pairing

    def join_game(self, sid):
        with self.lock:
            if sid in self.player_of or sid in self.waiting:
                return None
            self.waiting.append(sid)
            group = len(self.ids)
            if len(self.waiting) < group:
                waiting = [(s, len(self.waiting)) for s in self.waiting]
                matched = None
            else:
                matched = self.waiting[:group]
                del self.waiting[:group]
                waiting = []
        for s, n in waiting:
            self.emit_to('waiting_room', {'cur_num_players': n, 'players_needed': group - n, 'ms_remaining': 60000,
                                          'waitroom_timeout_message': '', 'hide_lobby_count': False}, s)
        if matched:
            self.start(matched)
        return matched

    def start(self, matched):
        game_id = str(uuid.uuid4())
        seed = random.randint(0, 2 ** 32 - 1)
        game = Game(game_id, seed, len(self.ids))
        with self.lock:
            self.games[game_id] = game
            self.stats['games'] += 1
        for sid, pid in zip(matched, self.ids):
            join_room(game_id, sid=sid, namespace='/')
            with self.lock:
                game.players[pid] = sid
                game.subjects[pid] = self.subjects.get(sid, sid)
                self.player_of[sid] = (game_id, pid)
            self.emit_to('pyodide_player_assigned', {'player_id': pid, 'game_id': game_id, 'game_seed': seed,
                                                     'num_players': len(self.ids)}, sid)
        game.is_active = True
        self.log(f'game {game_id}: players {json.dumps(list(game.players))}')
        self.sio.emit('pyodide_game_ready', {
            'game_id': game_id, 'players': list(game.players.keys()),
            'player_subjects': {str(k): v for k, v in game.subjects.items()},
            'turn_config': self.turn_config(), 'scene_metadata': self.scene_metadata(),
        }, room=game_id)
        self.sio.start_background_task(self._countdown, game_id)

    def _countdown(self, game_id):
        self.sio.emit('match_found_countdown', {'countdown_seconds': self.countdown_s, 'message': 'Players found!'},
                      room=game_id)
        self.sio.sleep(self.countdown_s)
        if game_id in self.games:
            self.sio.emit('start_game', {'scene_metadata': self.scene_metadata(), 'game_id': game_id}, room=game_id)

    def remove_player(self, sid, reason, only_active=False):
        with self.lock:
            if sid in self.waiting:
                self.waiting.remove(sid)
            entry = self.player_of.pop(sid, None)
            if not entry:
                return
            game_id, pid = entry
            game = self.games.get(game_id)
            if game is None or (only_active and not game.is_active):
                return
            others = [s for p, s in game.players.items() if p != pid]
            del self.games[game_id]
            for s in others:
                self.player_of.pop(s, None)
        self.log(f'game {game_id}: player {json.dumps(pid)} left ({reason})')
        for s in others:
            self.emit_to('p2p_game_ended', {'game_id': game_id, 'reason': reason, 'disconnected_player_id': pid}, s)

    # ------------------------------------------------------------------ Socket.IO

    def _handlers(self):
        sio = self.sio
        srv = self

        @sio.on('connect')
        def on_connect(auth=None):
            srv.stats['connections'] += 1

        @sio.on('disconnect')
        def on_disconnect():
            srv.remove_player(flask.request.sid, 'partner_disconnected', only_active=True)
            srv.subjects.pop(flask.request.sid, None)

        @sio.on('register_subject')
        def on_register(data):
            if isinstance(data, dict) and isinstance(data.get('subject_id'), str):
                srv.subjects[flask.request.sid] = data['subject_id'][:128]
            srv.emit_to('server_session_id', {'session_id': srv.session_id}, flask.request.sid)

        @sio.on('join_game')
        def on_join_game(data=None):
            srv.join_game(flask.request.sid)

        @sio.on('leave_game')
        def on_leave_game(data=None):
            srv.remove_player(flask.request.sid, 'partner_disconnected')

        @sio.on('advance_scene')
        def on_advance_scene(data=None):
            srv.remove_player(flask.request.sid, 'scene_completed')

        @sio.on('webrtc_signal')
        def on_webrtc_signal(data):
            if not isinstance(data, dict):
                return srv.drop('webrtc_signal', 'not a dict')
            game = srv.games.get(data.get('game_id'))
            if game is None:
                return srv.drop('webrtc_signal', 'unknown game')
            target = srv.lookup_target(game, data.get('target_player_id'))
            if target is None:
                return srv.drop('webrtc_signal', 'unknown target')
            sender = next((p for p, s in game.players.items() if s == flask.request.sid), None)
            if sender is None:
                return srv.drop('webrtc_signal', 'sender not in game')
            srv.stats['relayed']['webrtc_signal'] += 1
            srv.stats['signal_types'][str(data.get('type'))[:32]] += 1
            srv.emit_to('webrtc_signal', {'type': data.get('type'), 'from_player_id': sender,
                                          'game_id': game.game_id, 'payload': data.get('payload')}, target)

        @sio.on('pyodide_player_action')
        def on_player_action(data):
            if not isinstance(data, dict):
                return srv.drop('pyodide_player_action', 'not a dict')
            game = srv.games.get(data.get('game_id'))
            if game is None:
                return srv.drop('pyodide_player_action', 'unknown game')
            if not game.is_active:
                return srv.drop('pyodide_player_action', 'game not active')
            player_id = data.get('player_id')
            out = {'player_id': player_id, 'action': data.get('action'), 'frame_number': data.get('frame_number'),
                   'timestamp': time.time()}
            srv.stats['relayed']['pyodide_player_action'] += 1
            for pid, sid in list(game.players.items()):
                if pid != player_id:
                    srv.emit_to('pyodide_other_player_action', out, sid)

        @sio.on('p2p_state_sync')
        def on_state_sync(data):
            if not isinstance(data, dict):
                return srv.drop('p2p_state_sync', 'not a dict')
            game = srv.games.get(data.get('game_id'))
            if game is None:
                return srv.drop('p2p_state_sync', 'unknown game')
            srv.stats['relayed']['p2p_state_sync'] += 1
            sender = data.get('sender_id')
            for pid, sid in list(game.players.items()):
                if pid != sender:
                    srv.emit_to('p2p_state_sync', data, sid)

        def to_target(event):
            def handler(data):
                if not isinstance(data, dict):
                    return srv.drop(event, 'not a dict')
                game = srv.games.get(data.get('game_id'))
                sid = game and game.players.get(data.get('target_id'))
                if sid is None:
                    return srv.drop(event, 'unknown game or target')
                srv.stats['relayed'][event] += 1
                srv.emit_to(event, data, sid)
            return handler

        sio.on('p2p_state_request')(to_target('p2p_state_request'))
        sio.on('p2p_state_response')(to_target('p2p_state_response'))

        @sio.on('p2p_validation_status')
        def on_validation_status(data):
            if isinstance(data, dict) and data.get('game_id'):
                sio.emit('p2p_validation_status', {'status': data.get('status')}, room=data.get('game_id'))

        @sio.on('p2p_validation_success')
        def on_validation_success(data):
            game = srv.game_of(data)
            if not game:
                return srv.drop('p2p_validation_success', 'unknown game')
            game.validated.add(str(data.get('player_id')))
            if len(game.validated) >= game.num_expected:
                sio.emit('p2p_validation_complete', {'game_id': game.game_id}, room=game.game_id)

        @sio.on('p2p_validation_failed')
        def on_validation_failed(data):
            game = srv.end_game(data)
            if not game:
                return
            for sid in game.players.values():
                srv.emit_to('p2p_validation_repool', {'message': 'Connection could not be established. Finding new partner...',
                                                      'reason': data.get('reason')}, sid)

        @sio.on('p2p_connection_lost')
        def on_connection_lost(data):
            game = srv.game_of(data)
            if not game:
                return
            first = not game.paused
            game.paused = True
            game.lost.add(str(data.get('player_id')))
            if first:
                sio.emit('p2p_pause', {'game_id': game.game_id, 'pause_frame': data.get('frame_number'),
                                       'detecting_player': data.get('player_id')}, room=game.game_id)

        @sio.on('p2p_reconnection_success')
        def on_reconnection_success(data):
            game = srv.game_of(data)
            if not game or not game.paused:
                return
            game.recovered.add(str(data.get('player_id')))
            if game.lost <= game.recovered:
                game.paused = False
                game.lost.clear()
                game.recovered.clear()
                sio.emit('p2p_resume', {'game_id': game.game_id}, room=game.game_id)

        @sio.on('p2p_reconnection_timeout')
        def on_reconnection_timeout(data):
            game = srv.end_game(data)
            if not game:
                return
            sio.emit('p2p_game_ended', {'game_id': game.game_id, 'reason': 'reconnection_timeout',
                                        'reconnection_data': {'total_pause_duration_ms': data.get('pause_duration_ms'),
                                                              'lost_players': sorted(game.lost),
                                                              'recovered_players': sorted(game.recovered)},
                                        'disconnected_player_id': data.get('player_id')}, room=game.game_id)

        @sio.on('ping')
        def on_ping(data=None):
            srv.emit_to('pong', {'max_latency': None, 'min_ping_measurements': 5}, flask.request.sid)

        for name in IGNORED:
            sio.on(name)(lambda *a, **k: None)

        def on_unknown(event, sid, *args):
            # mug's server has no handler: the event is dropped. Counted here for the tests.
            srv.stats['dropped'][str(event)[:64]] += 1

        # (Flask-SocketIO 5.3's own on('*') mis-passes the event name: register on python-socketio)
        sio.server.on('*', on_unknown, namespace='/')

    # ------------------------------------------------------------------ HTTP

    def _routes(self):
        app = self.app
        srv = self
        mounts = [
            ('/web/', os.path.join(self.static_root, 'web')),
            ('/build/wasm/', os.path.join(self.static_root, 'build', 'wasm')),
            ('/socket.io-client/', os.path.join(self.static_root, 'node_modules', 'socket.io-client', 'dist')),
            ('/pyodide/', os.path.join(self.static_root, 'node_modules', 'pyodide')),
        ]

        def plain(code, msg, extra=None):
            r = flask.Response(msg, status=code, content_type='text/plain; charset=utf-8')
            for k, v in (extra or {}).items():
                r.headers[k] = v
            return r

        @app.route('/server-info.json')
        def server_info():
            return flask.jsonify({'protocol': 'mug', 'ids': srv.ids, 'countdownS': srv.countdown_s,
                                  'turn': srv.turn_config() is not None})

        @app.route('/__mug/stats')
        def stats():
            s = srv.stats
            return flask.jsonify({'relayed': dict(s['relayed']), 'dropped': dict(s['dropped']),
                                  'signalTypes': dict(s['signal_types']), 'refused': dict(s['refused']),
                                  'games': s['games'], 'activeGames': len(srv.games), 'waiting': len(srv.waiting),
                                  'connections': s['connections']})

        @app.route('/', defaults={'path': ''}, methods=['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH'])
        @app.route('/<path:path>', methods=['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH'])
        def static_file(path):
            if flask.request.method not in ('GET', 'HEAD'):
                return plain(405, 'method not allowed\n', {'Allow': 'GET, HEAD'})
            pathname = '/' + path
            if '\0' in pathname or '\\' in pathname:
                return plain(400, 'bad request\n')
            file = None
            if pathname in ('/', '/index.html'):
                # the demo page, marked as served over mug's protocol (demo.js reads the meta tag)
                file = os.path.join(srv.static_root, 'web', 'demo', 'index.html')
                if not os.path.isfile(file):
                    return plain(404, 'not found\n')
                with open(file, encoding='utf-8') as f:
                    html = f.read().replace('<head>', '<head>\n<meta name="p2psync-protocol" content="mug">', 1)
                if flask.request.method == 'HEAD':
                    html = ''
                r = flask.Response(html, status=200, content_type='text/html; charset=utf-8')
                r.headers['Cache-Control'] = 'no-cache'
                r.headers['X-Content-Type-Options'] = 'nosniff'
                return r
            else:
                for prefix, base in mounts:
                    if not pathname.startswith(prefix):
                        continue
                    resolved = os.path.realpath(os.path.join(base, '.' + pathname[len(prefix) - 1:]))
                    base_real = os.path.realpath(base)
                    if resolved != base_real and not resolved.startswith(base_real + os.sep):
                        return plain(403, 'forbidden\n')
                    file = resolved
                    break
            if file is None:
                return plain(404, 'not found\n')
            if os.path.isdir(file):
                file = os.path.join(file, 'index.html')
            if not os.path.isfile(file):
                return plain(404, 'not found\n')
            ext = os.path.splitext(file)[1].lower()
            ctype = 'text/plain; charset=utf-8' if file.endswith('.d.ts') else MIME.get(ext) or \
                mimetypes.guess_type(file)[0] or 'application/octet-stream'
            resp = flask.send_file(file, mimetype=ctype, conditional=False, etag=False, max_age=0)
            resp.headers['Cache-Control'] = 'no-cache'
            resp.headers['X-Content-Type-Options'] = 'nosniff'
            return resp

    # ------------------------------------------------------------------ run

    def serve(self, host, port, on_listen=None):
        sock = eventlet.listen((host, port))
        real = sock.getsockname()[1]
        url = f'http://{host}:{real}/'
        if on_listen:
            on_listen(url)
        eventlet.wsgi.server(sock, self.app, log_output=False, log=None)


def main(argv=None):
    ap = argparse.ArgumentParser(description='A test server speaking mug\'s multiplayer server protocol '
                                             '(Flask-SocketIO, eventlet), serving the p2psync demo page.')
    ap.add_argument('--host', default='127.0.0.1')
    ap.add_argument('--port', type=int, default=8080, help='0 = any free port (the URL line says which)')
    ap.add_argument('--ids', default='0,1', help="player ids in slot order: '0,1' (numbers), "
                                                 "'agent_right,agent_left' (strings) or a JSON list")
    ap.add_argument('--countdown', type=float, default=3.0, help='seconds between pyodide_game_ready and start_game')
    ap.add_argument('--turn-username', default=None)
    ap.add_argument('--turn-credential', default=None)
    ap.add_argument('--force-relay', action='store_true', help="turn_config.force_relay (iceTransportPolicy 'relay')")
    ap.add_argument('--scene', default='{}', help='JSON merged into scene_metadata (e.g. {"fps": 30})')
    ap.add_argument('--static-root', default=REPO_ROOT, help='holds web/, build/wasm/, node_modules/')
    ap.add_argument('--quiet', action='store_true')
    args = ap.parse_args(argv)
    try:
        ids = parse_ids(args.ids)
        scene = json.loads(args.scene)
        assert isinstance(scene, dict), '--scene must be a JSON object'
    except (ValueError, AssertionError) as e:
        ap.error(str(e))
    turn = None
    if args.turn_username:
        turn = {'username': args.turn_username, 'credential': args.turn_credential, 'force_relay': args.force_relay}
    log = (lambda m: None) if args.quiet else None
    srv = MugServer(ids, countdown_s=args.countdown, turn=turn, scene=scene, static_root=args.static_root, log=log)

    def listening(url):
        # the first stdout line: tests and scripts/demo read the URL from it
        print(f'mug_server listening on {url}', flush=True)
        print(f'[mug_server] ids {json.dumps(ids)}; open {url} in two tabs', file=sys.stderr, flush=True)

    try:
        srv.serve(args.host, args.port, listening)
    except KeyboardInterrupt:
        pass


if __name__ == '__main__':
    main()
