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
    from conftest import run_main  # a rule of the flags' parsing: in-process
    new = run_main("model", "--preset", "keras_original")
    old = run_main("model", "--preset", "seed")
    assert new.returncode == old.returncode == 0
    assert old.stdout == new.stdout
    assert old.stderr.count("note: --preset seed is now called keras_original") == 1
    assert "seed" not in new.stderr
    assert C.RENAMED["seed"] in C.RECIPES and C.RENAMED["seed"] in C.MODEL_PRESETS


# The runners' own configs: (build, words of the one-line ValueError the shells turn into exit 2)
def _eval_run(**fields):
    from mfn_tf2.evaluating import EvalRun
    return EvalRun(models=("m.tflite",), **fields)


def _demo(**fields):
    from mfn_tf2.demoing import DemoConfig
    return DemoConfig(**fields)


RUNNER_BAD = [
    (lambda: _eval_run(eval=C.EvalConfig()), "give --pairs_filename/--data_directory, or --bin"),
    (lambda: _eval_run(eval=C.EvalConfig(verification_sets=("lfw.bin",)), detect=True),
     "--detect is for pairs of raw photos"),
    (lambda: _eval_run(eval=C.EvalConfig(data_directory="faces"), min_score=1.0),
     "--min_score 1.0: expected a confidence in (0, 1)"),
    (lambda: _demo(recipe="fast"), "--recipe 'fast': choose one of cpu_demo, keras_original"),
    (lambda: _demo(epochs=0), "--epochs 0: must be a positive integer"),
    (lambda: _demo(image_size=40), "--image_size 40: MobileFaceNet needs a multiple of 16"),
    (lambda: _demo(template="square"), "--template 'square': choose one of 112x112, 112x96, lfw_a"),
]


@pytest.mark.parametrize("build,words", RUNNER_BAD, ids=[w.split(":")[0] for _, w in RUNNER_BAD])
def test_runner_configs_name_the_flag(build, words):
    with pytest.raises(ValueError) as err:
        build()
    assert words in str(err.value) and "\n" not in str(err.value)


def test_demo_config_overrides_its_recipe():
    stages = _demo(out="o", epochs=2, image_size=32, width=0.25).stages()
    cpu = C.RECIPES["cpu_demo"]
    assert stages.model == C.replace(cpu.model, image_size=32, width=0.25)
    assert (stages.train.epochs, stages.train.save_model_directory) == (2, "o/weights")
    assert stages.train.learning_rate == cpu.train.learning_rate
    assert stages.per_tensor.per_tensor and stages.per_tensor.out == "o/export_per_tensor"


def test_preset_default_is_the_same_in_every_shell():
    """No --preset: the model flags keep keras_original's values (train: its recipe's model), and
    --help says so; a preset given sets them in both shells alike."""
    from conftest import run_main
    from mfn_tf2 import cli, model, train
    keras_original = C.MODEL_PRESETS["keras_original"]
    plain = train.parse(["faces", "lfw", "pairs.txt"])["model"]
    demo = train.parse(["faces", "lfw", "pairs.txt", "--recipe", "cpu_demo"])["model"]
    assert plain == keras_original and demo == C.RECIPES["cpu_demo"].model
    parser = model.build_parser()
    assert cli.config_from_args(C.ModelConfig, parser.parse_args([])) == keras_original
    for preset in C.MODEL_PRESETS:
        ns = model.build_parser(preset).parse_args(["--preset", preset])
        assert cli.config_from_args(C.ModelConfig, ns) == C.MODEL_PRESETS[preset]
        assert train.parse(["f", "l", "p", "--preset", preset, "--recipe", "cpu_demo"])["model"] == \
            C.MODEL_PRESETS[preset]
    said = " ".join(run_main("model", "--help").stdout.split())
    assert "model flags override it (default: keras_original)" in said
    said = " ".join(run_main("train", "--help").stdout.split())
    assert "(default: the recipe's model: keras_original's with the default recipe)" in said
