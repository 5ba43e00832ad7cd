"""Iteration-based training loop with PaddleSeg's checkpoint layout and flags.

Written anew because ``paddleseg.core.train`` crashes on Paddle 3.3 at its first logging
step. Adds exact resumption: weights, optimizer, lr schedule, iteration, data order and
augmentation randomness all continue from the checkpoint.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import paddle
import paddle.distributed as dist
from paddleseg.cvlibs import Config
from paddleseg.utils import logger

from ..atomic import clean_stale
from ..config import ConfigError, build, check_dataset_root, check_pretrained, dataset_info
from ..data_check import check_split
from ..models.convert import load_pretrained_weights
from .checkpoint import (
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
    save_weights,
)
from .data import ResumableBatchSampler, RunSampler, SeededDataset
from .evaluate import evaluate


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; nothing after the last checkpoint was saved."""


def set_seed(seed: int) -> None:
    """Seeds Python, NumPy and Paddle."""
    random.seed(seed)
    np.random.seed(seed)
    paddle.seed(seed)


def set_cpu_threads(num_threads: int) -> None:
    """Sets the threads per operator of Paddle's CPU math library (MKL, OpenMP).

    Paddle starts with one (it sets ``OMP_NUM_THREADS=1`` at import unless already set).
    More pay off only where MKL's matrix products dominate: most of Paddle 3.3's CPU
    kernels (depthwise convolution, interpolation, softmax, batch norm) run on one thread
    whatever the setting (docs/performance.md).

    Args:
        num_threads: Threads per operator.

    Raises:
        ValueError: ``num_threads`` is below 1.
    """
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    paddle.base.core.set_num_threads(num_threads)


def _stack_batch(batch: list) -> tuple[np.ndarray, np.ndarray]:
    imgs, labels = zip(*batch, strict=True)
    return np.stack(imgs), np.stack(labels)


def _total_loss(logits: list, label: paddle.Tensor, losses: dict) -> paddle.Tensor:
    """Weighted sum over model outputs, PaddleSeg's ``loss: {types, coef}`` semantics."""
    types, coefs = losses["types"], losses["coef"]
    if len(coefs) > len(logits):
        raise ValueError(f"loss.coef has {len(coefs)} entries but the model returns {len(logits)}")
    if len(types) not in (1, len(coefs)):
        raise ValueError(f"loss.types has {len(types)} entries for {len(coefs)} coefficients")
    total = 0.0
    for i, coef in enumerate(coefs):
        loss_fn = types[0] if len(types) == 1 else types[i]
        loss = loss_fn(logits[i], label)
        if isinstance(loss, list | tuple):  # MixedLoss: its weighted terms are summed
            loss = paddle.add_n(list(loss))
        total = total + coef * loss
    return total


def _prefetched(batches: Iterable, load: Callable, depth: int = 2) -> Iterator:
    """Yields ``load(b)`` for each ``b`` of ``batches``, in order, loaded ahead by a thread.

    The thread reads the next ``depth`` batches while the caller trains on the current one
    (NumPy, OpenCV and Paddle kernels release the GIL). An exception raised while loading a
    batch is raised here, in the caller, in that batch's place; leaving the generator early
    stops the thread.
    """
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: tuple) -> None:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def produce() -> None:
        try:
            for batch in batches:
                if stop.is_set():
                    return
                put((True, load(batch)))
        except BaseException as err:  # noqa: BLE001  (re-raised by the consumer)
            put((False, err))
            return
        put((True, None))

    thread = threading.Thread(target=produce, name="train-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = ready.get()
            if not ok:
                raise item
            if item is None:
                return
            yield item
    finally:
        stop.set()
        thread.join()


def _batches(dataset: SeededDataset, sampler: RunSampler, num_workers: int) -> Iterator:
    """Yields the run's ``(img, label)`` batches; a failing sample raises its own error.

    Without workers a thread of this process reads ahead (:func:`_prefetched`); Paddle's
    single-process ``DataLoader`` is not used because its thread swallows a dataset error and
    then waits forever. With workers, one ``DataLoader`` serves the whole run, so the workers
    start once. A failing sample reaches this process only as Paddle's ``SystemError:
    Blocking queue is killed``; the batches the workers held are then loaded here, in order,
    until the failing sample raises its :class:`SampleError`, which names the files.
    """

    def load(keys: list) -> tuple[np.ndarray, np.ndarray]:
        return _stack_batch([dataset[key] for key in keys])

    if num_workers == 0:
        for img, label in _prefetched(sampler, load):
            yield paddle.to_tensor(img), paddle.to_tensor(label)
        return
    prefetch_factor = 2
    loader = paddle.io.DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=_stack_batch,
        return_list=True,
        use_buffer_reader=False,
        prefetch_factor=prefetch_factor,
    )
    delivered = 0
    batches = iter(loader)
    try:
        for batch in batches:
            delivered += 1
            yield batch
    except SystemError:
        # Paddle's reader thread prints the worker's traceback as it dies: let it finish,
        # so that the error raised here comes last.
        reader = getattr(batches, "_thread", None)
        if reader is not None:
            reader.join(timeout=10)
        # The failing batch is one of those the workers had been given.
        in_flight = prefetch_factor * num_workers
        for keys in itertools.islice(sampler, delivered, delivered + in_flight):
            load(keys)
        raise


