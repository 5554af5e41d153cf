"""Referring queries of the synthetic benchmark: templates, synonyms, location words, query types.

A query names the referred actor's class (always, through a synonym) and some of its colour, size,
action and location.  :func:`describe` picks the attributes at random, then adds the ones needed
for the query to fit the referred actor only (no other actor of the video matches every attribute
it names), and renders one of several templates::

    "the small red ball rolling on the left"      "a blue dog that is running"
    "the man on the right is walking"             "white cat which eats something"
    "a woman in purple jumping up and down"       "rolling big yellow car"

Location words are derived from the actor's trajectory (:func:`location_words`): an actor is "on
the left" when its centre stays in the left 45 % of the frame in every frame, and so on.

Query types (:func:`query_types`, computed from the written metadata):

- ``needs_action``: another actor of the video has the same class, colour and size but a different
  action (appearance alone cannot find the target);
- ``needs_appearance``: another actor has the same action but a different look (class, colour or
  size); motion alone cannot find the target;
- ``needs_location``: another actor has the same class, colour, size and action, and the query's
  location words are what tells them apart.
"""

from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

import numpy as np

__all__ = [
    "ATTRIBUTES",
    "CLASS_WORDS",
    "ACTION_PHRASES",
    "LOCATION_PHRASES",
    "QUERY_TYPES",
    "location_words",
    "choose_attributes",
    "render_query",
    "describe",
    "query_types",
    "instance_query_types",
]

ATTRIBUTES = ("category", "color", "size", "action", "location")
QUERY_TYPES = ("needs_action", "needs_appearance", "needs_location")

CLASS_WORDS: Dict[str, Tuple[str, ...]] = {
    "adult": ("adult", "man", "woman", "person"),
    "baby": ("baby", "infant", "toddler"),
    "ball": ("ball", "toy ball"),
    "bird": ("bird",),
    "car": ("car", "vehicle"),
    "cat": ("cat",),
    "dog": ("dog", "hound"),
}
COLOR_WORDS: Dict[str, Tuple[str, ...]] = {
    "red": ("red",),
    "green": ("green",),
    "blue": ("blue",),
    "yellow": ("yellow",),
    "purple": ("purple", "violet"),
    "white": ("white",),
}
SIZE_WORDS: Dict[str, Tuple[str, ...]] = {"small": ("small", "tiny"), "large": ("large", "big")}
# (participle phrase, third-person phrase)
ACTION_PHRASES: Dict[str, Tuple[Tuple[str, str], ...]] = {
    "climbing": (("climbing", "climbs"), ("climbing up", "climbs up"), ("going up", "goes up")),
    "crawling": (
        ("crawling", "crawls"),
        ("crawling slowly", "crawls slowly"),
        ("creeping", "creeps"),
    ),
    "eating": (
        ("eating", "eats"),
        ("eating something", "eats something"),
        ("chewing food", "chews food"),
    ),
    "flying": (
        ("flying", "flies"),
        ("flying through the air", "flies through the air"),
        ("gliding", "glides"),
    ),
    "jumping": (
        ("jumping", "jumps"),
        ("jumping up and down", "jumps up and down"),
        ("hopping", "hops"),
        ("bouncing", "bounces"),
    ),
    "rolling": (("rolling", "rolls"), ("rolling over", "rolls over"), ("tumbling", "tumbles")),
    "running": (("running", "runs"), ("running fast", "runs fast"), ("racing", "races")),
    "walking": (("walking", "walks"), ("walking slowly", "walks slowly"), ("strolling", "strolls")),
    "none": (
        ("standing still", "stands still"),
        ("not moving", "does not move"),
        ("staying still", "stays still"),
        ("resting", "rests"),
    ),
}
# (no "to the left": after a verb of motion it would read as a direction)
LOCATION_PHRASES: Dict[str, Tuple[str, ...]] = {
    "left": ("on the left", "on the left side", "in the left half"),
    "right": ("on the right", "on the right side", "in the right half"),
    "top": ("at the top", "near the top", "in the upper half"),
    "bottom": ("at the bottom", "near the bottom", "in the lower half"),
}
_PERSONS = ("adult", "baby")


def location_words(centres: np.ndarray, height: int, width: int) -> List[str]:
    """Location words that hold in every frame for a trajectory of centres ``(T, 2)`` (x, y) in
    pixels."""
    x, y = centres[:, 0] / width, centres[:, 1] / height
    out = []
    if x.max() < 0.45:
        out.append("left")
    if x.min() > 0.55:
        out.append("right")
    if y.max() < 0.45:
        out.append("top")
    if y.min() > 0.55:
        out.append("bottom")
    return out


def _look(inst: dict) -> Tuple[str, str, str]:
    return inst["category"], inst["color"], inst["size"]


def _matches(other: dict, target: dict, attrs: Iterable[str], location: Optional[str]) -> bool:
    """Whether ``other`` fits every attribute of ``target`` named in ``attrs`` (and the location
    word)."""
    for a in attrs:
        if a == "location":
            if location not in other.get("location", ()):
                return False
        elif other[a] != target[a]:
            return False
    return True


