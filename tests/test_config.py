"""config.py owns every rule: a bad value is a ValueError naming its flag, raised in-process when the
config is built; the modules that act on a name accept exactly the config's name list."""
import pytest

from mfn_tf2 import config as C

# (config class, field, bad value, words the one-line message must hold)
BAD_VALUES = [
    (C.ModelConfig, "arch", "resnet", "--arch 'resnet': choose one of mobilefacenet, mbf"),
    (C.ModelConfig, "image_size", 40, "--image_size 40: MobileFaceNet needs a multiple of 16, at least 32"),
    (C.ModelConfig, "image_size", 16, "--image_size 16: MobileFaceNet needs a multiple of 16, at least 32"),
    (C.ModelConfig, "image_size", 100, "--image_size 100: MobileFaceNet needs a multiple of 16, at least 32"),
    (C.ModelConfig, "image_size", 0, "--image_size 0: MobileFaceNet needs a multiple of 16, at least 32"),
    (C.ModelConfig, "expansion_ratio", "six", "--expansion_ratio 'six'"),
    (C.ModelConfig, "expansion_ratio", "0", "--expansion_ratio '0'"),
    (C.ModelConfig, "embedding_dim", 0, "--embedding_dim 0: must be a positive integer"),
    (C.ModelConfig, "width", 0.0, "--width 0.0: must be positive"),
    (C.ModelConfig, "width", -0.5, "--width -0.5: must be positive"),
    (C.ModelConfig, "prelu", "elu", "--prelu 'elu': choose one of channel, shared"),
    (C.ModelConfig, "loss_scale", 0.0, "--loss_scale 0.0: must be positive"),
    (C.ModelConfig, "loss_margin", -0.1, "--loss_margin -0.1: must be 0 or more"),
    (C.DataConfig, "batch_size", 0, "--batch_size 0: must be a positive integer"),
    (C.DataConfig, "aug_freq", 2.0, "--aug_freq 2.0: must be in [0, 1]"),
    (C.DataConfig, "valid_split_ratio", 1.0, "--valid_split_ratio 1.0: must be in [0, 1)"),
    (C.DataConfig, "min_images", 0, "--min_images 0: must be a positive integer"),
    (C.DataConfig, "max_identities", -1, "--max_identities -1: must be 0 (all) or more"),
    (C.DataConfig, "data_generator", "module", "--data_generator 'module': give module:function"),
    (C.EvalConfig, "sample_type", 2, "--sample_type 2: choose 0 (balanced pairs) or 1 (all pairs)"),
    (C.EvalConfig, "repeat_times", 0, "--repeat_times 0: must be a positive integer"),
    (C.EvalConfig, "num_person", 0, "--num_person 0: must be a positive integer"),
    (C.EvalConfig, "num_sample", 0, "--num_sample 0: must be a positive integer"),
    (C.EvalConfig, "far_target", (0.0,), "--far_target 0.0: each false accept rate must be in (0, 1)"),
    (C.EvalConfig, "crop", (10, 0, 5, 20), "--crop 10,0,5,20: give left,top,right,bottom"),
    (C.EvalConfig, "std", 0.0, "--std 0.0: must be positive"),
    (C.EvalConfig, "verification_sets", ("lfw.txt",), "--verification_sets lfw.txt: give insightface .bin files"),
    (C.EvalConfig, "best_by", "agedb_30", "--best_by 'agedb_30': choose one of pairs"),
    (C.TrainConfig, "epochs", 0, "--epochs 0: must be a positive integer"),
    (C.TrainConfig, "optimizer", "lion", "--optimizer 'lion': choose one of sgd, adamw"),
    (C.TrainConfig, "lr_schedule", "step", "--lr_schedule 'step': choose one of cosine, polynomial, constant"),
    (C.TrainConfig, "mixed_precision", "int4", "--mixed_precision 'int4': choose one of off, auto, bfloat16"),
    (C.TrainConfig, "strategy", "ring", "--strategy 'ring': choose one of auto, mirrored, multi_worker"),
    (C.TrainConfig, "momentum", 1.0, "--momentum 1.0: must be in [0, 1)"),
    (C.TrainConfig, "gpu", "a,b", "--gpu 'a,b': give GPU ids"),
    (C.TrainConfig, "margin_warmup_epochs", -1.0, "--margin_warmup_epochs -1.0: must be 0 or more"),
    (C.ExportConfig, "formats", ("int4",), "--formats int4: choose from saved_model,fp32"),
    (C.ExportConfig, "num_calibration", 0, "--num_calibration 0: must be a positive integer"),
    (C.ExportConfig, "min_cosine", 1.5, "--min_cosine 1.5: must be in [-1, 1]"),
]


@pytest.mark.parametrize("cls,field,value,words", BAD_VALUES,
                         ids=[f"{cls.__name__}.{field}={value!r}" for cls, field, value, _ in BAD_VALUES])
def test_bad_value_names_its_flag(cls, field, value, words):
    with pytest.raises(ValueError) as err:
        cls(**{field: value})
    assert words in str(err.value) and "\n" not in str(err.value)


def test_replace_checks_too():
    with pytest.raises(ValueError, match="--embedding_dim 0"):
        C.replace(C.ModelConfig(width=0.25), embedding_dim=0)


def test_android_assets_need_an_app_format():
    with pytest.raises(ValueError, match="--android_assets app/: the app ships the int8 or fp16 model"):
        C.ExportConfig(formats=("fp32",), android_assets="app/")


def test_defaults_presets_and_recipes_are_valid():
    assert C.ModelConfig() and C.DataConfig() and C.EvalConfig() and C.TrainConfig() and C.ExportConfig()
    assert {p.arch for p in C.MODEL_PRESETS.values()} <= set(C.ARCH_NAMES)
    assert {r.train.optimizer for r in C.RECIPES.values()} <= set(C.OPTIMIZERS)


def test_name_lists_are_what_the_modules_act_on():
    from mfn_tf2 import backbones, recognizer
    assert set(backbones.ARCHS) == set(C.ARCH_NAMES)
    assert set(recognizer._OPTIMIZERS) == set(C.OPTIMIZERS)
    assert set(recognizer._DECAY) == set(C.LR_SCHEDULES)
    assert set(recognizer._POLICIES) | {"auto"} == set(C.PRECISIONS)


def test_old_preset_and_recipe_names_still_work_with_a_note():
    from conftest import run_cli
    new = run_cli("model", "--preset", "keras_original")
    old = run_cli("model", "--preset", "seed")
    assert new.returncode == old.returncode == 0
    assert old.stdout == new.stdout
    assert old.stderr.count("note: --preset seed is now called keras_original") == 1
    assert "seed" not in new.stderr
    assert C.RENAMED["seed"] in C.RECIPES and C.RENAMED["seed"] in C.MODEL_PRESETS
