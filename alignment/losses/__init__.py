"""The alignment losses, one small module per paper (see each module for its formula as implemented).

Conventions: features are this process's rows; contrastive terms gather the other processes' rows
themselves (`alignment.distributed`), so one process with B rows and W processes with B/W rows train the
same objective; every loss computes in float32 under autocast and follows its inputs' device.
"""

from .clip import ClipLoss, soft_cross_entropy
from .entity_region import EntityRegionContrast
from .gloria import GloriaLoss
from .kad import EntityDecoder, EntityDecoderConfig, EntityLoss, EntityOutput
from .medclip import KnowledgeClipLoss, MedClipLoss, semantic_targets
from .mgca import TokenAlignmentLoss
from .prototypes import KnowledgePrototypes, anchor_penalty, prototype_alignment
from .sinkhorn import sinkhorn, swapped_prediction

__all__ = [
    "ClipLoss", "EntityDecoder", "EntityDecoderConfig", "EntityLoss", "EntityOutput", "EntityRegionContrast", "GloriaLoss",
    "KnowledgeClipLoss", "KnowledgePrototypes", "MedClipLoss", "TokenAlignmentLoss",
    "anchor_penalty", "prototype_alignment", "semantic_targets", "sinkhorn", "soft_cross_entropy", "swapped_prediction",
]
