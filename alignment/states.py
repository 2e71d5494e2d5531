"""What an image or a report says about each entity: one integer per (item, entity).

Images and reports are described by the same vocabulary of entities (the label set's findings and the
reports' most frequent finding concepts). Each item carries a row of states over it, stored as an integer
tensor so that the entity decoder's three-way cross-entropy can use it as its target directly, with
`UNKNOWN` as its `ignore_index`. Uncertain is a class of its own: it is never folded into absent (KAD) nor
multiplied into agreement with another uncertain (MedCLIP's −1·−1 = +1).
"""

from __future__ import annotations

ABSENT, PRESENT, UNCERTAIN = 0, 1, 2
UNKNOWN = -100  # not mentioned / not labelled: ignored by every loss that reads states
NUM_CLASSES = 3
NAMES = {ABSENT: "absent", PRESENT: "present", UNCERTAIN: "uncertain"}
BY_NAME = {name: state for state, name in NAMES.items()}