def _all_finite(loss: paddle.Tensor, world_size: int) -> bool:
    """Whether the loss is finite on every rank.

    A rank that stopped alone would leave the others waiting forever in the gradient
    all-reduce, so with several ranks the decision is taken on the sum over ranks.
    """
    if world_size > 1:
        loss = loss.detach().clone()
        dist.all_reduce(loss)
    return math.isfinite(float(loss))


def _average_buffers(model: paddle.nn.Layer, world_size: int) -> None:
    """Averages non-trained state (BatchNorm running statistics) over data-parallel ranks.

    ``paddle.DataParallel`` synchronises gradients only; each rank's running statistics
    follow its own shard. Averaging them before every save and evaluation gives all ranks
    the same, better estimated statistics.
    """
    # Paddle keeps BatchNorm statistics as parameters with stop_gradient=True.
    for buf in model.state_dict().values():
        if buf.stop_gradient and buf.dtype in (paddle.float32, paddle.float64, paddle.float16):
            dist.all_reduce(buf)
            buf.set_value(buf / world_size)


def _check_train_split(cfg: Config, skip_bad: bool, is_main: bool) -> set[int]:
    """Runs the cheap dataset checks (``tools/check_dataset.py``); returns the samples to skip.

    Raises:
        ConfigError: The split has errors and ``skip_bad`` is off, or has errors no skip can
            fix (a malformed list line, an empty split).
    """
    report = check_split(cfg, "train", progress=is_main)
    problems = report.errors
    if problems and (not skip_bad or any(p.index is None for p in problems)):
        hint = "" if skip_bad else "; or pass --skip_bad to train without these samples"
        raise ConfigError(
            f"train_dataset: {len(problems)} bad sample(s), first: "
            f"{', '.join(problems[0].files)}: {problems[0].message} "
            f"(list them with tools/check_dataset.py --split train{hint})"
        )
    if is_main:
        for problem in problems:
            logger.warning(
                f"--skip_bad: sample {problem.index} is skipped: "
                f"{', '.join(problem.files)}: {problem.message}"
            )
        for problem in report.warnings:
            logger.warning(f"train_dataset: {', '.join(problem.files)}: {problem.message}")
    return report.bad_indices


def _build_distiller(cfg: Config, model: paddle.nn.Layer):
    """The config's ``distill:`` section as a :class:`Distiller`, or None without one."""
    if "distill" not in cfg.dic:
        return None
    # Imported here: only distillation needs PaddleSlim.
    from ..distill import Distiller, build_teacher, parse_distill

    spec = parse_distill(cfg.dic["distill"])
    teacher = build_teacher(spec)
    logger.info(
        f"Distilling {type(teacher).__name__} ({spec.teacher_weights}) into "
        f"{type(model).__name__}: " + ", ".join(f"{t.name} x{t.weight:g}" for t in spec.terms)
    )
    return Distiller(model, teacher, spec)


def _build_optimizer(builder, trained: paddle.nn.Layer):
    """PaddleSeg's optimizer from the config, over ``trained``'s parameters."""
    model = builder.model
    # SegBuilder builds the optimizer over its cached ``model``; point it at ``trained``.
    builder.__dict__["model"] = trained
    try:
        return builder.optimizer
    finally:
        builder.__dict__["model"] = model


