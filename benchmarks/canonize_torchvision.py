"""Canonize full-size torchvision classification models (random weights, randomized BatchNorm
statistics with negative and near-zero scales) and print merges, rewrites and logit differences.

Not a test (about two minutes on 2 CPU cores for the whole list):

    .venv/bin/python benchmarks/canonize_torchvision.py            # every family
    .venv/bin/python benchmarks/canonize_torchvision.py densenet121 efficientnet_b7
"""
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch  # noqa: E402
from torch.nn.modules.batchnorm import _BatchNorm  # noqa: E402
from torchvision import models as tm  # noqa: E402

from tests.canonize.helpers import make_input, randomize_batch_norms  # noqa: E402
from xaiopt.canonize import canonize  # noqa: E402

torch.manual_seed(0)
ALL = """vgg11_bn vgg13_bn vgg16_bn vgg19_bn resnet18 resnet34 resnet50 resnet101 resnet152 resnext50_32x4d
resnext101_32x8d resnext101_64x4d wide_resnet50_2 wide_resnet101_2 densenet121 densenet161 densenet169 densenet201
efficientnet_b0 efficientnet_b1 efficientnet_b2 efficientnet_b3 efficientnet_b4 efficientnet_b5 efficientnet_b6
efficientnet_b7 efficientnet_v2_s efficientnet_v2_m efficientnet_v2_l mobilenet_v2 mobilenet_v3_small
mobilenet_v3_large regnet_y_400mf regnet_y_800mf regnet_y_1_6gf regnet_x_400mf regnet_x_1_6gf shufflenet_v2_x0_5
shufflenet_v2_x1_0 shufflenet_v2_x2_0 mnasnet0_5 mnasnet1_0 mnasnet1_3 googlenet inception_v3""".split()
names = sys.argv[1:] or ALL
for name in names:
    try:
        kw = {"num_classes": 10}
        if name.startswith(("googlenet", "inception")):
            kw.update(aux_logits=False, init_weights=False)
        m = tm.get_model(name, weights=None, **kw)
        if not any(isinstance(x, _BatchNorm) for x in m.modules()):
            print(f"{name}: no BatchNorm"); continue
        randomize_batch_norms(m)
        size = 75 if name.startswith("inception") else 64
        x = make_input((2, 3, size, size), dtype=torch.float32)
        t = time.perf_counter()
        with warnings.catch_warnings(record=True) as w:
            twin, rep = canonize(m, x, n_random=1)
        dt = time.perf_counter() - t
        print(f"{name}: merges={len(rep.merges)} rewrites={len(rep.rewrites)} skipped={len(rep.skipped)} "
              f"remaining_bn={len(rep.remaining_batch_norms)} max_rel={rep.max_rel_diff:.2e} ok={rep.ok} "
              f"{dt:.1f}s warnings={len(w)}", flush=True)
    except Exception as e:
        print(f"{name}: ERROR {type(e).__name__}: {str(e)[:200]}", flush=True)
