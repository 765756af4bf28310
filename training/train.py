"""The fine-tuning recipe: base model + examples -> a fine-tuned Hugging Face model directory.

    python -m training --config conf/train/local_forward.yaml                   # one process
    torchrun --nproc_per_node 2 -m training --config conf/train/local_forward.yaml  # several: training/distributed.py

One function, ``train(cfg)``: load data, set up model and optimiser, run the loop (gradient accumulation,
AdamW, lr decaying linearly from ``lr`` to ``final_lr``, gradient clipping, batches of similar lengths, bf16
autocast where the hardware computes it natively, ``udfs.hardware.choose_dtype``), checkpoint every
``optim.checkpoint_every`` steps so that a killed run resumes (``training.checkpoint``), save atomically with
``training_meta.json``, and record the run in MLflow (``training.tracking``). The loss is on answer tokens only
(see ``training.data``). A re-run with the same config and the same data returns the finished model without
training again. With ``lora.enabled`` only low-rank adapters train and are merged into the saved model
(``training.lora``); ``optim.epochs`` makes the number of steps follow the data size (``OptimConfig.steps_for``).

Padding: a batch holds examples of similar lengths (``length_grouped_batches``), which keeps padding to
2-4 % of the tokens trained on data/sample/seed.jsonl, against ~40 % for random batches
(``padding_waste`` in training_meta.json and the logs; benchmarks/train_throughput.py). Packing several
examples into one row would save those few percent at the price of per-example attention masks and
position ids in the model call, so it is not done.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from training import lora
from training.artifacts import exclusive, read_marker, staged_dir, write_json
from training.checkpoint import Checkpointer, Progress, checkpoint_dir
from training.config import OptimConfig, TrainConfig
from training.data import IGNORE_INDEX, Encoded, Example, encode_examples, load_examples
from training.distributed import Runtime, gradient_sync, runtime, unwrap, wrap
from training.progress import report_step
from training.memory import ModelShape, Plan, check_fits
from training.tracking import Tracker
from udfs.config import to_dict
from udfs.curation import BASELINE_RULES, uses_likelihoods
from udfs.hardware import Device, choose_dtype, this_device
from udfs.ids import model_fingerprint
from udfs.redact import redact
from udfs.weights import check_weights

log = logging.getLogger(__name__)

META = "training_meta.json"
# Dropout settings across architectures (Llama has only attention_dropout); those the config has are set.
DROPOUT_FIELDS = ("attention_dropout", "hidden_dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop", "dropout")
WINDOW_BATCHES = 50  # length grouping sorts within windows of this many batches, so batches stay varied


@dataclass(frozen=True)
class TrainResult:
    output_dir: str
    examples: int  # examples trained on (after dropping those whose prompt is too long)
    steps: int
    final_loss: float  # mean token loss of the last step's batch
    provenance: dict[str, Any]
    curated_score_ids: tuple[str, ...] = ()  # the scores rows that put each augmented example in the data (lineage)
    curated_rewrite_ids: tuple[str | None, ...] = ()  # per curated_score_ids: the rewrite that was its answer, if any


def train(cfg: TrainConfig) -> TrainResult:
    """Fine-tune ``cfg.base_model`` on the configured examples and save it to ``cfg.output_dir``."""
    lora.check_supported(cfg.lora)
    # auto becomes what this machine computes in before anything hashes the config: the model's id then says
    # how it was trained, and is the same from any machine that trains it the same way.
    precision = resolve_precision(cfg.optim.precision, torch_device())
    cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, precision=precision))
    examples, provenance = load_examples(cfg)
    curated = tuple(e.score_id for e in examples if e.score_id is not None)
    rewrites = tuple(e.rewrite_id for e in examples if e.score_id is not None)
    # The base model's id too: a base rebuilt at the same path must not pass for the old one.
    fingerprint = {
        "config": model_config(cfg),
        "data_sha256": provenance["sha256"],
        "base_model_id": model_fingerprint(cfg.base_model),
    }
    with exclusive(cfg.output_dir):  # a second run into this directory waits here, then finds the model
        meta = read_marker(cfg.output_dir, META)
        if meta and meta["fingerprint"] == fingerprint:
            log.info("%s is up to date, not training", cfg.output_dir)
            shutil.rmtree(checkpoint_dir(cfg.output_dir), ignore_errors=True)  # left if killed right after saving
            return TrainResult(
                cfg.output_dir,
                meta["examples"],
                meta["steps"],
                meta["final_loss"],
                meta["provenance"],
                curated,
                rewrites,
            )
        with runtime() as rt:
            result = run(cfg, examples, provenance, fingerprint, rt)
            return dataclasses.replace(result, curated_score_ids=curated, curated_rewrite_ids=rewrites)


def model_config(cfg: TrainConfig) -> dict[str, Any]:
    """The settings that make the model: all but where the run is recorded, how often it checkpoints, how
    processes share it, whether activations are recomputed (the same numbers), and which table versions the
    data was read at (the data itself is ``data_sha256``: the same rows read at a later version, after other
    iterations appended theirs, are the same model). Settings that are off (a disabled ``lora`` block, a
    null ``epochs``, training on segments rather than rewrites) say nothing either. Changing those neither
    makes a finished model stale nor orphans a checkpoint. Credentials are masked: the fingerprint is stored
    in training_meta.json."""
    config = to_dict(cfg)
    del config["tracking"], config["distributed"], config["optim"]["checkpoint_every"]
    # Where things are says nothing either: the base is ``base_model_id``, the seed and tables ``data_sha256``,
    # so a model's id (``udfs.ids.model_fingerprint`` hashes this) is the same from any checkout or root.
    del config["base_model"], config["output_dir"], config["seed"]["path"]
    for table in ("segments_table", "candidates_table", "scores_table", "likelihoods_table", "rewrites_table"):
        config["augmented"].pop(table, None)
    del config["optim"]["gradient_checkpointing"]
    # Which evaluation sets the seed was checked against says nothing more: the pairs it left are data_sha256.
    for key in ("decontamination", "decontamination_ngram", "decontamination_min_words"):
        del config["seed"][key]
    if not cfg.lora.enabled:
        del config["lora"]
    if cfg.optim.epochs is None:
        del config["optim"]["epochs"]
    for pin in ("segments_version", "candidates_version", "scores_version", "rewrites_version", "as_of"):
        del config["augmented"][pin]
    if cfg.augmented.output == "segment":
        for key in ("output", "rewrite_model_id", "rewrite_prompt_version"):
            del config["augmented"][key]
    if cfg.augmented.score_column not in BASELINE_RULES:
        for key in ("baseline_of", "baseline_k", "baseline_seed"):
            del config["augmented"][key]
    if not uses_likelihoods(cfg.augmented.judge_rule):
        for key in ("likelihoods_version", "likelihood_scorer_id"):
            del config["augmented"][key]
    else:
        del config["augmented"]["likelihoods_version"]  # a pin, as above
    return redact(config)


def run(
    cfg: TrainConfig, examples: list[Example], provenance: dict[str, Any], fingerprint: dict[str, Any], rt: Runtime
) -> TrainResult:
    """Train in this process (one of ``rt.world_size``), resuming from a checkpoint if there is one."""
    torch.manual_seed(cfg.optim.seed + rt.rank)  # each process draws its own dropout masks
    start = time.monotonic()
    tokenizer = AutoTokenizer.from_pretrained(cfg.base_model, trust_remote_code=cfg.trust_remote_code)
    encoded, counts = encode_examples(tokenizer, examples, cfg)
    if not encoded:
        raise ValueError(f"no training examples fit max_seq_len={cfg.optim.max_seq_len}: {counts}")
    batch_size = cfg.optim.batch_size_for(len(encoded))
    unit = rt.world_size * cfg.optim.micro_batch_size
    if len(encoded) < batch_size:  # fewer examples than a batch: the largest batch of whole micro-batches
        batch_size = len(encoded) - len(encoded) % unit
        if not batch_size:
            raise ValueError(
                f"{len(encoded)} examples fit max_seq_len={cfg.optim.max_seq_len}: fewer than one "
                f"micro-batch of {cfg.optim.micro_batch_size} per process ({rt.world_size})"
            )
    if batch_size % unit:
        raise ValueError(
            f"batch size {batch_size} does not split into whole micro-batches of "
            f"{cfg.optim.micro_batch_size} over {rt.world_size} processes"
        )
    optim = dataclasses.replace(cfg.optim, max_steps=cfg.optim.steps_for(len(encoded), batch_size))
    autocast = torch.bfloat16 if cfg.optim.precision == "bf16" else None
    if rt.device.type == "cuda":  # fail before loading gigabytes, naming what to change
        check_memory(cfg, rt, autocast is not None)
    model = wrap(trainable_model(cfg, rt.device, autocast), rt, cfg.distributed.strategy)
    optimizer, scheduler = make_optimizer(model, optim)
    checkpoints = Checkpointer(cfg.output_dir, fingerprint, optim.checkpoint_every, rt)
    progress = checkpoints.restore(model, optimizer, scheduler)
    resumed_from = progress.step
    tracker = Tracker(cfg.tracking, cfg.output_dir, active=rt.is_main)
    progress.tracking_run_id = tracker.start(
        progress.tracking_run_id, Path(cfg.output_dir).name, redact(to_dict(cfg)), provenance
    )
    # Padding carries neither attention nor loss, so any id works when the tokenizer has no pad token.
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    log.info(
        "training %s on %d examples %s, batch %d, %d steps (%s) from step %d, %d process(es), %s%s",
        cfg.direction,
        len(encoded),
        counts,
        batch_size,
        optim.max_steps,
        cfg.optim.steps_rule,
        resumed_from,
        rt.world_size,
        precision_name(autocast),
        f", LoRA r={cfg.lora.r}" if cfg.lora.enabled else "",
    )

    def after_step(progress: Progress, lr: float) -> None:
        if rt.is_main:
            report_step(progress.step, optim.max_steps, progress.losses[-1])
        tracker.log_step(
            progress.step,
            {
                "loss": progress.losses[-1],
                "lr": lr,
                "padding_waste": progress.padding_waste,
                "tokens_per_second": progress.tokens_per_second,
            },
        )
        if checkpoints.due(progress.step, optim.max_steps):
            checkpoints.save(model, optimizer, scheduler, progress)

    try:
        fit(model, optimizer, scheduler, encoded, batch_size, pad_id, optim, rt, progress, autocast, after_step)
        # Collective: FSDP gathers the shards; rank 0 gets the full weights on CPU (under LoRA the adapters').
        weights = get_model_state_dict(
            model,
            options=StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=cfg.lora.enabled),
        )
        if rt.is_main:
            trained = unwrap(model)
            if cfg.lora.enabled and lora.needs_rebuild(cfg.lora, rt.distributed and cfg.distributed.strategy == "fsdp"):
                base = load_model(cfg, torch.device("cpu"), torch.float32)
                trained = lora.with_trained_adapters(base, cfg.lora, weights)
            save(
                cfg,
                trained,
                weights,
                tokenizer,
                {
                    "fingerprint": fingerprint,
                    "config": to_dict(cfg),
                    "provenance": provenance,
                    "examples": len(encoded),
                    "trained": counts,
                    "batch_size": batch_size,
                    "steps_rule": cfg.optim.steps_rule,
                    "planned_steps": optim.max_steps,
                    "steps": progress.step,
                    "final_loss": progress.losses[-1],
                    "losses": progress.losses,
                    "padding_waste": round(progress.padding_waste, 4),
                    "tokens": progress.tokens,
                    "tokens_per_second": round(progress.tokens_per_second, 1),
                    "precision": precision_name(autocast),
                    "lora": dataclasses.asdict(cfg.lora) if cfg.lora.enabled else None,
                    "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
                    "world_size": rt.world_size,
                    "resumed_from_step": resumed_from,
                    "tracking_run_id": progress.tracking_run_id,
                    "seconds": round(time.monotonic() - start, 1),
                },
            )
            tracker.finish(cfg.output_dir, Path(cfg.output_dir) / META)
    except BaseException:
        tracker.fail()
        raise
    rt.barrier()  # no process returns before the model is in place
    checkpoints.remove()
    log.info(
        "saved %s: loss %.3f -> %.3f, padding %.1f %%, %.0f tokens/s",
        cfg.output_dir,
        progress.losses[0],
        progress.losses[-1],
        100 * progress.padding_waste,
        progress.tokens_per_second,
    )
    return TrainResult(cfg.output_dir, len(encoded), progress.step, progress.losses[-1], provenance)


def save(cfg: TrainConfig, model: Any, weights: dict[str, torch.Tensor], tokenizer: Any, meta: dict[str, Any]) -> None:
    """The model directory, atomically; a LoRA model is saved merged, its adapter alongside."""
    with staged_dir(cfg.output_dir) as tmp:
        if cfg.lora.enabled:
            model = lora.merge(model, tmp)
            weights = model.state_dict()
        model.save_pretrained(tmp, state_dict=weights)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / META, redact(meta))


def check_memory(cfg: TrainConfig, rt: Runtime, bf16: bool) -> None:
    """``training.memory.check_fits`` on this GPU; skipped for configs that are not Llama-shaped."""
    try:
        shape = ModelShape.from_dir(cfg.base_model)
    except KeyError as missing:
        log.warning("no memory estimate for %s: config.json has no %s", cfg.base_model, missing)
        return
    device_bytes = torch.cuda.get_device_properties(rt.device).total_memory
    estimate = check_fits(shape, Plan.of(cfg, rt.world_size, bf16), device_bytes)
    log.info("estimated training memory per GPU: %s", estimate.describe())


def trainable_model(cfg: TrainConfig, device: torch.device, autocast: torch.dtype | None) -> torch.nn.Module:
    """The base model as this run trains it: all weights, or frozen with LoRA adapters."""
    # fp32 weights and optimizer state even with bf16 autocast: bf16 updates lose small lr * gradient steps.
    # A frozen LoRA base takes no updates, so it can be stored in the compute dtype (half the memory).
    dtype = autocast if cfg.lora.enabled and autocast is not None else torch.float32
    model = load_model(cfg, device, dtype)
    if cfg.optim.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return lora.add_adapters(model, cfg.lora, cfg.optim.gradient_checkpointing) if cfg.lora.enabled else model


def load_model(cfg: TrainConfig, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """The base model on ``device`` with the run's dropout; 4-bit under QLoRA unless it is the CPU copy
    that a merge needs."""
    check_weights(cfg.base_model)  # a truncated copy fails here, naming its file, not deep in safetensors
    config = AutoConfig.from_pretrained(cfg.base_model, trust_remote_code=cfg.trust_remote_code)
    for name in DROPOUT_FIELDS:
        if hasattr(config, name):
            setattr(config, name, cfg.optim.dropout)
    quantization = lora.quantization(cfg.lora) if device.type == "cuda" else None
    if quantization is not None:
        return AutoModelForCausalLM.from_pretrained(
            cfg.base_model,
            config=config,
            quantization_config=quantization,
            device_map={"": device},
            trust_remote_code=cfg.trust_remote_code,
        )
    return AutoModelForCausalLM.from_pretrained(
        cfg.base_model, config=config, dtype=dtype, trust_remote_code=cfg.trust_remote_code
    ).to(device)


def torch_device() -> Device:
    """This machine as torch sees it: its CPU's flags and, where CUDA is up, the current GPU."""
    if not torch.cuda.is_available():
        return this_device()
    index = torch.cuda.current_device()
    return this_device((torch.cuda.get_device_name(index), torch.cuda.get_device_capability(index)))


