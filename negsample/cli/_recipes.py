"""The training recipes: per-run settings, the per-batch loss of each ``--loss``, the optimizer.

A recipe is a :class:`RunConfig` (the hyperparameters of one run, with each
loss's defaults filled in by :func:`recipe`) plus two small functions that read
it: the step of its loss (:func:`make_step`) and its optimizer
(:func:`make_optimizer`). ``examples/train_ddp.py`` builds its steps with the
same functions. A new loss is one more entry of ``STEPS``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from negsample import (
    BCELoss,
    BPRLoss,
    CandidateSampler,
    HardNegativeSampler,
    MFModel,
    PairwiseSoftmaxLoss,
    PositiveIndex,
    SampledSoftmaxLoss,
    SoftmaxAtKLoss,
    UniformSampler,
    estimate_topk_thresholds,
    functional,
)
from negsample.cli._adaptive import UserTemperature

# step(users, pos_items) -> the batch's scalar loss (regularisation included).
Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# What the loss scores with: model(users, items) -> scores (the model, or a wrapper of it
# such as DistributedDataParallel). The samplers always score with the bare model.
Scorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

LOSSES = ("bce", "bpr", "softmax")
# The softmax recipe's weight of the negatives (chosen on a validation split: docs/benchmarks).
SOFTMAX_NEG_WEIGHT = 1.22
# The softmax loss's two forms, (neg_weight, include_positive), that choose_softmax tries:
# the bilateral one (best on Gowalla) and the plain one (best on a small dense dataset).
SOFTMAX_FORMS = {"bilateral": (SOFTMAX_NEG_WEIGHT, False), "plain": (1.0, True)}
# The softmax loss's temperatures that choose_temperature tries (the first is the recipe's
# without a trial): 0.1 was the best on Gowalla (0.07, 0.08 and 0.15 behind), 0.2 on two small
# dense datasets (MovieLens 100K, where 0.1, 0.15, 0.25 and 0.3 were behind, and a generated one).
SOFTMAX_TEMPERATURES = (0.1, 0.2)
# Where both are chosen, the pairs not tried: the bilateral form at 0.2 ended behind another
# trial on each of the four datasets we ran (the plain one at 0.2 on the three dense or small
# ones, the bilateral one at 0.1 on Gowalla: docs/benchmarks), and each trial costs epochs.
SOFTMAX_NOT_TRIED = (("bilateral", 0.2),)
# SL@K (--slatk K) as its authors' runs set it: the weight's temperature, the epochs between
# two estimates of the thresholds (no weight before the first), the candidates per user.
SLATK_TEMPERATURE, SLATK_EVERY, SLATK_CANDIDATES = 1.0, 5, 1000
# PSL (--psl ACT): the score gaps are divided by PSL_SCORE_SCALE (the authors' tau, 2 for
# cosine scores) before the activation, and the loss's temperature is the softmax's
# divided by it, so that the "exp" activation is the softmax at the recipe's temperature.
PSL_ACTIVATIONS, PSL_SCORE_SCALE = ("tanh", "atan", "relu", "exp"), 2.0
# Epochs each trial (form and temperature) trains before the best on validation goes on (in
# every run we have, the trial ahead after 3 epochs was still ahead at the last comparison; after
# 2 it was not yet on the built-in data: docs/benchmarks).
TRIAL_EPOCHS = 3
Similarity = Literal["dot", "cosine"]
Candidates = Literal["uniform", "popularity"]
Selection = Literal["topk", "softmax", "dns_mn", "ahns"]
SELECTIONS = ("topk", "softmax", "dns_mn", "ahns")
Schedule = Literal["constant", "cosine", "step"]
SCHEDULES = ("constant", "cosine", "step")
# "step": the rate is multiplied by STEP_FACTOR for the last STEP_FRACTION of the epochs.
STEP_FACTOR, STEP_FRACTION = 0.1, 0.25


@dataclass(frozen=True)
class RunConfig:
    """Everything one training run needs; :func:`recipe` fills in each loss's defaults."""

    name: str = "hard"  # the run's label
    loss: str = "bpr"  # "bpr", "bce" or "softmax"
    sampler: str = "hard"  # "hard" or "uniform"
    dim: int = 64
    epochs: int = 100
    patience: int = 10
    batch_size: int = 2048
    lr: float = 5e-3
    # "cosine": the rate decays per step from lr to 0 over `epochs`; "step": lr, then
    # lr * 0.1 for the last quarter of `epochs` (both fixed in advance).
    lr_schedule: Schedule = "constant"
    reg: float = 2e-2
    similarity: Similarity = "dot"
    init_std: float = 0.1
    num_negatives: int = 1024
    in_batch: bool = False
    # --loss softmax: the weight of the negatives' log-sum-exp, the positive in the normaliser.
    neg_weight: float = 1.0
    include_positive: bool = True
    # --loss softmax: train the two forms (SOFTMAX_FORMS) for TRIAL_EPOCHS, go on with the
    # better on validation (neg_weight and include_positive are then the first form's).
    choose_softmax: bool = False
    # --loss softmax: likewise each of SOFTMAX_TEMPERATURES (with each form tried, if any, but
    # SOFTMAX_NOT_TRIED); temperature is then the first one's.
    choose_temperature: bool = False
    # --loss softmax: a temperature per user for the negatives, from its loss (Adap-tau).
    user_temperature: bool = False
    # --loss softmax: dropout on each batch row's user vector in training (one mask per row).
    user_dropout: float = 0.0
    # --loss softmax: SL@K, each row's loss weighted by sigmoid((s+ - beta_u) / SLATK_TEMPERATURE),
    # beta_u user u's top-slatk threshold, estimated every SLATK_EVERY epochs (None: off).
    slatk: int | None = None
    # --loss softmax: PSL in place of the sampled softmax, through this activation (None: off).
    psl: str | None = None
    num_candidates: int = 10
    num_hard: int = 2
    num_random: int = 2
    candidates: Candidates = "uniform"
    alpha: float | None = None
    selection: Selection = "topk"
    top_n: int | None = None  # --selection dns_mn: the hard part is drawn among the top N
    # --loss softmax: the loss's temperature; --selection softmax: the selection's.
    temperature: float | None = None
    device: str = "cpu"
    seed: int = 0
    time_budget: float | None = None
    ks: tuple[int, ...] = (20, 50)
    eval_every: int | None = None
    progress: bool = False

    @property
    def label(self) -> str:
        """A short description of the recipe, for tables and plots."""
        if self.loss == "softmax":
            return "softmax" + (" + hard" if self.sampler == "hard" else "")
        return f"{self.sampler} {self.loss.upper()}"


