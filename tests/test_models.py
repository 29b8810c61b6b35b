"""mfn_tf2.models: what kind a model path is (one lookup), the one table that opens each kind, and the one
error line of every opener."""
import pytest

from conftest import REPO
from mfn_tf2.models import (KINDS, RUNNABLE, STARTABLE, ModelError, accepted_kind, model_kind, open_backbone,
                            open_interpreter, open_keras, open_model, open_signature)


def test_kind_of_every_path(tmp_path):
    for name in ("run.json", "final.weights.h5", "backbone.h5", "backbone.keras", "model_int8.tflite", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "saved_model").mkdir()
    (tmp_path / "saved_model" / "saved_model.pb").write_bytes(b"")
    (tmp_path / "empty").mkdir()
    kinds = {name: model_kind(str(tmp_path / name)) for name in
             ("run.json", "final.weights.h5", "backbone.h5", "backbone.keras", "model_int8.tflite", "notes.txt",
              "saved_model", "empty")}
    assert kinds == {"run.json": "tflite", "final.weights.h5": "final_weights", "backbone.h5": "keras",
                     "backbone.keras": "keras", "model_int8.tflite": "tflite", "notes.txt": "tflite",
                     "saved_model": "saved_model", "empty": None}
    assert model_kind(str(tmp_path)) == "training"  # the folder holding run.json


def _one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_every_opener_fails_with_one_line_naming_the_path(tmp_path):
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a flatbuffer")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError) as err:
        model_kind(str(tmp_path / "nope.tflite"))
    assert _one_line(err) == f"{tmp_path / 'nope.tflite'}: no such file or folder"
    with pytest.raises(ModelError) as err:
        open_interpreter(str(junk))
    assert _one_line(err).startswith(f"{junk}: cannot load TFLite model (")
    with pytest.raises(ModelError) as err:
        open_interpreter(b"not a flatbuffer")
    assert _one_line(err).startswith("<bytes>: cannot load TFLite model (")
    with pytest.raises(ModelError) as err:
        open_signature(str(empty))
    assert _one_line(err) == f"{empty}: expected a SavedModel folder; this is not a model of that kind"
    with pytest.raises(ModelError) as err:
        open_backbone(str(empty))
    assert _one_line(err) == f"{empty}: not a training directory (run.json) nor a SavedModel (saved_model.pb)"
    with pytest.raises(ModelError) as err:
        open_keras(str(junk))
    assert _one_line(err).startswith(f"{junk}: not a Keras model of a backbone (")



def test_one_not_a_model_line_lists_the_kinds_taken(tmp_path):
    """Every caller's "not a model" is accepted_kind's line, listing the kinds that caller takes."""
    weights, empty = tmp_path / "final.weights.h5", tmp_path / "empty"
    weights.write_bytes(b"")
    empty.mkdir()
    rows = [(weights, RUNNABLE, "a .tflite file, a SavedModel folder, a training folder or a Keras .h5/.keras backbone"),
            (empty, STARTABLE, "a training folder, its final.weights.h5, a SavedModel folder or a Keras .h5/.keras backbone"),
            (weights, ("tflite",), "a .tflite file")]
    for path, accepted, listing in rows:
        with pytest.raises(ModelError) as err:
            accepted_kind(str(path), accepted)
        those = "that kind" if len(accepted) == 1 else "those kinds"
        assert _one_line(err) == f"{path}: expected {listing}; this is not a model of {those}"
    assert accepted_kind(str(weights), STARTABLE) == "final_weights"
    assert set(RUNNABLE) == {k for k, row in KINDS.items() if row.open}
    assert set(STARTABLE) == {k for k, row in KINDS.items() if row.start}


def test_open_model_opens_a_tflite_file_by_its_kind():
    kind, interp = open_model(str(REPO / "android_demo_assets" / "model_int8.tflite"), num_threads=1)
    assert kind == "tflite" and interp.get_output_details()[0]["shape"].tolist() == [1, 128]
