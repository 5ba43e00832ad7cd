"""Validation of a parsed config against the components it names, before anything is built.

PaddleSeg reports a misspelled component, an unknown argument or a value of the wrong type
only while it builds the component, often after the dataset has been read, as a multi-line
``RuntimeError``. :func:`validate` finds these problems from the registries and the
components' signatures alone (no model, dataset or weights is created) and raises a
one-line :class:`ConfigError` that starts with the key path:

    model.backbone.type: unknown backbone 'TopFormerBackbon'; closest: TopFormerBackbone
    model.backbone.dept: unexpected key for TopFormerBackbone; closest: depth
    model.backbone.depth: expected int, got 'three'

A component's accepted keys are the parameters of its class (or factory function). A
``**kwargs`` parameter opens the set, except where its keys can be traced: to the fields of
a dataclass named in another parameter's annotation (``preset: str | TopFormerCfg``), or to
the ``__init__`` of a base class it is passed on to. Values are checked against simple
annotations (``int``, ``float``, ``bool``, ``str``, lists, tuples, ``Literal`` and unions of
these with ``None``), or, without an annotation, against the kind of the default value.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import re
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Union

import paddle
import paddle.optimizer.lr as paddle_lr
from paddleseg.cvlibs import Config, manager
from paddleseg.cvlibs.config import _INHERIT_KEY

import paddleseg_ext  # noqa: F401  (registers our components before names are looked up)

from .config import ConfigError

# ------------------------------------------------------------------------------ registries


@dataclass(frozen=True, eq=False)
class Slot:
    """A place in the config that holds a component, and the registries it may come from.

    Attributes:
        label: What the component is called in messages ("backbone", "loss", ...).
        registries: ``{name: class or factory}`` mappings, searched in order.
        where: Where a user finds the accepted names.
    """

    label: str
    registries: tuple[Mapping[str, Callable], ...]
    where: str

    def names(self) -> list[str]:
        """Every name this slot accepts."""
        return sorted({name for registry in self.registries for name in registry})

    def find(self, name: str) -> Callable | None:
        """The class or factory registered as ``name``, or None."""
        for registry in self.registries:
            if name in registry:
                return registry[name]
        return None


def _lr_schedulers() -> dict[str, type]:
    """Paddle's learning-rate schedules by name: SegBuilder looks ``type`` up in
    ``paddle.optimizer.lr`` rather than in a PaddleSeg registry."""
    return {
        name: value
        for name, value in vars(paddle_lr).items()
        if inspect.isclass(value)
        and issubclass(value, paddle_lr.LRScheduler)
        and value is not paddle_lr.LRScheduler
    }


_MANAGERS = {
    "model": manager.MODELS,
    "backbone": manager.BACKBONES,
    "dataset": manager.DATASETS,
    "transform": manager.TRANSFORMS,
    "loss": manager.LOSSES,
    "optimizer": manager.OPTIMIZERS,
}


def _slot(label: str) -> Slot:
    registry = _MANAGERS[label]
    return Slot(
        label, (registry.components_dict,), f"paddleseg.cvlibs.manager.{registry._name.upper()}"
    )


MODEL = _slot("model")
BACKBONE = _slot("backbone")
DATASET = _slot("dataset")
TRANSFORM = _slot("transform")
LOSS = _slot("loss")
OPTIMIZER = _slot("optimizer")
LR_SCHEDULER = Slot("lr_scheduler", (_lr_schedulers(),), "paddle.optimizer.lr")
# Below a model, dataset or loss, SegBuilder builds any ``{type: ...}`` mapping from whichever
# registry knows the name, so an arbitrary nested key may hold any registered component.
ANY = Slot(
    "component",
    tuple(m.components_dict for m in _MANAGERS.values()),
    "paddleseg.cvlibs.manager",
)

# Keys SegBuilder fills in while building, which a config may therefore leave out.
_INJECTED = {
    "model": frozenset({"in_channels"}),  # from the dataset's IMG_CHANNELS
    "backbone": frozenset({"in_channels"}),
}
# Optimizer spellings SegBuilder rewrites before the registry lookup.
_OPTIMIZER_ALIASES = {"adam": "Adam", "sgd": "SGD"}


def _nested(parent: Slot, key: str) -> tuple[Slot, str | None]:
    """Where components under ``key`` of a ``parent`` component come from, and the shape the
    key's value must have: ``"one"`` mapping, a ``"list"`` of them, or None (not fixed)."""
    if parent in (MODEL, BACKBONE):
        if key == "backbone":
            return BACKBONE, "one"
        if key == "backbones":
            return BACKBONE, "list"
        if key == "model":
            return MODEL, "one"
    if parent is DATASET and "transforms" in key:
        return TRANSFORM, "list"
    if parent is LOSS and key == "losses":
        return LOSS, "list"
    return ANY, None


