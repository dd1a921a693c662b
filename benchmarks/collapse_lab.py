"""The collapse lab: pre-training variants on ML-1M, measured on the encoder's own vectors.

A diagnostic, not part of the product (that is ``clue run`` with the ``rep_*`` monitors and
``clue probe``): one small training loop over the shipped Table II encoder
(``TransformerSpec()``: SASRec d=64, 2 blocks, 4 heads, dropout 0.5; every 50-item window of
every user's leave-one-out training part, batch 256, Adam), with the objective and the view
swapped on the command line, so that the candidate causes of the collapse can be tried one at
a time: SimSiam as CLUE states it (3-layer BN projector 256, 2-layer predictor 64,
stop-gradient), InfoNCE on the user vectors, VICReg, VICReg's variance and covariance terms on
the encoder's own vectors (``--var_w``, ``--cov_w``), a masked-item term beside the view
objective (``--mlm_w``), the product's views (``--view dropout|mask|crop_keep|crop_drop|
permute``), mean pooling instead of ``[UR]`` (``--rep mean``), weight decay, batch size, lr.

Every ``--eval_every`` epochs it encodes all 6,040 users (eval mode, the last 50 training
items) and prints one JSON line: the centred effective rank (``erank_c``) and the uncentred
one of the L2-normalised vectors, their collapse monitor (``std``), and test accuracy of a
standardised L2 logistic regression (C chosen on a 5% validation split of a random 80/5/15
user split, scikit-learn, as ``../shared/diag/probe.py``) for gender, age and occupation;
with a projector, also the projector output's effective rank and collapse monitor (what
CLUE's ``z_std`` sees). Needs scikit-learn (``pip install scikit-learn``) and the ML-1M files
under ``$LAB_DATA`` (default ``../shared/data``)::

    LAB_THREADS=2 python benchmarks/collapse_lab.py --epochs 6 --max_batches 24 \
        --eval_every 2 --out lab.jsonl --tag base
    python benchmarks/collapse_lab.py --table lab.jsonl [--final]   # its markdown table

``--max_batches 24`` cuts every epoch to 24 batches (6,144 sequences) for a CPU.
"""

import sys as _sys

if "--table" in _sys.argv:  # summarise a results file without loading torch or data
    import json as _json

    rows = [_json.loads(line) for line in open(_sys.argv[_sys.argv.index("--table") + 1])]
    if "--final" in _sys.argv:  # each variant's last measurement, and the untrained encoder
        last = {row["args"]["tag"]: row for row in rows}
        rows = [next(row for row in rows if row["tag"] == "init"), *last.values()]
    print("| variant | epoch | erank (of 64) | std | gender | age | occupation |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['args']['tag']} | {row['tag']} | {row['erank_c']:.1f} | {row['std']:.3f} "
            f"| {row['gender']:.4f} | {row['age']:.4f} | {row['occ']:.4f} |"
        )
    raise SystemExit(0)


import argparse
import json
import math
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from clue_fw.augmentations.compose import ViewPipeline
from clue_fw.augmentations.rows import left_pack
from clue_fw.backbones.transformer import TransformerSpec
from clue_fw.components import BuildContext
from clue_fw.objectives.clue import prediction_mlp, projection_mlp
from clue_fw.registry import get_registry

p = argparse.ArgumentParser()
p.add_argument("--epochs", type=int, default=5)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--wd", type=float, default=0.0)
p.add_argument("--dropout", type=float, default=0.5)
p.add_argument("--obj", default="simsiam")  # simsiam | vicreg | infonce | barlow
p.add_argument("--rep", default="ur")  # ur | mean | emb
p.add_argument("--fix_pred_lr", action="store_true")
p.add_argument("--no_final_norm", action="store_true")
# --no_pos: no position embeddings, an order-agnostic Transformer
p.add_argument("--no_pos", action="store_true")
p.add_argument("--batch", type=int, default=256)
p.add_argument("--tau", type=float, default=0.2)
p.add_argument("--view", default="dropout")  # dropout | mask
p.add_argument("--rho", type=float, default=0.3)
p.add_argument("--pred_bn", type=int, default=1)
p.add_argument("--max_batches", type=int, default=0)
p.add_argument("--tag", default="")
p.add_argument("--var_w", type=float, default=0.0)
p.add_argument("--mlm_w", type=float, default=0.0)
p.add_argument("--mlm_rho", type=float, default=0.3)
p.add_argument("--cov_w", type=float, default=0.0)
p.add_argument("--device", default="cpu")
p.add_argument("--out", default="")
p.add_argument("--eval_every", type=int, default=1)
p.add_argument("--pair", default="same")  # same | split (two disjoint random halves) | subsample
p.add_argument("--baseline", action="store_true")
a = p.parse_args()
torch.manual_seed(0)
np.random.seed(0)
torch.set_num_threads(int(os.environ.get("LAB_THREADS", "1")))
dev = torch.device(a.device)
DATA = os.environ.get("LAB_DATA", "../shared/data")

