"""Scene descriptions for the synthetic corpus: one coloured shape on a background, changed by a sequence
of events. A scene is pure data; its state is a function of normalized time ``u`` in [0, 1], and
``scene.reversed()`` is the scene whose state at ``u`` equals this one's at ``1 - u`` (so its frames are
these frames backwards), which is what makes the temporal hard negatives exact."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np

SHAPES = ("circle", "square", "triangle", "star", "heart", "cross", "hexagon", "ring")
ROUND_SHAPES = ("circle", "ring")  # rotating them changes nothing visible
COLORS = {
    "red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 230), "yellow": (240, 215, 30),
    "purple": (150, 60, 200), "orange": (245, 140, 30), "pink": (250, 130, 190), "cyan": (40, 210, 220),
    "white": (250, 250, 250), "black": (10, 10, 10),
}
BACKGROUNDS = ("black", "white", "gray", "brown", "navy", "striped", "checkered", "dotted")
CLASHES = {"white": ("white",), "black": ("black", "navy")}  # shape colour -> backgrounds it would vanish on
SIZES = ("small", "medium", "large")
SIZE_RADIUS = 0.085  # radius of "small" as a fraction of the frame side; each size step is x SIZE_STEP
SIZE_STEP = 1.5
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up", "cw": "ccw", "ccw": "cw"}
EVENT_KINDS = ("move", "grow", "shrink", "rotate", "appear", "disappear", "recolor")
ROTATION_DEG = 90.0


@dataclass(frozen=True)
class Event:
    """``kind`` in EVENT_KINDS; ``arg`` is the direction (move), "cw"/"ccw" (rotate) or the new colour
    (recolor); ``weight`` is its share of the timeline (seconds for long videos)."""

    kind: str
    arg: str = ""
    weight: float = 1.0

    def key(self) -> str:
        return f"{self.kind}:{self.arg}" if self.arg else self.kind


@dataclass(frozen=True)
class State:
    x: float
    y: float
    level: float  # size level, 0 = small .. 2 = large
    angle: float  # degrees, clockwise on screen
    color: tuple[float, float, float]
    alpha: float


@dataclass(frozen=True)
class Scene:
    shape: str
    background: str
    color: str  # the colour name at u = 0
    size: str  # the size name at u = 0
    x: float
    y: float
    span: float  # how far one move goes, as a fraction of the frame side
    angle: float = 0.0
    visible: bool = True
    size_jitter: float = 1.0
    bg_phase: int = 0
    events: tuple[Event, ...] = ()
    hold: float = 0.25  # idle time before the first and after the last event (same unit as weights)
    gap: float = 0.15  # idle time between events

    # ------------------------------------------------------------------ timeline
    def _progress(self, u: float) -> list[float]:
        total = 2 * self.hold + sum(e.weight for e in self.events) + self.gap * max(0, len(self.events) - 1)
        t, start, out = u * total, self.hold, []
        for e in self.events:
            out.append(min(1.0, max(0.0, (t - start) / e.weight)))
            start += e.weight + self.gap
        return out

    def state(self, u: float) -> State:
        x, y, level, angle = self.x, self.y, float(SIZES.index(self.size)), self.angle
        color = np.array(COLORS[self.color], dtype=np.float64)
        alpha = 1.0 if self.visible else 0.0
        for e, p in zip(self.events, self._progress(u)):
            if e.kind == "move":
                dx, dy = DIRECTIONS[e.arg]
                x, y = x + dx * self.span * p, y + dy * self.span * p
            elif e.kind in ("grow", "shrink"):
                level += p if e.kind == "grow" else -p
            elif e.kind == "rotate":
                angle += ROTATION_DEG * p * (1 if e.arg == "cw" else -1)
            elif e.kind in ("appear", "disappear"):
                alpha += ((1.0 if e.kind == "appear" else 0.0) - alpha) * p
            elif e.kind == "recolor":
                color = color + (np.array(COLORS[e.arg]) - color) * p
        return State(x, y, level, angle, tuple(color), alpha)

    # ------------------------------------------------------------------ symbolic end state
    def final(self) -> tuple[str, str, bool, float, float, float]:
        """(colour, size, visible, x, y, angle) after the last event."""
        color, level, visible, x, y, angle = self.color, SIZES.index(self.size), self.visible, self.x, self.y, self.angle
        for e in self.events:
            if e.kind == "move":
                dx, dy = DIRECTIONS[e.arg]
                x, y = x + dx * self.span, y + dy * self.span
            elif e.kind in ("grow", "shrink"):
                level += 1 if e.kind == "grow" else -1
            elif e.kind == "rotate":
                angle += ROTATION_DEG * (1 if e.arg == "cw" else -1)
            elif e.kind in ("appear", "disappear"):
                visible = e.kind == "appear"
            elif e.kind == "recolor":
                color = e.arg
        return color, SIZES[level], visible, x, y, angle

    def reversed(self) -> "Scene":
        """The same clip played backwards: inverted events in reverse order, starting from the end state."""
        colors = [self.color] + [e.arg for e in self.events if e.kind == "recolor"]
        before = iter(reversed(colors[:-1]))
        inverted = []
        for e in reversed(self.events):
            if e.kind == "recolor":
                inverted.append(Event("recolor", next(before), e.weight))
            elif e.kind in ("grow", "shrink", "appear", "disappear"):
                flip = {"grow": "shrink", "shrink": "grow", "appear": "disappear", "disappear": "appear"}[e.kind]
                inverted.append(Event(flip, "", e.weight))
            else:
                inverted.append(Event(e.kind, OPPOSITE[e.arg], e.weight))
        color, size, visible, x, y, angle = self.final()
        return replace(self, color=color, size=size, visible=visible, x=x, y=y, angle=angle, events=tuple(inverted))

    def swapped(self) -> "Scene":
        """The two events in the other order, from the same start (only for two-event scenes)."""
        if len(self.events) != 2:
            raise ValueError(f"swapped() needs exactly two events, this scene has {len(self.events)}")
        return replace(self, events=self.events[::-1])

    def key(self) -> str:
        """What a caption can say about the scene; two scenes with the same key are the same scene."""
        events = ",".join(e.key() for e in self.events)
        return f"{self.size} {self.color} {self.shape} on {self.background}{'' if self.visible else ' hidden'}: {events}"

    def orbit_key(self) -> str:
        """Smallest key over {self, reversed, swapped, reversed-swapped}: the unit kept on one side of the
        train/test split, so no test scene (or its hard negative) is seen in training."""
        keys = [self.key(), self.reversed().key()]
        if len(self.events) == 2:
            keys += [self.swapped().key(), self.swapped().reversed().key()]
        return min(keys)


def in_test_domain(scene: Scene, test_fraction: float) -> bool:
    digest = hashlib.sha1(scene.orbit_key().encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < test_fraction


# ---------------------------------------------------------------------------------------------- sampling

SIDE_LO, SIDE_HI = 0.27, 0.73


def visible_colors(background: str) -> list[str]:
    return [c for c in COLORS if background not in CLASHES.get(c, ())]


def _choose_event(rng: np.random.Generator, shape: str, colors: list[str], color: str, level: int, sides: dict,
                  index: int, last: bool, previous: Event | None, allow_visibility: bool) -> Event | None:
    options: list[tuple[str, str]] = []
    for d, (dx, dy) in DIRECTIONS.items():
        axis, sign = ("x", dx) if dx else ("y", dy)
        if sides[axis] is None or sides[axis] == -sign:
            options.append(("move", d))
    if level < 2:
        options.append(("grow", ""))
    if level > 0:
        options.append(("shrink", ""))
    if shape not in ROUND_SHAPES:
        options += [("rotate", "cw"), ("rotate", "ccw")]
    options += [("recolor", c) for c in colors if c != color]
    if allow_visibility and index == 0:
        options.append(("appear", ""))
    if allow_visibility and last and index > 0:
        options.append(("disappear", ""))
    if previous is not None:  # never repeat or undo the previous event (an undo makes a palindrome)
        prev = previous.key()
        options = [o for o in options if _inverse_key(*o, before=color) != prev and Event(*o).key() != prev]
    if not options:
        return None
    # draw the kind first so the many recolour targets do not swamp the other kinds
    kinds = sorted({k for k, _ in options})
    kind = kinds[rng.integers(len(kinds))]
    args = [a for k, a in options if k == kind]
    return Event(kind, args[rng.integers(len(args))])


def _inverse_key(kind: str, arg: str, before: str) -> str:
    if kind == "recolor":
        return f"recolor:{before}"
    flip = {"grow": "shrink", "shrink": "grow", "appear": "disappear", "disappear": "appear"}
    return flip[kind] if kind in flip else f"{kind}:{OPPOSITE[arg]}"


def sample_scene(rng: np.random.Generator, num_events: int, allow_visibility: bool = True,
                 weights: list[float] | None = None, hold: float = 0.25, gap: float = 0.15) -> Scene:
    """A random scene with ``num_events`` feasible events (moves stay inside the frame, sizes stay in
    small..large, appear only first, disappear only last, no event undoes the one before)."""
    shape = SHAPES[rng.integers(len(SHAPES))]
    background = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    colors = visible_colors(background)
    color = colors[rng.integers(len(colors))]
    level = int(rng.integers(3))
    sides: dict[str, int | None] = {"x": None, "y": None}  # -1 = low side, +1 = high side, None = no move yet
    start_side: dict[str, int | None] = {"x": None, "y": None}
    events: list[Event] = []
    cur_color, cur_level = color, level
    for i in range(num_events):
        e = _choose_event(rng, shape, colors, cur_color, cur_level, sides, i, i == num_events - 1,
                          events[-1] if events else None, allow_visibility)
        if e is None:
            break
        if e.kind == "move":
            dx, dy = DIRECTIONS[e.arg]
            axis, sign = ("x", dx) if dx else ("y", dy)
            if sides[axis] is None:
                start_side[axis] = -sign
            sides[axis] = sign
        elif e.kind in ("grow", "shrink"):
            cur_level += 1 if e.kind == "grow" else -1
        elif e.kind == "recolor":
            cur_color = e.arg
        w = weights[i] if weights else 1.0
        events.append(Event(e.kind, e.arg, w))
    jitter = lambda s: float(rng.uniform(-s, s))  # noqa: E731
    lo, hi = SIDE_LO + jitter(0.02), SIDE_HI + jitter(0.02)
    pos = {a: (lo if start_side[a] == -1 else hi) if start_side[a] else 0.5 + jitter(0.08) for a in ("x", "y")}
    return Scene(shape=shape, background=background, color=color,
                 size=SIZES[level], x=pos["x"], y=pos["y"], span=hi - lo, angle=float(rng.uniform(0, 30)),
                 visible=not (events and events[0].kind == "appear"), size_jitter=1.0 + jitter(0.04),
                 bg_phase=int(rng.integers(8)), events=tuple(events), hold=hold, gap=gap)
