"""Captions from a scene description. Every caption names colour, size, shape, background and each event
in order, so captions discriminate scenes; templates and phrase variants give paraphrases (several ground
truths per clip for MSVD-style splits). Variant 0 of everything is the canonical caption."""
from __future__ import annotations

import numpy as np

from retrieval.synth.scene import Event, Scene

PHRASES = {
    "move:left": ("moves to the left", "slides left", "goes to the left"),
    "move:right": ("moves to the right", "slides right", "goes to the right"),
    "move:up": ("moves up", "slides upward", "rises to the top"),
    "move:down": ("moves down", "slides downward", "drops to the bottom"),
    "grow": ("grows", "gets bigger", "expands"),
    "shrink": ("shrinks", "gets smaller", "contracts"),
    "rotate:cw": ("rotates clockwise", "spins clockwise", "turns clockwise"),
    "rotate:ccw": ("rotates counterclockwise", "spins counterclockwise", "turns counterclockwise"),
    "appear": ("appears", "fades in", "shows up"),
    "disappear": ("disappears", "fades out", "vanishes"),
    "recolor": ("turns {}", "changes color to {}", "becomes {}"),
}
THEN = (", then ", " and then ", ", after that it ")
TEMPLATES = (
    "{subject} {actions} on a {background} background",
    "on a {background} background, {subject} {actions}",
    "{subject} on a {background} background {actions}",
)
STILL = ("{subject} on a {background} background", "{subject} in front of a {background} background",
         "a picture of {subject} on a {background} background")
LSMDC = ("the {desc} {actions} against the {background} backdrop",
         "in front of the {background} backdrop, the {desc} {actions}")
PARAGRAPH_FIRST = ("{subject} is on a {background} background.", "there is {subject} on a {background} background.")
PARAGRAPH_NEXT = ("it {action}.", "then it {action}.", "after that it {action}.", "next, it {action}.")


def phrase(event: Event, variant: int = 0) -> str:
    if event.kind == "recolor":
        return PHRASES["recolor"][variant % 3].format(event.arg)
    return PHRASES[event.key()][variant % 3]


def subject(scene: Scene, article: str = "a") -> str:
    return f"{article} {scene.size} {scene.color} {scene.shape}"


def _actions(scene: Scene, rng: np.random.Generator | None) -> str:
    pick = (lambda n: 0) if rng is None else (lambda n: int(rng.integers(n)))  # noqa: E731
    text = ""
    for i, e in enumerate(scene.events):
        text += (THEN[pick(len(THEN))] if i else "") + phrase(e, pick(3))
    return text or "stays still"


def caption(scene: Scene, rng: np.random.Generator | None = None, template: int | None = None) -> str:
    """One sentence for a short clip; ``rng=None`` gives the canonical wording."""
    if template is None:
        template = 0 if rng is None else int(rng.integers(len(TEMPLATES)))
    return TEMPLATES[template].format(subject=subject(scene), actions=_actions(scene, rng), background=scene.background)


def paraphrases(scene: Scene, count: int, rng: np.random.Generator) -> list[str]:
    """``count`` distinct captions of one clip (MSVD-style multiple ground truths)."""
    out = [caption(scene, rng, template=i % len(TEMPLATES)) for i in range(count)]
    for _ in range(10 * count):
        if len(set(out)) == count:
            break
        seen: set[str] = set()
        out = [c if not (c in seen or seen.add(c)) else caption(scene, rng) for c in out]
    return out


def still_caption(scene: Scene, rng: np.random.Generator) -> str:
    """For a still image (CC3M-style): appearance only."""
    return STILL[int(rng.integers(len(STILL)))].format(subject=subject(scene), background=scene.background)


def lsmdc_caption(scene: Scene, rng: np.random.Generator) -> str:
    """Movie-description flavour: definite article, "backdrop", narrator voice."""
    desc = f"{scene.size} {scene.color} {scene.shape}"
    return LSMDC[int(rng.integers(len(LSMDC)))].format(desc=desc, actions=_actions(scene, rng),
                                                      background=scene.background)


def paragraph(scene: Scene, rng: np.random.Generator) -> list[str]:
    """DiDeMo/ActivityNet-style: a list of sentences, one for the setting and one per event."""
    first = PARAGRAPH_FIRST[int(rng.integers(len(PARAGRAPH_FIRST)))]
    events = list(scene.events)
    if events and events[0].kind == "appear":
        sentences = [f"{subject(scene)} {phrase(events.pop(0), int(rng.integers(3)))} on a {scene.background} background."]
    else:
        sentences = [first.format(subject=subject(scene), background=scene.background)]
    for i, e in enumerate(events):
        template = PARAGRAPH_NEXT[0 if i == 0 else int(rng.integers(1, len(PARAGRAPH_NEXT)))]
        sentences.append(template.format(action=phrase(e, int(rng.integers(3)))))
    return sentences