def choose_attributes(
    rng: np.random.Generator,
    target: dict,
    others: Sequence[dict],
    p_color=0.85,
    p_action=0.8,
    p_size=0.35,
    p_location=0.15,
) -> Optional[Tuple[List[str], Optional[str]]]:
    """Pick the attributes a query names: ``(attrs, location word or None)``, or None if impossible.

    The class is always named; colour, action, size and location are named at random with the
    given probabilities.  The action is always named when another actor looks the same (class,
    colour, size), and a look attribute that differs when another actor does the same action.  Then
    colour, action, size and location are added (in that order) while another actor still fits
    every named attribute.  A location word is used only if it holds for the target and not for
    the actors the other named attributes leave.
    """
    attrs = ["category"]
    for a, p in (("color", p_color), ("action", p_action), ("size", p_size)):
        if rng.random() < p:
            attrs.append(a)
    # the words a distractor makes necessary are always named, whatever else is: the action against
    # an actor that looks the same, a look attribute against an actor doing the same action
    for o in others:
        if _look(o) == _look(target) and o["action"] != target["action"] and "action" not in attrs:
            attrs.append("action")
        if o["action"] == target["action"] and _look(o) != _look(target):
            differ = [a for a in ("category", "color", "size") if o[a] != target[a]]
            if not any(a in attrs for a in differ):
                attrs.append(differ[0])
    own_locs = list(target.get("location", ()))
    location = None
    if own_locs and rng.random() < p_location:
        location = own_locs[int(rng.integers(len(own_locs)))]
        attrs.append("location")
    for a in ("color", "action", "size", "location"):
        rivals = [o for o in others if _matches(o, target, attrs, location)]
        if not rivals:
            break
        if a == "location":
            # the rivals that the other attributes leave: the location word must rule them all out
            rivals = [o for o in others if _matches(o, target, [b for b in attrs if b != a], None)]
            good = [w for w in own_locs if not any(w in r.get("location", ()) for r in rivals)]
            if not good:
                return None
            location = good[int(rng.integers(len(good)))]
            if a not in attrs:
                attrs.append(a)
        elif a not in attrs and any(r[a] != target[a] for r in rivals):
            attrs.append(a)
    if any(_matches(o, target, attrs, location) for o in others):
        return None
    order = [a for a in ATTRIBUTES if a in attrs]
    return order, location


def _pick(rng, seq):
    return seq[int(rng.integers(len(seq)))]


def render_query(
    rng: np.random.Generator, target: dict, attrs: Sequence[str], location: Optional[str]
) -> str:
    """Render a query naming ``attrs`` of ``target`` with a random template and synonyms."""
    noun = _pick(rng, CLASS_WORDS[target["category"]])
    colour = _pick(rng, COLOR_WORDS[target["color"]]) if "color" in attrs else ""
    size = _pick(rng, SIZE_WORDS[target["size"]]) if "size" in attrs else ""
    loc = _pick(rng, LOCATION_PHRASES[location]) if location else ""
    det = _pick(rng, ("the", "the", "a", ""))
    adj = f"{size} {colour}"
    if "action" in attrs:
        act, act3 = _pick(rng, ACTION_PHRASES[target["action"]])
        templates = [
            f"{det} {adj} {noun} {act} {loc}",
            f"{det} {adj} {noun} that is {act} {loc}",
            f"{det} {adj} {noun} {loc} is {act}",
            f"{det} {adj} {noun} which {act3} {loc}",
        ]
        if target["action"] != "none":
            templates.append(f"{target['action']} {adj} {noun} {loc}")
        if colour and target["category"] in _PERSONS:
            templates.append(f"{det} {size} {noun} in {colour} {act} {loc}")
    else:
        templates = [f"{det} {adj} {noun} {loc}"]
        if size or colour:
            templates.append(
                f"{det} {noun} {loc} that is {' and '.join(w for w in (size, colour) if w)}"
            )
        if colour and target["category"] in _PERSONS:
            templates.append(f"{det} {size} {noun} in {colour} {loc}")
    return " ".join(_pick(rng, templates).split()).lower()


def describe(
    rng: np.random.Generator, target: dict, others: Sequence[dict], **probs
) -> Optional[Tuple[str, Optional[str]]]:
    """A query that fits ``target`` and none of ``others``: ``(query, location word or None)``.

    ``target`` / ``others``: dicts with ``category``, ``color``, ``size``, ``action`` and
    ``location`` (a list of location words).  None when no combination of attributes tells the
    target apart."""
    chosen = choose_attributes(rng, target, others, **probs)
    if chosen is None:
        return None
    attrs, location = chosen
    return render_query(rng, target, attrs, location), location


def instance_query_types(target: dict, others: Sequence[dict], location: Optional[str]) -> Set[str]:
    """The query types of a query on ``target`` (see the module docstring)."""
    types = set()
    for o in others:
        same_look = _look(o) == _look(target)
        if same_look and o["action"] != target["action"]:
            types.add("needs_action")
        if not same_look and o["action"] == target["action"]:
            types.add("needs_appearance")
        if same_look and o["action"] == target["action"] and location:
            types.add("needs_location")
    return types


def query_types(meta: dict) -> Dict[Tuple[str, int], Set[str]]:
    """Query types of every query of a ``synthetic_meta.json`` dict:
    ``{(video_id, instance_id): types}``.

    Computed from the instances' attributes (class, colour, size, action) and each query's
    ``location`` word, so it does not trust the stored ``types``.  A query with no special type maps
    to an empty set.  When an instance has several queries, its types are the union.
    """
    out: Dict[Tuple[str, int], Set[str]] = {}
    videos = meta["videos"]
    for q in meta.get("queries", ()):
        vid, iid = q["video_id"], int(q["instance_id"])
        insts = videos[vid]["instances"]
        target = insts[str(iid)]
        others = [v for k, v in insts.items() if int(k) != iid]
        out.setdefault((vid, iid), set()).update(
            instance_query_types(target, others, q.get("location"))
        )
    return out