def recipe(
    loss: str = "bpr",
    *,
    lr: float | None = None,
    reg: float | None = None,
    similarity: Similarity | None = None,
    init_std: float | None = None,
    temperature: float | None = None,
    lr_schedule: Schedule | None = None,
    neg_weight: float | None = None,
    include_positive: bool | None = None,
    user_dropout: float | None = None,
    num_candidates: int | None = None,
    num_hard: int | None = None,
    in_batch: bool | None = None,
    **options: Any,
) -> RunConfig:
    """The :class:`RunConfig` of ``loss`` with its defaults where an option is ``None``.

    BPR and BCE: Adam 5e-3, L2 weight 2e-2, dot scores, initial std 1e-1.
    Hard negatives: 2 of 10 candidates (+ 2 random) for BPR and BCE, 4 of 64
    for softmax. Softmax: 1024 shared candidates and the batch's positives,
    Adam 1e-3, no L2 penalty, cosine scores at temperature 0.1, initial std
    1e-2, the negatives' log-sum-exp weighted 1.22 against the positive,
    which is left out of the normaliser (the bilateral softmax loss as its
    authors' code computes it; see the docs page "Softmax losses"), or with
    ``choose_softmax`` that form and the plain softmax tried on validation
    (with ``choose_temperature``, at the temperatures 0.1 and 0.2: both
    forms at 0.1, the plain softmax at 0.2).
    BPR and BCE at a constant rate; softmax with ``lr_schedule="step"`` (the
    rate divided by 10 for the last quarter of ``epochs``, which won on the
    validation screens where ``"cosine"`` lost: docs/benchmarks).
    """
    softmax = loss == "softmax"
    if similarity is None:
        similarity = "cosine" if softmax else "dot"
    if softmax and temperature is None:
        temperature = 0.1
    return RunConfig(
        loss=loss,
        lr=(1e-3 if softmax else 5e-3) if lr is None else lr,
        lr_schedule=("step" if softmax else "constant") if lr_schedule is None else lr_schedule,
        neg_weight=(SOFTMAX_NEG_WEIGHT if softmax else 1.0) if neg_weight is None else neg_weight,
        include_positive=(not softmax) if include_positive is None else include_positive,
        user_dropout=0.0 if user_dropout is None else user_dropout,
        reg=(0.0 if softmax else 2e-2) if reg is None else reg,
        similarity=similarity,
        init_std=(1e-2 if similarity == "cosine" else 0.1) if init_std is None else init_std,
        temperature=temperature,
        num_candidates=(64 if softmax else 10) if num_candidates is None else num_candidates,
        num_hard=(4 if softmax else 2) if num_hard is None else num_hard,
        in_batch=softmax if in_batch is None else in_batch,
        **options,
    )


