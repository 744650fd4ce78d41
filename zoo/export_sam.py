"""TinySAM exported the way SAM deployments split it: an image-encoder graph and a prompt-to-mask decoder graph.

    python -m zoo.export --model tinysam --checkpoint tinysam_42.3.pth --format onnx --out tinysam
        -> tinysam_encoder.onnx, tinysam_decoder.onnx (``--out`` a folder: FOLDER/tinysam_encoder.onnx, ...)

The encoder graph maps preprocessed images (``TinySam.preprocess``: normalised and padded to S x S) to image
embeddings (B, 256, S/16, S/16). The decoder graph takes what segment-anything's ONNX decoder takes:

- ``image_embeddings`` (1, 256, S/16, S/16), one image's embedding, shared by every prompt;
- ``point_coords`` (B, N, 2) in the resized input frame (x, y pixels) and ``point_labels`` (B, N) as float:
  1 foreground, 0 background, 2 / 3 a box's top-left / bottom-right corner, -1 padding. Without a box, append
  a (0, 0) point labelled -1, as segment-anything's ONNX example does. B (prompts) and N (points) are dynamic;
- ``mask_input`` (B, 1, S/4, S/4) low-resolution logits of an earlier prediction, and ``has_mask_input`` (1,):
  1 to use it, 0 to ignore it;
- ``orig_im_size`` (2,) the original image's (H, W), as float.

and gives ``masks`` (B, 3, H, W) logits at the original size, ``iou_predictions`` (B, 3) and ``low_res_masks``
(B, 3, S/4, S/4) (TinySAM's three multimask outputs). Both files are checked against the eager model
(:meth:`TinySam.decode` and :meth:`TinySam.postprocess_masks`, the predictor's path) as :mod:`zoo.export` checks
any model, at another batch and another number of points than traced, and kept only if both pass.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from .export import (REL_TOLERANCE, ExportError, ExportReport, _quiet, _run_onnx, _run_program, check_file)
from .models.tinysam import TinySam
from .models.tinysam.build_sam import (SAM_MODELS, build_tinysam, build_tinysam_w8a8, create_sam,
                                       load_quantized_checkpoint, load_sam_checkpoint, _load_strict)

__all__ = ['SAM_PARTS', 'SamEncoderGraph', 'SamDecoderGraph', 'SamExportReport', 'export_sam', 'sam_output_paths',
           'DECODER_INPUTS', 'DECODER_OUTPUTS']

SAM_PARTS = ('encoder', 'decoder')
DECODER_INPUTS = ('image_embeddings', 'point_coords', 'point_labels', 'mask_input', 'has_mask_input', 'orig_im_size')
DECODER_OUTPUTS = ('masks', 'iou_predictions', 'low_res_masks')
#: (prompts, points) the decoder is traced with, and (prompts, points) it is checked at
TRACE_PROMPTS = (2, 3)
CHECK_PROMPTS = (3, 5)
_SUFFIX = {'onnx': '.onnx', 'torch-export': '.pt2'}


class SamEncoderGraph(nn.Module):
    """Preprocessed images (B, 3, S, S) -> image embeddings (B, C, S/16, S/16)."""

    def __init__(self, sam: TinySam):
        super().__init__()
        self.image_encoder = sam.image_encoder

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(images)


class SamDecoderGraph(nn.Module):
    """Prompts -> masks for one image embedding, with segment-anything's ONNX decoder inputs (see the module
    docstring). Prompt embedding is written with label masks instead of the prompt encoder's optional arguments,
    so one graph takes points, boxes (labels 2, 3) and mask inputs; the arithmetic is the prompt encoder's."""

    def __init__(self, sam: TinySam):
        super().__init__()
        self.prompt_encoder = sam.prompt_encoder
        self.mask_decoder = sam.mask_decoder
        self.img_size = sam.img_size

    def _embed_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        enc = self.prompt_encoder
        emb = enc.pe_layer.forward_with_coords(coords + 0.5, enc.input_image_size)
        labels = labels[..., None]
        emb = torch.where(labels == -1, enc.not_a_point_embed.weight, emb)
        for i, point_embedding in enumerate(enc.point_embeddings):
            emb = emb + (labels == i) * point_embedding.weight
        return emb

    def _embed_mask(self, mask_input: torch.Tensor, has_mask_input: torch.Tensor) -> torch.Tensor:
        enc = self.prompt_encoder
        has_mask = has_mask_input.reshape(-1, 1, 1, 1)
        return has_mask * enc.mask_downscaling(mask_input) + (1 - has_mask) * enc.no_mask_embed.weight.reshape(
            1, -1, 1, 1)

    def _upscale(self, low_res: torch.Tensor, orig_im_size: torch.Tensor) -> torch.Tensor:
        """As :meth:`TinySam.postprocess_masks`, the resized size computed in float64 like ResizeLongestSide."""
        masks = F.interpolate(low_res, (self.img_size, self.img_size), mode='bilinear', align_corners=False)
        size = orig_im_size.to(torch.float64)
        resized = (size * (self.img_size / size.max()) + 0.5).to(torch.int64)
        masks = masks[..., :resized[0], :resized[1]]
        orig = size.to(torch.int64)
        return F.interpolate(masks, (orig[0], orig[1]), mode='bilinear', align_corners=False)

    def forward(self, image_embeddings: torch.Tensor, point_coords: torch.Tensor, point_labels: torch.Tensor,
                mask_input: torch.Tensor, has_mask_input: torch.Tensor,
                orig_im_size: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        sparse = self._embed_points(point_coords, point_labels)
        dense = self._embed_mask(mask_input, has_mask_input)
        low_res, iou = self.mask_decoder(image_embeddings, self.prompt_encoder.get_dense_pe(), sparse, dense,
                                         multimask_output=True)
        return self._upscale(low_res, orig_im_size), iou, low_res


class _EagerDecode(nn.Module):
    """The predictor's path on the decoder graph's inputs (the reference): the trailing padding point is left to
    the prompt encoder, which adds its own, and the mask input is passed only when ``has_mask_input`` is 1."""

    def __init__(self, sam: TinySam):
        super().__init__()
        self.sam = sam

    def forward(self, image_embeddings, point_coords, point_labels, mask_input, has_mask_input, orig_im_size):
        orig = tuple(int(v) for v in orig_im_size.tolist())
        resized = _resized_size(orig, self.sam.img_size)
        masks = mask_input if has_mask_input.item() else None
        low_res, iou = self.sam.decode(image_embeddings, point_coords[:, :-1], point_labels[:, :-1].long(),
                                       mask_input=masks)
        return self.sam.postprocess_masks(low_res, resized, orig), iou, low_res


def _resized_size(orig: Tuple[int, int], img_size: int) -> Tuple[int, int]:
    from .models.tinysam.utils.transforms import ResizeLongestSide
    return ResizeLongestSide.get_preprocess_shape(orig[0], orig[1], img_size)


def encoder_inputs(sam: TinySam, batch: int, seed: int) -> Tuple[torch.Tensor]:
    """Random preprocessed images (batch, 3, S, S)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 3, sam.img_size, sam.img_size, generator=g),)


def decoder_inputs(sam: TinySam, prompts: int, points: int, seed: int, has_mask: bool = False,
                   orig_size: Optional[Tuple[int, int]] = None) -> Tuple[torch.Tensor, ...]:
    """Random decoder inputs: ``points - 1`` foreground / background points per prompt and the padding point,
    a random low-resolution mask (used when ``has_mask``), an original size of about the model's input."""
    g = torch.Generator().manual_seed(seed)
    s, grid = sam.img_size, sam.prompt_encoder.image_embedding_size
    embeddings = torch.randn(1, sam.prompt_encoder.embed_dim, *grid, generator=g)
    coords = torch.rand(prompts, points, 2, generator=g) * s
    labels = torch.randint(0, 2, (prompts, points), generator=g).float()
    coords[:, -1], labels[:, -1] = 0., -1.
    mask = torch.randn(prompts, 1, *sam.prompt_encoder.mask_input_size, generator=g)
    orig = orig_size or (s + s // 2, s - s // 4)
    return (embeddings, coords, labels, mask, torch.tensor([float(has_mask)]), torch.tensor(orig, dtype=torch.float))


@dataclass
class SamExportReport:
    """The encoder's and the decoder's export reports."""
    encoder: ExportReport
    decoder: ExportReport

    @property
    def max_rel(self) -> float:
        return max(self.encoder.max_rel, self.decoder.max_rel)

    def describe(self) -> str:
        return f'{self.encoder.describe()}\n{self.decoder.describe()}'


def sam_output_paths(out: Union[str, os.PathLike], name: str, format: str) -> Dict[str, Path]:
    """``--out`` as a folder (FOLDER/NAME_encoder.onnx) or a prefix (PREFIX_encoder.onnx; a trailing .onnx or
    .pt2 is dropped) -> the encoder's and the decoder's file."""
    out, suffix = Path(out), _SUFFIX[format]
    if out.is_dir():
        folder, stem = out, name
    else:
        folder, stem = out.parent, out.name[:-len(suffix)] if out.name.endswith(suffix) else out.name
        if not folder.is_dir():
            raise ExportError(f'output folder {folder} does not exist; create it first or choose another --out')
    return {part: folder / f'{stem}_{part}{suffix}' for part in SAM_PARTS}


def build_sam_for_export(name: str, checkpoint: Optional[Union[str, os.PathLike]] = None,
                         img_size: Optional[int] = None) -> TinySam:
    """The eval-mode SAM model (random weights without a checkpoint), at ``img_size`` (default 1024)."""
    if name not in SAM_MODELS:
        raise ExportError(f'unknown SAM model {name!r}; available: {sorted(SAM_MODELS)}')
    if img_size is None:
        return create_sam(name, checkpoint=checkpoint)
    if img_size < 16 or img_size % 16:
        raise ExportError(f'--img-size {img_size}: TinySAM takes square sizes that are multiples of 16 (default 1024)')
    if name == 'tinysam':
        model = build_tinysam(img_size)
        if checkpoint is not None:
            load_sam_checkpoint(model, checkpoint)
    elif checkpoint is None:
        model = build_tinysam_w8a8(img_size=img_size)
    else:
        state_dict, layers = load_quantized_checkpoint(checkpoint)
        model = build_tinysam_w8a8(layers, state_dict, img_size=img_size)
        _load_strict(model, state_dict)
    return model.eval()


def _write_onnx(graph: nn.Module, inputs: tuple, path: Path, input_names: Sequence[str],
                output_names: Sequence[str], dynamic_axes: Dict[str, Dict[int, str]], opset: Optional[int]) -> None:
    with _quiet(), torch.no_grad():
        torch.onnx.export(graph, inputs, str(path), input_names=list(input_names), output_names=list(output_names),
                          dynamic_axes=dynamic_axes, dynamo=False, opset_version=opset or 18)


def _write_program(graph: nn.Module, inputs: tuple, path: Path, dynamic_shapes: Optional[tuple]) -> None:
    with _quiet(), torch.no_grad():
        torch.export.save(torch.export.export(graph, inputs, dynamic_shapes=dynamic_shapes), str(path))


def export_sam(
        model: Union[str, TinySam],
        out: Union[str, os.PathLike],
        format: str = 'onnx',
        checkpoint: Optional[Union[str, os.PathLike]] = None,
        img_size: Optional[int] = None,
        dynamic_batch: bool = False,
        opset: Optional[int] = None,
        batch_size: int = 1,
        name: str = 'tinysam',
        tolerance: float = REL_TOLERANCE,
) -> SamExportReport:
    """Export a SAM model as an encoder and a decoder file (see the module docstring) and check both.

    Args:
        model: 'tinysam' or 'tinysam_w8a8', or a built :class:`TinySam` (``name`` then names the files).
        out: a folder (files NAME_encoder / NAME_decoder in it) or a prefix (PREFIX_encoder.onnx, ...).
        img_size: the square input size S (a multiple of 16; default 1024, the size the weights were trained at).
        dynamic_batch: leave the encoder's batch free (traced at 2, checked at 3). The decoder's prompts and
            points are always free (traced at 2 x 3, checked at 3 x 5).

    Raises:
        ExportError: bad options, or a file that differs from the model (then neither file is kept).
    """
    if format not in _SUFFIX:
        raise ExportError(f'unknown format {format!r}; choose one of {", ".join(_SUFFIX)}')
    if batch_size < 1:
        raise ExportError(f'batch size {batch_size}: must be at least 1')
    if isinstance(model, str):
        name = model
        paths = sam_output_paths(out, name, format)
        if format == 'onnx':
            from .export import _require_onnx
            _require_onnx()
        model = build_sam_for_export(model, checkpoint, img_size)
    else:
        paths = sam_output_paths(out, name, format)
    model.eval()
    # hidden, and ending in the format's suffix, which torch.export's loader asks for
    tmps = {part: p.with_name(f'.{p.stem}.{os.getpid()}.tmp{p.suffix}') for part, p in paths.items()}
    try:
        reports = {'encoder': _export_encoder(model, name, format, tmps['encoder'], dynamic_batch, batch_size,
                                              opset, tolerance),
                   'decoder': _export_decoder(model, name, format, tmps['decoder'], opset, tolerance)}
        for part, report in reports.items():
            os.replace(tmps[part], paths[part])
            report.path = paths[part]
        return SamExportReport(**reports)
    finally:
        for tmp in tmps.values():
            tmp.unlink(missing_ok=True)


def _export_encoder(sam: TinySam, name: str, format: str, path: Path, dynamic_batch: bool, batch_size: int,
                    opset: Optional[int], tolerance: float) -> ExportReport:
    from .export import TRACE_BATCH
    graph = SamEncoderGraph(sam).eval()
    traced = TRACE_BATCH if dynamic_batch else batch_size
    checked = TRACE_BATCH + 1 if dynamic_batch else batch_size
    inputs = encoder_inputs(sam, traced, seed=0)
    if format == 'onnx':
        axes = {'images': {0: 'batch'}, 'image_embeddings': {0: 'batch'}} if dynamic_batch else {}
        _write_onnx(graph, inputs, path, ['images'], ['image_embeddings'], axes, opset)
        run = _run_onnx
    else:
        _write_program(graph, inputs, path, ({0: torch.export.Dim('batch', min=1)},) if dynamic_batch else None)
        run = _run_program
    return check_file(f'{name} (encoder)', format, run, path, graph, encoder_inputs(sam, checked, seed=1), path,
                      tuple(inputs[0].shape), checked, tolerance, ['image_embeddings'])


def _export_decoder(sam: TinySam, name: str, format: str, path: Path, opset: Optional[int],
                    tolerance: float) -> ExportReport:
    graph = SamDecoderGraph(sam).eval()
    inputs = decoder_inputs(sam, *TRACE_PROMPTS, seed=0, has_mask=True)
    if format == 'onnx':
        axes = {'point_coords': {0: 'prompts', 1: 'points'}, 'point_labels': {0: 'prompts', 1: 'points'},
                'mask_input': {0: 'prompts'}, 'masks': {0: 'prompts', 2: 'height', 3: 'width'},
                'iou_predictions': {0: 'prompts'}, 'low_res_masks': {0: 'prompts'}}
        _write_onnx(graph, inputs, path, DECODER_INPUTS, DECODER_OUTPUTS, axes, opset)
        run = _run_onnx
    else:
        prompts, points = torch.export.Dim('prompts', min=1), torch.export.Dim('points', min=1)
        shapes = (None, {0: prompts, 1: points}, {0: prompts, 1: points}, {0: prompts}, None, None)
        _write_program(graph, inputs, path, shapes)
        run = _run_program
    reference = _EagerDecode(sam).eval()
    report = None
    # without and with a mask input, at another original size than traced
    for seed, has_mask in ((1, False), (2, True)):
        s = sam.img_size
        check = decoder_inputs(sam, *CHECK_PROMPTS, seed=seed, has_mask=has_mask, orig_size=(s - s // 8, s * 2))
        part = check_file(f'{name} (decoder)', format, run, path, reference, check, path, tuple(inputs[1].shape),
                          CHECK_PROMPTS[0], tolerance, DECODER_OUTPUTS)
        if report is None or part.max_rel > report.max_rel:
            report = part
    return report
