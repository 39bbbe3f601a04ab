"""A small env with the interface of mug's Pyodide envs (cogrid-style), for the compat tests.

    env = CoinEnv(agent_ids)                 agent ids as mug passes them (ints or strings)
    obs, infos = env.reset(seed=s)
    obs, rewards, terminateds, truncateds, infos = env.step({agent_id: action})
    env.get_state() -> JSON-able dict;  env.set_state(d);  env.render() -> dict

Agents move on an 8x8 torus (actions 0 stay, 1 up, 2 down, 3 left, 4 right); a coin taken gives
reward 1 and respawns where Python's global `random` says (so a rollback that does not restore
the RNG state desyncs). Bots (ids containing "bot") move on their own action like the others.
The episode terminates (every agent's flag and "__all__") once `goal` coins were taken.
"""
import random

MOVES = [(0, 0), (0, -1), (0, 1), (-1, 0), (1, 0)]


class CoinEnv:
    def __init__(self, agent_ids, size=8, goal=6):
        self.agent_ids = list(agent_ids)
        self.size = size
        self.goal = goal
        self.pos = {}
        self.coin = [0, 0]
        self.taken = 0
        self.t = 0

    def _spawn(self):
        self.coin = [random.randrange(self.size), random.randrange(self.size)]

    def reset(self, seed=None):
        self.pos = {a: [i % self.size, (3 * i) % self.size] for i, a in enumerate(self.agent_ids)}
        self.taken = 0
        self.t = 0
        self._spawn()
        return {a: list(p) for a, p in self.pos.items()}, {}

    def step(self, actions):
        rewards = {}
        for a in self.agent_ids:
            dx, dy = MOVES[int(actions[a]) % len(MOVES)]
            p = self.pos[a]
            p[0] = (p[0] + dx) % self.size
            p[1] = (p[1] + dy) % self.size
            rewards[a] = 0
            if p == self.coin:
                rewards[a] = 1
                self.taken += 1
                self._spawn()
        self.t += 1
        done = self.taken >= self.goal
        terminateds = {a: done for a in self.agent_ids}
        terminateds["__all__"] = done
        truncateds = {a: False for a in self.agent_ids}
        truncateds["__all__"] = False
        obs = {a: list(p) for a, p in self.pos.items()}
        return obs, rewards, terminateds, truncateds, {a: {} for a in self.agent_ids}

    def get_state(self):
        return {"pos": [[str(a), p] for a, p in self.pos.items()], "coin": self.coin, "taken": self.taken, "t": self.t}

    def set_state(self, state):
        by_name = {str(a): a for a in self.agent_ids}
        self.pos = {by_name[name]: list(p) for name, p in state["pos"]}
        self.coin = list(state["coin"])
        self.taken = state["taken"]
        self.t = state["t"]

    def render(self):
        return {"game_state_objects": [{"uuid": str(a), "x": p[0], "y": p[1]} for a, p in self.pos.items()], "removed": []}
