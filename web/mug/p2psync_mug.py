"""p2psync_mug.py -- the Python half of web/mug/adapter.js: mug's env (the `env` global of mug's
Pyodide page) behind p2psync's env adapter contract (web/driver.js).

The snapshot holds everything mug's saveStateSnapshot() holds (pyodide_multiplayer_game.js):
env.get_state(), Python's `random` state, NumPy's global RNG state (when NumPy is loaded), the
cumulative rewards and step_num -- so a rollback restores all of them and rewards never count
twice. Actions reach env.step() as mug's stepWithActions() passes them: {agent_id: action} with
the agent ids' Python types (numeric strings become ints). An episode ends as in mug: every
terminated value true, or every truncated value true, or step_num >= max_steps.
"""
import json
import random

try:
    import numpy as np
except ImportError:  # an env that does not use NumPy
    np = None


def mug_key(k):
    """mug's action-dict key conversion: numeric strings become ints, anything else stays."""
    return int(k) if isinstance(k, str) and k.isnumeric() else k


def _as_dict(v):
    """mug's normalisation of a non-dict step output: {"human": v}."""
    return v if isinstance(v, dict) else {"human": v}


class MugEnvAdapter:
    def __init__(self, env, agent_ids, max_steps, score_carry_over=False):
        self.env = env
        self.agent_ids = [mug_key(a) for a in agent_ids]  # engine order: players by index, then bots
        self.max_steps = int(max_steps)
        self.score_carry_over = bool(score_carry_over)
        self.cumulative_rewards = {str(a): 0 for a in self.agent_ids}
        self.step_num = 0
        self.last = None

    # -- snapshots: what mug's saveStateSnapshot() / loadStateSnapshot() keep and restore
    def get_state(self):
        snap = {
            "env_state": self.env.get_state(),
            "py_rng_state": random.getstate(),
            "cumulative_rewards": self.cumulative_rewards,
            "step_num": self.step_num,
        }
        if np is not None:
            s = np.random.get_state()
            snap["np_rng_state"] = [s[0], s[1].tolist(), s[2], s[3], s[4]]
        return json.dumps(snap, sort_keys=True, separators=(",", ":"))

    def set_state(self, text):
        snap = json.loads(text)
        self.env.set_state(snap["env_state"])
        version, internal, gauss = snap["py_rng_state"]
        random.setstate((version, tuple(internal), gauss))
        if np is not None and "np_rng_state" in snap:
            s = snap["np_rng_state"]
            np.random.set_state((s[0], np.array(s[1], dtype=np.uint32), s[2], s[3], s[4]))
        self.cumulative_rewards = dict(snap["cumulative_rewards"])
        self.step_num = snap["step_num"]
        self.last = None

    # -- one frame: mug's stepWithActions() minus the rendering
    def step(self, *actions):
        obs, rewards, terminateds, truncateds, infos = self.env.step(
            {aid: int(a) for aid, a in zip(self.agent_ids, actions)})
        rewards, terminateds, truncateds = _as_dict(rewards), _as_dict(terminateds), _as_dict(truncateds)
        for k, v in rewards.items():
            self.cumulative_rewards[str(k)] = self.cumulative_rewards.get(str(k), 0) + v
        self.step_num += 1
        self.last = (obs, rewards, terminateds, truncateds, infos)
        terminated = len(terminateds) > 0 and all(bool(x) for x in terminateds.values())
        truncated = (len(truncateds) > 0 and all(bool(x) for x in truncateds.values())) or self.step_num >= self.max_steps
        per_actor = [float(rewards.get(a, rewards.get(str(a), 0))) for a in self.agent_ids]
        return [terminated, truncated, per_actor]

    # -- a rollback's replay in one call (mug replays in one Python call too)
    def replay(self, actions_list, save_flags):
        states, results = [], []
        for actions, save in zip(actions_list, save_flags):
            states.append(self.get_state() if save else None)
            r = self.step(*actions)
            results.append(r)
            if r[0] or r[1]:
                break
        return [states, results]

    # -- a new episode: mug's reset() re-seeds NumPy and `random` and resets with the game seed
    def reset(self, seed=None):
        if seed is not None:
            random.seed(seed)
            if np is not None:
                np.random.seed(seed)
        out = self.env.reset(seed=seed)
        self.step_num = 0
        if not self.score_carry_over:
            self.cumulative_rewards = {str(a): 0 for a in self.agent_ids}
        self.last = None
        return out

    # -- what mug's step() returns for the newest frame: [obs, rewards, terminateds, truncateds,
    #    infos, render_state]
    def last_step(self):
        if self.last is None:
            return None
        render_state = self.env.render() if hasattr(self.env, "render") else None
        return [*self.last, render_state]