def resolve_precision(precision: str, device: Device) -> str:
    """``optim.precision`` for ``device``: auto is bf16 autocast where the device computes bf16 natively (on an
    AVX-512 BF16 CPU a bf16 matmul does 2.2x the fp32 FLOPs per CPU second), else fp32: an emulated bf16 is
    several times slower, and fp16 autocast would need a loss scaler this recipe does not have."""
    if precision != "auto":
        return precision
    choice = choose_dtype("auto", device)
    log.info("training precision auto: %s", choice.describe())
    return "bf16" if choice.dtype == "bfloat16" else "fp32"


def precision_name(autocast: torch.dtype | None) -> str:
    return "fp32" if autocast is None else "bf16"


def make_optimizer(model: torch.nn.Module, optim: OptimConfig) -> tuple[torch.optim.Optimizer, Any]:
    trainable = [p for p in model.parameters() if p.requires_grad]  # under LoRA the adapters only
    optimizer = torch.optim.AdamW(trainable, lr=optim.lr, weight_decay=optim.weight_decay)
    decay = 1 - optim.final_lr / optim.lr
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1 - decay * s / max(1, optim.max_steps - 1))
    return optimizer, scheduler


def fit(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    encoded: Sequence[Encoded],
    batch_size: int,
    pad_id: int,
    optim: OptimConfig,
    rt: Runtime,
    progress: Progress,
    autocast: torch.dtype | None,
    after_step: Callable[[Progress, float], None],
) -> None:
    """The training loop from ``progress.step`` to ``optim.max_steps``; updates ``progress`` after each step."""
    # The batch order depends only on lengths, batch size and seed: skipping the steps done is the resume.
    batches = itertools.islice(
        length_grouped_batches([len(e.input_ids) for e in encoded], batch_size, optim.seed), progress.step, None
    )
    model.train()
    for step in range(progress.step, optim.max_steps):
        began = time.perf_counter()
        batch = [encoded[i] for i in next(batches)]
        # Normalise by the whole batch's answer tokens, not per micro-batch or process, so accumulation and
        # sharding equal one big batch. DDP and FSDP average gradients over processes: * world_size sums them.
        targets = sum(sum(label != IGNORE_INDEX for label in e.labels[1:]) for e in batch)
        shard = rt.shard(batch)
        micro_batches = [shard[i : i + optim.micro_batch_size] for i in range(0, len(shard), optim.micro_batch_size)]
        loss_sum, tokens, slots = 0.0, 0, 0
        for n, micro in enumerate(micro_batches):
            input_ids, attention_mask, labels = (t.to(rt.device) for t in collate(micro, pad_id))
            with gradient_sync(model, sync=n == len(micro_batches) - 1):
                with torch.autocast(rt.device.type, dtype=autocast, enabled=autocast is not None):
                    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
                loss = token_loss(logits, labels) * rt.world_size / targets
                loss.backward()
            loss_sum += loss.item() / rt.world_size
            tokens += int(attention_mask.sum())
            slots += attention_mask.numel()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], optim.grad_clip)
        lr = scheduler.get_last_lr()[0]  # this step's; after scheduler.step() it is the next step's
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        loss_sum, tokens, slots = rt.sum([loss_sum, tokens, slots])
        progress.step += 1
        progress.losses.append(loss_sum)
        progress.tokens += int(tokens)
        progress.slots += int(slots)
        progress.seconds += time.perf_counter() - began
        after_step(progress, lr)
        if rt.is_main and (step % max(1, optim.max_steps // 10) == 0 or step == optim.max_steps - 1):
            log.info(
                "step %d/%d loss %.4f lr %.2e padding %.1f %% %.0f tokens/s",
                step + 1,
                optim.max_steps,
                loss_sum,
                lr,
                100 * progress.padding_waste,
                progress.tokens_per_second,
            )


def token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy of each next token whose label is not IGNORE_INDEX."""
    return F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.size(-1)).float(),
        labels[:, 1:].reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )


def collate(batch: Sequence[Encoded], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded input_ids, attention_mask and labels."""
    width = max(len(e.input_ids) for e in batch)
    input_ids = torch.full((len(batch), width), pad_id)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX)
    for row, e in enumerate(batch):
        n = len(e.input_ids)
        input_ids[row, :n] = torch.tensor(e.input_ids)
        attention_mask[row, :n] = 1
        labels[row, :n] = torch.tensor(e.labels)
    return input_ids, attention_mask, labels


def length_grouped_batches(lengths: Sequence[int], batch_size: int, seed: int) -> Iterator[list[int]]:
    """Endless full batches of indices: every epoch is shuffled, sorted by length within windows, cut into
    batches and the batches shuffled, so a batch holds similar lengths (little padding). The few examples
    that do not fill a last batch sit the epoch out (a different few each epoch): every step then has the
    same batch size, and a batch always splits evenly over processes."""
    if not 0 < batch_size <= len(lengths):
        raise ValueError(f"batch_size must be in [1, {len(lengths)}], got {batch_size}")
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    window = batch_size * WINDOW_BATCHES
    while True:
        rng.shuffle(order)
        # Set the left-overs aside before sorting: after it they would always be the longest examples.
        kept = order[: len(order) - len(order) % batch_size]
        batches = []
        for start in range(0, len(kept), window):
            chunk = sorted(kept[start : start + window], key=lengths.__getitem__)
            batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
        rng.shuffle(batches)
        yield from batches
