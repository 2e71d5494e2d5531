"""Two CPU processes (gloo) each holding half of a fixed batch train the same objective as one process on
the whole batch: losses, DDP-averaged gradients, Sinkhorn assignments."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from alignment.distributed import gather_features, world
from alignment.losses import ClipLoss, EntityLoss, EntityRegionContrast, KnowledgePrototypes, MedClipLoss, sinkhorn
from alignment.states import ABSENT, PRESENT, UNCERTAIN, UNKNOWN
from tests.processes import join_gloo, run_processes

WORLD, BATCH, TIMEOUT_S = 2, 8, 60
# Loss kinds whose value is the same on every process (the whole global-batch loss), the others report
# their own rows and average to the global value.
GLOBAL_VALUE = {"clip", "clip_open_clip", "medclip", "entity_region"}
KINDS = ("clip", "clip_local", "clip_open_clip", "medclip", "medclip_local", "cpa", "entity", "entity_region")
P, A, U, N = PRESENT, ABSENT, UNCERTAIN, UNKNOWN
# Image states of 4 entities for the entity-region contrast: rows 0-3 on one process, 4-7 on the other; each entity
# has several positives against several negatives, and entity 2's negatives all sit on the first process.
REGION_STATES = torch.tensor([[P, A, A, N], [A, P, N, A], [P, P, A, N], [N, A, P, A],
                              [A, N, P, P], [P, A, U, N], [A, P, N, A], [U, A, P, P]])


def batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)

    def states() -> torch.Tensor:
        s = torch.randint(0, 3, (BATCH, 4), generator=g)
        return s.masked_fill(torch.rand(BATCH, 4, generator=g) < 0.4, UNKNOWN)

    entity_states = states()
    entity_states[: BATCH // 2, 1:] = UNKNOWN  # the first process holds far fewer known cells
    return {"image": torch.randn(BATCH, 6, generator=g), "text": torch.randn(BATCH, 6, generator=g),
            "image_states": states(), "text_states": states(), "entity_states": entity_states,
            "scores": torch.randn(BATCH, 5, generator=g), "region_states": REGION_STATES}


class Heads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.image, self.text, self.entity = nn.Linear(6, 4), nn.Linear(6, 4), nn.Linear(6, 12)
        self.region = nn.Linear(6, 4)
        self.logit_scale = nn.Parameter(torch.tensor(2.0))
        self.prototypes = KnowledgePrototypes(5, 4)


def run(kind: str, rows: slice) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss of `kind` on `rows` of the batch, and the gradient of every parameter it reaches."""
    data, heads = batch(), Heads()
    image = F.normalize(heads.image(data["image"][rows]), dim=-1)
    text = F.normalize(heads.text(data["text"][rows]), dim=-1)
    states = data["image_states"][rows], data["text_states"][rows]
    if kind.startswith("clip"):
        clip = ClipLoss(local_loss=kind == "clip_local", gather_with_grad=kind != "clip_open_clip")
        loss = clip(image, text, heads.logit_scale)
    elif kind.startswith("medclip"):
        loss = MedClipLoss(temperature=0.5, local_loss=kind == "medclip_local")(image, text, heads.logit_scale, *states)
    elif kind == "cpa":
        loss = heads.prototypes(image, text)["loss"]
    elif kind == "entity_region":
        loss = EntityRegionContrast()(torch.tanh(heads.region(data["image"][rows])), data["region_states"][rows])
    else:
        logits = heads.entity(data["image"][rows]).reshape(-1, 4, 3)
        loss = EntityLoss(torch.tensor([1.0, 2.0, 0.5]))(logits, data["entity_states"][rows])
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in heads.named_parameters() if p.grad is not None}


def expected() -> dict[str, object]:
    assert world() == (0, 1)
    return {"runs": {kind: run(kind, slice(None)) for kind in KINDS}, "sinkhorn": sinkhorn(batch()["scores"])}


def close(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    assert torch.allclose(a, b, atol=1e-5, rtol=1e-5), f"{what}: {a} != {b}"


def check(rank: int, want: dict[str, object]) -> None:
    rows = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
    for kind in KINDS:
        loss, grads = run(kind, rows)
        want_loss, want_grads = want["runs"][kind]
        if kind in GLOBAL_VALUE:
            close(loss, want_loss, f"{kind} loss on rank {rank}")
        close(sum_over_processes(loss) / WORLD, want_loss, f"{kind} mean loss")
        assert grads.keys() == want_grads.keys(), kind
        for name, grad in grads.items():
            total = sum_over_processes(grad)
            if kind == "clip_open_clip" and name != "logit_scale":
                # open_clip's gather: each process's own features get the exact gradient, so the sum is exact
                # and DDP's average is 1/W of it.
                close(total, want_grads[name], f"{kind} summed gradient of {name}")
            else:
                close(total / WORLD, want_grads[name], f"{kind} DDP-averaged gradient of {name}")
    close(gather_features(sinkhorn(batch()["scores"][rows])), want["sinkhorn"], "sinkhorn assignments")


def sum_over_processes(x: torch.Tensor) -> torch.Tensor:
    x = x.clone()
    dist.all_reduce(x)
    return x


def worker(rank: int, port: int, want: dict[str, object]) -> None:
    torch.set_num_threads(1)
    join_gloo(rank, port, WORLD, TIMEOUT_S)
    try:
        assert world() == (rank, WORLD)
        check(rank, want)
    finally:
        dist.destroy_process_group()


def test_two_processes_train_the_one_process_objective():
    want = expected()
    run_processes(worker, (want,), WORLD, TIMEOUT_S)
