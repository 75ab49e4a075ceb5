"""Per-block widths of timm's channel-pruned ECA-ResNets (timm/models/_pruned/*.txt, pruned as in
https://arxiv.org/abs/2002.08258): each block's (conv1, conv2, conv3) output widths, in network order.

Data, not structure: the presets ``ecaresnet50d_pruned`` and ``ecaresnet101d_pruned`` give them to
``ResNetSpec.block_widths``; a test checks them against timm's files.
"""

from __future__ import annotations

ECARESNET50D_PRUNED_WIDTHS: tuple[tuple[int, int, int], ...] = (
    (47, 18, 19), (52, 22, 19), (64, 35, 19), (85, 37, 171), (107, 80, 171), (120, 85, 171), (125, 87, 171),
    (198, 126, 818), (255, 232, 818), (256, 233, 818), (253, 235, 818), (256, 225, 818), (256, 239, 818),
    (492, 237, 2022), (512, 500, 2022), (512, 490, 2022),
)

ECARESNET101D_PRUNED_WIDTHS: tuple[tuple[int, int, int], ...] = (
    (45, 25, 26), (53, 20, 26), (60, 27, 26), (81, 24, 142), (93, 49, 142), (102, 54, 142), (122, 78, 142),
    (101, 25, 278), (239, 160, 278), (234, 156, 278), (250, 176, 278), (253, 191, 278), (251, 175, 278),
    (230, 128, 278), (244, 154, 278), (244, 159, 278), (238, 97, 278), (244, 149, 278), (253, 181, 278),
    (245, 119, 278), (255, 216, 278), (256, 201, 278), (253, 149, 278), (254, 141, 278), (256, 190, 278),
    (256, 217, 278), (255, 156, 278), (256, 155, 278), (256, 232, 278), (256, 214, 278), (499, 289, 2042),
    (512, 512, 2042), (512, 502, 2042),
)
