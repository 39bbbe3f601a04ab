"""gridworld.py — a deterministic multi-agent gridworld for p2psync (runs in Pyodide or CPython).

Rules (integer-only state; the RNG state is part of the state):
  * width x height grid (default 16x12); actors = players then bots.
  * actions: 0 noop, 1 up (y-1), 2 down (y+1), 3 left (x-1), 4 right (x+1); anything else = noop.
  * movement resolved sequentially in actor order; a move into a wall or another actor is a bump.
  * then, in actor order, an actor on a coin collects it (+1 score, players also +1 step reward)
    and the coin respawns at a free cell drawn from the state's own RNG.
  * the episode ends (terminated) when end_on_score > 0 and a player's score reaches end_on_score,
    and is cut (truncated) when max_frames > 0 and frame >= max_frames.

The RNG is a 48-bit LCG (java.util.Random constants) kept as a plain int in the state: values stay
below 2**53, so the JSON state survives a JavaScript JSON.parse without precision loss.

NondeterministicGridWorld is a deliberately broken variant: it draws from a module-level
random.Random (_HIDDEN_RANDOM) that is NOT part of its state, on every step, so a rollback
(set_state) followed by a replay of the same actions gives a different result.

The p2psync_* functions at the bottom are the bridge used by web/envs/pyodide_env.js.
"""

import json
import random

_LCG_MULT = 0x5DEECE66D
_LCG_ADD = 0xB
_LCG_MASK = (1 << 48) - 1

_DX = (0, 0, 0, -1, 1)
_DY = (0, -1, 1, 0, 0)


def _seed_rng(seed):
    s = (int(seed) ^ _LCG_MULT) & _LCG_MASK
    return s if s != 0 else 0x2545F4914F6C