# ------------------------------------------------------------------------- value checks


@dataclass(frozen=True)
class Expect:
    """One acceptable form of a YAML value.

    Attributes:
        desc: How messages name it ("int", "list of float", "one of 'a', 'b'").
        test: Whether a value has this form.
        items: For lists, the acceptable forms of each element (None: not checked).
    """

    desc: str
    test: Callable[[object], bool]
    items: tuple[Expect, ...] | None = None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


INT = Expect("int", _is_int)
FLOAT = Expect("float", _is_number)  # an int is a valid float everywhere PaddleSeg reads one
BOOL = Expect("bool", lambda v: isinstance(v, bool))
STR = Expect("str", lambda v: isinstance(v, str))
DICT = Expect("mapping", lambda v: isinstance(v, dict))
NULL = Expect("null", lambda v: v is None)
COMPONENT = Expect("a {type: ...} mapping", lambda v: _is_component(v))
_SIMPLE = {int: INT, float: FLOAT, bool: BOOL, str: STR, dict: DICT, type(None): NULL}
_SEQUENCES = (list, tuple, Sequence, typing.Sequence)


def _sequence(items: tuple[Expect, ...] | None) -> Expect:
    desc = f"list of {' or '.join(e.desc for e in items)}" if items else "list"
    return Expect(desc, lambda v: isinstance(v, list | tuple), items)


def _literal(choices: tuple) -> Expect:
    # ``True == 1``: compare types too, so that a YAML 1 does not pass for a literal True.
    def test(value: object) -> bool:
        return any(value == c and type(value) is type(c) for c in choices)

    return Expect(f"one of {', '.join(repr(c) for c in choices)}", test)


def from_annotation(annotation: object) -> tuple[Expect, ...] | None:
    """The acceptable forms of a value annotated ``annotation``; None when not checkable."""
    if annotation is None:
        return (NULL,)
    if isinstance(annotation, type) and annotation in _SIMPLE:
        return (_SIMPLE[annotation],)
    if isinstance(annotation, type) and issubclass(annotation, paddle.nn.Layer):
        return (COMPONENT,)  # built from a nested {type: ...} mapping
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (Union, types.UnionType):
        forms: list[Expect] = []
        for arg in args:
            sub = from_annotation(arg)
            if sub is None:
                return None  # one uncheckable member makes the union uncheckable
            forms.extend(sub)
        return tuple(forms)
    if origin is Literal:
        return (_literal(args),)
    if annotation in _SEQUENCES or origin in _SEQUENCES:
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            args = args if len(set(args)) == 1 else ()  # (int, int) -> int; mixed: unchecked
        return (_sequence(from_annotation(args[0]) if args else None),)
    if origin is dict:
        return (DICT,)
    return None


