"""Screen sampled-softmax variants on a validation split carved from the training pairs.

Usage::

    python benchmarks/screen_softmax.py --data data/gowalla --threads 1
    python benchmarks/screen_softmax.py --data data/gowalla --temperature 0.07
    python benchmarks/screen_softmax.py --data data/gowalla --batch-size 1024
    python benchmarks/screen_softmax.py --data data/gowalla --exclude-positive
    python benchmarks/screen_softmax.py --data data/gowalla --in-batch --exclude-positive \
        --neg-weight 1.22 --hard 64 4
    python benchmarks/screen_softmax.py --data data/gowalla --user-uniform
    python benchmarks/screen_softmax.py --data data/gowalla --device cuda --epochs 500 --eval-every 25

It holds out ``--valid-fraction`` of each user's pairs of ``train.txt``
(``holdout_split``, ``--split-seed``), trains MF (dimension 64, cosine scores,
Adam) with a sampled softmax over ``--num-negatives`` uniform candidates shared
by each batch, every known positive of the row masked and the logQ correction
(``--no-log-q`` drops it), plus the batch's positive items with
``--in-batch`` (the mixture's correction for both sets), and prints Recall@20
and NDCG@20 on the validation split every ``--eval-every`` epochs. The test
file is never read: this is how the settings of the Gowalla softmax runs in
the docs were chosen (docs/benchmarks.rst, "Softmax losses on Gowalla").

Variants: ``--temperature``, ``--batch-size``, ``--num-negatives``;
``--exclude-positive`` leaves the positive out of the normaliser and
``--neg-weight W`` multiplies the negatives' log-sum-exp by ``W`` (together:
the bilateral softmax loss, BSL, as its authors' code computes it, see
docs/softmax.rst); ``--lr-schedule cosine`` decays the rate per step to 0 over
``--epochs``; ``--hard M H`` adds each row's ``H`` top-scored of ``M`` uniform
candidates (``HardNegativeSampler``, counted as uniform draws in the logQ
correction);
``--user-dropout`` applies dropout to the user vectors in training (an option of the
BSL authors' MF code); ``--weight-decay`` switches to AdamW with that decoupled decay
(with cosine scores it does not regularise the scores, it keeps the embedding
norms from growing and so the effective step size from shrinking);
``--user-uniform`` draws each training row as a uniform user and then one of
its pairs (as LightGCN's and FreeRec's loaders do) instead of a permutation of
the pairs. The loss is written out in plain PyTorch here (the masks are
``SharedNegativeSampler.mask``), so that each variant is a line; ``examples/train_mf.py --loss softmax`` trains the
chosen recipe with the library's ``SharedNegativeSampler`` and
``SampledSoftmaxLoss``.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from negsample import HardNegativeSampler, SharedNegativeSampler
from negsample.data import holdout_split, load_lightgcn
from negsample.metrics import evaluate


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="folder with a LightGCN-format train.txt")
    p.add_argument("--valid-fraction", type=float, default=0.1)
    p.add_argument("--split-seed", type=int, default=1)
    p.add_argument("--num-negatives", type=int, default=1024, help="shared candidates K")
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--temperature", type=float, default=0.1)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--init-std", type=float, default=1e-4)
    p.add_argument("--no-log-q", action="store_true", help="no logQ correction")
    p.add_argument("--in-batch", action="store_true", help="add the batch's positives")
    p.add_argument("--exclude-positive", action="store_true", help="positive not in normaliser")
    p.add_argument("--user-uniform", action="store_true", help="rows drawn user-uniformly")
    p.add_argument("--user-dropout", type=float, default=0.0, help="dropout on user vectors")
    p.add_argument("--weight-decay", type=float, default=0.0, help="AdamW decoupled decay")
    p.add_argument(
        "--neg-weight", type=float, default=1.0, help="weight of the negatives' log-sum-exp (BSL)"
    )
    p.add_argument(
        "--lr-schedule",
        choices=("constant", "cosine"),
        default="constant",
        help="cosine: the rate decays per step to 0 over --epochs",
    )
    p.add_argument(
        "--hard",
        type=int,
        nargs=2,
        metavar=("M", "H"),
        help="add each row's H top-scored of M uniform candidates (HardNegativeSampler)",
    )
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--eval-every", type=int, default=4)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    return p.parse_args()


def main() -> None:
    a = parse_args()
    torch.set_num_threads(a.threads)
    full = load_lightgcn(Path(a.data) / "train.txt").to_index()
    train, valid = holdout_split(full, a.valid_fraction, seed=a.split_seed)
    device = torch.device(a.device)
    train, valid = train.to(device), valid.to(device)
    torch.set_default_device(device)  # every tensor below is made there
    n_items, n_users = train.num_items, train.num_users
    indptr, items_flat = train.indptr.long(), train.indices.long()
    deg = indptr[1:] - indptr[:-1]
    users_all = torch.repeat_interleave(torch.arange(n_users), deg)
    popularity = torch.bincount(items_flat, minlength=n_items).double()
    log_pop = torch.log(popularity / popularity.sum()).float()

    torch.manual_seed(0)
    user_emb, item_emb = torch.nn.Embedding(n_users, 64), torch.nn.Embedding(n_items, 64)
    torch.nn.init.normal_(user_emb.weight, std=a.init_std)
    torch.nn.init.normal_(item_emb.weight, std=a.init_std)
    params = [*user_emb.parameters(), *item_emb.parameters()]
    if a.weight_decay > 0:
        opt: torch.optim.Optimizer = torch.optim.AdamW(
            params, lr=a.lr, weight_decay=a.weight_decay, fused=True
        )
    else:
        opt = torch.optim.Adam(params, lr=a.lr, weight_decay=0.0, fused=True)
    gen = torch.Generator(device=device).manual_seed(0)

    class Scorer(torch.nn.Module):
        def score_all(self, users: torch.Tensor) -> torch.Tensor:
            return F.normalize(user_emb(users), dim=-1) @ F.normalize(item_emb.weight, dim=-1).T

    class PairScorer(torch.nn.Module):
        def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
            u = F.normalize(user_emb(users), dim=-1)
            return (u * F.normalize(item_emb(items), dim=-1)).sum(-1)

    # The library's exact mask (every copy of a known positive), no draws of its own.
    mask_for = SharedNegativeSampler(train, a.num_negatives, validate=False).mask
    hard = None
    if a.hard is not None:
        hard = HardNegativeSampler(train, a.hard[0], a.hard[1], 0, generator=1, validate=False)
    pair_scorer = PairScorer()
    steps_per_epoch = math.ceil(len(users_all) / a.batch_size)
    total_steps, step_no = a.epochs * steps_per_epoch, 0

    print(vars(a), flush=True)
    t, k = a.temperature, a.num_negatives
    wall = time.time()
    for epoch in range(1, a.epochs + 1):
        t0 = time.time()
        if a.user_uniform:
            us = torch.randint(0, n_users, (len(users_all),), generator=gen)
            us = us[deg[us] > 0]
            off = (torch.rand(len(us), generator=gen) * deg[us]).long()
            order_u, order_i = us, items_flat[indptr[us] + off]
        else:
            order = torch.randperm(len(users_all), generator=gen)
            order_u, order_i = users_all[order], items_flat[order]
        total = 0.0
        for s in range(0, len(order_u), a.batch_size):
            u, pi = order_u[s : s + a.batch_size], order_i[s : s + a.batch_size]
            cand = torch.randint(0, n_items, (k,), generator=gen)
            raw_u = user_emb(u)
            if a.user_dropout > 0:
                raw_u = F.dropout(raw_u, a.user_dropout)
            uv, pv = F.normalize(raw_u, dim=-1), F.normalize(item_emb(pi), dim=-1)
            pos = (uv * pv).sum(-1) / t
            negs = [uv @ F.normalize(item_emb(cand), dim=-1).T / t]
            masks = [mask_for(u, cand)]
            log_q = torch.full((k,), -math.log(n_items)) + math.log(k)  # log(K q), q = 1/N
            if a.in_batch:
                negs.append(uv @ pv.T / t)
                masks.append(mask_for(u, pi))
                both = torch.cat([cand, pi])
                log_q = torch.logaddexp(
                    torch.full((len(both),), math.log(k / n_items)),
                    log_pop[both] + math.log(len(pi)),
                )
            if hard is not None:
                hard_items = hard.sample(u, pair_scorer)
                hv = F.normalize(item_emb(hard_items), dim=-1)
                negs.append((uv[:, None, :] * hv).sum(-1) / t)
                masks.append(torch.zeros_like(hard_items, dtype=torch.bool))
                # Counted as uniform draws (no correction is unbiased for a top-k).
                log_q = torch.cat([log_q, torch.full((a.hard[1],), math.log(k / n_items))])
            neg = torch.cat(negs, 1)
            if not a.no_log_q:
                neg = neg - log_q
            neg = neg.masked_fill(torch.cat(masks, 1), float("-inf"))
            w = a.neg_weight
            if a.exclude_positive:
                loss = (w * torch.logsumexp(neg, 1) - pos).mean()
            else:
                loss = (w * torch.logsumexp(torch.cat([pos[:, None], neg], 1), 1) - pos).mean()
            if a.lr_schedule == "cosine":
                for group in opt.param_groups:
                    group["lr"] = a.lr * 0.5 * (1 + math.cos(math.pi * step_no / total_steps))
            step_no += 1
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(u)
        line = f"epoch {epoch} loss {total / len(order_u):.4f} {time.time() - t0:.1f}s"
        if epoch % a.eval_every == 0 or epoch == a.epochs:
            with torch.no_grad():
                r = evaluate(Scorer(), train, valid, ks=(20,), metrics=("recall", "ndcg"))
            line += f" valid R@20 {r['recall@20']:.4f} N@20 {r['ndcg@20']:.4f}"
        print(line, f"wall {time.time() - wall:.0f}", flush=True)


if __name__ == "__main__":
    main()
