"""The confidentiality profile as data, compiled once into tag -> action tables.

``profile_e1_1.json`` is PS3.15 Table E.1-1 (see tools/generate_deid_profile.py);
``profiles.json`` names the option columns each deployable profile applies; ``rules.json``
covers what the table does not list; ``safe_private.json`` and ``burned_in.json`` are the
safe lists. Final actions after resolving the options:

- ``X`` remove, ``Z`` zero length, ``D`` dummy value, ``K`` keep, ``U`` keyed UID,
- ``REF`` (X/Z/U*) keep the sequence but only its references, UIDs replaced,
- ``pseudonym`` / ``year`` profile overrides (PatientID, PatientName, PatientBirthDate).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

DATA = resources.files("nccid.imaging.deid") / "data"


def load_data(name: str) -> dict:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def parse_tag(text: str) -> tuple[int, int, int, int] | None:
    """"(60XX,3000)" -> (value, mask) pairs as (group, gmask, element, emask); None for the private row."""
    match = re.fullmatch(r"\(([0-9A-FX]{4}),([0-9A-FX]{4})\)", text.upper())
    if not match:
        return None

    def split(part: str) -> tuple[int, int]:
        value = int(part.replace("X", "0"), 16)
        mask = int("".join("0" if c == "X" else "F" for c in part), 16)
        return value, mask

    group, gmask = split(match.group(1))
    element, emask = split(match.group(2))
    return group, gmask, element, emask


def resolve(row: dict, options: list[str], clean_as: dict[str, str]) -> str:
    """The action a profile takes for one table row: an option's K wins, then its C, else basic."""
    chosen = [row["options"][o] for o in options if o in row.get("options", {})]
    if "K" in chosen:
        return "K"
    for option in options:
        if row.get("options", {}).get(option) == "C" and option in clean_as:
            return clean_as[option]
    basic = row["basic"]
    # Compound actions depend on the IOD's attribute type, which a generic engine cannot know
    # per SOP class: take the right-most, the one that keeps the file conformant.
    last = basic.split("/")[-1]
    return "REF" if last == "U*" else last


@dataclass(frozen=True)
class SafePrivate:
    creator: str
    group: int
    element: int  # low byte of gggg,xxEE
    vr: str = ""
    name: str = ""


def default_safe_private() -> list[SafePrivate]:
    return [
        SafePrivate(a["creator"], int(a["group"], 16), int(a["element"], 16), a["vr"], a["name"])
        for a in load_data("safe_private.json")["attributes"]
    ]


@dataclass
class CompiledProfile:
    name: str
    spec: dict
    exact: dict[int, str]
    patterns: list[tuple[int, int, int, int, str]]
    rules: dict
    safe_keyword_tags: frozenset[int]
    uid_keep_tags: frozenset[int]
    reference_keep_tags: frozenset[int]
    remove_groups: list[tuple[int, int]]
    keyword_pattern: re.Pattern
    _unlisted: dict[int, str] = field(default_factory=dict)

    def action(self, tag: int) -> str:
        """Action for a public tag (private tags are decided by the safe list, not here)."""
        found = self.exact.get(tag)
        if found is not None:
            return found
        found = self._unlisted.get(tag)
        if found is None:
            found = self._decide_unlisted(tag)
            self._unlisted[tag] = found
        return found

    def _decide_unlisted(self, tag: int) -> str:
        group, element = tag >> 16, tag & 0xFFFF
        for value, gmask, elem, emask, action in self.patterns:
            if group & gmask == value and element & emask == elem:
                return action
        for low, high in self.remove_groups:
            if low <= group <= high:
                return "X"
        if element == 0 or group == 0x0002:
            return "X"  # group lengths are stale after editing; file meta is rebuilt
        if tag in self.safe_keyword_tags:
            return "K"
        try:
            vr = dictionary_VR(tag)
            keyword = keyword_for_tag(tag)
        except KeyError:
            return "X"  # public tag this dictionary does not know: could hold anything
        if vr in self.rules["remove_vrs"]:
            return "X"
        if vr in self.rules["keyword_pattern_vrs"] and self.keyword_pattern.search(keyword):
            return "X"
        if vr == "UI":
            return "K" if tag in self.uid_keep_tags else "U"
        return "K"


def safe_keywords(rules: dict) -> list[str]:
    """``rules.json``'s safe keywords, every group's (each group keyed by its reason)."""
    return [k for reason, group in rules["safe_keywords"].items() if not reason.startswith("_")
            for k in group]


def _tags(keywords: list[str]) -> frozenset[int]:
    return frozenset(t for t in (tag_for_keyword(k) for k in keywords) if t is not None)


@cache
def compile_profile(name: str) -> CompiledProfile:
    profiles = load_data("profiles.json")
    if name not in profiles or name.startswith("_"):
        known = ", ".join(p for p in profiles if not p.startswith("_"))
        raise ValueError(f"unknown de-identification profile {name!r} (known: {known})")
    spec = profiles[name]
    table = load_data("profile_e1_1.json")
    rules = load_data("rules.json")
    exact: dict[int, str] = {}
    patterns = []
    for row in table["attributes"]:
        parsed = parse_tag(row["tag"])
        if row["private"] or parsed is None:
            continue
        action = resolve(row, spec["options"], spec.get("clean_as", {}))
        group, gmask, element, emask = parsed
        if gmask == 0xFFFF and emask == 0xFFFF:
            exact[(group << 16) | element] = action
        else:
            patterns.append((group, gmask, element, emask, action))
    for keyword, action in spec.get("overrides", {}).items():
        exact[tag_for_keyword(keyword)] = action
    return CompiledProfile(
        name=name,
        spec=spec,
        exact=exact,
        patterns=patterns,
        rules=rules,
        safe_keyword_tags=_tags(safe_keywords(rules)),
        uid_keep_tags=_tags(rules["uid_keep_keywords"]),
        reference_keep_tags=_tags(rules["reference_keep_keywords"]),
        remove_groups=[(int(a, 16), int(b, 16)) for a, b in rules["remove_groups"]],
        keyword_pattern=re.compile(rules["remove_keyword_pattern"]),
    )


def profile_names() -> list[str]:
    return [p for p in load_data("profiles.json") if not p.startswith("_")]
