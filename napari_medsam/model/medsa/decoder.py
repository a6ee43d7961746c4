"""Med-SA mask decoder: three adapters in every two-way attention block.

The decoder adopts SAM's ``MaskDecoder`` modules (same Parameters, same
state-dict names) and its ``TwoWayTransformer``; each ``TwoWayAttentionBlock``
becomes a :class:`MedSATwoWayBlock` with, in order of use:

1. ``medsa_prompt_adapter`` -- the Hyper-Prompting Adapter (a plain adapter when
   ``hyp_adapter`` is off) on the output of the token-to-image cross-attention,
   before its residual add and ``norm2``: the tokens' freshly gathered image
   evidence is adapted under a prompt-generated weight matrix.
   ``queries = norm2(queries + a + HyP(a, p))``, a = cross_attn_token_to_image(...).
2. ``medsa_mlp_adapter`` -- parallel to the token MLP, scaled by s:
   ``queries = norm3(queries + mlp(queries) + s * Adapter(queries))``.
3. ``medsa_image_adapter`` -- on the image-to-token cross-attention output, before
   its residual add and ``norm4``: ``keys = norm4(keys + b + Adapter(b))``.

The prompt embedding p of each prompt is the mean of its sparse prompt tokens
(points / box corners from the prompt encoder); zeros when it has none. With all
up-projections at zero the decoder computes exactly SAM's.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from napari_medsam.model.medsa.adapter import Adapter
from napari_medsam.model.medsa.config import MedSAConfig
from napari_medsam.model.medsa.hyp_adapter import HypAdapter


class MedSATwoWayBlock(nn.Module):
    """SAM's ``TwoWayAttentionBlock`` with Med-SA's three decoder adapters."""

    def __init__(self, block: nn.Module, config: MedSAConfig) -> None:
        super().__init__()
        for name in (
            "self_attn",
            "norm1",
            "cross_attn_token_to_image",
            "norm2",
            "mlp",
            "norm3",
            "norm4",
            "cross_attn_image_to_token",
        ):
            setattr(self, name, getattr(block, name))
        self.skip_first_layer_pe = block.skip_first_layer_pe
        dim = block.norm1.normalized_shape[0]
        ratio = config.adapter_ratio
        self.mlp_scale = float(config.mlp_scale)
        self.medsa_prompt_adapter: nn.Module = (
            HypAdapter(dim, dim, ratio) if config.hyp_adapter else Adapter(dim, ratio)
        )
        self.medsa_mlp_adapter = Adapter(dim, ratio)
        self.medsa_image_adapter = Adapter(dim, ratio)

    def _prompt_adapt(self, x: Tensor, prompt: Tensor) -> Tensor:
        if isinstance(self.medsa_prompt_adapter, HypAdapter):
            return self.medsa_prompt_adapter(x, prompt)
        return self.medsa_prompt_adapter(x)

    def forward(
        self, queries: Tensor, keys: Tensor, query_pe: Tensor, key_pe: Tensor, prompt: Tensor
    ) -> tuple[Tensor, Tensor]:
        """As SAM's block, plus ``prompt`` (B, C): one embedding per prompt for HyP-Adpt."""
        if self.skip_first_layer_pe:
            queries = self.self_attn(q=queries, k=queries, v=queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q=q, k=q, v=queries)
        queries = self.norm1(queries)

        q = queries + query_pe
        k = keys + key_pe
        attn_out = self.cross_attn_token_to_image(q=q, k=k, v=keys)
        queries = self.norm2(queries + attn_out + self._prompt_adapt(attn_out, prompt))

        queries = self.norm3(
            queries + self.mlp(queries) + self.mlp_scale * self.medsa_mlp_adapter(queries)
        )

        q = queries + query_pe
        k = keys + key_pe
        attn_out = self.cross_attn_image_to_token(q=k, k=q, v=queries)
        keys = self.norm4(keys + attn_out + self.medsa_image_adapter(attn_out))
        return queries, keys