def make_model(
    config: RunConfig, index: PositiveIndex, device: torch.device | str = "cpu"
) -> MFModel:
    """The run's ``MFModel`` over ``index``'s users and items (seed torch first for its weights)."""
    return MFModel(
        index.num_users,
        index.num_items,
        config.dim,
        init_std=config.init_std,
        similarity=config.similarity,
        validate=False,
        device=device,
    )


def make_sampler(config: RunConfig, index: PositiveIndex) -> HardNegativeSampler | UniformSampler:
    """The run's sampler over ``index``, seeded with ``config.seed``."""
    if config.sampler == "hard":
        return HardNegativeSampler(
            index,
            config.num_candidates,
            config.num_hard,
            config.num_random,
            selection=config.selection,
            temperature=config.temperature,
            top_n=config.top_n,
            generator=config.seed,
            validate=False,
            candidates=config.candidates,
            alpha=config.alpha,
        )
    return UniformSampler(
        index,
        config.num_hard + config.num_random,
        generator=config.seed,
        validate=False,
        candidates=config.candidates,
        alpha=config.alpha,
    )


def row_sampler(
    config: RunConfig, index: PositiveIndex
) -> HardNegativeSampler | UniformSampler | None:
    """The recipe's per-row sampler: the pairwise losses', or the softmax's hard negatives."""
    if config.loss != "softmax":
        return make_sampler(config, index)
    if config.sampler != "hard":
        return None
    return HardNegativeSampler(
        index,
        config.num_candidates,
        config.num_hard,
        0,
        # topk, dns_mn or ahns (--selection softmax is the pairwise losses' only).
        selection=config.selection,
        top_n=config.top_n,
        # Its own stream, apart from the shared candidates' (a 64-bit seed, wrapped).
        generator=(config.seed + 1) % 2**64,
        validate=False,
    )


