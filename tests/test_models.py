"""mfn_tf2.models: what kind a model path is (one lookup) and the one error line of every opener."""
import pytest

from mfn_tf2.models import ModelError, model_kind, open_backbone, open_interpreter, open_keras, open_signature


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
    assert _one_line(err) == f"{empty}: not a SavedModel folder (no saved_model.pb)"
    with pytest.raises(ModelError) as err:
        open_backbone(str(empty))
    assert _one_line(err) == f"{empty}: not a training directory (run.json) nor a SavedModel (saved_model.pb)"
    with pytest.raises(ModelError) as err:
        open_keras(str(junk))
    assert _one_line(err).startswith(f"{junk}: not a Keras model of a backbone (")
