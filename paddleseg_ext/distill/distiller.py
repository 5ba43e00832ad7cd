"""Knowledge distillation in our training loop: the ``distill:`` config section.

```yaml
distill:
  teacher:
    config: configs/camvid/topformer_base_camvid.yml   # any registered model, stock ones too
    model_path: output/teacher/best_model/model.pdparams
    input_size: [512, 512]     # optional, [width, height] as PaddleSeg's Resize
  losses:
    - {type: CWD, student: logits, teacher: logits, weight: 1.2, tau: 3.0}
    - {type: NFD, student: backbone.injections.0, teacher: backbone.injections.0, weight: 0.5}
```
``logits`` names the model's first output; any other name is a sublayer path (as in
``model.named_sublayers()``) whose output is hooked. Logits of both models are resized to
the label size; NFD resizes the teacher map to the student's.

What PaddleSlim 2.6 gives and what we take (checked on Paddle 3.3.1 by
``tests/distill/test_paddleslim.py``):
- ``CombinedLoss`` / ``DistillationLoss``: the weighted sum of losses over named tensors,
  with our losses registered in ``BASIC_LOSS``. Used.
- ``ShapeAlign``: the trained 1x1 conv that maps student channels to teacher channels
  (``align_params``). Used for NFD.
- ``Distill``, the model wrapper with its feature hooks: not used, for three reasons seen on
  Paddle 3.3.1. It runs the teacher on the student's input, so the teacher cannot see a
  larger image. It does not detach hooked teacher features, so the backward pass runs through
  the teacher: with an eval-mode teacher, 193 of its 315 parameters received gradients. A
  layer name that matches no sublayer fails with ``UnboundLocalError: cannot access local
  variable 'hooks' where it is not associated with a value`` instead of naming the layer.
  The hooks and the frozen teacher are therefore our own (:class:`FeatureTaps`).
"""

from __future__ import annotations

import difflib
import inspect
import os
import time
from dataclasses import dataclass, field

import paddle
import paddle.nn.functional as F
from paddle import nn
from paddleslim.dygraph.dist.losses import CombinedLoss

from ..config import ConfigError, build, load_config
from ..core.checkpoint import load_weights
from . import losses  # registers CWD, CGD, PKL, NFD, KD in PaddleSlim's BASIC_LOSS

LOGITS = "logits"
# Loss type -> its own keys (its constructor's parameters); every loss also takes type,
# student, teacher and weight.
LOSS_PARAMS = {
    cls.__name__: tuple(inspect.signature(cls).parameters) if "__init__" in vars(cls) else ()
    for cls in (losses.CWD, losses.CGD, losses.PKL, losses.NFD, losses.KD)
}
_TERM_KEYS = ("type", "student", "teacher", "weight")
_TEACHER_KEYS = ("config", "model_path", "input_size")
# Side of the square dummy batch that finds the tapped layers' channels before training.
_PROBE_SIZE = 256


@dataclass(frozen=True)
class TermSpec:
    """One loss term: ``weight * TYPE(student tensor, teacher tensor)``, logged as ``name``."""

    type: str
    student: str
    teacher: str
    weight: float
    params: dict = field(default_factory=dict)
    name: str = ""


@dataclass(frozen=True)
class DistillSpec:
    """A validated ``distill:`` section."""

    teacher_config: str
    teacher_weights: str
    teacher_input_size: tuple[int, int] | None  # (width, height)
    terms: tuple[TermSpec, ...]


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_keys(entry: dict, allowed: tuple[str, ...], where: str) -> None:
    unknown = [key for key in entry if key not in allowed]
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(allowed)})")


def _check_param(name: str, value, where: str) -> None:
    if name == "group_size":
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{where}.group_size: expected an integer >= 1, got {value!r}")
    elif name == "k1":
        if not _is_number(value) or not 0 <= value <= 1:
            raise ConfigError(f"{where}.k1: expected a number in [0, 1], got {value!r}")
    elif not _is_number(value) or value <= 0:  # tau
        raise ConfigError(f"{where}.{name}: expected a number > 0, got {value!r}")


def _parse_term(entry, index: int, seen: dict) -> TermSpec:
    where = f"distill.losses.{index}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping like {{type: CWD, student: logits, ...}}")
    loss_type = entry.get("type")
    if loss_type not in LOSS_PARAMS:
        raise ConfigError(
            f"{where}.type: unknown loss {loss_type!r}; expected one of {', '.join(LOSS_PARAMS)}"
        )
    _check_keys(entry, _TERM_KEYS + LOSS_PARAMS[loss_type], f"{where} ({loss_type})")
    for side in ("student", "teacher"):
        if not isinstance(entry.get(side), str) or not entry[side]:
            raise ConfigError(f"{where}.{side}: expected '{LOGITS}' or a sublayer path")
    weight = entry.get("weight", 1.0)
    if not _is_number(weight) or weight < 0:
        raise ConfigError(f"{where}.weight: expected a number >= 0, got {weight!r}")
    params = {key: entry[key] for key in LOSS_PARAMS[loss_type] if key in entry}
    for key, value in params.items():
        _check_param(key, value, where)
    base = loss_type.lower()
    seen[base] = seen.get(base, 0) + 1
    name = base if seen[base] == 1 else f"{base}_{seen[base]}"
    return TermSpec(loss_type, entry["student"], entry["teacher"], float(weight), params, name)