def pairwise_step(
    config: RunConfig, model: MFModel, index: PositiveIndex, scorer: Scorer
) -> tuple[Step, str]:
    """BPR or BCE on each positive against its row of sampled negatives."""
    sampler = make_sampler(config, index)
    loss_fn = BPRLoss() if config.loss == "bpr" else BCELoss()
    reg = config.reg

    # AHNS sets each row's hardness by its positive's score.
    ahns = (
        sampler
        if isinstance(sampler, HardNegativeSampler) and sampler.selection == "ahns"
        else None
    )

    def step(users: torch.Tensor, pos_items: torch.Tensor) -> torch.Tensor:
        if ahns is not None:
            neg_items = ahns.sample(users, model, positives=pos_items)
        else:
            neg_items = sampler.sample(users, model)
        if scorer is model:
            # The scores and the penalty from one lookup of each table: one dense
            # gradient per table instead of two.
            pos_scores, neg_scores, penalty = model.scores_and_l2(users, pos_items, neg_items)
            loss: torch.Tensor = loss_fn(pos_scores, neg_scores)
            return loss + reg * penalty
        # A wrapper (e.g. DistributedDataParallel) must score for its gradients to be
        # reduced: the positive and its negatives in one call.
        scores = scorer(users.unsqueeze(1), torch.cat([pos_items.unsqueeze(1), neg_items], dim=1))
        loss = loss_fn(scores[:, 0], scores[:, 1:])
        return loss + reg * model.l2_regularization(users, pos_items, neg_items)

    return step, str(sampler)


def scores_every_item(config: RunConfig, num_items: int) -> bool:
    """Whether the softmax recipe scores every item instead of sampling candidates.

    When the catalogue is no larger than the columns a sample would score (the
    shared candidates, plus the batch's positives with ``in_batch``), the full
    softmax is exact and cheaper: every item once, known positives masked,
    nothing to correct.
    """
    columns = config.num_negatives + (config.batch_size if config.in_batch else 0)
    return config.loss == "softmax" and num_items <= columns


def user_vectors(model: MFModel, users: torch.Tensor, dropout: float) -> torch.Tensor:
    """The batch's user vectors (normalised for cosine), after dropout ``dropout`` if any.

    Dropout draws one mask per row of ``users``, shared by all of that row's
    scores (the positive's and the negatives'), as in the BSL authors' MF code;
    it acts on the embedding, before the cosine's normalisation.
    """
    if not dropout:
        return model.user_vectors(users)
    vectors = F.dropout(model.user_embedding(users), dropout, training=True)
    return F.normalize(vectors, dim=-1) if model.similarity == "cosine" else vectors