def from_default(default: object) -> tuple[Expect, ...] | None:
    """The acceptable forms of a value whose parameter has ``default`` and no annotation.

    Unannotated stock components rarely distinguish ints from floats, and several of their
    string options also take a list (``LovaszSoftmaxLoss.classes``), so these checks only
    catch a value of the wrong kind: a word for a number, a number for a word, and so on.
    """
    if isinstance(default, bool):
        return (BOOL,)
    if isinstance(default, int | float):
        desc = "int" if isinstance(default, int) else "float"
        return (Expect(desc, _is_number),)
    if isinstance(default, str):
        return (Expect("str", lambda v: not isinstance(v, int | float)),)
    if isinstance(default, list | tuple):
        return (_sequence(None),)
    return None


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_value(value: object, forms: tuple[Expect, ...], path: str) -> None:
    """Raises a ConfigError naming ``path`` unless ``value`` has one of ``forms``."""
    for form in forms:
        if form.test(value):
            if form.items and isinstance(value, list | tuple):
                for i, item in enumerate(value):
                    check_value(item, form.items, f"{path}.{i}")
            return
    hint = ""
    exponent = re.fullmatch(r"([+-]?\d+)[eE]([+-]?\d+)", value) if isinstance(value, str) else None
    if exponent and any(f.desc == "float" for f in forms):
        # YAML 1.1 reads a float only with a decimal point: 1e-3 is the text '1e-3'.
        hint = f" (YAML reads {value} as text; write {exponent[1]}.0e{exponent[2]})"
    expected = " or ".join(f.desc for f in forms)
    raise ConfigError(f"{path}: expected {expected}, got {_show(value)}{hint}")


# ---------------------------------------------------------------------------- signatures


@dataclass(frozen=True)
class Param:
    """A key a component accepts: its value forms (None: unchecked) and whether it is
    required."""

    forms: tuple[Expect, ...] | None
    required: bool


@dataclass(frozen=True)
class Signature:
    """The keys a component accepts; ``open`` when it also takes keys it does not name."""

    params: dict[str, Param]
    open: bool


def _hints(func: Callable) -> dict[str, object]:
    """Resolved annotations of ``func``; those that cannot be resolved are left out.

    ``typing.get_type_hints`` fails as a whole when one annotation names something imported
    only for type checkers, so each is then resolved on its own.
    """
    try:
        return typing.get_type_hints(func)
    except Exception:  # whatever failed, resolve one annotation at a time below
        pass
    hints = {}
    namespace = getattr(func, "__globals__", None)
    if namespace is None:  # a class: its module's names
        module = sys.modules.get(getattr(func, "__module__", ""))
        namespace = vars(module) if module else {}
    for name, annotation in getattr(func, "__annotations__", {}).items():
        if isinstance(annotation, str):
            try:
                # The annotation is the defining module's own source text.
                annotation = eval(annotation, namespace)
            except Exception:  # unresolvable: the parameter goes unchecked
                continue
        hints[name] = annotation
    return hints


def _own_params(func: Callable, hints: Mapping[str, object]) -> tuple[dict[str, Param], bool]:
    """``(keys, takes **kwargs)`` from ``func``'s signature."""
    params = {}
    var_keyword = False
    for name, p in inspect.signature(func).parameters.items():
        if p.kind is p.VAR_KEYWORD:
            var_keyword = True
            continue
        if p.kind is p.VAR_POSITIONAL:
            continue
        forms = from_annotation(hints[name]) if name in hints else None
        if forms is None and p.default is not p.empty:
            forms = from_default(p.default)
        if forms is not None and p.default is None and NULL not in forms:
            forms = (*forms, NULL)
        params[name] = Param(forms, p.default is p.empty)
    return params, var_keyword


def _dataclasses_in(annotation: object) -> list[type]:
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        return [annotation]
    return [c for arg in typing.get_args(annotation) for c in _dataclasses_in(arg)]


def _dataclass_fields(cls: type) -> dict[str, Param]:
    hints = _hints(cls)
    return {
        f.name: Param(from_annotation(hints[f.name]) if f.name in hints else None, False)
        for f in dataclasses.fields(cls)
    }


