"""Name normalisation shared by concept merging and look-up, so both agree on what "same name" means."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_NON_WORD = re.compile(r"[^0-9a-z]+")
# Plural endings common in radiology vocabularies; words ending like this are not plurals.
_KEEP = ("ss", "us", "is", "xs", "as", "os", "ys")


def singular(word: str) -> str:
    if len(word) <= 3 or word.endswith(_KEEP):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "sses", "xes")):
        return word[:-2]
    if word.endswith("s"):
        return word[:-1]
    return word


def uninvert(name: str) -> str:
    """MeSH writes some headings inverted ("Lung Diseases, Interstitial"); give the natural order."""
    head, sep, tail = name.partition(", ")
    if not sep or "," in tail or len(tail.split()) > 3:
        return name
    return f"{tail} {head}"


@lru_cache(maxsize=1 << 18)
def name_key(name: str) -> str:
    """Case, accent, punctuation and plural insensitive key: 'Pleural Effusions' -> 'pleural effusion'."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii").lower()
    return " ".join(singular(w) for w in _NON_WORD.split(text) if w)