def softmax_step(
    config: RunConfig, model: MFModel, index: PositiveIndex, scorer: Scorer
) -> tuple[Step, str]:
    """Sampled softmax over K shared candidates (+ in-batch; + hard negatives for "hard").

    The loss is :meth:`SampledSoftmaxLoss.from_vectors` over the model's
    :meth:`~MFModel.candidate_vectors` (one lookup of every item the step
    scores, no score matrix), except where ``scorer`` is not the model itself
    (a ``DistributedDataParallel`` wrapper, whose forward must run for its
    gradients to be reduced): that one scores with ``scorer(users, items)``.
    """
    assert config.temperature is not None  # recipe() sets it for the softmax loss
    loss_fn = SampledSoftmaxLoss(
        config.temperature,
        neg_weight=config.neg_weight,
        include_positive=config.include_positive,
    )
    psl = None
    if config.psl is not None:
        # The authors' form: the positive out of the normaliser.
        psl = PairwiseSoftmaxLoss(
            config.temperature / PSL_SCORE_SCALE,
            activation=config.psl,  # type: ignore[arg-type]  # checked by the parser
            score_scale=PSL_SCORE_SCALE,
            include_positive=False,
        )
    hard = row_sampler(config, index)
    assert hard is None or isinstance(hard, HardNegativeSampler)
    every_item = scores_every_item(config, index.num_items)
    in_batch = config.in_batch and not every_item
    # The batch's candidates, masks and log_q in one call (conventions: docs "Softmax losses").
    candidate_sampler = CandidateSampler(
        index,
        "all" if every_item else config.num_negatives,
        in_batch=in_batch,
        hard=hard,
        candidates="uniform" if every_item else config.candidates,
        alpha=None if every_item else config.alpha,
        generator=config.seed,
        validate=False,
    )
    user_temperature = None
    if config.user_temperature:
        steps_per_epoch = math.ceil(index.num_interactions / config.batch_size)
        user_temperature = UserTemperature(index.num_users, steps_per_epoch, index.device)
    user_dropout = config.user_dropout
    by_vectors = scorer is model
    slatk = None
    if config.slatk is not None:
        slatk = _SoftmaxAtK(config, model, index, loss_fn)
    if user_dropout and not by_vectors:
        # The dropped-out vectors bypass the scorer (e.g. a DistributedDataParallel wrapper,
        # whose forward must run for its gradients to be reduced).
        raise ValueError("user_dropout scores with the model's vectors: pass no scorer")

    def step(users: torch.Tensor, pos_items: torch.Tensor) -> torch.Tensor:
        cands = candidate_sampler.sample(users, pos_items, model)
        items, hard_items, mask, log_q = cands.items, cands.row_items, cands.mask, cands.log_q
        if by_vectors:
            dropped = user_vectors(model, users, user_dropout) if user_dropout else None
            pos_scores, user_vecs, item_vecs, hard_vecs = model.candidate_vectors(
                users, pos_items, items, hard_items, user_vectors=dropped
            )
        else:
            pos_scores = scorer(users, pos_items)
            neg_scores = scorer(users[:, None], items[None, :])
            if hard_items is not None:
                neg_scores = torch.cat([neg_scores, scorer(users[:, None], hard_items)], dim=1)
        scales = None
        if user_temperature is not None:
            # This epoch's scales: recording the batch may end the epoch and update them.
            scales = user_temperature(users)
            with torch.no_grad():
                if by_vectors:
                    at_one = functional.sampled_softmax_loss_from_vectors(
                        pos_scores,
                        user_vecs,
                        item_vecs,
                        hard_vecs,
                        log_q=log_q,
                        mask=mask,
                        include_positive=False,
                        reduction="none",
                    )
                else:
                    at_one = functional.sampled_softmax_loss(
                        pos_scores,
                        neg_scores,
                        log_q=log_q,
                        mask=mask,
                        include_positive=False,
                        reduction="none",
                    )
            user_temperature.record(users, at_one)
        loss: torch.Tensor
        if psl is not None:
            if by_vectors:
                return psl.from_vectors(
                    pos_scores, user_vecs, item_vecs, hard_vecs, log_q=log_q, mask=mask
                )
            loss = psl(pos_scores, neg_scores, log_q=log_q, mask=mask)
            return loss
        if slatk is not None:
            thresholds = slatk.thresholds_of(users)
            if by_vectors:
                return slatk.loss_fn.from_vectors(
                    pos_scores,
                    user_vecs,
                    item_vecs,
                    hard_vecs,
                    thresholds=thresholds,
                    log_q=log_q,
                    mask=mask,
                )
            loss = slatk.loss_fn(pos_scores, neg_scores, thresholds, log_q=log_q, mask=mask)
            return loss
        if by_vectors:
            # The negatives of user u at temperature T / r_u, the positive at T: the
            # negatives' scores <r_u e_u, e_i> come from the scaled user vector.
            neg_users = user_vecs if scales is None else user_vecs * scales[:, None]
            loss = loss_fn.from_vectors(
                pos_scores, neg_users, item_vecs, hard_vecs, log_q=log_q, mask=mask
            )
        else:
            if scales is not None:
                neg_scores = neg_scores * scales[:, None]
            loss = loss_fn(pos_scores, neg_scores, log_q=log_q, mask=mask)
        return loss

    shared = f"all {index.num_items} items" if every_item else str(candidate_sampler.shared)
    parts = [shared] + (["in-batch negatives"] if in_batch else [])
    if hard is not None:
        m, n = config.num_candidates, config.num_hard
        parts.append(
            {
                "dns_mn": f"{n} drawn among the top {config.top_n} of {m} per row (DNS(M, N))",
                "ahns": f"the {n} of {m} per row closest to AHNS's target",
            }.get(config.selection, f"the {n} top-scored of {m} per row")
        )
    if user_temperature is not None:
        parts.append("a temperature per user for the negatives")
    if user_dropout:
        parts.append(f"dropout {user_dropout:g} on the user vectors")
    if slatk is not None:
        parts.append(
            f"the SL@K weight at top {config.slatk} (thresholds every {SLATK_EVERY} epochs)"
        )
    return step, f"{psl or loss_fn} over " + " + ".join(parts)


