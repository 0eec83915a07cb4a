"""Recurrent layers, attention and transformer layers: their symbolic shape rules (see :mod:`modelfactory.registry.symbolic`)."""

from __future__ import annotations

from ..symbolic import ShapeMismatch, TensorMeta, Unsupported
from .common import (
    _REQUIRED,
    LAYER_RULES,
    Any,
    Mapping,
    _Args,
    _dims,
    _fmt,
    _inputs,
    _like,
    _param_dtype,
    _tensor,
    rule,
)

# =========================================================================== recurrent


def _rnn_config(layer: str, a: _Args, x: TensorMeta) -> tuple[int, int, int, int, int]:
    input_size = a.infer("input_size", x.shape[-1] if x.ndim else 0)
    hidden = a.int("hidden_size")
    layers = a.int("num_layers", 1)
    proj = a.int("proj_size", 0)
    dropout = a.number("dropout", 0.0)
    if not 0 <= dropout <= 1:
        raise ShapeMismatch(f"dropout must be in [0, 1], got {dropout}")
    if input_size <= 0:
        raise ShapeMismatch(f"input_size must be positive, got {input_size}")
    if hidden <= 0:
        raise ShapeMismatch(f"hidden_size must be positive, got {hidden}")
    if layers <= 0:
        raise ShapeMismatch(f"num_layers must be positive, got {layers}")
    if layer != "LSTM" and proj:
        raise ShapeMismatch(f"proj_size is only supported for LSTM, not {layer}")
    if proj < 0:
        raise ShapeMismatch(f"proj_size must not be negative, got {proj}")
    if proj >= hidden:
        raise ShapeMismatch(f"proj_size ({proj}) must be smaller than hidden_size ({hidden})")
    if layer == "RNN" and a.get("nonlinearity", "tanh") not in ("tanh", "relu"):
        raise ShapeMismatch(f"nonlinearity must be 'tanh' or 'relu', got {a.get('nonlinearity')!r}")
    directions = 2 if a.flag("bidirectional", False) else 1
    return input_size, hidden, layers, proj, directions


def _check_hidden(h: TensorMeta, want: tuple[int, ...], what: str, x: TensorMeta) -> None:
    if h.shape != want:
        raise ShapeMismatch(f"expects {what} of shape {_fmt(want)}, found {_fmt(h.shape)}")
    if h.dtype != x.dtype:
        raise ShapeMismatch(f"expects {what} of the input's dtype {x.dtype}, found {h.dtype}")


@rule("RNN", "GRU", "LSTM")
def rnn(layer, a, inputs):
    """(L, N, H_in) [batch_first: (N, L, H_in)] or unbatched (L, H_in) ->
    (output, h_n) or, for LSTM, (output, (h_n, c_n))."""
    x, hx = _inputs(inputs, ("input", "hx"), 1)
    x = _tensor(x)
    input_size, hidden, layers, proj, directions = _rnn_config(layer, a, x)
    batched = _dims(x, (2, 3))
    _param_dtype(a, x)
    if x.shape[-1] != input_size:
        raise ShapeMismatch(
            f"expects input dim -1 = input_size = {input_size}, found {x.shape[-1]}"
        )
    batch_first = a.flag("batch_first", False)
    h_out = proj or hidden
    if batched:
        batch = x.shape[0] if batch_first else x.shape[1]
        h_shape = (layers * directions, batch, h_out)
        c_shape = (layers * directions, batch, hidden)
        out = x.shape[:2] + (directions * h_out,)
    else:
        h_shape = (layers * directions, h_out)
        c_shape = (layers * directions, hidden)
        out = (x.shape[0], directions * h_out)
    rank = len(h_shape)
    if hx is not None:
        if layer == "LSTM":
            if not (isinstance(hx, tuple) and len(hx) == 2):
                raise ShapeMismatch("expects hx to be a tuple (h_0, c_0)")
            h0, c0 = _tensor(hx[0], "h_0"), _tensor(hx[1], "c_0")
            if h0.ndim != rank or c0.ndim != rank:
                raise ShapeMismatch(
                    f"expects {rank}-D h_0 and c_0 with a {x.ndim}-D input, found {h0.ndim}-D and {c0.ndim}-D"
                )
            _check_hidden(h0, h_shape, "h_0", x)
            _check_hidden(c0, c_shape, "c_0", x)
        else:
            h0 = _tensor(hx, "hx")
            if h0.ndim != rank:
                raise ShapeMismatch(
                    f"expects a {rank}-D hx with a {x.ndim}-D input, found {h0.ndim}-D"
                )
            _check_hidden(h0, h_shape, "hx", x)
    output = _like(x, out)
    h_n = _like(x, h_shape)
    if layer == "LSTM":
        return output, (h_n, _like(x, c_shape))
    return output, h_n


