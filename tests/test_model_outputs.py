"""Models with several outputs: the embedding is found, said, and choosable.

The models are built here from the session's tiny trained backbone: a uint8-in,
uint8-out TFLite model whose first output is a 2-way classifier and whose
second is the embedding (as face models from elsewhere often are), and a
SavedModel whose first signature output (by name) is the classifier.
"""
import json

import numpy as np
import pytest

from conftest import run_cli
from mfn_tf2.embedders import EmbedderError, pick_output


@pytest.fixture(scope="module")
def backbone(tiny_run):
    from mfn_tf2.checkpoints import load_backbone
    return load_backbone(str(tiny_run[0]))


def _two_outputs(backbone):
    from mfn_tf2.backend import keras
    image = keras.Input(backbone.input_shape[1:])
    embedding = backbone(image)
    logits = keras.layers.Dense(2, name="logits")(embedding)
    return keras.Model(image, [logits, embedding])


@pytest.fixture(scope="module")
def uint8_two_output(backbone, tiny_run, tmp_path_factory):
    """A full-integer .tflite with uint8 input and uint8 outputs (classifier, embedding)."""
    from mfn_tf2.backend import tf
    from mfn_tf2.exporting import calibration_images
    faces = calibration_images(str(tiny_run[1]), backbone.input_shape[1], 32)
    model = _two_outputs(backbone)
    # From one concrete function over the model's variables: from_keras_model would first save the
    # whole Keras model, tracing every layer (several times slower).
    holder = tf.Module()
    holder.weights = list(model.variables)
    serve = tf.function(lambda image: model(image, training=False),
                        input_signature=[tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], holder)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([faces[i:i + 1]] for i in range(len(faces)))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8
    path = tmp_path_factory.mktemp("two_outputs") / "two_outputs.tflite"
    path.write_bytes(converter.convert())
    return path


def _tflite_outputs(path):
    from ai_edge_litert.interpreter import Interpreter
    details = Interpreter(model_path=str(path)).get_output_details()
    assert all(d["dtype"] == np.uint8 and d["quantization"][0] > 0 for d in details)
    return [(d["name"], list(d["shape"])) for d in details]


def _evaluate(tiny_run, model, tmp_path, *extra, reference=True):
    """Evaluates ``model`` (after the float weights when ``reference``); (process, its JSON entry)."""
    weights, faces, pairs = tiny_run
    models = [weights, model] if reference else [model]
    proc = run_cli("evaluate", *models, "--pairs_filename", pairs, "--data_directory", faces,
                   "--json", tmp_path / "eval.json", *extra)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, json.loads((tmp_path / "eval.json").read_text())["models"][-1]


def test_uint8_two_output_tflite_scores_the_embedding(tiny_run, uint8_two_output, tmp_path):
    outputs = _tflite_outputs(uint8_two_output)
    index = [shape for _, shape in outputs].index([1, 32])
    proc, scored = _evaluate(tiny_run, uint8_two_output, tmp_path)
    name = outputs[index][0]
    assert f"2 outputs; the embedding is {name!r} [1, 32]" in proc.stderr
    assert f"{outputs[1 - index][0]!r} [1, 2]" in proc.stderr          # the other one is listed
    assert f"(output {name!r})" in proc.stdout                           # and the table says which
    assert scored["model"]["output"] == name
    # Dequantized with its own (scale, zero point): the int8 embedding matches the float one.
    assert scored["agreement"]["mean"] > 0.95, scored["agreement"]

    by_name = _evaluate(tiny_run, uint8_two_output, tmp_path, "--output", name)[1]
    assert by_name["agreement"] == scored["agreement"]
    proc, other = _evaluate(tiny_run, uint8_two_output, tmp_path, "--output", str(1 - index), reference=False)
    assert "chosen with --output" in proc.stderr and other["model"]["output"] == outputs[1 - index][0]


@pytest.fixture(scope="module")
def two_output_saved_model(backbone, tmp_path_factory):
    """A SavedModel (uint8 image in) with outputs "logits" (1, 2) and "vector" (1, 32)."""
    from mfn_tf2.backend import tf
    model = _two_outputs(backbone)
    size = backbone.input_shape[1]

    class Serving(tf.Module):
        def __init__(self):
            super().__init__()
            self.weights = list(model.variables)  # not the Keras model: the saver would trace each layer

        @tf.function(input_signature=[tf.TensorSpec((None, size, size, 3), tf.uint8, name="image")])
        def serve(self, image):
            logits, embedding = model((tf.cast(image, tf.float32) - 127.5) / 128.0)
            return {"logits": logits, "vector": embedding}

    path = tmp_path_factory.mktemp("sm") / "two_outputs"
    module = Serving()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def test_two_output_saved_model_scores_the_embedding(tiny_run, two_output_saved_model, tmp_path):
    proc, scored = _evaluate(tiny_run, two_output_saved_model, tmp_path)
    assert "2 outputs; the embedding is 'vector' [None, 32]" in proc.stderr
    assert scored["model"]["output"] == "vector"
    assert scored["agreement"]["min"] > 0.999
    assert _evaluate(tiny_run, two_output_saved_model, tmp_path, "--output", "vector")[1]["agreement"] \
        == scored["agreement"]


OUTPUTS = [("logits", [1, 2]), ("features", [1, 7, 7, 64]), ("embedding", [1, 128])]


@pytest.mark.parametrize("wanted, index", [(None, 2), ("embedding", 2), ("0", 0), ("logits", 0)])
def test_pick_output(wanted, index):
    assert pick_output("m", OUTPUTS, wanted)[0] == index


def test_pick_output_ties_go_to_the_first_and_one_output_says_nothing():
    assert pick_output("m", [("a", [1, 64]), ("b", [1, 64])])[0] == 0
    assert pick_output("m", [("emb", [None, 64])]) == (0, "")


@pytest.mark.parametrize("wanted, words", [("features", "'features' shape [1, 7, 7, 64] is not an embedding"),
                                           ("3", "--output 3: no such output"),
                                           ("nope", "--output nope: no such output (outputs: 'logits' [1, 2]")])
def test_pick_output_refuses(wanted, words):
    with pytest.raises(EmbedderError) as err:
        pick_output("m", OUTPUTS, wanted)
    assert words in str(err.value) and "\n" not in str(err.value)