class MedSATwoWayTransformer(nn.Module):
    """SAM's ``TwoWayTransformer`` passing the prompt embedding to Med-SA blocks."""

    def __init__(self, transformer: nn.Module, config: MedSAConfig) -> None:
        super().__init__()
        self.depth = transformer.depth
        self.embedding_dim = transformer.embedding_dim
        self.num_heads = transformer.num_heads
        self.mlp_dim = transformer.mlp_dim
        self.layers = nn.ModuleList(MedSATwoWayBlock(b, config) for b in transformer.layers)
        self.final_attn_token_to_image = transformer.final_attn_token_to_image
        self.norm_final_attn = transformer.norm_final_attn

    def forward(
        self, image_embedding: Tensor, image_pe: Tensor, point_embedding: Tensor, prompt: Tensor
    ) -> tuple[Tensor, Tensor]:
        """(B, C, h, w) image, (B, C, h, w) pe, (B, T, C) tokens, (B, C) prompt -> tokens, keys."""
        image_embedding = image_embedding.flatten(2).permute(0, 2, 1)
        image_pe = image_pe.flatten(2).permute(0, 2, 1)
        queries, keys = point_embedding, image_embedding
        for layer in self.layers:
            queries, keys = layer(queries, keys, point_embedding, image_pe, prompt)
        q = queries + point_embedding
        k = keys + image_pe
        queries = queries + self.final_attn_token_to_image(q=q, k=k, v=keys)
        return self.norm_final_attn(queries), keys


class MedSAMaskDecoder(nn.Module):
    """SAM's ``MaskDecoder`` with Med-SA's decoder adapters (module docstring)."""

    def __init__(self, decoder: nn.Module, config: MedSAConfig) -> None:
        super().__init__()
        self.transformer_dim = decoder.transformer_dim
        self.transformer = MedSATwoWayTransformer(decoder.transformer, config)
        self.num_multimask_outputs = decoder.num_multimask_outputs
        self.iou_token = decoder.iou_token
        self.num_mask_tokens = decoder.num_mask_tokens
        self.mask_tokens = decoder.mask_tokens
        self.output_upscaling = decoder.output_upscaling
        self.output_hypernetworks_mlps = decoder.output_hypernetworks_mlps
        self.iou_prediction_head = decoder.iou_prediction_head

    @staticmethod
    def prompt_embedding(sparse_prompt_embeddings: Tensor) -> Tensor:
        """(B, N, C) sparse prompt tokens -> (B, C) their mean (zeros when N = 0)."""
        if sparse_prompt_embeddings.shape[1] == 0:
            b, _, c = sparse_prompt_embeddings.shape
            return sparse_prompt_embeddings.new_zeros((b, c))
        return sparse_prompt_embeddings.mean(dim=1)

    def forward(
        self,
        image_embeddings: Tensor,
        image_pe: Tensor,
        sparse_prompt_embeddings: Tensor,
        dense_prompt_embeddings: Tensor,
        multimask_output: bool | None,
    ) -> tuple[Tensor, Tensor]:
        """SAM's decoder interface.

        Parameters
        ----------
        image_embeddings : Tensor
            (1, C, h, w) shared by all B prompts, or (B, C, h, w) one per prompt.
        image_pe : Tensor
            (1, C, h, w).
        sparse_prompt_embeddings : Tensor
            (B, N, C).
        dense_prompt_embeddings : Tensor
            (B, C, h, w).
        multimask_output : bool or None
            Return the 3 multimask outputs instead of the single one; None
            returns all 4 (the single one first).

        Returns
        -------
        masks : Tensor
            (B, M, 4h, 4w) low-resolution logits, M = 3, 1 or 4.
        iou_pred : Tensor
            (B, M).
        """
        tokens_out = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens_out = tokens_out.unsqueeze(0).expand(sparse_prompt_embeddings.size(0), -1, -1)
        tokens = torch.cat((tokens_out, sparse_prompt_embeddings), dim=1)
        if image_embeddings.shape[0] == tokens.shape[0]:
            src = image_embeddings
        else:
            src = torch.repeat_interleave(image_embeddings, tokens.shape[0], dim=0)
        src = src + dense_prompt_embeddings
        pos_src = torch.repeat_interleave(image_pe, tokens.shape[0], dim=0)
        b, c, h, w = src.shape

        prompt = self.prompt_embedding(sparse_prompt_embeddings)
        hs, src = self.transformer(src, pos_src, tokens, prompt)
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1 : (1 + self.num_mask_tokens), :]

        upscaled = self.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)],
            dim=1,
        )
        b, c, h, w = upscaled.shape
        masks = (hyper_in @ upscaled.view(b, c, h * w)).view(b, -1, h, w)
        iou_pred = self.iou_prediction_head(iou_token_out)

        if multimask_output is None:
            return masks, iou_pred
        sel = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, sel, :, :], iou_pred[:, sel]