class _SoftmaxAtK:
    """SL@K's loss and per-user thresholds for the softmax step (``--slatk K``).

    The thresholds start at ``-inf`` (weight 1: the plain loss, the authors'
    warm-up) and are re-estimated from ``SLATK_CANDIDATES`` uniform
    non-positives and every positive of each user
    (:func:`~negsample.estimate_topk_thresholds`) at the start of every
    ``SLATK_EVERY``-th epoch after the first, then held fixed.
    """

    def __init__(
        self, config: RunConfig, model: MFModel, index: PositiveIndex, loss: SampledSoftmaxLoss
    ) -> None:
        assert config.slatk is not None
        self.k, self.model, self.index = config.slatk, model, index
        self.loss_fn = SoftmaxAtKLoss(
            loss.temperature,
            SLATK_TEMPERATURE,
            neg_weight=loss.neg_weight,
            include_positive=loss.include_positive,
        )
        self.every = SLATK_EVERY * math.ceil(index.num_interactions / config.batch_size)
        self.steps = 0
        # Its own stream (a 64-bit seed, wrapped), apart from the samplers'.
        self.generator = (config.seed + 2) % 2**64
        self.thresholds = torch.full((index.num_users,), -math.inf, device=index.device)

    def thresholds_of(self, users: torch.Tensor) -> torch.Tensor:
        """The batch's thresholds, re-estimated first when this step starts such an epoch."""
        if self.steps and self.steps % self.every == 0:
            self.thresholds = estimate_topk_thresholds(
                self.model, self.index, self.k, SLATK_CANDIDATES, generator=self.generator
            ).to(self.thresholds.dtype)
        self.steps += 1
        return self.thresholds[users]


def make_optimizer(model: torch.nn.Module, config: RunConfig) -> torch.optim.Optimizer:
    """Adam at ``config.lr``; fused where this torch has it for the device (same maths)."""
    try:
        return torch.optim.Adam(model.parameters(), lr=config.lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(model.parameters(), lr=config.lr)


def learning_rate(config: RunConfig, step: int, steps_per_epoch: int) -> float:
    """The rate of optimizer step ``step`` (from 0) under ``config.lr_schedule``.

    ``"cosine"`` decays from ``config.lr`` to 0 over ``config.epochs`` epochs
    of ``steps_per_epoch`` steps; ``"step"`` keeps ``config.lr`` for the
    first three quarters of those steps and ``config.lr * 0.1`` after. A run
    stopped early follows the same rates as far as it goes.
    """
    if config.lr_schedule == "constant":
        return config.lr
    total = config.epochs * steps_per_epoch
    if config.lr_schedule == "step":
        drop_at = math.ceil((1.0 - STEP_FRACTION) * total)
        return config.lr * STEP_FACTOR if step >= drop_at else config.lr
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))


# loss name -> a function (config, model, training index on the device, scorer) that returns
# the per-batch loss and a description. A new loss is one more entry.
STEPS: dict[str, Callable[[RunConfig, MFModel, PositiveIndex, Scorer], tuple[Step, str]]] = {
    "bpr": pairwise_step,
    "bce": pairwise_step,
    "softmax": softmax_step,
}


def make_step(
    config: RunConfig, model: MFModel, index: PositiveIndex, scorer: Scorer | None = None
) -> tuple[Step, str]:
    """The per-batch loss of ``config.loss`` with its sampler, and a description.

    ``scorer`` (default: ``model``) computes the scores the loss sees, e.g. a
    ``DistributedDataParallel`` wrapper of ``model``.
    """
    return STEPS[config.loss](config, model, index, model if scorer is None else scorer)
