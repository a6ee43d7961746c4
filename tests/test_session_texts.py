"""The dock's wording and the Advanced fold's settings, without a display."""

from napari_medsam.session import texts
from napari_medsam.tasks.propagate_options import (
    ENGINE_DEFAULT,
    PropagationOptions,
    chosen_settings,
)


def test_nothing_chosen_keeps_the_measured_defaults():
    assert chosen_settings() == {}
    assert chosen_settings(None, None, ENGINE_DEFAULT) == {}


def test_chosen_settings_build_propagation_options():
    settings = chosen_settings(0.5, 0.25, "binary")
    assert settings == {"stop_score": 0.5, "stop_overlap": 0.25, "mask_prompt": "binary"}
    options = PropagationOptions(**settings)
    assert (options.stop_score, options.stop_overlap, options.mask_prompt) == (0.5, 0.25, "binary")


def test_undo_tooltips_name_the_steps_or_say_there_is_none():
    assert texts.undo_tooltips("propagate", None) == (
        "Undo propagate (Ctrl+Z)",
        "Nothing to redo for this object",
    )
    assert texts.undo_tooltips(None, "segment slice 3") == (
        "Nothing to undo for this object",
        "Redo segment slice 3 (Ctrl+Shift+Z)",
    )


def test_slice_result_text_gives_latency_only_for_a_prompt():
    assert texts.slice_result_text(4, 120, 0.876) == "slice 4: 120 px, score 0.88"
    assert texts.slice_result_text(4, 120, 0.876, 51.4) == "slice 4: 120 px, score 0.88, 51 ms"
    with_load = texts.slice_result_text(4, 120, 0.876, 2000.0, with_load=True)
    assert with_load.endswith("2000 ms with model load")


def test_model_text_and_reasons():
    assert texts.model_text("LiteMedSAM", None) == "LiteMedSAM (bundled)"
    assert texts.model_text("SAM ViT-B", "/x/y/sam_vit_b.pth") == "SAM ViT-B (sam_vit_b.pth)"
    assert "an RGB image" in texts.no_volume_reason("photo", 3, (10, 10, 3), rgb=True)
    assert "2D (10, 12)" in texts.no_volume_reason("slice", 2, (10, 12), rgb=False)
    assert "'ct' was opened as labels" in texts.opened_as_labels_reason("ct")


def test_every_tooltip_is_text():
    for table in (
        texts.CONTROLS_TOOLTIPS,
        texts.SESSION_TOOLTIPS,
        texts.ADVANCED_PROPAGATION_TOOLTIPS,
    ):
        assert all(isinstance(tip, str) and tip for tip in table.values())


def test_voxel_text_gives_display_voxels_and_without_a_file_grid_only_those():
    assert texts.voxel_text((1.2, 3.6, 0.0), (4, 5, 6), {}) == "voxel zyx [1 4 0]"
    assert texts.voxel_text((4.0, 0, 0), (4, 5, 6), {}) is None
    assert texts.voxel_text((0, -0.7, 0), (4, 5, 6), {}) is None
