"""The symbolic shape check: values flow through the spec as shapes and dtypes, nothing is run.

Each layer and op declares beside its registration how its output follows
from its inputs (:mod:`modelfactory.registry.symbolic`); those without a rule
are run once on the meta device (:mod:`.fallback`). Along the way:

- size arguments left out (``in_features``, ...) are read from the incoming
  shape, following each layer type's ``shape_rule``;
- every layer's parameters and modules are counted (shared modules once) and
  every value's size is bounded, so a file cannot make the build allocate
  more than the budget;
- a mismatch is reported with the config path, the incoming shapes and what
  the layer expected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ..errors import ConfigProblem, LimitError, ModelFactoryError, ShapeError
from ..registry import LAYERS, OPS
from ..registry.symbolic import ShapeMismatch, TensorMeta, Unsupported, Value
from ..resolve import ResolvedSpec
from ..spec.nodes import CompositeNode, LayerNode
from ..spec.program import DISCARD, is_value_ref, kept
from ..spec.walk import children, fold, reference
from .fallback import args_key, layer_cost, meta_layer, run_on_meta
from .limits import Limits

__all__ = ["Evaluator", "shapes_of"]

Path = tuple[Any, ...]


def shapes_of(value: Value) -> list[list[int]]:
    """Every tensor shape in ``value``, flattened, as lists (for messages and results)."""
    if isinstance(value, TensorMeta):
        return [list(value.shape)]
    if isinstance(value, tuple):
        return [s for v in value for s in shapes_of(v)]
    return []


def _join(module_path: str, name: str) -> str:
    return f"{module_path}.{name}" if module_path else name


@dataclass(frozen=True)
class _Passed:
    """A keyword argument that passes a named value (``{value: mask}``), not a literal."""

    value: Value


def _shown(pattern: Any) -> Any:
    return [_shown(p) for p in pattern] if isinstance(pattern, tuple) else pattern


class Evaluator:
    """One walk of a resolved spec with symbolic values; raises located problems."""

    def __init__(self, resolved: ResolvedSpec, limits: Limits) -> None:
        self.resolved = resolved
        self.spec = resolved.spec
        self.limits = limits
        self.inferred: dict[Path, dict[str, int]] = {}
        self.completed: dict[Path, LayerNode] = {}  # layers whose sizes were inferred
        self.elements = 0  # parameter and buffer elements, each module once
        self.modules = 0
        self._counted: set[Any] = set()  # layer instances already counted
        self._named: set[tuple[Any, str]] = set()  # (instance, module path) pairs seen
        # tables.counts_of_rows's definitions, worked out without building
        self.counts = dict.fromkeys(
            ("unique", "total", "shared", "tied", "trainable_unique", "buffers"), 0
        )
        self._layers: dict[str, LayerNode] = {}  # module path -> layer (for ties)

    # ---------------------------------------------------------------- problems
    def fail(self, path: Path, message: str, kind: type = ShapeError) -> None:
        headline = {
            ShapeError: "shape check failed",
            LimitError: "refused: the model is over a size limit",
        }[kind]
        if "parameter budget" in message or "over the budget of" in message:
            headline = "refused: the model is over the parameter budget"
        raise kind(headline, [self.resolved.problem(path, message)])

    def bound(self, value: Value, path: Path, what: str) -> Value:
        """Refuse a value larger than the budget before anything would allocate it."""
        for shape in shapes_of(value):
            count = 1
            for size in shape:
                count *= size
            if count > self.limits.max_parameters:
                self.fail(
                    path,
                    f"{what} would be a tensor of shape {shape} ({count:,} elements), over the "
                    f"budget of {self.limits.max_parameters:,}; use smaller sizes, or raise "
                    "max_parameters",
                    LimitError,
                )
        return value

    # ---------------------------------------------------------------- nodes
    def node(
        self,
        node: Any,
        path: Path,
        where: str,
        inputs: tuple[Value, ...],
        kwargs: dict[str, Any] | None = None,
    ) -> Value:
        """The output of ``node`` (at config ``path``, module path ``where``) for ``inputs``.

        ``kwargs``: a call's keyword arguments (literals, or values passed by name).
        """
        found = reference(self.spec, node)
        if found is not None:
            (section, name), definition = found
            return self.node(definition, (section, name), where, inputs, kwargs)
        if isinstance(node, LayerNode):
            return self.layer(node, path, where, inputs, kwargs)
        if kwargs:
            self.fail(
                path,
                f"module '{where or '<root>'}' is a {type(node).__name__}: it takes its inputs "
                "through 'in', not keyword arguments",
            )
        if isinstance(node, CompositeNode):
            return self.composite(node, path, where, inputs)
        # lists, repeats and named sequentials: each child takes the previous output
        value: Value = inputs[0] if len(inputs) == 1 else inputs
        for child in children(node):
            for name in child.names or ():
                value = self.node(child.node, path + child.key, _join(where, name), (value,))
        return value

    def layer(
        self,
        node: LayerNode,
        path: Path,
        where: str,
        inputs: tuple[Value, ...],
        kwargs: dict[str, Any] | None = None,
    ) -> Value:
        node = self.complete(node, path, inputs)
        # a shared module is one module wherever it is used; anything else, one per instance
        self.count(node, path, path if path[0] == "shared" else where, where)
        entry = LAYERS.get(node.type)
        try:
            if entry.infer is None or kwargs:  # rules see positional inputs only
                raise Unsupported
            value = entry.infer(node.args, inputs)
        except ShapeMismatch as err:
            self.fail(path, self.layer_message(node, where, inputs, str(err)))
        except Exception:  # noqa: BLE001 - Unsupported, or a rule that cannot decide: run it
            key = args_key(node.type, node.args)
            layer = meta_layer(node.type, node.args)
            call: Any = layer
            if kwargs:
                literal = {k: v for k, v in kwargs.items() if not isinstance(v, _Passed)}
                passed = [(k, v.value) for k, v in kwargs.items() if isinstance(v, _Passed)]
                key += repr(sorted(literal.items(), key=str)) + repr([k for k, _ in passed])
                count = len(inputs)

                def call(*tensors: Any) -> Any:
                    named = dict(zip((k for k, _ in passed), tensors[count:], strict=True))
                    return layer(*tensors[:count], **literal, **named)

                inputs = inputs + tuple(v for _, v in passed)
            try:
                value = run_on_meta(key, call, inputs)
            except Exception as err:  # noqa: BLE001 - torch's own check, in its words
                text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                self.fail(path, self.layer_message(node, where, inputs, f"torch: {text}"))
        return self.bound(value, path, f"the output of {node.type} (module '{where}')")

    def layer_message(
        self, node: LayerNode, where: str, inputs: tuple[Value, ...], reason: str
    ) -> str:
        shapes = [s for v in inputs for s in shapes_of(v)]
        expected = ""
        for arg, dim in LAYERS.get(node.type).shape_rule.items():
            want = node.args.get(arg)
            if shapes and isinstance(want, int) and -len(shapes[0]) <= dim < len(shapes[0]):
                if shapes[0][dim] != want:
                    expected = f"; {node.type} expects input dim {dim} = {arg} = {want}, found {shapes[0][dim]}"
                    break
        detail = expected or f": {reason}"
        return (
            f"{node.type} (module '{where or '<root>'}') got input shape(s) {shapes}{detail}. "
            "Fix the layer's sizes or the input shape."
        )

    def complete(self, node: LayerNode, path: Path, inputs: tuple[Value, ...]) -> LayerNode:
        """``node`` with its omitted sizes read from the input (validated as a whole)."""
        missing = node.missing_inferable()
        if not missing:
            return node
        if path in self.completed:  # a shared module used again: sizes from its first use
            return self.completed[path]
        x = inputs[0] if inputs else None
        rule = LAYERS.get(node.type).shape_rule
        values: dict[str, int] = {}
        for arg in missing:
            dim = rule[arg]
            if not isinstance(x, TensorMeta) or not -x.ndim <= dim < x.ndim:
                found = list(x.shape) if isinstance(x, TensorMeta) else type(x).__name__
                self.fail(
                    path,
                    f"cannot infer {arg} for {node.type}: it is read from input dim {dim}, but "
                    f"the input has shape {found}",
                )
            values[arg] = x.shape[dim]
        try:
            done = LayerNode.model_validate({"type": node.type, **node.args, **values})
        except ValidationError as err:  # e.g. an inferred size of 0
            self.fail(path, f"inferred {values} for {node.type} is not valid: {err}")
        self.inferred[path] = values
        self.completed[path] = done
        return done

    def count(self, node: LayerNode, path: Path, instance: Any, where: str) -> None:
        """Add the layer's parameters and modules (once per module) and hold the limits."""
        try:
            cost = layer_cost(node.type, node.args)
        except Exception as err:  # noqa: BLE001 - torch's own argument checks, in its words
            call = ", ".join(f"{k}={v!r}" for k, v in node.args.items())
            raise ModelFactoryError(
                f"could not build layer {node.type}",
                [self.resolved.problem(path, f"{node.type}({call}) failed: {err}")],
            ) from None
        if (instance, where) in self._named:  # the same module called again: no new names
            return
        self._named.add((instance, where))
        if instance in self._counted:  # a shared module at another place: its names count again
            self.counts["total"] += cost.parameters
            self.counts["shared"] += cost.parameters
            return
        if isinstance(instance, str):
            self._layers[instance] = node
        self.counts["unique"] += cost.parameters
        self.counts["total"] += cost.parameters
        self.counts["trainable_unique"] += cost.trainable
        self.counts["buffers"] += cost.buffers
        self.add(instance, cost.elements, cost.modules, ("network",), node.type)

    def add(
        self, instance: Any, elements: int, modules: int, path: Path, what: str = "a constant"
    ) -> None:
        """Count one instance's tensors and modules; refuse past the budget or module limit."""
        self._counted.add(instance)
        self.elements += elements
        self.modules += modules
        if self.elements > self.limits.max_parameters:
            self.over_budget()
        if self.modules > self.limits.max_modules:
            self.fail(
                ("network",),
                f"expands to more than {self.limits.max_modules:,} modules (counting the "
                f"submodules each layer builds; reached at {what}); use fewer or smaller "
                "repeats, or raise max_modules",
                LimitError,
            )

    def over_budget(self) -> None:
        """Refuse the model, naming its whole count and largest layers (counted, never built)."""
        sizes: list[tuple[int, str]] = []
        unknown = 0

        def visit(node: Any, parts: list[tuple[int, int]]) -> int:
            nonlocal unknown
            own = 0
            if isinstance(node, LayerNode):
                if node.missing_inferable():
                    unknown += 1  # sizes not inferred yet: not counted
                else:
                    own = layer_cost(node.type, node.args).elements
                    sizes.append((own, node.type))
            elif isinstance(node, CompositeNode):
                tensors = [*node.constants.values(), *node.parameters.values()]
                own = sum(TensorMeta(t.concrete_shape() or ()).numel for t in tensors)
            return own + sum(copies * result for copies, result in parts)

        total = fold(self.spec, self.spec.network, visit)
        largest = ", ".join(f"{name} ({n:,})" for n, name in sorted(sizes, reverse=True)[:3])
        self.fail(
            ("network",),
            f"{'at least ' if unknown else ''}{max(total, self.elements):,} parameter and buffer "
            f"elements, over the budget of {self.limits.max_parameters:,} (largest: "
            f"{largest or 'constants'}); shrink the model, or raise the budget "
            "(max_parameters=..., modelfactory --max-parameters)",
            LimitError,
        )

    # ---------------------------------------------------------------- composites
    def composite(
        self, node: CompositeNode, path: Path, where: str, inputs: tuple[Value, ...]
    ) -> Value:
        if len(inputs) != len(node.inputs):
            self.fail(
                path, f"takes {len(node.inputs)} input(s) {list(node.inputs)}, got {len(inputs)}"
            )
        values: dict[str, Value] = dict(zip(node.inputs, inputs, strict=True))
        for section, tensors in (("parameter", node.parameters), ("constant", node.constants)):
            for name, tensor in tensors.items():
                values[name] = TensorMeta(tensor.concrete_shape() or (), tensor.dtype)
                key = (section, path if path[0] == "shared" else where, name)
                if key in self._counted:
                    continue
                numel = values[name].numel
                if section == "parameter":  # learned: trainable parameters of the composite
                    for count in ("unique", "total", "trainable_unique"):
                        self.counts[count] += numel
                else:
                    self.counts["buffers"] += numel
                self.add(key, numel, 0, path)
        current = node.inputs[0]
        assert node.forward is not None  # filled in by validation
        for index, step in enumerate(node.forward):
            step_path = path + ("forward", index)
            names = step.inputs if step.inputs is not None else (current,)
            args = tuple(values[n] for n in names)
            if step.call is not None:
                child_path = path + ("children", step.call)
                kwargs = {
                    k: _Passed(values[v["value"]]) if is_value_ref(v) else v
                    for k, v in step.kwargs.items()
                }
                result = self.node(
                    node.children[step.call], child_path, _join(where, step.call), args, kwargs
                )
            else:
                result = self.op(step.op, step.args, args, step_path)
            output = step.out if step.out is not None else f"%{index}"
            if isinstance(output, tuple) and len(output) == 1 and isinstance(output[0], str):
                output = output[0]
            if isinstance(output, str):
                if output != DISCARD:
                    values[output] = result
            else:
                self.unpack(output, result, values, step_path)
            kept_values = kept(step, index)
            current = kept_values[0] if len(kept_values) == 1 else ""
        outputs = node.resolved_outputs()
        if len(outputs) == 1:
            return values[outputs[0]]
        return tuple(values[name] for name in outputs)

    def unpack(
        self, pattern: tuple[Any, ...], result: Value, values: dict[str, Value], path: Path
    ) -> None:
        """Bind the names of an ``out`` pattern (nested, ``_`` drops) to the parts of ``result``."""
        if not isinstance(result, tuple) or len(result) != len(pattern):
            got = f"{len(result)} values" if isinstance(result, tuple) else "one tensor"
            shown = str(_shown(pattern))
            self.fail(
                path + ("out",),
                f"step unpacks {len(pattern)} values {shown}, got {got}; match 'out' to what "
                "the step returns (a list per tuple, '_' to drop)",
            )
        for part, value in zip(pattern, result, strict=True):
            if isinstance(part, str):
                if part != DISCARD:
                    values[part] = value
            else:
                self.unpack(part, value, values, path)

    def op(self, name: str, args: dict[str, Any], inputs: tuple[Value, ...], path: Path) -> Value:
        entry = OPS.get(name)
        try:
            if entry.infer is None:
                raise Unsupported
            value = entry.infer(args, inputs)
        except ShapeMismatch as err:
            self.fail(path, f"op '{name}' got input shapes {shapes_of(inputs)}: {err}")
        except Unsupported:

            def call(*tensors: Any) -> Any:
                return entry.target(*tensors, **args)

            try:
                value = run_on_meta(f"op:{name}:{sorted(args.items())!r}", call, inputs)
            except Exception as err:  # noqa: BLE001 - torch's own check, in its words
                text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                self.fail(path, f"op '{name}' got input shapes {shapes_of(inputs)}: {text}")
        return self.bound(value, path, f"the result of op '{name}'")

    def untie(self) -> None:
        """A tied parameter is the tensor it is tied to: count it once (as checkpoints store it)."""
        for target in self.spec.ties:
            module_path, _, name = target.rpartition(".")
            for owner, node in self._layers.items():
                if module_path == owner or module_path.startswith(owner + "."):
                    layer = meta_layer(node.type, node.args)
                    local = f"{module_path[len(owner) + 1 :]}.{name}".lstrip(".")
                    try:
                        numel = layer.get_parameter(local).numel()
                    except AttributeError:
                        break  # not a parameter: the build's tie check says so
                    self.elements -= numel
                    self.counts["unique"] -= numel
                    self.counts["tied"] += numel
                    if layer.get_parameter(local).requires_grad:
                        self.counts["trainable_unique"] -= numel
                    break

    def never_ran(self) -> list[ConfigProblem]:
        """Layers that leave a size to infer but no input ever reached."""
        problems = []
        stack = [(("network",), self.spec.network)]
        stack += [(("shared", k), v) for k, v in self.spec.shared.items()]
        while stack:
            path, node = stack.pop()
            if (
                isinstance(node, LayerNode)
                and node.missing_inferable()
                and path not in self.completed
            ):
                problems.append(
                    self.resolved.problem(
                        path,
                        f"{node.type} never ran in the dry run, so "
                        f"{', '.join(node.missing_inferable())} cannot be inferred; give it explicitly",
                    )
                )
            stack.extend((path + c.key, c.node) for c in children(node))
        return problems