def _format_eta(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def train(
    cfg: Config,
    *,
    save_dir: str = "output",
    save_interval: int = 1000,
    log_iters: int = 10,
    keep_checkpoint_max: int = 5,
    do_eval: bool = False,
    use_vdl: bool = False,
    resume_model: str | None = None,
    seed: int = 0,
    num_workers: int = 0,
    skip_bad: bool = False,
    num_threads: int = 1,
) -> paddle.nn.Layer:
    """Trains the model a PaddleSeg config describes and returns it (unwrapped).

    Runs data-parallel when started by ``paddle.distributed.launch``. Saves
    ``iter_N/`` every ``save_interval`` iterations and at the end, and ``best_model/``
    (by val mIoU) when ``do_eval``. The model's ``pretrained`` files (any level of the
    ``model`` section) are loaded before the first step; a missing one is a ConfigError
    before anything is built. With a ``distill:`` section the model is trained as the
    student of a frozen teacher (:mod:`paddleseg_ext.distill`); each loss term is logged
    under its name next to the total, with the teacher's share of the step time.

    Args:
        cfg: Loaded config (``iters``, ``batch_size``, ``learning_rate`` already applied).
        save_dir: Output folder for checkpoints, logs and VisualDL records.
        save_interval: Iterations between checkpoints (and evaluations with ``do_eval``).
        log_iters: Iterations between log lines.
        keep_checkpoint_max: Number of ``iter_N`` folders kept.
        do_eval: Evaluate on ``val_dataset`` at every checkpoint.
        use_vdl: Write VisualDL scalars (loss, lr, images/s, mIoU) under ``save_dir``.
        resume_model: An ``iter_N`` folder to continue from.
        seed: Seeds model init, shuffling and augmentation.
        num_workers: Data loader worker processes. With 0, a thread of this process loads
            the next batches while the current one trains.
        skip_bad: Train without the samples the start-up check finds broken, and skip (with
            a warning) any sample that fails to load later; without it, either stops the run
            with an error naming the files.
        num_threads: Threads per operator of the CPU math library (MKL, OpenMP).
    """
    world_size = dist.get_world_size()
    rank = dist.get_rank()
    if world_size > 1:
        dist.init_parallel_env()
    set_seed(seed)
    set_cpu_threads(num_threads)
    check_pretrained(cfg)  # stock models read `pretrained` while built
    bad_samples = _check_train_split(cfg, skip_bad, rank == 0)
    builder = build(cfg)
    model = builder.model
    load_pretrained_weights(model)  # ours read it here
    distiller = _build_distiller(cfg, model)
    # The optimizer covers what is trained: the model, plus the distillation adapters.
    optimizer = _build_optimizer(builder, distiller or model)
    lr_sched = builder.lr_scheduler
    losses = builder.loss
    train_set = builder.train_dataset
    total_iters = cfg.iters
    batch_size = cfg.batch_size
    adapters = distiller.criterion if distiller else None

    state = {"iter": 0, "best_mIoU": -1.0, "best_iter": -1}
    if rank == 0:
        clean_stale(save_dir)  # what a killed run left: logged
    if not resume_model and list_checkpoints(save_dir):
        logger.warning(
            f"{save_dir} already holds checkpoints up to iter_{list_checkpoints(save_dir)[-1]}; "
            "this run starts from scratch (pass --resume_model auto to continue instead)"
        )
    if resume_model:
        state = load_checkpoint(resume_model, model, optimizer, adapters)
        logger.info(f"Resume from {resume_model}: continuing after iteration {state['iter']}")
    if state["iter"] >= total_iters:
        logger.info(f"Nothing to do: checkpoint is at iteration {state['iter']} >= {total_iters}")
        return model

    if do_eval:
        check_dataset_root(cfg, "val")
        val_set = builder.val_dataset
        num_classes, ignore_index, class_names = dataset_info(cfg, "val")

    sampler = ResumableBatchSampler(
        len(train_set), batch_size, shuffle=True, seed=seed, rank=rank, world_size=world_size
    )
    seeded = SeededDataset(train_set, seed, skip_bad, bad_samples)
    iters_per_epoch = len(sampler)
    trained = distiller or model
    net = paddle.DataParallel(trained) if world_size > 1 else trained
    is_main = rank == 0
    vdl = None
    if is_main:
        os.makedirs(save_dir, exist_ok=True)
        if use_vdl:
            from visualdl import LogWriter

            vdl = LogWriter(os.path.join(save_dir, "vdl"))

    logger.info(
        f"Training {type(model).__name__} for {total_iters} iters, batch {batch_size} x "
        f"{world_size} rank(s), {len(train_set)} images ({iters_per_epoch} iters/epoch), "
        f"{num_threads} CPU math thread(s), "
        + (f"{num_workers} loader worker(s)" if num_workers else "loading in a thread")
    )
    it = state["iter"]
    batch_times: deque = deque(maxlen=log_iters)
    loss_sum, reader_sum, n_logged = 0.0, 0.0, 0
    term_sums: dict[str, float] = {}
    net.train()
    tic = time.time()
    # Closed on the way out, an exception included: stops the loading thread or workers.
    batches = contextlib.closing(
        _batches(seeded, RunSampler(sampler, it, total_iters), num_workers)
    )
    with batches as loader:
        for img, label in loader:
            reader_sum += time.time() - tic
            it += 1
            epoch = (it - 1) // iters_per_epoch
            # Re-seeding per iteration makes dropout/drop-path identical after a resume.
            paddle.seed(seed + it)
            if distiller is None:
                loss = _total_loss(net(img), label, losses)
            else:
                outputs, terms = net(img, label.shape[-2:])
                task_loss = _total_loss(outputs, label, losses)
                loss = task_loss + paddle.add_n(list(terms.values()))
                for name, value in {"task": task_loss, **terms}.items():
                    term_sums[name] = term_sums.get(name, 0.0) + float(value)
            loss_value = float(loss)
            if not _all_finite(loss, world_size):
                newest = latest_checkpoint(save_dir)
                raise TrainingDiverged(
                    f"loss is {loss_value} at iteration {it}; training stopped before updating "
                    f"the weights. Last good checkpoint: {newest or 'none'} (lower the learning "
                    "rate, check the data, then --resume_model auto)"
                )
            loss.backward()
            optimizer.step()
            optimizer.clear_grad()
            lr = optimizer.get_lr()
            lr_sched.step()
            loss_sum += loss_value
            n_logged += 1
            batch_times.append(time.time() - tic)

            if it % log_iters == 0 or it == total_iters:
                mean_t = sum(batch_times) / len(batch_times)
                ips = batch_size * world_size / mean_t
                avg_loss = loss_sum / n_logged
                avg_terms = {name: total / n_logged for name, total in term_sums.items()}
                distill_msg = ""
                if distiller is not None:
                    share = distiller.teacher_seconds / max(sum(batch_times), 1e-9)
                    distill_msg = "".join(f"{k}: {v:.4f}, " for k, v in avg_terms.items())
                    distill_msg += f"teacher_share: {share:.0%}, "
                    distiller.teacher_seconds = 0.0
                if is_main:
                    logger.info(
                        f"[TRAIN] epoch: {epoch + 1}, iter: {it}/{total_iters}, "
                        f"loss: {avg_loss:.4f}, {distill_msg}lr: {lr:.6f}, "
                        f"batch_cost: {mean_t:.4f}, reader_cost: {reader_sum / n_logged:.5f}, "
                        f"ips: {ips:.2f} samples/sec "
                        f"| ETA {_format_eta(mean_t * (total_iters - it))}"
                    )
                    if vdl is not None:
                        vdl.add_scalar("Train/loss", avg_loss, it)
                        vdl.add_scalar("Train/lr", lr, it)
                        vdl.add_scalar("Train/ips", ips, it)
                        for name, value in avg_terms.items():
                            vdl.add_scalar(f"Train/{name}", value, it)
                loss_sum, reader_sum, n_logged = 0.0, 0.0, 0
                term_sums = {}

            if it % save_interval == 0 or it == total_iters:
                if world_size > 1:
                    _average_buffers(model, world_size)
                if do_eval and is_main:
                    metrics = evaluate(
                        model,
                        val_set,
                        num_classes,
                        ignore_index=ignore_index,
                        class_names=class_names,
                        num_workers=num_workers,
                    )
                    if vdl is not None:
                        for key in ("mIoU", "mDice", "Acc", "Kappa"):
                            vdl.add_scalar(f"Evaluate/{key}", metrics[key], it)
                    if metrics["mIoU"] > state["best_mIoU"]:
                        state.update(best_mIoU=metrics["mIoU"], best_iter=it)
                        save_weights(
                            os.path.join(save_dir, "best_model"), model, metrics | {"iter": it}
                        )
                    logger.info(
                        f"[EVAL] The model with the best validation mIoU ({state['best_mIoU']:.4f})"
                        f" was saved at iter {state['best_iter']}."
                    )
                    net.train()
                if is_main:
                    state["iter"] = it
                    path = save_checkpoint(
                        save_dir, model, optimizer, state, keep_checkpoint_max, adapters
                    )
                    logger.info(f"Saved checkpoint {path}")
            tic = time.time()
    if vdl is not None:
        vdl.close()
    if world_size > 1:
        dist.barrier()
    return model


def latest_checkpoint(save_dir: str) -> str | None:
    """The newest complete ``iter_N`` folder in ``save_dir``, if any."""
    iters = list_checkpoints(save_dir)
    return os.path.join(save_dir, f"iter_{iters[-1]}") if iters else None
