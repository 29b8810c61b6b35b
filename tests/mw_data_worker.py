"""One worker of tests/test_multiworker.py: iterates one epoch of a shard folder under
MultiWorkerMirroredStrategy (TF_CONFIG from the environment) and writes a hash per image seen.

    TF_CONFIG=... python tests/mw_data_worker.py SHARD_DIR OUT.json GLOBAL_BATCH
"""
import hashlib
import json
import sys

from mfn_tf2.config import DataConfig
from mfn_tf2.distribute import make_strategy


def main(shards: str, out: str, batch: int) -> None:
    strategy = make_strategy(strategy="multi_worker")
    from mfn_tf2.pipeline import open_training_data
    data = open_training_data(DataConfig(train_directory=shards, batch_size=batch, aug_freq=0.0, image_size=32))
    dist = strategy.distribute_datasets_from_function(data.train_dataset)
    seen, it = [], iter(dist)
    for _ in range(data.num_train // batch):
        images, _labels = next(it)
        for local in strategy.experimental_local_results(images):
            seen += [hashlib.sha1(im.tobytes()).hexdigest() for im in local.numpy()]
    with open(out, "w") as f:
        json.dump(seen, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