def _base_params(cls: type) -> dict[str, Param] | None:
    """Keys that ``cls.__init__``'s ``**kwargs`` pass on to its bases' ``__init__``.

    None (any key) when the chain reaches Paddle's own classes, which would not accept
    extra keys: then ``cls`` consumes them itself in ways a signature does not show.
    """
    mro = [k for k in cls.__mro__ if "__init__" in vars(k)]
    found: dict[str, Param] = {}
    for base in mro[1:]:
        if base is object or base.__module__.split(".")[0] == "paddle":
            return None
        params, var_keyword = _own_params(base.__init__, _hints(base.__init__))
        for name, param in params.items():
            if name != "self":
                # Required base arguments are passed positionally by the subclass.
                found.setdefault(name, Param(param.forms, False))
        if not var_keyword:
            return found
    return None


@functools.cache
def signature(target: Callable) -> Signature:
    """The keys a registered class or factory accepts in a config."""
    hints = _hints(target.__init__ if inspect.isclass(target) else target)
    try:
        params, var_keyword = _own_params(target, hints)
    except (TypeError, ValueError):  # a builtin or C extension without a signature
        return Signature({}, True)
    if not var_keyword:
        return Signature(params, False)
    configs = [cls for annotation in hints.values() for cls in _dataclasses_in(annotation)]
    if configs:
        return Signature({**_dataclass_fields(configs[0]), **params}, False)
    extra = _base_params(target) if inspect.isclass(target) else None
    if extra is None:
        return Signature(params, True)
    return Signature({**extra, **params}, False)


# ----------------------------------------------------------------------------- the walk


def _is_component(value: object) -> bool:
    return isinstance(value, dict) and "type" in value


def _closest(word: str, names: Sequence[str], n: int = 3) -> list[str]:
    """Up to ``n`` of ``names`` that look like ``word``, ignoring case."""
    by_lower = {name.lower(): name for name in names}
    found = [by_lower[m] for m in difflib.get_close_matches(word.lower(), by_lower, n, 0.6)]
    if len(word) >= 3:
        found += [x for x in names if word.lower() in x.lower() and x not in found]
    return found[:n]


def _suggest(word: str, names: Sequence[str]) -> str:
    """``closest: ...`` of ``names`` like ``word``, else ``accepted: <all of names>``."""
    closest = _closest(str(word), names)
    return f"closest: {', '.join(closest)}" if closest else f"accepted: {', '.join(names)}"


def _unknown_name(name: str, path: str, slot: Slot) -> ConfigError:
    names = slot.names()
    closest = _closest(name, names)
    elsewhere = [label for label, reg in _MANAGERS.items() if name in reg.components_dict]
    head = f"{path}: unknown {slot.label} {name!r}"
    if elsewhere:
        head = f"{path}: {name!r} is a registered {elsewhere[0]}, not a {slot.label}"
    if closest:
        return ConfigError(f"{head}; closest: {', '.join(closest)}")
    if len(names) <= 20:
        return ConfigError(f"{head}; registered: {', '.join(names)}")
    return ConfigError(f"{head}; none of the {len(names)} registered is close (see {slot.where})")


def resolve(node: object, path: str, slot: Slot, alias: str | None = None) -> Callable:
    """The class or factory that the ``type`` of mapping ``node`` names in ``slot``.

    Args:
        node: The mapping from the config.
        path: Its key path, for messages.
        slot: Where it sits, which decides the registries its ``type`` may come from.
        alias: The name to look up instead of ``type`` (a spelling the builder rewrites).

    Raises:
        ConfigError: ``node`` is no mapping, or its ``type`` is missing or unknown.
    """
    if not isinstance(node, dict):
        raise ConfigError(f"{path}: expected a {{type: ...}} mapping, got {_show(node)}")
    if "type" not in node:
        raise ConfigError(f"{path}.type: missing (the {slot.label} name)")
    name = node["type"]
    if not isinstance(name, str):
        raise ConfigError(f"{path}.type: expected str, got {_show(name)}")
    target = slot.find(alias or name)
    if target is None:
        raise _unknown_name(name, f"{path}.type", slot)
    return target


