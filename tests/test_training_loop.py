# ruff: noqa: F811  (pytest fixtures imported from training_fixtures)
"""Fine-tuning on the synthetic phantom with a tiny Med-SA: it learns, it resumes, DDP runs.

The tiny backbone is random (``tiny_sam``: 64 px SAM ViT). A random SAM decoder
gives logits of ~0.03, which adapters behind its LayerNorms cannot scale up; its
hypernetwork output layers are scaled x30 so that the logits span a usable range,
as a pretrained backbone's do. That backbone is saved as a plain checkpoint and
given as ``backbone_checkpoint``, like a real one.
"""

import numpy as np
import pytest
import torch
import torch.distributed as dist
from training_fixtures import (  # noqa: F401
    backbone_path,
    one_thread,
    phantom_volume,
    tiny_finetune_config,
)

from napari_medsam.model.medsa.checkpoint import load_medsa
from napari_medsam.training.data import TrainingSet, split_objects
from napari_medsam.training.loop import build_model, finetune
from napari_medsam.training.validate import evaluate_model, heldout_cases

CPU = torch.device("cpu")


def test_finetune_lowers_the_loss_and_improves_iou_after_clicks(
    tmp_path, backbone_path, phantom_volume
):
    config = tiny_finetune_config(tmp_path, backbone_path, steps=80)
    cases = heldout_cases([phantom_volume], {(0, 1), (0, 2), (0, 6)}, 20, 12, 0)
    before = evaluate_model(build_model(config), [phantom_volume], cases, CPU, 3, box=False)
    history = finetune(config, volumes=[phantom_volume], progress=False)
    loss = history["loss"]
    assert len(loss) == 80
    assert np.mean(loss[-15:]) < np.mean(loss[:15]) - 0.08
    trained = load_medsa(config.out)  # the written checkpoint, as the app loads it
    after = evaluate_model(trained, [phantom_volume], cases, CPU, 3, box=False)
    # mean IoU after 1 and after 3 simulated clicks (the eval's RITM clicker)
    assert after["miou_curve"][0] > max(2 * before["miou_curve"][0], before["miou_curve"][0] + 0.04)
    assert after["miou_curve"][2] > before["miou_curve"][2] + 0.1
    # only the Med-SA parts changed
    fresh = build_model(config).state_dict()
    for key, value in trained.state_dict().items():
        if "medsa_" not in key:
            assert torch.equal(value, fresh[key]), key


def test_resume_reproduces_the_uninterrupted_run(tmp_path, backbone_path, phantom_volume):
    straight = tiny_finetune_config(tmp_path / "a", backbone_path, epochs=2)
    h_straight = finetune(straight, volumes=[phantom_volume], progress=False)
    per_epoch = h_straight["steps_per_epoch"]
    assert len(h_straight["loss"]) == 2 * per_epoch

    first = tiny_finetune_config(tmp_path / "b", backbone_path, epochs=1)
    finetune(first, volumes=[phantom_volume], progress=False)
    resumed = tiny_finetune_config(tmp_path / "b", backbone_path, epochs=2, resume=True)
    h_resumed = finetune(resumed, volumes=[phantom_volume], progress=False)

    # the steps after the resume are the uninterrupted run's, bit for bit
    assert h_resumed["loss"] == h_straight["loss"]
    a = load_medsa(straight.out).state_dict()
    b = load_medsa(resumed.out).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [e["step"] for e in h_resumed["epochs"]] == [per_epoch, 2 * per_epoch]


def test_resume_refuses_another_backbone(tmp_path, backbone_path, phantom_volume):
    first = tiny_finetune_config(tmp_path, backbone_path, steps=1)
    finetune(first, volumes=[phantom_volume], progress=False)
    # random weights, not the saved ones
    other = tiny_finetune_config(tmp_path, None, steps=2, resume=True)
    with pytest.raises(ValueError, match="other backbone weights"):
        finetune(other, volumes=[phantom_volume], progress=False)