@rule("RNNCell", "GRUCell", "LSTMCell")
def rnn_cell(layer, a, inputs):
    """(N, input_size) or (input_size,) -> h' (N, hidden_size); LSTMCell -> (h', c')."""
    x, hx = _inputs(inputs, ("input", "hx"), 1)
    x = _tensor(x)
    hidden = a.int("hidden_size")
    if layer == "RNNCell" and a.get("nonlinearity", "tanh") not in ("tanh", "relu"):
        raise ShapeMismatch(f"nonlinearity must be 'tanh' or 'relu', got {a.get('nonlinearity')!r}")
    batched = _dims(x, (1, 2))
    input_size = a.infer("input_size", x.shape[-1])
    _param_dtype(a, x)
    if x.shape[-1] != input_size:
        raise ShapeMismatch(
            f"expects input dim -1 = input_size = {input_size}, found {x.shape[-1]}"
        )
    batch = x.shape[0] if batched else 1
    states = ()
    if hx is not None:
        if layer == "LSTMCell":
            if not (isinstance(hx, tuple) and len(hx) == 2):
                raise ShapeMismatch("expects hx to be a tuple (h_0, c_0)")
            states = (("h_0", _tensor(hx[0], "h_0")), ("c_0", _tensor(hx[1], "c_0")))
        else:
            states = (("hx", _tensor(hx, "hx")),)
    want = (batch, hidden) if batched else (hidden,)
    for what, h in states:
        if h.ndim not in (1, 2):
            raise ShapeMismatch(f"expects a 1-D or 2-D {what}, found {h.ndim}-D")
        if h.shape != want:
            raise ShapeMismatch(
                f"expects {what} of shape {_fmt(want)} (batch, hidden_size), found {_fmt(h.shape)}"
            )
        if h.dtype != x.dtype:
            raise ShapeMismatch(f"expects {what} of the input's dtype {x.dtype}, found {h.dtype}")
    out = _like(x, ((x.shape[0],) if batched else ()) + (hidden,))
    return (out, out) if layer == "LSTMCell" else out


# =========================================================================== attention / transformer


def _mha(
    a: _Args,
    query: TensorMeta,
    key: TensorMeta,
    value: TensorMeta,
    *,
    embed_dim: int,
    num_heads: int,
    kdim: int,
    vdim: int,
    batch_first: bool,
    extra_kv: int = 0,
) -> tuple[TensorMeta, int]:
    """The shared checks of multi-head attention; returns (attn_output, source length)."""
    if embed_dim <= 0 or num_heads <= 0:
        raise ShapeMismatch(
            f"embed_dim and num_heads must be positive, got {embed_dim} and {num_heads}"
        )
    if embed_dim % num_heads:
        raise ShapeMismatch(f"embed_dim = {embed_dim} must be divisible by num_heads = {num_heads}")
    if query.ndim not in (2, 3):
        raise ShapeMismatch(
            f"expects query to be 2-D (unbatched) or 3-D (batched), found {query.ndim}-D"
        )
    if key.ndim != query.ndim or value.ndim != query.ndim:
        raise ShapeMismatch(
            f"expects key and value to be {query.ndim}-D like query, found {key.ndim}-D and {value.ndim}-D"
        )
    for t, what in ((query, "query"), (key, "key"), (value, "value")):
        _param_dtype(a, t, what)
    batched = query.ndim == 3
    seq, bat = (1, 0) if batch_first and batched else (0, 1)
    if query.shape[-1] != embed_dim:
        raise ShapeMismatch(
            f"expects query dim -1 = embed_dim = {embed_dim}, found {query.shape[-1]}"
        )
    same = kdim == embed_dim and vdim == embed_dim
    if same:
        if key.shape != value.shape:
            raise ShapeMismatch(
                f"expects key and value of the same shape, found {_fmt(key.shape)} and {_fmt(value.shape)}"
            )
    elif key.shape[:-1] != value.shape[:-1]:
        raise ShapeMismatch(
            f"expects key and value to agree on sequence and batch dims, found {_fmt(key.shape)} and {_fmt(value.shape)}"
        )
    if key.shape[-1] != kdim:
        raise ShapeMismatch(f"expects key dim -1 = kdim = {kdim}, found {key.shape[-1]}")
    if value.shape[-1] != vdim:
        raise ShapeMismatch(f"expects value dim -1 = vdim = {vdim}, found {value.shape[-1]}")
    if batched and key.shape[bat] != query.shape[bat]:
        raise ShapeMismatch(
            f"expects key batch size (dim {bat}) = query's = {query.shape[bat]}, found {key.shape[bat]}"
        )
    return _like(query, query.shape[:-1] + (embed_dim,)), key.shape[seq] + extra_kv