def check_component(
    node: object,
    path: str,
    slot: Slot,
    *,
    injected: frozenset[str] = frozenset(),
    extra: Mapping[str, Param] | None = None,
    alias: str | None = None,
) -> None:
    """Checks one ``{type: ..., key: value}`` mapping and the components nested in it.

    Args:
        node: The mapping from the config.
        path: Its key path, for messages.
        slot: Where it sits, which decides the registries its ``type`` may come from.
        injected: Required keys that the builder fills in.
        extra: Keys the builder consumes itself, besides the component's parameters.
        alias: The name to look up instead of ``type`` (a spelling the builder rewrites).

    Raises:
        ConfigError: The first problem found, one line starting with its key path.
    """
    target = resolve(node, path, slot, alias)
    owner = alias or node["type"]
    sig = signature(target)
    accepted = dict(sig.params)
    for key, param in (extra or {}).items():
        accepted.setdefault(key, param)
    injected = injected | _INJECTED.get(slot.label, frozenset())
    for key, value in node.items():
        if key == "type":
            continue
        sub = f"{path}.{key}"
        param = accepted.get(key)
        if param is None and not sig.open:
            raise ConfigError(f"{sub}: unexpected key for {owner}; {_suggest(key, list(accepted))}")
        child, shape = _nested(slot, key)
        if value is not None and shape == "one" and not _is_component(value):
            raise ConfigError(
                f"{sub}: expected a {{type: ...}} {child.label} mapping, got {_show(value)}"
            )
        if value is not None and shape == "list":
            _check_component_list(value, sub, child)
        elif _is_component(value):
            check_component(value, sub, child)
        elif isinstance(value, list) and any(_is_component(v) for v in value):
            for i, item in enumerate(value):
                if _is_component(item):
                    check_component(item, f"{sub}.{i}", child)
        elif param is not None and param.forms is not None:
            check_value(value, param.forms, sub)
    for key, param in accepted.items():
        if param.required and key not in node and key not in injected:
            raise ConfigError(f"{path}.{key}: missing, required by {owner}")
    if slot is LOSS:
        _check_coef(node, path, "losses")


def _check_component_list(value: object, path: str, slot: Slot, *, empty: bool = True) -> None:
    """A key that holds components of ``slot`` (``transforms``, ``loss.types``): a list of
    ``{type: ...}`` mappings, which may be ``empty`` or not."""
    if not isinstance(value, list) or not (value or empty):
        kind = "list" if empty else "non-empty list"
        raise ConfigError(
            f"{path}: expected a {kind} of {{type: ...}} {slot.label} mappings, got {_show(value)}"
        )
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise ConfigError(
                f"{path}.{i}: expected a {{type: ...}} {slot.label} mapping, got {_show(item)}"
            )
        check_component(item, f"{path}.{i}", slot)


def _check_coef(node: Mapping[str, Any], path: str, terms_key: str) -> None:
    """``coef``, one weight per term of ``terms_key`` (a MixedLoss, or ``loss`` itself, where
    a single type may serve every coefficient)."""
    terms, coef = node.get(terms_key), node.get("coef")
    if not isinstance(terms, list) or "coef" not in node:
        return
    check_value(coef, (_sequence((FLOAT,)),), f"{path}.coef")
    if len(coef) != len(terms) and not (terms_key == "types" and len(terms) == 1):
        raise ConfigError(
            f"{path}.coef: {len(coef)} coefficient(s) for {len(terms)} {terms_key}; give one "
            f"per entry of {path}.{terms_key}"
            + (" (or a single type for all)" if terms_key == "types" else "")
        )


# ---------------------------------------------------------------------------- sections


def _check_positive_int(cfg: Mapping[str, Any], key: str) -> None:
    if key in cfg and not (_is_int(cfg[key]) and cfg[key] > 0):
        raise ConfigError(f"{key}: expected a positive int, got {_show(cfg[key])}")