def parse_distill(section, check_files: bool = True) -> DistillSpec:
    """Validates a ``distill:`` section; every problem is a one-line :class:`ConfigError`.

    ``check_files=False`` checks the structure only, not that the teacher's files exist.
    """
    if not isinstance(section, dict):
        raise ConfigError("distill: expected a mapping with 'teacher' and 'losses'")
    _check_keys(section, ("teacher", "losses"), "distill")
    teacher = section.get("teacher")
    if not isinstance(teacher, dict):
        raise ConfigError("distill.teacher: expected a mapping with 'config' and 'model_path'")
    _check_keys(teacher, _TEACHER_KEYS, "distill.teacher")
    for key in ("config", "model_path"):
        if not isinstance(teacher.get(key), str):
            raise ConfigError(f"distill.teacher.{key}: missing (a file path)")
        if check_files and not os.path.isfile(teacher[key]):
            raise ConfigError(f"distill.teacher.{key}: file not found: {teacher[key]}")
    size = teacher.get("input_size")
    if size is not None and (
        not isinstance(size, list | tuple)
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
    ):
        raise ConfigError(f"distill.teacher.input_size: expected [width, height], got {size!r}")
    entries = section.get("losses")
    if not isinstance(entries, list) or not entries:
        raise ConfigError("distill.losses: expected a non-empty list of loss terms")
    seen: dict = {}
    terms = tuple(_parse_term(entry, i, seen) for i, entry in enumerate(entries))
    return DistillSpec(
        teacher["config"], teacher["model_path"], tuple(size) if size else None, terms
    )


def build_teacher(spec: DistillSpec) -> nn.Layer:
    """Builds the teacher from its config, loads its weights strictly and freezes it."""
    cfg = load_config(spec.teacher_config, "model")
    try:
        teacher = build(cfg).model
    except (AssertionError, KeyError, RuntimeError, TypeError) as err:
        raise ConfigError(
            f"distill.teacher.config: cannot build the model of {spec.teacher_config}: {err}"
        ) from err
    load_weights(teacher, spec.teacher_weights)
    teacher.eval()
    for param in teacher.parameters():
        param.stop_gradient = True
    return teacher


def _unknown_layer_message(model: nn.Layer, name: str, where: str) -> str:
    names = [n for n, _ in model.named_sublayers()]
    closest = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    shallow = [n for n in names if n.count(".") < 3]
    return (
        f"{where}: {type(model).__name__} has no sublayer {name!r}"
        + (f"; closest: {', '.join(closest)}" if closest else "")
        + f"; valid names ('{LOGITS}' or a sublayer path; {len(names)} in all, "
        f"the first three levels here): {', '.join(shallow)}"
    )


class FeatureTaps:
    """Keeps the outputs of named sublayers through forward post-hooks.

    Args:
        layers: The model's sublayers by path (``dict(model.named_sublayers())``).
        names: The paths to tap.
    """

    def __init__(self, layers: dict[str, nn.Layer], names: list[str]) -> None:
        self.outputs: dict[str, object] = {}
        for name in names:
            layers[name].register_forward_post_hook(self._keeper(name))

    def _keeper(self, name: str):
        def hook(layer, inputs, output):
            self.outputs[name] = output

        return hook

    def take(self) -> dict[str, object]:
        """Returns and forgets the outputs of the last forward pass."""
        outputs, self.outputs = self.outputs, {}
        return outputs


def _as_tensor(value, name: str, where: str) -> paddle.Tensor:
    if isinstance(value, list | tuple) and len(value) == 1:
        value = value[0]
    if isinstance(value, list | tuple):
        raise ConfigError(
            f"{where}: {name!r} returns {len(value)} tensors; name one of its sublayers instead"
        )
    if not isinstance(value, paddle.Tensor):
        raise ConfigError(f"{where}: {name!r} returns {type(value).__name__}, not a tensor")
    return value


