"""--pretrained_model from every form the kit writes or a user has.

A training folder, its final.weights.h5, its embedding_model/ and best/
SavedModels, an export's saved_model/, and Keras .h5/.keras backbone files all
start a run with the saved backbone; the ArcFace head comes along when the
saved run had the same identities, and a line says which. Another architecture
is one error line.
"""
import json

import numpy as np
import pytest

from conftest import TINY_MODEL_FLAGS, make_face_tree, run_cli, write_plain_pairs
from mfn_tf2.checkpoints import CheckpointError, load_backbone, model_config
from mfn_tf2.models import load_pretrained
from mfn_tf2.recognizer import build_recognizer


@pytest.fixture(scope="module")
def saved(tiny_run, tmp_path_factory):
    """(weights dir, its class names, its backbone weights, {form: path})."""
    from mfn_tf2.exporting import write_saved_model
    weights = tiny_run[0]
    root = tmp_path_factory.mktemp("pretrained")
    backbone = load_backbone(str(weights))
    write_saved_model(backbone, str(root / "saved_model"))
    backbone.save(str(root / "backbone.h5"))
    backbone.save(str(root / "backbone.keras"))
    names = json.loads((weights / "run.json").read_text())["class_names"]
    forms = {"training folder": weights, "final.weights.h5": weights / "final.weights.h5",
             "embedding_model": weights / "embedding_model", "best": weights / "best",
             "export saved_model": root / "saved_model", "keras .h5": root / "backbone.h5",
             "keras .keras": root / "backbone.keras"}
    return weights, names, backbone.get_weights(), forms


HEADED = {"training folder", "final.weights.h5"}


@pytest.mark.parametrize("form", ["training folder", "final.weights.h5", "embedding_model", "best",
                                  "export saved_model", "keras .h5", "keras .keras"])
def test_every_form_loads_the_backbone(saved, form):
    weights, names, expected, forms = saved
    rec = build_recognizer(model_config(str(weights)), len(names))
    fresh_head = rec.head.get_weights()[0].copy()
    message = load_pretrained(str(forms[form]), rec, names)
    if form in ("embedding_model", "best"):  # the final / best backbone, not the newest checkpoint
        assert [w.shape for w in rec.backbone.get_weights()] == [w.shape for w in expected]
    else:
        for got, want in zip(rec.backbone.get_weights(), expected):
            np.testing.assert_array_equal(got, want)
    if form in HEADED:
        assert f"backbone and ArcFace head (the same {len(names)} identities)" in message
        assert not np.array_equal(rec.head.get_weights()[0], fresh_head)
    else:
        assert "the ArcFace head starts fresh (it holds no head)" in message
        np.testing.assert_array_equal(rec.head.get_weights()[0], fresh_head)


@pytest.mark.parametrize("form", sorted(HEADED))
def test_other_identities_keep_a_fresh_head(saved, form):
    weights, names, _, forms = saved
    rec = build_recognizer(model_config(str(weights)), 3)
    fresh_head = rec.head.get_weights()[0].copy()
    message = load_pretrained(str(forms[form]), rec, ["a", "b", "c"])
    assert f"its {len(names)} identities are not this run's 3" in message
    np.testing.assert_array_equal(rec.head.get_weights()[0], fresh_head)


@pytest.mark.parametrize("form", ["training folder", "final.weights.h5", "export saved_model", "keras .h5"])
def test_another_architecture_is_one_error(saved, form):
    from mfn_tf2.config import replace
    weights, names, _, forms = saved
    rec = build_recognizer(replace(model_config(str(weights)), embedding_dim=64), len(names))
    with pytest.raises(CheckpointError) as err:
        load_pretrained(str(forms[form]), rec, names)
    assert str(err.value).startswith(f"--pretrained_model {forms[form]}: ") and "\n" not in str(err.value)
    assert "architecture" in str(err.value)


def test_train_cli_starts_from_final_weights(saved, tmp_path):
    """The CLI path: a new identity set, a run's final.weights.h5, one epoch."""
    weights, names, _, forms = saved
    faces = make_face_tree(tmp_path / "faces", n_ids=5, n_imgs=5)
    pairs = write_plain_pairs(faces, tmp_path / "pairs.txt", 12)
    proc = run_cli("train", faces, faces, pairs, *TINY_MODEL_FLAGS, "--batch_size", "8", "--epochs", "1",
                   "--evaluate_epochs", "1", "--pretrained_model", forms["final.weights.h5"],
                   "--save_model_directory", tmp_path / "w")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"starting from {forms['final.weights.h5']}: backbone only; the ArcFace head starts fresh " \
           f"(its {len(names)} identities are not this run's 5)" in proc.stdout
