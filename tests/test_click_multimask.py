"""SAM's ambiguity-aware first click: 3 outputs, the IoU head's choice, trained on the best."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from napari_medsam.model.click.decoder import (
    ClickConfig,
    ClickDecoder,
    choose_outputs,
    single_click_rows,
)


def _points(rows):
    """((B, N, 2), (B, N)) from lists of (x, y, label); -1 pads."""
    n = max(len(r) for r in rows)
    coords = torch.zeros((len(rows), n, 2))
    labels = torch.full((len(rows), n), -1, dtype=torch.long)
    for i, row in enumerate(rows):
        for j, (x, y, lab) in enumerate(row):
            coords[i, j] = torch.tensor([x, y])
            labels[i, j] = lab
    return coords, labels


def test_single_click_rows_are_one_positive_click_alone():
    pts = _points([[(5, 5, 1)], [(5, 5, 1), (9, 9, 0)], [(5, 5, 0)], [(5, 5, 1), (0, 0, -1)]])
    assert single_click_rows(pts, None, None).tolist() == [True, False, False, True]
    assert single_click_rows(pts, torch.zeros((4, 4)), None) is None  # a box is not ambiguous
    assert single_click_rows(pts, None, torch.zeros((4, 1, 8, 8))) is None
    assert single_click_rows(None, None, None) is None
    assert single_click_rows(_points([[(1, 1, 1), (2, 2, 1)]]), None, None) is None


def test_choose_outputs_takes_the_best_multimask_output_for_single_rows_only():
    logits = torch.arange(2 * 4 * 2 * 2, dtype=torch.float32).reshape(2, 4, 2, 2)
    iou = torch.tensor([[0.9, 0.1, 0.8, 0.3], [0.2, 0.1, 0.7, 0.3]])
    out, score = choose_outputs(logits, iou, torch.tensor([True, False]))
    assert out.shape == (2, 1, 2, 2) and score.shape == (2, 1)
    assert torch.equal(out[0, 0], logits[0, 2]) and float(score[0, 0]) == pytest.approx(0.8)
    assert torch.equal(out[1, 0], logits[1, 0]) and float(score[1, 0]) == pytest.approx(0.2)
    out, _ = choose_outputs(logits, iou, None)
    assert torch.equal(out[:, 0], logits[:, 0])


@pytest.fixture(scope="module")
def plain():
    from napari_medsam.model.engine import load_engine

    return load_engine("litemedsam", device="cpu")


def test_multimask_decoder_answers_one_click_with_its_best_output(plain):
    torch.manual_seed(0)
    base = ClickDecoder(plain.model.prompt_encoder, plain.model.mask_decoder, ClickConfig())
    multi = ClickDecoder(plain.model.prompt_encoder, plain.model.mask_decoder,
                         ClickConfig(first_click_multimask=True))
    multi.load_state_dict(base.state_dict())
    emb = torch.randn(2, 256, 64, 64)
    one = _points([[(100.5, 120.5, 1)], [(60.5, 70.5, 1)]])
    two = _points([[(100.5, 120.5, 1), (30.5, 30.5, 0)], [(60.5, 70.5, 1), (10.5, 10.5, 0)]])
    with torch.no_grad():
        all_logits, all_iou = multi.forward_all(emb, one)
        chosen, score = multi(emb, one)
        best = all_iou[:, 1:].argmax(1) + 1
        assert all_logits.shape == (2, 4, 256, 256)
        for row in range(2):
            assert torch.equal(chosen[row, 0], all_logits[row, best[row]])
        # anything but a lone click is the single output, as without the option
        assert torch.equal(multi(emb, two)[0], base(emb, two)[0])
        assert torch.equal(base(emb, one)[0], all_logits[:, :1])


def test_multimask_training_step_trains_the_multimask_outputs(plain, tmp_path):
    from napari_medsam.training.clicks import rounds
    from napari_medsam.training.clicks.sampler import Case
    from napari_medsam.training.clicks.trainer import Trainer, TrainSettings

    decoder = ClickDecoder(plain.model.prompt_encoder, plain.model.mask_decoder,
                           ClickConfig(first_click_multimask=True))
    trainer = Trainer.__new__(Trainer)  # the loss alone, without a store
    trainer.decoder, trainer.settings = decoder, TrainSettings()
    trainer.rng = np.random.default_rng(0)
    gt = np.zeros((256, 256), bool)
    gt[100:140, 90:150] = True
    cases = [Case(0, gt.copy()), Case(0, gt.copy())]
    cases[0].add_click(120, 120, True)
    cases[1].add_click(120, 120, True)
    cases[1].add_click(10, 10, False)
    emb = torch.randn(2, 256, 64, 64)
    seg, iou_loss, chosen = trainer._multimask_loss(emb, cases, None, rounds.targets(cases))
    assert torch.isfinite(seg) and torch.isfinite(iou_loss) and chosen.shape == (2,)
    (seg + iou_loss).backward()
    mlps = decoder.mask_decoder.output_hypernetworks_mlps
    grads = [sum(float(p.grad.abs().sum()) for p in mlps[k].parameters() if p.grad is not None)
             for k in range(4)]
    assert grads[0] > 0  # the two-click row trains the single output
    assert sum(grads[1:]) > 0  # the lone click trains (the best of) the multimask outputs
    assert dataclasses.asdict(decoder.config)["first_click_multimask"] is True


def test_averaging_click_checkpoints_means_their_weights(plain, tmp_path):
    from napari_medsam.cli import main
    from napari_medsam.model.checkpoints import read_state_dict
    from napari_medsam.model.click.checkpoint import click_decoder_from, save_click_decoder
    from napari_medsam.training.clicks.average import average_click_decoders

    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        dec = ClickDecoder(plain.model.prompt_encoder, plain.model.mask_decoder, ClickConfig())
        with torch.no_grad():
            for p in dec.click_stem.parameters():
                p.normal_()
        paths.append(save_click_decoder(dec, plain.model, tmp_path / f"s{seed}.pt", {"steps_done": seed}))
    mean, cards = average_click_decoders(paths, plain.model, first_click_multimask=True)
    a, b = (click_decoder_from(read_state_dict(p), plain.model) for p in paths)
    w = "click_stem.layers.0.weight"
    expected = ((a.state_dict()[w] + b.state_dict()[w]) / 2)
    assert torch.allclose(mean.state_dict()[w], expected, atol=1e-6)
    assert mean.config.first_click_multimask and [c["steps_done"] for c in cards] == [0, 1]
    # the command writes a loadable checkpoint, and never over one of its inputs
    assert main(["train-clicks", "average", *map(str, paths), "--out", str(tmp_path / "m.pt"),
                 "--first-click-multimask", "on"]) == 0
    loaded = click_decoder_from(read_state_dict(tmp_path / "m.pt"), plain.model)
    assert loaded.config.first_click_multimask
    assert torch.allclose(loaded.state_dict()[w].float(), expected.half().float(), atol=1e-3)
    assert main(["train-clicks", "average", *map(str, paths), "--out", str(paths[0])]) != 0
    assert read_state_dict(paths[0])["card"]["steps_done"] == 0


def test_fit_keeps_a_snapshot_per_save_when_asked(plain, tmp_path):
    from types import SimpleNamespace

    from napari_medsam.model.click.checkpoint import click_decoder_from
    from napari_medsam.model.checkpoints import read_state_dict
    from napari_medsam.training.clicks.trainer import Trainer, TrainSettings, snapshot_path

    trainer = Trainer.__new__(Trainer)  # the loop alone: each step only counts
    trainer.decoder = ClickDecoder(plain.model.prompt_encoder, plain.model.mask_decoder, ClickConfig())
    trainer.backbone, trainer.step = plain.model, 0
    trainer.store = SimpleNamespace(count=1, capacity=1)
    trainer.settings = TrainSettings(steps=5, save_every=2, keep_snapshots=True)

    def one_step():
        trainer.step += 1
        return {"step": trainer.step}

    trainer.train_step = one_step
    out = tmp_path / "click.pt"
    trainer.fit(out, tmp_path / "log.jsonl", {})
    kept = sorted(p.name for p in tmp_path.glob("click_step*.pt"))
    assert kept == ["click_step00002.pt", "click_step00004.pt", "click_step00005.pt"]
    assert snapshot_path(out, 4) == tmp_path / "click_step00004.pt"
    assert read_state_dict(snapshot_path(out, 2))["card"]["steps_done"] == 2
    click_decoder_from(read_state_dict(out), plain.model)  # the last save loads