@rule("MultiheadAttention")
def multihead_attention(layer, a, inputs):
    """(query, key, value) -> (attn_output, attn_weights or None).

    attn_weights: (N, L, S) averaged over heads, (N, num_heads, L, S) with
    average_attn_weights=False, without N for unbatched inputs. need_weights and
    average_attn_weights are forward arguments, read from args here.
    """
    q, k, v, key_padding_mask = _inputs(inputs, ("query", "key", "value", "key_padding_mask"), 3)
    if key_padding_mask is not None:
        raise Unsupported("a key_padding_mask input")
    q, k, v = _tensor(q, "query"), _tensor(k, "key"), _tensor(v, "value")
    embed_dim, heads = a.int("embed_dim"), a.int("num_heads")
    kdim = a.int("kdim") if a.given("kdim") else embed_dim
    vdim = a.int("vdim") if a.given("vdim") else embed_dim
    batch_first = a.flag("batch_first", False)
    extra = (1 if a.flag("add_bias_kv", False) else 0) + (
        1 if a.flag("add_zero_attn", False) else 0
    )
    out, source = _mha(
        a,
        q,
        k,
        v,
        embed_dim=embed_dim,
        num_heads=heads,
        kdim=kdim,
        vdim=vdim,
        batch_first=batch_first,
        extra_kv=extra,
    )
    if not a.flag("need_weights", True):
        return out, None
    batched = q.ndim == 3
    target = q.shape[1] if batch_first and batched else q.shape[0]
    lead = ((q.shape[0] if batch_first else q.shape[1]),) if batched else ()
    heads_dim = () if a.flag("average_attn_weights", True) else (heads,)
    return out, TensorMeta(lead + heads_dim + (target, source), q.dtype)


def _transformer_args(a: _Args) -> tuple[int, int, bool]:
    """d_model, nhead and batch_first (Transformer defaults d_model 512, nhead 8; its layers require them)."""
    whole = a.layer == "Transformer"
    d_model = a.int("d_model", 512 if whole else _REQUIRED)
    nhead = a.int("nhead", 8 if whole else _REQUIRED)
    activation = a.get("activation", "relu")
    if not isinstance(activation, str):
        raise Unsupported("a non-string activation")
    if activation not in ("relu", "gelu"):
        raise ShapeMismatch(f"activation must be 'relu' or 'gelu', got {activation!r}")
    a.int("dim_feedforward", 2048)
    return d_model, nhead, a.flag("batch_first", False)


def _no_masks(rest: list[Any]) -> None:
    if any(m is not None for m in rest):
        raise Unsupported("mask inputs")


def _self_attention(
    a: _Args, x: TensorMeta, d_model: int, nhead: int, batch_first: bool, what: str
) -> TensorMeta:
    if x.ndim not in (2, 3):
        raise ShapeMismatch(
            f"expects {what} to be 2-D (unbatched) or 3-D (batched), found {x.ndim}-D"
        )
    if x.shape[-1] != d_model:
        raise ShapeMismatch(f"expects {what} dim -1 = d_model = {d_model}, found {x.shape[-1]}")
    out, _ = _mha(
        a,
        x,
        x,
        x,
        embed_dim=d_model,
        num_heads=nhead,
        kdim=d_model,
        vdim=d_model,
        batch_first=batch_first,
    )
    return out


@rule("TransformerEncoderLayer")
def transformer_encoder_layer(layer, a, inputs):
    """src (S, N, E) / (N, S, E) / (S, E) -> same shape."""
    src, *rest = _inputs(inputs, ("src", "src_mask", "src_key_padding_mask"), 1)
    _no_masks(rest)
    d_model, nhead, batch_first = _transformer_args(a)
    return _self_attention(a, _tensor(src, "src"), d_model, nhead, batch_first, "src")


@rule("TransformerDecoderLayer")
def transformer_decoder_layer(layer, a, inputs):
    """(tgt (T, N, E), memory (S, N, E)) -> tgt's shape."""
    tgt, memory, *rest = _inputs(inputs, ("tgt", "memory", "tgt_mask", "memory_mask"), 2)
    _no_masks(rest)
    d_model, nhead, batch_first = _transformer_args(a)
    tgt, memory = _tensor(tgt, "tgt"), _tensor(memory, "memory")
    out = _self_attention(a, tgt, d_model, nhead, batch_first, "tgt")
    if memory.ndim != tgt.ndim:
        raise ShapeMismatch(f"expects memory to be {tgt.ndim}-D like tgt, found {memory.ndim}-D")
    if memory.shape[-1] != d_model:
        raise ShapeMismatch(
            f"expects memory dim -1 = d_model = {d_model}, found {memory.shape[-1]}"
        )
    _mha(
        a,
        out,
        memory,
        memory,
        embed_dim=d_model,
        num_heads=nhead,
        kdim=d_model,
        vdim=d_model,
        batch_first=batch_first,
    )
    return out