L = 50
seqs = {}
for line in open(DATA + "/ml-1m/ml-1m_sequences.txt"):
    q = line.split()
    seqs[int(q[0])] = [int(x) for x in q[1:]]
items = sorted({i for s in seqs.values() for i in s})
col = {i: k + 1 for k, i in enumerate(items)}
N = len(items)
users = sorted(seqs)
train = {u: [col[i] for i in seqs[u][:-2]] for u in users}
# windows covering every interaction, stride L
wins = []
for u in users:
    s = train[u]
    end = len(s)
    while end >= 1:
        w = s[max(0, end - L) : end]
        wins.append([0] * (L - len(w)) + w)
        end -= L
wins = torch.tensor(wins, device=dev)
evalx = torch.tensor(
    device=dev, data=[[0] * (L - len(train[u][-L:])) + train[u][-L:] for u in users]
)
labels = {}
for line in open(DATA + "/ml-1m/users.dat", encoding="latin-1"):
    u, g, ag, o, _ = line.strip().split("::")
    labels[int(u)] = (g, int(ag), int(o))
Y = [np.array([labels[u][t] for u in users]) for t in range(3)]
perm = np.random.default_rng(0).permutation(len(users))
n = len(users)
tr, va, te = perm[: int(0.8 * n)], perm[int(0.8 * n) : int(0.85 * n)], perm[int(0.85 * n) :]

ctx = BuildContext(num_items=N, max_len=L)
enc = TransformerSpec(dropout=a.dropout).build(ctx).to(dev)
if a.no_pos:
    nn.init.zeros_(enc.position_embedding.weight)
    enc.position_embedding.weight.requires_grad_(False)
if a.no_final_norm:
    enc.final_norm = nn.Identity()
D = 64


def rep(out):
    if a.rep == "ur":
        return out.user
    return out.states.sum(1) / out.states.abs().sum(-1).gt(0).sum(1, keepdim=True).clamp(min=1)


def encode(x):
    """The user vectors of a batch of windows (``--rep emb``: the mean of the input item
    embeddings, a learnt bag of items with no Transformer)."""
    if a.rep == "emb":
        real = (x != 0).unsqueeze(-1).float()
        return (enc.item_embedding(x) * real).sum(1) / real.sum(1).clamp(min=1)
    return rep(enc(x))


class SimSiam(nn.Module):
    def __init__(s):
        super().__init__()
        s.proj = projection_mlp(D, 256, 256)
        s.pred = (
            prediction_mlp(256, 64)
            if a.pred_bn
            else nn.Sequential(nn.Linear(256, 64), nn.ReLU(), nn.Linear(64, 256))
        )

    def forward(s, h1, h2):
        z1, z2 = s.proj(h1), s.proj(h2)
        p1, p2 = s.pred(z1), s.pred(z2)
        return -0.5 * (
            F.cosine_similarity(p1, z2.detach()).mean()
            + F.cosine_similarity(p2, z1.detach()).mean()
        )