def _check_loss(cfg: Mapping[str, Any], key: str) -> None:
    """``loss`` (or ``distill_loss``): ``types``, a list of losses, weighted by ``coef``."""
    section = cfg[key]
    if not isinstance(section, dict):
        raise ConfigError(f"{key}: expected a mapping with types and coef, got {_show(section)}")
    for name in section:
        if name not in ("types", "coef"):
            raise ConfigError(f"{key}.{name}: unexpected key; {_suggest(name, ['types', 'coef'])}")
    for name in ("types", "coef"):
        if name not in section:
            raise ConfigError(f"{key}.{name}: missing (loss types and one weight per type)")
    _check_component_list(section["types"], f"{key}.types", LOSS, empty=False)
    _check_coef(section, key, "types")


def _check_optimizer(node: object) -> None:
    """SegBuilder rewrites ``adam``/``sgd`` and turns an SGD with ``momentum`` into Momentum;
    PaddleSeg's optimizers assert that ``weight_decay`` is a float (``0`` fails)."""
    if not isinstance(node, dict):
        check_component(node, "optimizer", OPTIMIZER)
        return
    name = node.get("type")
    alias = _OPTIMIZER_ALIASES.get(name, name) if isinstance(name, str) else None
    if alias == "SGD" and "momentum" in node:
        alias = "Momentum"
    check_component(node, "optimizer", OPTIMIZER, alias=alias)
    weight_decay = node.get("weight_decay")
    if weight_decay is not None and not isinstance(weight_decay, float):
        hint = f" (write {float(weight_decay)})" if _is_number(weight_decay) else ""
        raise ConfigError(
            f"optimizer.weight_decay: expected float, got {_show(weight_decay)}{hint}"
        )


# SegBuilder pops these from ``lr_scheduler`` to wrap the schedule in a LinearWarmup.
_WARMUP = {
    "warmup_iters": Param((INT,), False),
    "warmup_start_lr": Param((FLOAT,), False),
}


def _check_lr_scheduler(node: object, iters_known: bool) -> None:
    """A ``paddle.optimizer.lr`` schedule; SegBuilder takes ``warmup_iters`` and
    ``warmup_start_lr`` for a linear warm-up and sets PolynomialDecay's ``decay_steps`` from
    ``iters``, as ``config.load_config`` does for CosineAnnealingDecay's ``T_max``."""
    injected = frozenset({"decay_steps", "T_max"}) if iters_known else frozenset()
    check_component(node, "lr_scheduler", LR_SCHEDULER, injected=injected, extra=_WARMUP)
    if "warmup_iters" in node and "warmup_start_lr" not in node:
        raise ConfigError("lr_scheduler.warmup_start_lr: missing, required with warmup_iters")


def _model_num_classes_injected(cfg: Mapping[str, Any]) -> bool:
    """Whether the builder gives the model its ``num_classes`` from ``train_dataset``.

    A registered dataset class supplies ``NUM_CLASSES`` (which must then agree with the
    model's); the generic ``Dataset`` passes on its own ``num_classes`` entry.
    """
    dataset = cfg.get("train_dataset")
    if not isinstance(dataset, dict) or not isinstance(dataset.get("type"), str):
        return False
    if dataset["type"] == "Dataset":
        return "num_classes" in dataset
    num_classes = getattr(DATASET.find(dataset["type"]), "NUM_CLASSES", None)
    if num_classes is None:
        return False
    model = cfg.get("model")
    given = model.get("num_classes") if isinstance(model, dict) else None
    if given is not None and given != num_classes:
        raise ConfigError(
            f"model.num_classes: {_show(given)} does not match the {num_classes} classes of "
            f"train_dataset type {dataset['type']}"
        )
    return True


# ------------------------------------------------------------------------------ sections