def _nested(a: _Args, name: str, default_type: str) -> tuple[str, dict[str, Any]]:
    spec = a.get(name)
    if not isinstance(spec, Mapping):
        raise Unsupported(
            f"{name} given as {type(spec).__name__}, not a {{type: ..., **args}} mapping"
        )
    spec = dict(spec)
    kind = spec.pop("type", default_type)
    if kind not in LAYER_RULES:
        raise Unsupported(f"no rule for {name} type {kind!r}")
    return kind, spec


def _apply_norm(a: _Args, x: TensorMeta) -> TensorMeta:
    if a.get("norm", None) is None:
        return x
    kind, spec = _nested(a, "norm", "LayerNorm")
    return LAYER_RULES[kind](spec, (x,))


@rule("TransformerEncoder")
def transformer_encoder(layer, a, inputs):
    """Applies encoder_layer ({type: TransformerEncoderLayer, ...}) num_layers times, then norm."""
    src, *rest = _inputs(inputs, ("src", "mask", "src_key_padding_mask"), 1)
    _no_masks(rest)
    kind, spec = _nested(a, "encoder_layer", "TransformerEncoderLayer")
    layers = a.int("num_layers")
    if layers < 1:
        raise ShapeMismatch(f"num_layers must be at least 1, got {layers}")
    x = _tensor(src, "src")
    for _ in range(max(layers, 0)):
        x = LAYER_RULES[kind](spec, (x,))
    return _apply_norm(a, x)


@rule("TransformerDecoder")
def transformer_decoder(layer, a, inputs):
    """Applies decoder_layer ({type: TransformerDecoderLayer, ...}) num_layers times to (tgt, memory), then norm."""
    tgt, memory, *rest = _inputs(inputs, ("tgt", "memory", "tgt_mask", "memory_mask"), 2)
    _no_masks(rest)
    kind, spec = _nested(a, "decoder_layer", "TransformerDecoderLayer")
    layers = a.int("num_layers")
    if layers < 1:
        raise ShapeMismatch(f"num_layers must be at least 1, got {layers}")
    x, memory = _tensor(tgt, "tgt"), _tensor(memory, "memory")
    for _ in range(max(layers, 0)):
        x = LAYER_RULES[kind](spec, (x, memory))
    return _apply_norm(a, x)


@rule("Transformer")
def transformer(layer, a, inputs):
    """(src (S, N, E), tgt (T, N, E)) -> tgt's shape (encoder, then decoder, each ending in a LayerNorm)."""
    src, tgt, *rest = _inputs(inputs, ("src", "tgt", "src_mask", "tgt_mask", "memory_mask"), 2)
    _no_masks(rest)
    if a.given("custom_encoder") or a.given("custom_decoder"):
        raise Unsupported("custom_encoder / custom_decoder")
    d_model, nhead, batch_first = _transformer_args(a)
    encoders, decoders = a.int("num_encoder_layers", 6), a.int("num_decoder_layers", 6)
    if encoders < 1 or decoders < 1:
        raise ShapeMismatch(
            f"num_encoder_layers and num_decoder_layers must be at least 1, got {encoders} and {decoders}"
        )
    if nhead <= 0 or d_model % nhead:
        raise ShapeMismatch(f"d_model = {d_model} must be divisible by nhead = {nhead}")
    src, tgt = _tensor(src, "src"), _tensor(tgt, "tgt")
    if src.ndim == 3:
        b = 0 if batch_first else 1
        if tgt.ndim <= b or src.shape[b] != tgt.shape[b]:
            raise ShapeMismatch(
                f"expects src and tgt of the same batch size (dim {b}), found {_fmt(src.shape)} and {_fmt(tgt.shape)}"
            )
    if src.ndim == 0 or tgt.ndim == 0 or src.shape[-1] != d_model or tgt.shape[-1] != d_model:
        raise ShapeMismatch(
            f"expects src and tgt dim -1 = d_model = {d_model}, found {_fmt(src.shape)} and {_fmt(tgt.shape)}"
        )
    keep = ("dim_feedforward", "activation", "batch_first", "dtype")
    layer_args = {"d_model": d_model, "nhead": nhead, **{k: a.raw[k] for k in keep if k in a.raw}}
    norm_args = {
        "normalized_shape": d_model,
        **({"dtype": a.raw["dtype"]} if "dtype" in a.raw else {}),
    }
    memory = src
    for _ in range(encoders):
        memory = LAYER_RULES["TransformerEncoderLayer"](layer_args, (memory,))
    memory = LAYER_RULES["LayerNorm"](norm_args, (memory,))
    out = tgt
    for _ in range(decoders):
        out = LAYER_RULES["TransformerDecoderLayer"](layer_args, (out, memory))
    return LAYER_RULES["LayerNorm"](norm_args, (out,))