class VICReg(nn.Module):
    def __init__(s):
        super().__init__()
        s.proj = nn.Sequential(
            nn.Linear(D, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Linear(256, 256)
        )

    def forward(s, h1, h2):
        z1, z2 = s.proj(h1), s.proj(h2)
        inv = F.mse_loss(z1, z2)

        def vc(z):
            z = z - z.mean(0)
            std = (z.var(0) + 1e-4).sqrt()
            var = F.relu(1 - std).mean()
            c = (z.T @ z) / (z.shape[0] - 1)
            off = c.pow(2).sum() - c.diagonal().pow(2).sum()
            return var, off / z.shape[1]

        v1, c1 = vc(z1)
        v2, c2 = vc(z2)
        return 25 * inv + 25 * (v1 + v2) / 2 + (c1 + c2)


class InfoNCE(nn.Module):
    def __init__(s):
        super().__init__()
        s.proj = nn.Identity()

    def forward(s, h1, h2):
        z1, z2 = F.normalize(h1, dim=-1), F.normalize(h2, dim=-1)
        logits = z1 @ z2.T / a.tau
        t = torch.arange(len(z1), device=z1.device)
        return 0.5 * (F.cross_entropy(logits, t) + F.cross_entropy(logits.T, t))


class NoObjective(nn.Module):
    def __init__(s):
        super().__init__()
        s.proj = nn.Identity()

    def forward(s, h1, h2):
        return h1.sum() * 0.0


obj = {"simsiam": SimSiam, "vicreg": VICReg, "infonce": InfoNCE, "none": NoObjective}[a.obj]().to(
    dev
)
groups = [{"params": enc.parameters()}]
if a.obj == "simsiam" and a.fix_pred_lr:
    groups += [{"params": obj.proj.parameters()}, {"params": obj.pred.parameters(), "fix": True}]
else:
    groups += [{"params": obj.parameters()}]
opt = torch.optim.AdamW(groups, lr=a.lr, weight_decay=a.wd)


_kinds = {
    "dropout": {"kind": "dropout"},
    "mask": {"kind": "mask", "rho": a.rho},
    "crop_keep": {"kind": "crop", "rho": a.rho, "mode": "keep"},
    "crop_drop": {"kind": "crop", "rho": a.rho, "mode": "drop"},
    "permute": {"kind": "permute", "rho": a.rho},
}
_specs = [
    get_registry().get("augmentation", _kinds[v]["kind"]).spec.model_validate(_kinds[v])
    for v in a.view.split("+")
]
_pipe = ViewPipeline.from_specs(_specs, ctx).to(dev)


def view(x, g):
    return _pipe(x, g)


def split_views(x: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Two disjoint random halves of each window: every item goes to one view or the other."""
    side = torch.rand(x.shape, generator=g, device=x.device) < 0.5
    real = x != 0
    return left_pack(x, side & real), left_pack(x, ~side & real)


def probe_accuracy(features: np.ndarray, y: np.ndarray) -> float:
    """Test accuracy of a standardised L2 logistic regression, C chosen on validation."""
    x = StandardScaler().fit(features[tr]).transform(features)
    best = max(
        (LogisticRegression(C=C, max_iter=1000).fit(x[tr], y[tr]).score(x[va], y[va]), C)
        for C in (0.01, 0.1, 1)
    )
    fitted = LogisticRegression(C=best[1], max_iter=1000).fit(x[tr], y[tr])
    return round(fitted.score(x[te], y[te]), 4)


@torch.no_grad()
def measure(tag):
    enc.eval()
    V = torch.cat([encode(evalx[i : i + 1024]) for i in range(0, len(evalx), 1024)])
    obj.eval()
    Z = obj.proj(V).double().cpu() if a.obj not in ("infonce", "none") else None
    obj.train()
    V = V.double().cpu()
    enc.train()
    Vn = F.normalize(V, dim=-1)

    def er(X):
        s = torch.linalg.svdvals(X)
        p_ = s / s.sum()
        p_ = p_[p_ > 0]
        return float(torch.exp(-(p_ * p_.log()).sum()))

    res = {
        "tag": tag,
        "erank_unc": round(er(Vn), 2),
        "erank_c": round(er(Vn - Vn.mean(0)), 2),
        "std": round(float(Vn.std(0).mean() * math.sqrt(D)), 3),
    }
    enc.eval()
    M = (
        torch.cat(
            [
                (
                    lambda o, xx: (
                        (o.states * (xx != 0).unsqueeze(-1)).sum(1)
                        / (xx != 0).sum(1, keepdim=True).clamp(min=1)
                    )
                )(enc(evalx[i : i + 1024]), evalx[i : i + 1024])
                for i in range(0, len(evalx), 1024)
            ]
        )
        .double()
        .cpu()
    )
    enc.train()
    Mn = F.normalize(M, dim=-1)
    res["mean_erank_c"] = round(er(Mn - Mn.mean(0)), 2)
    for t, name in ((0, "mean_gender"), (1, "mean_age")):
        res[name] = probe_accuracy(M.numpy(), Y[t])
    for t, name in enumerate(("gender", "age", "occ")):
        res[name] = probe_accuracy(V.numpy(), Y[t])
    if Z is not None:
        Zn = F.normalize(Z, dim=-1)
        res["z_erank_c"] = round(er(Zn - Zn.mean(0)), 2)
        res["z_std"] = round(float(Zn.std(0).mean() * math.sqrt(Z.shape[1])), 3)
        res["z_gender"] = probe_accuracy(Z.numpy(), Y[0])
    print(json.dumps(res), flush=True)
    if a.out:
        with open(a.out, "a") as f:
            f.write(json.dumps({**res, "args": vars(a)}) + "\n")
    return res


if a.baseline:  # the bag-of-items baselines on the same users, items and split
    from scipy.sparse import csr_matrix
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfTransformer

    ex = evalx.cpu().numpy()
    r_, c_ = np.nonzero(ex)
    bag = csr_matrix((np.ones(len(r_)), (r_, ex[r_, c_])), shape=(len(ex), N + 1))
    bag.data[:] = 1.0
    tfidf = TfidfTransformer().fit_transform(bag)
    svd = TruncatedSVD(64, random_state=0).fit_transform(tfidf)
    for name, feats in (("bag_svd64", svd), ("bag_tfidf", tfidf)):
        res = {"tag": name}
        for t, task in enumerate(("gender", "age", "occ")):
            if name == "bag_tfidf":
                best = max(
                    (
                        LogisticRegression(C=C, max_iter=3000)
                        .fit(feats[tr], Y[t][tr])
                        .score(feats[va], Y[t][va]),
                        C,
                    )
                    for C in (0.01, 0.1, 1, 10)
                )
                res[task] = round(
                    LogisticRegression(C=best[1], max_iter=3000)
                    .fit(feats[tr], Y[t][tr])
                    .score(feats[te], Y[t][te]),
                    4,
                )
            else:
                res[task] = probe_accuracy(feats, Y[t])
        print(json.dumps(res), flush=True)
    raise SystemExit(0)

print(vars(a), len(wins), "windows", flush=True)
measure("init")
g = torch.Generator(device=dev).manual_seed(0)
for ep in range(1, a.epochs + 1):
    t0 = time.time()
    order = torch.randperm(len(wins), generator=g, device=dev)
    tot = 0
    nb = 0
    for b in range(0, len(order) - 1, a.batch):
        idx = order[b : b + a.batch]
        if len(idx) < 2:
            continue
        x = wins[idx]
        if a.pair == "subsample":  # two independent random halves (they share a quarter)
            keep1 = torch.rand(x.shape, generator=g, device=x.device) < 0.5
            keep2 = torch.rand(x.shape, generator=g, device=x.device) < 0.5
            v1, v2 = left_pack(x, keep1 & (x != 0)), left_pack(x, keep2 & (x != 0))
            h = encode(torch.cat([view(v1, g), view(v2, g)]))
        elif a.pair == "split":
            v1, v2 = split_views(x, g)
            h = encode(torch.cat([view(v1, g), view(v2, g)]))
        else:
            h = encode(torch.cat([view(x, g), view(x, g)]))
        h1, h2 = h[: len(x)], h[len(x) :]
        loss = obj(h1, h2)
        if a.mlm_w:
            mm = (torch.rand(x.shape, generator=g, device=x.device) < a.mlm_rho) & (x != 0)
            st = enc(x.masked_fill(mm, N + 1)).states[mm]
            logits = st @ enc.item_embedding.weight[1 : N + 1].T
            loss = loss + a.mlm_w * F.cross_entropy(logits, x[mm] - 1)
        if a.var_w or a.cov_w:
            for hh in (h1, h2):
                hc = hh - hh.mean(0)
                std = (hc.var(0) + 1e-4).sqrt()
                c = (hc.T @ hc) / (hc.shape[0] - 1)
                loss = (
                    loss
                    + 0.5 * a.var_w * F.relu(1 - std).mean()
                    + 0.5 * a.cov_w * (c.pow(2).sum() - c.diagonal().pow(2).sum()) / D
                )
        opt.zero_grad()
        loss.backward()
        opt.step()
        tot += loss.detach()
        nb += 1
        if a.max_batches and nb >= a.max_batches:
            break
    tot = float(tot)
    print(f"epoch {ep} loss {tot / nb:.4f} {time.time() - t0:.1f}s", flush=True)
    if ep % a.eval_every == 0 or ep == a.epochs:
        r = measure(f"ep{ep}")