class Distiller(nn.Layer):
    """The trained side of a distillation run: the student plus the loss adapters.

    The teacher is held in a tuple, so it is neither a sublayer nor in ``parameters()``
    or ``state_dict()``: the optimizer never sees it and checkpoints never store it. Only
    ``criterion`` (PaddleSlim's ``CombinedLoss``, holding NFD's 1x1 convs) is saved beside
    the student, as ``distill.pdparams``.

    Args:
        student: The model being trained.
        teacher: A frozen model (:func:`build_teacher`).
        spec: The parsed ``distill:`` section.
    """

    def __init__(self, student: nn.Layer, teacher: nn.Layer, spec: DistillSpec) -> None:
        super().__init__()
        self.student = student
        self._frozen = (teacher,)
        self.spec = spec
        models = {"student": student, "teacher": teacher}
        layers = {side: dict(model.named_sublayers()) for side, model in models.items()}
        for i, term in enumerate(spec.terms):
            for side, model in models.items():
                name = getattr(term, side)
                if name != LOGITS and name not in layers[side]:
                    where = f"distill.losses.{i}.{side}"
                    raise ConfigError(_unknown_layer_message(model, name, where))
        self._taps = {}
        for side in models:
            names = sorted({getattr(term, side) for term in spec.terms} - {LOGITS})
            self._taps[side] = FeatureTaps(layers[side], names)
        channels = self._probe_channels()
        configs = []
        for i, term in enumerate(spec.terms):
            config = {
                "model_name_pairs": [["student", "teacher"]],
                "layers_name": [term.student, term.teacher],
                "loss_function": term.type,
                "weight": term.weight,
                **term.params,
            }
            if term.type == "NFD":
                config["align_params"] = {
                    "align_type": "1x1conv",
                    "in_channel": channels["student"][i],
                    "out_channel": channels["teacher"][i],
                }
            configs.append(config)
        self.criterion = CombinedLoss(configs)
        self.teacher_seconds = 0.0

    @property
    def teacher(self) -> nn.Layer:
        return self._frozen[0]

    def _teacher_input(self, img: paddle.Tensor) -> paddle.Tensor:
        size = self.spec.teacher_input_size
        if size is None or [size[1], size[0]] == list(img.shape[2:]):
            return img
        return F.interpolate(img, size=[size[1], size[0]], mode="bilinear", align_corners=False)

    @paddle.no_grad()
    def _probe_channels(self) -> dict[str, list[int]]:
        """Runs both models once on a dummy batch; returns each term's tapped channels.

        The student runs in training mode (some layers run only there) and its state,
        BatchNorm statistics included, is restored afterwards.
        """
        img = paddle.zeros([2, 3, _PROBE_SIZE, _PROBE_SIZE])
        state = {key: value.clone() for key, value in self.student.state_dict().items()}
        was_training = self.student.training
        self.student.train()
        outputs = {"student": self.student(img), "teacher": self.teacher(self._teacher_input(img))}
        self.student.set_state_dict(state)
        self.student.train(was_training)
        channels: dict[str, list[int]] = {"student": [], "teacher": []}
        for side in ("student", "teacher"):
            tapped = self._taps[side].take()
            for i, term in enumerate(self.spec.terms):
                name = getattr(term, side)
                where = f"distill.losses.{i}.{side}"
                if name == LOGITS:
                    value = _as_tensor(outputs[side][0], LOGITS, where)
                    if side == "teacher" and not paddle.is_floating_point(value):
                        raise ConfigError(
                            f"{where}: the teacher returns labels, not logits, in eval mode "
                            "(model.upsample: vim); use upsample: bilinear in its config"
                        )
                elif name not in tapped:
                    raise ConfigError(f"{where}: {name!r} did not run in a forward pass")
                else:
                    value = _as_tensor(tapped[name], name, where)
                if value.ndim != 4:
                    raise ConfigError(
                        f"{where}: {name!r} has shape {value.shape}; (N, C, H, W) is needed"
                    )
                channels[side].append(value.shape[1])
        return channels

    def _named_tensors(self, side: str, outputs, label_size: list[int]) -> dict:
        tensors = {
            name: _as_tensor(value, name, side) for name, value in self._taps[side].take().items()
        }
        logits = _as_tensor(outputs, LOGITS, side)
        if list(logits.shape[2:]) != list(label_size):
            logits = F.interpolate(logits, size=label_size, mode="bilinear", align_corners=False)
        tensors[LOGITS] = logits
        return tensors

    def forward(
        self, img: paddle.Tensor, label_size: list[int]
    ) -> tuple[list[paddle.Tensor], dict[str, paddle.Tensor]]:
        """Args:
            img: Images of shape (N, 3, H, W).
            label_size: (H, W) of the labels; logits are compared at this size.

        Returns:
            The student's outputs, and each weighted loss term by its name (``cwd``, ...).
        """
        tic = time.perf_counter()
        with paddle.no_grad():
            teacher_out = self.teacher(self._teacher_input(img))
            teacher_tensors = self._named_tensors("teacher", teacher_out[0], label_size)
        self.teacher_seconds += time.perf_counter() - tic
        student_out = self.student(img)
        tensors = {
            "student": self._named_tensors("student", student_out[0], label_size),
            "teacher": teacher_tensors,
        }
        values = [v for key, v in self.criterion(tensors, None).items() if key != "loss"]
        return student_out, {term.name: v for term, v in zip(self.spec.terms, values, strict=True)}
