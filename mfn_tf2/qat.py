"""Quantization-aware fine-tuning: the graph that ships, trained with the ArcFace head.

``finetune`` builds ``quantize.qat_model(backbone)`` (the export form with
fake-quant ops, see quantize.py), puts the trained ArcFace head on top and
trains it on the training faces under the training strategy, at a small
learning rate, for ``--qat_epochs``. Batch norm is already folded into the
convs, so no statistics drift; the activation ranges are learned as moving
averages during this run and written as they are into ``model_qat_int8.tflite``.

    # the QAT file alone, from a training directory (per-channel weight scales)
    python -m mfn_tf2.export weights/ --out export/qat --formats qat_int8 \\
        --train_directory faces/ --pairs_filename lfw/pairs.txt --data_directory lfw/

Measured on the demo model (``make demo``, docs/demo_report.md): see the
"int8" table of the export report.
"""
from __future__ import annotations

from mfn_tf2 import config as C
from mfn_tf2.backend import keras, tf
from mfn_tf2.checkpoints import restore_head
from mfn_tf2.shards import DataError


def finetune(backbone: keras.Model, model_path: str, run: dict | None, data_cfg: C.DataConfig,
             exp: C.ExportConfig, calibration, log=print) -> keras.Model:
    """Quantization-aware fine-tuning of the export form, with the trained ArcFace head.

    The head comes from the training directory's checkpoint when the training
    data has the same classes; otherwise a fresh head is trained (and said so).

    Args:
        backbone: the float backbone (``model.build_backbone`` layout).
        model_path: its training directory (for the head) or SavedModel.
        run: the training run's run.json (its model config), or None.
        data_cfg: the training faces (``train_directory``) and batch size.
        exp: ``qat_epochs``, ``qat_learning_rate``, ``per_tensor``.
        calibration: float32 (N, S, S, 3) normalised faces the activation ranges start from.
        log: where progress lines go.

    Returns:
        The fine-tuned QAT model (fake-quantized export form, same input and
        output as the backbone), ready for ``tflite.convert(qat, "qat_int8")``.

    Raises:
        DataError: no ``train_directory``, or training data that cannot be read.
    """
    from mfn_tf2.data import open_training_data
    from mfn_tf2.distribute import make_strategy
    from mfn_tf2.quantize import qat_model
    from mfn_tf2.recognizer import Recognizer, make_optimizer
    if not data_cfg.train_directory:
        raise DataError("qat_int8 needs --train_directory (the training faces) for fine-tuning")
    model_cfg = C.from_dict(C.ModelConfig, run["model"]) if run else C.ModelConfig(
        image_size=backbone.input_shape[1], embedding_dim=backbone.output_shape[-1])
    data = open_training_data(C.replace(data_cfg, image_size=model_cfg.image_size))
    strategy = make_strategy()
    steps = max(1, data.num_train // data_cfg.batch_size)
    with strategy.scope():
        qat = qat_model(backbone, per_tensor=exp.per_tensor, calibration=calibration)
        recognizer = Recognizer(qat, data.num_classes, model_cfg.loss_scale, model_cfg.loss_margin)
        train_cfg = C.TrainConfig(learning_rate=exp.qat_learning_rate, epochs=exp.qat_epochs,
                                  lr_schedule="cosine", weight_decay=0.0)
        recognizer.compile(optimizer=make_optimizer(train_cfg, steps))
        size = model_cfg.image_size
        recognizer.head((recognizer(tf.zeros((1, size, size, 3))), tf.zeros((1,), tf.int32)))
        if not restore_head(model_path, recognizer.head):
            log(f"QAT: no trained head for these {data.num_classes} classes in {model_path}; "
                "fine-tuning with a fresh head (pass the training run's data flags to reuse it)")
    dataset = strategy.distribute_datasets_from_function(lambda ctx: data.train_dataset(ctx).repeat())
    scales = "per-tensor" if exp.per_tensor else "per-channel"
    log(f"QAT ({scales} weight scales): {exp.qat_epochs} epoch(s) x {steps} steps on {data.num_train} images")
    recognizer.fit(dataset, epochs=exp.qat_epochs, steps_per_epoch=steps, verbose=2)
    return recognizer.backbone


__all__ = ["finetune"]