class GridWorld:
    """Deterministic gridworld. All state lives in get_state()."""

    def __init__(self, num_players=2, num_bots=0, seed=1, width=16, height=12, num_coins=3, max_frames=0,
                 end_on_score=0):
        if not (1 <= num_players <= 8):
            raise ValueError("num_players must be 1..8")
        if not (0 <= num_bots <= 8):
            raise ValueError("num_bots must be 0..8")
        if width < 4 or height < 4:
            raise ValueError("width/height must be >= 4")
        if num_players + num_bots + num_coins > width * height // 2:
            raise ValueError("grid too small")
        self.num_players = int(num_players)
        self.num_bots = int(num_bots)
        self.num_actors = self.num_players + self.num_bots
        self.width = int(width)
        self.height = int(height)
        self.num_coins = int(num_coins)
        self.max_frames = int(max_frames)
        self.end_on_score = int(end_on_score)
        self.reset(seed)

    # --- RNG (part of the state) -------------------------------------------------------------
    def _rand(self):
        """Next 32-bit value from the state's LCG."""
        self.rng = (self.rng * _LCG_MULT + _LCG_ADD) & _LCG_MASK
        return self.rng >> 16

    # --- helpers -----------------------------------------------------------------------------
    def _actors(self):
        return self.players + self.bots

    def _occupied(self, x, y, skip_coin=-1):
        for a in self.players:
            if a["x"] == x and a["y"] == y:
                return True
        for a in self.bots:
            if a["x"] == x and a["y"] == y:
                return True
        for i, c in enumerate(self.coins):
            if i != skip_coin and c[0] == x and c[1] == y:
                return True
        return False

    def _place_coin(self, c):
        cells = self.width * self.height
        idx = -1
        for _ in range(16):
            r = self._rand() % cells
            if not self._occupied(r % self.width, r // self.width, c):
                idx = r
                break
        if idx < 0:
            start = self._rand() % cells
            for k in range(cells):
                r = (start + k) % cells
                if not self._occupied(r % self.width, r // self.width, c):
                    idx = r
                    break
        self.coins[c] = [idx % self.width, idx // self.width]

    def _start_positions(self):
        w, h = self.width, self.height
        corners = [(1, 1), (w - 2, h - 2), (w - 2, 1), (1, h - 2), (w // 2, 1), (w // 2, h - 2), (1, h // 2), (w - 2, h // 2)]
        pos = [corners[i] for i in range(self.num_players)]
        for i in range(self.num_bots):
            pos.append((w // 2 - 2 + i % 4, h // 2 - 1 + i // 4))
        return pos

    # --- API ---------------------------------------------------------------------------------
    def reset(self, seed=None):
        if seed is None:
            seed = self.seed
        self.seed = int(seed) & 0xFFFFFFFF
        self.rng = _seed_rng(self.seed)
        self.frame = 0
        pos = self._start_positions()
        self.players = [{"reward": 0, "score": 0, "x": pos[i][0], "y": pos[i][1]} for i in range(self.num_players)]
        self.bots = [{"score": 0, "x": pos[self.num_players + i][0], "y": pos[self.num_players + i][1]} for i in range(self.num_bots)]
        self.coins = [[-1, -1] for _ in range(self.num_coins)]
        for c in range(self.num_coins):
            self._place_coin(c)

    def _pre_step(self):
        """Hook for subclasses, called at the start of every step."""

    def step(self, actions):
        """actions: sequence of ints (players then bots; missing = noop). Returns per-actor rewards."""
        self._pre_step()
        before = [b["score"] for b in self.bots]
        for p in self.players:
            p["reward"] = 0
        actors = self._actors()
        n = len(actions)
        for i, actor in enumerate(actors):
            a = int(actions[i]) if i < n else 0
            if a < 1 or a > 4:
                continue
            nx = actor["x"] + _DX[a]
            ny = actor["y"] + _DY[a]
            if nx < 0 or ny < 0 or nx >= self.width or ny >= self.height:
                continue
            blocked = False
            for j, o in enumerate(actors):
                if j != i and o["x"] == nx and o["y"] == ny:
                    blocked = True
                    break
            if not blocked:
                actor["x"] = nx
                actor["y"] = ny
        for i, actor in enumerate(actors):
            for c in range(len(self.coins)):
                coin = self.coins[c]
                if coin[0] == actor["x"] and coin[1] == actor["y"]:
                    actor["score"] += 1
                    if i < self.num_players:
                        actor["reward"] += 1
                    self._place_coin(c)
        self.frame += 1
        return [p["reward"] for p in self.players] + [b["score"] - s for b, s in zip(self.bots, before)]

    def get_state(self):
        return {
            "bots": [dict(b) for b in self.bots],
            "coins": [list(c) for c in self.coins],
            "end_on_score": self.end_on_score,
            "frame": self.frame,
            "height": self.height,
            "max_frames": self.max_frames,
            "num_bots": self.num_bots,
            "num_players": self.num_players,
            "players": [dict(p) for p in self.players],
            "rng": self.rng,
            "seed": self.seed,
            "width": self.width,
        }

    def set_state(self, state):
        if len(state["players"]) != self.num_players or len(state["bots"]) != self.num_bots:
            raise ValueError("state does not match this configuration")
        if state["width"] != self.width or state["height"] != self.height:
            raise ValueError("state does not match this configuration")
        self.players = [dict(p) for p in state["players"]]
        self.bots = [dict(b) for b in state["bots"]]
        self.coins = [list(c) for c in state["coins"]]
        self.frame = int(state["frame"])
        self.max_frames = int(state["max_frames"])
        self.end_on_score = int(state["end_on_score"])
        self.rng = int(state["rng"])
        self.seed = int(state["seed"])

    @property
    def rewards(self):
        """Cumulative per-player episode scores, keyed by player index as a string."""
        return {str(i): p["score"] for i, p in enumerate(self.players)}

    @property
    def last_rewards(self):
        return [p["reward"] for p in self.players]

    @property
    def terminated(self):
        return self.end_on_score > 0 and any(p["score"] >= self.end_on_score for p in self.players)

    @property
    def truncated(self):
        return self.max_frames > 0 and self.frame >= self.max_frames

    @property
    def done(self):
        return self.terminated or self.truncated

    def corrupt(self):
        self.players[0]["score"] += 1


# Module-level hidden RNG — deliberately NOT part of any state (seeded from OS entropy).
_HIDDEN_RANDOM = random.Random()


def seed_hidden_random(seed):
    """Reseed the hidden RNG of NondeterministicGridWorld (for reproducible tests)."""
    _HIDDEN_RANDOM.seed(seed)


class NondeterministicGridWorld(GridWorld):
    """BROKEN ON PURPOSE: coin placement uses _HIDDEN_RANDOM (not saved in get_state), and every
    step one coin "shimmers" to a hidden-random free cell. Rollback + replay therefore diverges."""

    def _rand(self):
        return _HIDDEN_RANDOM.getrandbits(32)

    def _pre_step(self):
        if self.coins:
            self._place_coin(self.frame % len(self.coins))


# --------------------------------------------------------------------------------------------
# Bridge for JavaScript (pyodide_env.js obtains these bound methods once as PyProxy functions).

def _dumps(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


class _Bridge:
    def __init__(self, env):
        self.env = env

    def _result(self, rewards):
        """A step result as one short string (cheap to hand to JS): 'T U r0 r1 ...' with T/U the
        terminated/truncated flags (0/1) and the per-actor rewards."""
        env = self.env
        return " ".join([str(int(env.terminated)), str(int(env.truncated))] + [str(r) for r in rewards])

    def step(self, *actions):
        """step(a0, a1, ...) — ints passed as separate arguments (cheap JS→Python conversion)."""
        return self._result(self.env.step(actions))

    def step_get_state(self, *actions):
        self.env.step(actions)
        return _dumps(self.env.get_state())

    def get_state(self):
        return _dumps(self.env.get_state())

    def set_state(self, text):
        self.env.set_state(json.loads(text))

    def reset(self, seed=None):
        self.env.reset(None if seed is None else int(seed))

    def replay(self, flat, n_actors, flags):
        """flat: flattened action list (len = frames*n_actors) — a JS array proxy or a list;
        flags: per-frame truthy → the pre-step state of that frame. Steps the frames in order and
        stops after the first step that ends the episode. Returns [states, results]: states[i]
        str|None, results[i] the step result string (see _result)."""
        if hasattr(flat, "to_py"):
            flat = flat.to_py()
        if hasattr(flags, "to_py"):
            flags = flags.to_py()
        env = self.env
        n = int(n_actors)
        frames = len(flat) // n if n else 0
        states = []
        results = []
        for i in range(frames):
            if flags is not None and i < len(flags) and flags[i]:
                states.append(_dumps(env.get_state()))
            else:
                states.append(None)
            results.append(self._result(env.step(flat[i * n:(i + 1) * n])))
            if env.done:
                break
        return [states, results]

    def rewards_json(self):
        return _dumps(self.env.rewards)

    def last_rewards_json(self):
        return _dumps(self.env.last_rewards)

    def frame(self):
        return self.env.frame

    def done(self):
        return bool(self.env.done)

    def corrupt(self):
        self.env.corrupt()


def p2psync_create(num_players=2, num_bots=0, seed=1, nondeterministic=False, width=16, height=12,
                   num_coins=3, max_frames=0, end_on_score=0):
    cls = NondeterministicGridWorld if nondeterministic else GridWorld
    return _Bridge(cls(num_players=int(num_players), num_bots=int(num_bots), seed=int(seed), width=int(width),
                       height=int(height), num_coins=int(num_coins), max_frames=int(max_frames),
                       end_on_score=int(end_on_score)))