def _paddleseg_sections() -> frozenset[str]:
    """The top-level keys PaddleSeg's ``Config`` reads, found by reading each of its
    properties on a config whose dict records the keys asked for."""

    class Recorder(dict):
        def __init__(self) -> None:
            super().__init__()
            self.read: set[str] = set()

        def get(self, key, default=None):
            self.read.add(key)
            return default

        def __getitem__(self, key):
            self.read.add(key)
            raise KeyError(key)

    probe = Config.__new__(Config)
    probe.dic = Recorder()
    for name, attr in vars(Config).items():
        if isinstance(attr, property):
            try:
                getattr(probe, name)
            except Exception:  # noqa: BLE001  (a property that needs more than the dict)
                pass
    return frozenset(probe.dic.read)


# Top-level sections besides PaddleSeg's own: ours, and ``export`` (``transforms`` of stock
# configs, read by PaddleSeg's source-tree export tool).
OWN_SECTIONS = ("distill", "postprocess", "class_names", "test_dataset", "export")
SECTIONS = _paddleseg_sections() | {_INHERIT_KEY} | frozenset(OWN_SECTIONS)
POSTPROCESS_PARAMS = {"stats": (STR,), "factor": (FLOAT,), "background": (INT,)}


def _check_sections(cfg: Mapping[str, Any]) -> None:
    for key in cfg:
        if key not in SECTIONS:
            raise ConfigError(
                f"{key}: unknown top-level section; {_suggest(key, sorted(SECTIONS))}"
            )


def check_postprocess(section: object) -> None:
    """Checks a ``postprocess:`` section's keys and value types (not the statistics file,
    which ``--postprocess FILE`` may give instead)."""
    if not isinstance(section, dict):
        raise ConfigError("postprocess: expected a mapping with stats, factor, background")
    for key, value in section.items():
        if key not in POSTPROCESS_PARAMS:
            hint = _suggest(key, list(POSTPROCESS_PARAMS))
            raise ConfigError(f"postprocess.{key}: unexpected key; {hint}")
        check_value(value, POSTPROCESS_PARAMS[key], f"postprocess.{key}")


def validate(cfg: Mapping[str, Any], task: str = "train") -> None:
    """Checks a parsed config (``Config.dic``) for what ``task`` builds, building nothing.

    Every task checks the top-level section names (a misspelled section would otherwise be
    ignored) and the ``postprocess:`` section. Training checks every section, ``distill:``
    included. The other tasks (``val``, ``predict``, ``model``) build no optimizer,
    schedule, loss or teacher: they check the model and the evaluation datasets, and only
    the type of ``train_dataset``, which the builder reads to size the model.

    Raises:
        ConfigError: The first problem found, one line starting with its key path.
    """
    _check_sections(cfg)
    if cfg.get("postprocess") is not None:
        check_postprocess(cfg["postprocess"])
    train = task == "train"
    if train:
        _check_positive_int(cfg, "batch_size")
        _check_positive_int(cfg, "iters")
    for split in ("train_dataset", "val_dataset", "test_dataset"):
        node = cfg.get(split)
        if node is None:
            continue
        if train or split != "train_dataset":
            check_component(node, split, DATASET)
        else:
            resolve(node, split, DATASET)
    if cfg.get("model") is not None:
        injected = frozenset({"num_classes"}) if _model_num_classes_injected(cfg) else frozenset()
        check_component(cfg["model"], "model", MODEL, injected=injected)
    if not train:
        return
    for key in ("loss", "distill_loss"):
        if cfg.get(key) is not None:
            _check_loss(cfg, key)
    if cfg.get("optimizer") is not None:
        _check_optimizer(cfg["optimizer"])
    if cfg.get("lr_scheduler") is not None:
        _check_lr_scheduler(cfg["lr_scheduler"], "iters" in cfg)
    if "distill" in cfg:
        from .distill.distiller import parse_distill  # noqa: PLC0415  (imports PaddleSlim)

        parse_distill(cfg["distill"], check_files=False)  # load_config checks the files