def test_ddp_path_with_gloo_world_size_one(tmp_path, backbone_path, phantom_volume, monkeypatch):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for key, value in {
        "RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_RANK": "0",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }.items():
        monkeypatch.setenv(key, value)
    config = tiny_finetune_config(
        tmp_path, backbone_path, steps=2, val_fraction=0.34, val_cases=2, val_max_clicks=2
    )
    history = finetune(config, volumes=[phantom_volume], progress=True)  # with the tqdm bar
    assert history["distributed"] and history["world_size"] == 1
    assert len(history["loss"]) == 2 and all(np.isfinite(history["loss"]))
    assert history["epochs"][-1]["val"]["n_cases"] == 2
    assert not dist.is_initialized()  # the process group is left again
    assert load_medsa(config.out) is not None


def _ddp_worker(rank, port, config, volume, results):
    import os

    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE="2",
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    history = finetune(config, volumes=[volume], progress=False)
    results[rank] = (history["medsa_digest"], history["loss"])


def test_ddp_two_gloo_processes_keep_the_medsa_parts_in_sync(
    tmp_path, backbone_path, phantom_volume
):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tiny_finetune_config(tmp_path, backbone_path, steps=2)
    results = mp.Manager().dict()
    mp.spawn(_ddp_worker, args=(port, config, phantom_volume, results), nprocs=2, join=True)
    (digest0, loss0), (digest1, loss1) = results[0], results[1]
    assert loss0 != loss1  # each rank trained on its own cases ...
    assert digest0 == digest1  # ... and DDP averaged the gradients
    fresh = finetune(
        tiny_finetune_config(tmp_path / "single", backbone_path, steps=1),
        volumes=[phantom_volume],
        progress=False,
    )
    assert fresh["medsa_digest"] != digest0


def test_split_is_seeded_disjoint_and_by_volume_or_object():
    objects = [(v, lab) for v in range(3) for lab in (1, 2, 3, 4)]
    a = split_objects(objects, 3, 0.25, "object", seed=1)
    assert a == split_objects(objects, 3, 0.25, "object", seed=1) and len(a) == 3
    assert a != split_objects(objects, 3, 0.25, "object", seed=2)
    by_volume = split_objects(objects, 3, 0.34, "volume", seed=0)
    held_volumes = {v for v, _ in by_volume}
    assert len(held_volumes) == 1 and by_volume == {o for o in objects if o[0] in held_volumes}
    assert split_objects(objects, 3, 0.0, "object", seed=0) == set()
    with pytest.raises(ValueError):
        split_objects(objects, 1, 0.5, "volume", seed=0)


def test_training_set_cases_windowing_and_other_axes(phantom_volume):
    from napari_medsam.model.preprocess import preprocess_slices
    from napari_medsam.model.registry import InputSpec

    spec = InputSpec(side=64)
    data = TrainingSet([phantom_volume], spec, 32, val_fraction=0.2, seed=0, min_area=20)
    held = {lab for _, lab in data.heldout}
    assert len(held) == 1 and all(c.label not in held for c in data.cases)
    assert {c.axis for c in data.cases} == {0}
    case = data.cases[0]
    assert phantom_volume.window.kind == "ct"  # the app's auto window: CT 40/400
    expected = preprocess_slices(
        [phantom_volume.window.apply(phantom_volume.image_zyx[case.position])], spec
    )[0]
    assert torch.equal(data.image(case), expected)
    assert np.array_equal(data.gt_yx(case), phantom_volume.labels_zyx[case.position] == case.label)
    target, (h, w) = data.target(case)
    assert target.shape == (32, 32) and (h, w) == (32, 32) and target.sum() > 0

    more = TrainingSet(
        [phantom_volume], spec, 32, val_fraction=0.2, seed=0, min_area=20, other_axes=True
    )
    side_cases = [c for c in more.cases if c.axis != 0]
    assert side_cases and {c.axis for c in side_cases} == {1, 2}
    # 8 slices of 4 mm become 32 rows of 1 mm: square pixels
    assert more.hw(side_cases[0]) == (32, 64)
